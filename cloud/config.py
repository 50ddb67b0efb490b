"""Hub configuration: one typed document, from ``hub.toml`` plus ``STEMPEL_*`` variables and flags.

Nothing is read at import time; ``load_hub_config`` is the only door, and ``create_hub``
(cloud/app.py) builds the hub from what it returns. Precedence, highest first: command-line
flags (keyword *overrides*), environment variables, the file, then the defaults. Errors
name the field and the fix.

```toml
[hub]
data_dir = "/var/lib/stempel-hub"      # STEMPEL_HUB_DIR, --data-dir
db_url = "postgresql+psycopg://..."    # STEMPEL_HUB_DB, --db-url  [SQLite in data_dir]

[mqtt]                                 # how the hub reaches the broker (cloud/mqtt.py)
settings_file = "/var/lib/stempel-hub/broker/hub-mqtt.toml"   # STEMPEL_HUB_MQTT, --mqtt-config
# host, port, username, password_file, tls, ca_file, cert_file, key_file override it
# ingest_group = "..."                 # STEMPEL_INGEST_GROUP, --group

[web]                                  # `stempel-hub serve` (cloud/web/)
host = "127.0.0.1"                     # STEMPEL_WEB_HOST, --host
port = 8080                            # STEMPEL_WEB_PORT, --port
workers = 2                            # STEMPEL_WEB_WORKERS, --workers
secure_cookies = true                  # false only for plain-HTTP testing on localhost
joins_per_ip = 10                      # sign-ups from one address per 10 minutes
joins_per_shop = 300                   # sign-ups per shop per hour

[ingest]
max_event_ahead_minutes = 5            # STEMPEL_HUB_MAX_EVENT_AHEAD_MINUTES, --max-event-ahead
max_event_age_days = 3650              # STEMPEL_HUB_MAX_EVENT_AGE_DAYS, --max-event-age
session_expiry = 3600                  # --session-expiry

[smtp]                                 # e-mail for `stempel-hub automations run` (cloud/automations/)
host = "smtp.example.net"              # no host: no e-mail
port = 587                             # [465 with tls, 587 with starttls, else 25]
username = "stempel@example.net"
password_file = "/etc/stempel/smtp-password"
starttls = true                        # or tls = true for SMTPS; never falls back to plain text
# ca_file = "/etc/stempel/smtp-ca.crt" # a private CA (PEM) to trust instead of the system's
sender = "Cafe Rosa <stempel@example.net>"
# return_path = "bounces@example.net"  # the envelope sender (MAIL FROM): where bounces go [sender]
# bounce_maildir = "/var/mail/bounces" # the Maildir return_path's mail arrives in: each sweep records
                                       # the bounces in it (cloud/automations/bounces.py)

[automations]                          # triggers, weekly cap, quiet hours (local time of each shop)
channels = ["email", "webhook"]        # each message goes out once per channel listed [email]; "inbox": on the card
weekly_cap = 2
quiet_start = "21:00"
quiet_end = "08:00"
almost_there_within = 2                # "almost there": stamps to go (stamp cards) ...
almost_there_within_percent = 10       # ... or % of the cheapest reward's cost (points)
winback_bonus = 2                      # granted by the kiosk at the next visit after a win-back [0: none]
control_share = 0.1                    # held out of win-backs (no message, no bonus): the lift's control group

[webhook]                              # a signed POST per message (cloud/automations/webhook.py)
url = "https://crm.example.net/stempel"
secret_file = "/etc/stempel/webhook-secret"
timeout = 10
```
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from kiosk.common.errors import ConfigError
from kiosk.common.tomlfile import explain, read_toml
from kiosk.protocol.event_schema import ClockWindow

DEFAULT_PATH = Path("/etc/stempel/hub.toml")
_ADDRESS = re.compile(r"[^\s<>()@,;:\"]{1,64}@[A-Za-z0-9.-]{1,253}")  # a bare address, as MAIL FROM takes it

# Environment variables and the field each sets ("section.field").
ENV = {"STEMPEL_HUB_DIR": "hub.data_dir", "STEMPEL_HUB_DB": "hub.db_url", "STEMPEL_HUB_MQTT": "mqtt.settings_file",
       "STEMPEL_INGEST_GROUP": "mqtt.ingest_group",
       "STEMPEL_HUB_MAX_EVENT_AHEAD_MINUTES": "ingest.max_event_ahead_minutes",
       "STEMPEL_HUB_MAX_EVENT_AGE_DAYS": "ingest.max_event_age_days",
       "STEMPEL_WEB_HOST": "web.host", "STEMPEL_WEB_PORT": "web.port", "STEMPEL_WEB_WORKERS": "web.workers"}


class HubSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data_dir: Path | None = Field(None, description="keys, SQLite, broker files; [$XDG_DATA_HOME/stempel-hub]")
    db_url: str | None = Field(None, min_length=1, description="SQLAlchemy URL; [SQLite in data_dir]")


class MqttSection(BaseModel):
    """How the hub's processes reach the broker. Fields left out come from ``settings_file``
    (``hub-mqtt.toml``, written by ``stempel-hub broker-config``), else the defaults."""

    model_config = ConfigDict(extra="forbid")
    settings_file: Path | None = Field(None, description="hub-mqtt.toml from `stempel-hub broker-config`")
    host: str | None = Field(None, min_length=1, description="[from settings_file, else 127.0.0.1]")
    port: int | None = Field(None, ge=1, le=65535, description="[from settings_file, else 1883]")
    username: str | None = Field(None, min_length=1)
    password_file: Path | None = None
    tls: bool | None = Field(None, description="implied by ca_file / cert_file")
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    ingest_group: str | None = Field(None, min_length=1, description="the shared subscription's (secret) group")
    connect_timeout: float = Field(10.0, gt=0, le=3600, description="seconds the admin commands keep trying")


class IngestSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_event_ahead_minutes: int = Field(int(ClockWindow.future / timedelta(minutes=1)), ge=0, le=24 * 60)
    max_event_age_days: int = Field(ClockWindow.past.days, ge=1, le=36500)
    session_expiry: int = Field(3600, ge=0, description="seconds the broker keeps an absent worker's messages")

    def window(self) -> ClockWindow:
        """The clock window events must be dated in."""
        return ClockWindow(future=timedelta(minutes=self.max_event_ahead_minutes),
                           past=timedelta(days=self.max_event_age_days))


class WebSection(BaseModel):
    """The owner's and the members' web pages (``stempel-hub serve``); put a TLS proxy in front."""

    model_config = ConfigDict(extra="forbid")
    host: str = Field("127.0.0.1", min_length=1, description="address to listen on")
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(2, ge=1, le=64, description="gunicorn worker processes")
    secure_cookies: bool = Field(True, description="cookies only over HTTPS; false for plain-HTTP tests")
    joins_per_ip: int = Field(10, ge=1, le=100_000, description="sign-ups from one address per 10 minutes")
    joins_per_shop: int = Field(300, ge=1, le=1_000_000, description="sign-ups per shop per hour")


class SmtpSection(BaseModel):
    """How the hub sends e-mail (cloud/automations/mailer.py). No ``host``: no e-mail is sent."""

    model_config = ConfigDict(extra="forbid")
    host: str | None = Field(None, min_length=1, description="the SMTP server (your provider's submission host)")
    port: int | None = Field(None, ge=1, le=65535, description="[465 with tls, 587 with starttls, else 25]")
    username: str | None = Field(None, min_length=1)
    password_file: Path | None = Field(None, description="a 0600 file holding the SMTP password")
    starttls: bool = Field(True, description="upgrade the connection with STARTTLS (port 587); never plain instead")
    tls: bool = Field(False, description="TLS from the first byte (SMTPS, port 465); starttls is then moot")
    ca_file: Path | None = Field(None, description="CA (PEM) to trust instead of the system's")
    sender: str | None = Field(None, min_length=3, max_length=254, description="the From address")
    timeout: float = Field(30.0, gt=0, le=600, description="seconds per SMTP command")
    return_path: str | None = Field(None, max_length=254,
                                    description="the envelope sender (MAIL FROM), where bounces go [sender]")
    bounce_maildir: Path | None = Field(None, description="the Maildir the return path's mail arrives in")

    @field_validator("return_path")
    @classmethod
    def _return_path(cls, value: str | None) -> str | None:
        if value is not None and not _ADDRESS.fullmatch(value):
            raise ValueError("give a bare address (bounces@example.net, no name or <>): the envelope sender "
                             "that receives the bounces")
        return value

    def maildir(self) -> Path:
        """``bounce_maildir``, checked: a directory with ``cur``, ``new`` and ``tmp``. Raises
        ConfigError naming ``[smtp] bounce_maildir`` (and when it is not set)."""
        path = self.bounce_maildir
        if path is None:
            raise ConfigError("[smtp] bounce_maildir is not set: no bounces are read")
        missing = [sub for sub in ("cur", "new", "tmp") if not (path / sub).is_dir()]
        if missing:
            what = "no directory" if not path.is_dir() else f"no Maildir (no {', '.join(missing)} in it)"
            raise ConfigError(f"[smtp] bounce_maildir {path}: {what}; give the Maildir your mail server delivers "
                              "the return_path's mail to, or remove bounce_maildir")
        return path

    def effective_port(self) -> int:
        return self.port or (465 if self.tls else 587 if self.starttls else 25)

    def ssl_context(self) -> ssl.SSLContext:
        """What checks the server's certificate and name: ``ca_file`` alone if set (a private CA),
        else the system's CAs. Raises ConfigError naming ``[smtp] ca_file`` if that file is missing,
        unreadable or holds no certificate."""
        if self.ca_file is None:
            return ssl.create_default_context()
        try:
            return ssl.create_default_context(cafile=str(self.ca_file))
        except ssl.SSLError as exc:  # before OSError, which it is: the file was read but is no PEM certificate
            why = f"no CA certificate in it ({exc.reason or exc})"
        except OSError as exc:
            why = exc.strerror or str(exc)
        raise ConfigError(f"[smtp] ca_file {self.ca_file}: {why}; give a readable PEM file with the CA that "
                          "signed the SMTP server's certificate, or remove ca_file to trust the system's CAs")


class AutomationsSection(BaseModel):
    """The automated messages (``stempel-hub automations run``): when they are due and how often
    a member may get one."""

    model_config = ConfigDict(extra="forbid")
    triggers: list[Literal["welcome", "birthday", "winback", "almost_there", "tier_reached", "tier_loss",
                           "reward_expiry"]] = [
        "welcome", "birthday", "winback", "almost_there", "tier_reached", "tier_loss", "reward_expiry"]
    channels: list[Literal["email", "webhook", "inbox"]] = Field(
        ["email"], min_length=1,
        description="each message is sent once per channel listed ([smtp], [webhook]; inbox: the card page)")
    welcome_within_days: int = Field(7, ge=1, le=365, description="welcome members who joined this recently")
    birthday_days_before: int = Field(0, ge=0, le=30, description="greet this many days before the birthday")
    winback_factor: float = Field(3.0, ge=1.0, le=100.0, description="lapsed after usual interval × this")
    winback_min_days: int = Field(14, ge=1, le=3650, description="never call anyone lapsed sooner")
    winback_fallback_days: int = Field(45, ge=1, le=3650, description="lapse for members with under 3 visits")
    winback_valid_days: int = Field(14, ge=1, le=365, description="a win-back held back longer is dropped")
    winback_bonus: int = Field(0, ge=0, le=10_000,
                               description="stamps/points granted at the next visit after a win-back (0: none)")
    winback_bonus_days: int = Field(30, ge=1, le=365, description="the win-back bonus is valid this many days")
    control_share: float = Field(0.0, ge=0.0, le=0.5,
                                 description="share of members due for a win-back held out (no message, no bonus)")
    almost_there_within: int = Field(2, ge=1, le=1000, description="stamp cards: at most this many stamps to go")
    almost_there_within_percent: int = Field(10, ge=1, le=100,
                                             description="points: at most this % of the cheapest reward to go")
    almost_there_valid_days: int = Field(2, ge=1, le=30, description="sent this long after the visit at most")
    tier_reached_valid_days: int = Field(2, ge=1, le=30, description="'tier reached' sent this long after at most")
    tier_loss_days_before: int = Field(7, ge=1, le=90, description="warn this many days before a tier is lost")
    reward_expiry_days_before: int = Field(3, ge=1, le=90, description="warn this many days before a reward expires")
    transactional_without_consent: bool = Field(
        False, description="'reward expires' also to members without marketing consent (only where the "
                           "programme's terms allow such service messages)")
    weekly_cap: int = Field(2, ge=1, le=100, description="messages per member per 7 days and channel")
    quiet_start: time = Field(time(21, 0), description="no sending from this local time ...")
    quiet_end: time = Field(time(8, 0), description="... until this one (the shop's time zone)")
    lease_seconds: int = Field(300, ge=30, le=86400, description="a worker's hold on the messages it claimed")
    interval_seconds: int = Field(300, ge=5, le=86400, description="`automations run`: seconds between sweeps")
    nps_after_visits: int = Field(3, ge=1, le=1000, description="the card asks for an NPS score from this visit on")


class WebhookSection(BaseModel):
    """A signed HTTP POST per message to the shop's own messenger or CRM
    (cloud/automations/webhook.py). No ``url``: no webhook."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(None, max_length=2000, description="https://...; http:// only to 127.0.0.1 (tests)")
    secret_file: Path | None = Field(None, description="a 0600 file with the shared secret (32+ characters)")
    timeout: float = Field(10.0, gt=0, le=120, description="seconds to wait for the receiver's answer")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme == "https" and parts.hostname:
            return value
        if parts.scheme == "http" and parts.hostname == "127.0.0.1":
            return value
        raise ValueError("use an https:// URL (http:// only to 127.0.0.1, for tests): the messages carry "
                         "members' names and links to their cards")


class HubConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hub: HubSection = HubSection()
    mqtt: MqttSection = MqttSection()
    ingest: IngestSection = IngestSection()
    web: WebSection = WebSection()
    smtp: SmtpSection = SmtpSection()
    automations: AutomationsSection = AutomationsSection()
    webhook: WebhookSection = WebhookSection()
    _source: str = PrivateAttr("defaults")  # the file it came from, for messages

    @property
    def source(self) -> str:
        return self._source


def default_data_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("XDG_DATA_HOME") or Path.home() / ".local/share") / "stempel-hub"


def load_hub_config(path: Path | str | None = None, env: Mapping[str, str] | None = None,
                    **overrides: Any) -> HubConfig:
    """Load the hub config from *path* (or ``STEMPEL_HUB_CONFIG``, ``STEMPEL_CONFIG``, or
    /etc/stempel/hub.toml if present), then the ``STEMPEL_*`` variables of *env*, then
    *overrides* (``section__field=value``, from the command line; None means not given).

    ``hub.data_dir`` is always set in the result. Raises ConfigError.
    """
    env = os.environ if env is None else env
    chosen = path or env.get("STEMPEL_HUB_CONFIG") or env.get("STEMPEL_CONFIG")
    chosen = Path(chosen) if chosen else (DEFAULT_PATH if DEFAULT_PATH.exists() else None)
    raw: dict = {}
    source = "defaults"
    if chosen is not None:
        source = str(chosen)
        raw = read_toml(chosen, "pass --config or set STEMPEL_HUB_CONFIG")
    given = {dotted.replace(".", "__"): env[name] for name, dotted in ENV.items() if env.get(name)}
    given |= {key: value for key, value in overrides.items() if value is not None}
    for dotted, value in given.items():
        section, key = dotted.split("__")
        if not isinstance(raw.setdefault(section, {}), dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        raw[section][key] = value
    try:
        config = HubConfig.model_validate(raw)
    except ValidationError as exc:
        raise explain(exc, source) from exc
    config._source = source
    if chosen is not None:  # paths written in the file are relative to it
        _resolve_paths(config, chosen.absolute().parent, set(given))
    if config.smtp.ca_file is not None:  # checked now: a typo would otherwise show only at the first e-mail
        try:
            config.smtp.ssl_context()
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    if config.smtp.bounce_maildir is not None:  # the same: a wrong path would lose the bounces quietly
        try:
            config.smtp.maildir()
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    if config.hub.data_dir is None:
        config.hub.data_dir = default_data_dir(env)
    return config


def _resolve_paths(config: HubConfig, base: Path, given: set[str]) -> None:
    """Relative paths from the file are relative to the file; those given as flags or variables
    are relative to where the command runs, as they always were."""
    fields = [(config.hub, "hub", "data_dir")] + [(config.mqtt, "mqtt", name) for name in
                                                  ("settings_file", "password_file", "ca_file", "cert_file", "key_file")]
    fields += [(config.smtp, "smtp", name) for name in ("password_file", "ca_file", "bounce_maildir")]
    fields += [(config.webhook, "webhook", "secret_file")]
    for section, name, key in fields:
        value = getattr(section, key)
        if value is not None and not value.is_absolute() and f"{name}__{key}" not in given:
            setattr(section, key, base / value)
