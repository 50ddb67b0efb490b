"""How the hub's processes reach the broker: ``[mqtt]`` and ``hub-mqtt.toml`` merged once.

``stempel-hub broker-config`` writes ``hub-mqtt.toml``: the broker's address as the hub
reaches it, the secret ingest group, and one account per hub process (``stempel-hub-N`` for
ingest worker N, ``stempel-hub-admin`` for the admin commands, so they never take a
worker's client id). ``[mqtt]`` fields of ``hub.toml``, ``STEMPEL_*`` variables and flags
override it; without it, a broker on 127.0.0.1:1883 without accounts (a private test broker).

``Broker`` is the merged result; ``Broker.settings(role)`` is the ``BusSettings`` of one
process: the admin commands', or worker N's (persistent session, manual acknowledgement).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from cloud.broker.accounts import ADMIN_USERNAME, hub_username
from cloud.config import MqttSection
from kiosk.common.bus import BusSettings, MqttBus, Tls
from kiosk.common.errors import ConfigError
from kiosk.protocol import topics

ADMIN = "admin"  # Broker.settings role of the admin commands; an int is ingest worker N


@dataclass(frozen=True)
class Broker:
    """The broker as the hub reaches it. ``username``/``password_file`` are explicit choices
    (they win over the role's account); ``accounts`` are those ``hub-mqtt.toml`` lists."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    group: str = topics.INGEST_GROUP
    username: str | None = None
    password_file: Path | None = None
    accounts: dict[str, Path] = field(default_factory=dict)
    settings_file: Path | None = None
    session_expiry: int = 3600

    def settings(self, role: str | int, worker_id: str | None = None) -> BusSettings:
        """The connection of the admin commands (*role* ``"admin"``) or of ingest worker *role*;
        raises ConfigError if ``hub-mqtt.toml`` has no account for it or a password is unreadable."""
        username, password_file = self.username, self.password_file
        account = ADMIN_USERNAME if role == ADMIN else hub_username(int(role))
        if self.settings_file is not None:
            if account not in self.accounts:
                fix = "" if role == ADMIN else f" --hub-workers {role}"
                missing = f"no {ADMIN_USERNAME} account" if role == ADMIN else f"no account {account}"
                raise ConfigError(f"{self.settings_file}: {missing}; rerun `stempel-hub broker-config{fix}`")
            username = username or account
            password_file = password_file or self.accounts[account]
        use_tls = self.tls or self.ca_file is not None or self.cert_file is not None
        tls = Tls(self.ca_file, self.cert_file, self.key_file) if use_tls else None
        password = _read_password(password_file)
        if role == ADMIN:
            return BusSettings(host=self.host, port=self.port, client_id=username or ADMIN_USERNAME,
                               username=username, password=password, tls=tls)
        client_id = username or worker_id or self.worker_id(int(role))
        return BusSettings(host=self.host, port=self.port, client_id=client_id, username=username, password=password,
                           tls=tls, session_expiry=self.session_expiry, manual_ack=True, reconnect_min=0.5,
                           reconnect_max=10)

    def worker_id(self, worker: int, given: str | None = None) -> str:
        """Worker *worker*'s MQTT client id: *given*, else its username, else ``stempel-ingest-N``."""
        if given:
            return given
        if self.username:
            return self.username
        if self.settings_file is not None:
            return hub_username(worker)
        return f"stempel-ingest-{worker}"


def resolve_broker(section: MqttSection, session_expiry: int = 3600) -> Broker:
    """Merge ``section`` over its ``settings_file`` (read once, here) over the defaults."""
    base: dict = {}
    if section.settings_file is not None:
        base = _read_settings_file(section.settings_file)
    given = {"host": section.host, "port": section.port, "tls": section.tls, "ca_file": section.ca_file,
             "cert_file": section.cert_file, "key_file": section.key_file, "group": section.ingest_group,
             "username": section.username, "password_file": section.password_file}
    merged = {**base, **{key: value for key, value in given.items() if value is not None}}
    return Broker(**merged, settings_file=section.settings_file, session_expiry=session_expiry)


def _read_settings_file(path: Path) -> dict:
    try:
        doc = tomllib.loads(path.read_text())
        mqtt, accounts = doc["mqtt"], doc.get("accounts", {})
        return {"host": mqtt["host"], "port": int(mqtt["port"]), "tls": bool(mqtt.get("tls")),
                "ca_file": Path(mqtt["ca_file"]) if mqtt.get("ca_file") else None,
                "group": mqtt.get("ingest_group", topics.INGEST_GROUP),
                "accounts": {name: Path(file) for name, file in accounts.items()}}
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise ConfigError(f"{path}: not a hub MQTT settings file ({exc})") from None


def _read_password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"password file {path}: {exc.strerror}") from None


def connect(settings: BusSettings, timeout: float) -> MqttBus:
    """A started, connected bus; raises the bus's error (with the broker's reason) otherwise."""
    bus = MqttBus(settings)
    bus.start()
    try:
        bus.wait_connected(timeout)
    except Exception:
        bus.stop()
        raise
    return bus
