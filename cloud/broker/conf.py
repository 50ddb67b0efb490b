"""The Mosquitto configuration snippet of a Stempel fleet (for ``/etc/mosquitto/conf.d/``).

Security lives in three global lines (no anonymous clients, our password file, our ACL
file) and one line per listener: ``use_username_as_clientid true``, so the broker uses
the authenticated username as the client id and one account can never disconnect another
by claiming its id. ``per_listener_settings`` stays at its default (false): kiosks and
hub processes share one password file and one ACL, on every listener alike.

TLS is a listener with server certificate and key; ``require_certificate`` adds client
certificates signed by ``cafile`` on top of (not instead of) the username and password.
With TLS, the plain listener is for the hub on the broker's own host: ``broker-config``
binds it to the loopback address only (cloud/cli.py).

**Failing closed.** What Mosquitto 2.0.11 does with a broken ``acl_file`` (measured with the
real broker, tests/test_hardening_broker.py):

- at start, it exits (status 3): no broker, no client gets in;
- at a SIGHUP (``systemctl reload``), it keeps running and logs ``Error opening acl file``,
  but its ACL check is registered only *after* a successful parse, so from then on there
  is no ACL check at all: every client, connected or new, reads and writes every topic;
- a missing password file at a SIGHUP disconnects and refuses everyone (closed already).

Mosquitto grants what no check denies only when *no* ACL check is registered; when every
registered check defers, the answer is "denied". So the snippet also loads Mosquitto's own
dynamic-security plugin with an empty configuration (no clients, groups or roles): it
knows none of our accounts and defers on each of them, which changes nothing while the
ACL file is loaded, and turns a broken one into "everything denied" until the file is
fixed and the broker reloaded. Plugins are not reloaded at a SIGHUP, so it stays. No
account can publish to its ``$CONTROL`` topic: the ACL grants none, and it has no admin.

**Sizes.** ``message_size_limit`` refuses a PUBLISH whose payload exceeds
``MAX_PAYLOAD_BYTES`` (MQTT 5 clients get PUBACK 0x95, nothing is delivered) and
``max_packet_size`` disconnects a client whose packet exceeds it by more than a topic's
worth, before the broker buffers it (MQTT 5 clients are told the limit in CONNACK).

Every value is checked and the rendered text is read back into the intended settings
before it is returned: a path or address holding a newline could otherwise add lines.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from kiosk.common.errors import ConfigError
from kiosk.protocol.messages import MAX_PAYLOAD_BYTES

PASSWD_NAME = "stempel.passwd"
ACL_NAME = "stempel.acl"
DYNSEC_NAME = "stempel-dynsec.json"
DEFAULT_INSTALL_DIR = Path("/etc/mosquitto/stempel")
DYNSEC_PLUGIN = "mosquitto_dynamic_security.so"
# Where Debian and Raspberry Pi OS install it (amd64, arm64, armhf), then other builds.
DYNSEC_SEARCH = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/arm-linux-gnueabihf",
                 "/usr/lib", "/usr/local/lib")
EMPTY_DYNSEC = '{"clients": [], "groups": [], "roles": []}\n'
PACKET_OVERHEAD = 64 * 1024  # a topic (at most 65,535 bytes) and properties on top of the payload

_VALUE = re.compile(r"[!-~](?:[ -~]*[!-~])?")  # printable ASCII, no edge spaces: one line, read as written
_WORD = re.compile(r"[!-~]+")


@dataclass(frozen=True)
class TlsFiles:
    """Paths on the broker host of the listener's CA, certificate and key (PEM)."""

    cafile: Path | None  # needed for require_certificate
    certfile: Path
    keyfile: Path
    require_certificate: bool = False


@dataclass(frozen=True)
class Listener:
    port: int
    bind: str | None = None  # None: every interface
    tls: TlsFiles | None = None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1): the broker's own host."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_dynsec_plugin(search: tuple[str, ...] = DYNSEC_SEARCH) -> Path | None:
    """Mosquitto's dynamic-security plugin on this machine, if installed (Debian: package mosquitto)."""
    return next((Path(d) / DYNSEC_PLUGIN for d in search if (Path(d) / DYNSEC_PLUGIN).is_file()), None)


def conf_settings(listeners: list[Listener], install_dir: Path, backstop: Path | None) -> list[tuple[str, str]]:
    """The ``(option, value)`` lines of the snippet, in order; raises ConfigError for a bad value."""
    settings = [("allow_anonymous", "false"), ("password_file", _path(install_dir / PASSWD_NAME)),
                ("acl_file", _path(install_dir / ACL_NAME))]
    if backstop is not None:
        settings += [("plugin", _path(backstop)), ("plugin_opt_config_file", _path(install_dir / DYNSEC_NAME))]
    settings += [("message_size_limit", str(MAX_PAYLOAD_BYTES)),
                 ("max_packet_size", str(MAX_PAYLOAD_BYTES + PACKET_OVERHEAD))]
    for listener in listeners:
        settings += _listener_settings(listener)
    return settings


def _listener_settings(listener: Listener) -> list[tuple[str, str]]:
    if not isinstance(listener.port, int) or not 1 <= listener.port <= 65535:
        raise ConfigError(f"listener port {listener.port!r} is not 1-65535")
    if listener.bind is not None and not _WORD.fullmatch(listener.bind):
        raise ConfigError(f"listener address {listener.bind!r} is not one word of printable ASCII")
    out = [("listener", f"{listener.port} {listener.bind}" if listener.bind else str(listener.port)),
           ("use_username_as_clientid", "true")]
    if listener.tls:
        tls = listener.tls
        out += [("cafile", _path(tls.cafile))] if tls.cafile else []
        out += [("certfile", _path(tls.certfile)), ("keyfile", _path(tls.keyfile)),
                ("require_certificate", "true" if tls.require_certificate else "false")]
    return out


def _path(path: Path) -> str:
    text = str(path)
    if not Path(path).is_absolute() or not _VALUE.fullmatch(text):
        raise ConfigError(f"{text!r}: give an absolute path of printable ASCII characters (Mosquitto reads "
                          "it from one line of its configuration)")
    return text


def render_conf(listeners: list[Listener], install_dir: Path = DEFAULT_INSTALL_DIR, *,
                backstop: Path | None) -> str:
    """The snippet; *install_dir* is where the password, ACL and plugin files live on the broker
    host, *backstop* the dynamic-security plugin there (None: leave it out, fail open on a broken ACL)."""
    settings = conf_settings(listeners, install_dir, backstop)
    out = ["# Stempel fleet broker, generated by `stempel-hub broker-config`.",
           "# Install in /etc/mosquitto/conf.d/. After `stempel-hub add-kiosk` rewrites the password",
           f"# and ACL files, copy them to {install_dir}/ and reload: `systemctl reload mosquitto` (SIGHUP)."]
    if backstop is not None:
        out.append("# The plugin (no accounts of its own) makes a broken ACL file deny everything instead of nothing.")
    for option, value in settings:
        out += [""] if option == "listener" else []
        out.append(f"{option} {value}")
    text = "\n".join(out) + "\n"
    if parse_conf(text) != settings:
        raise ConfigError("the Mosquitto configuration would not read back as written: refusing to write it")
    return text


def parse_conf(text: str) -> list[tuple[str, str]]:
    """The ``(option, value)`` lines of a snippet as Mosquitto splits them (comments and blanks skipped)."""
    pairs = []
    for line in text.split("\n"):
        if line and not line.startswith("#"):
            option, _, value = line.partition(" ")
            pairs.append((option, value))
    return pairs


def plain_listeners(text: str) -> list[tuple[int, str | None]]:
    """``(port, bind)`` of the listeners without TLS in a snippet we wrote."""
    found: list[tuple[int, str | None, bool]] = []
    for option, value in parse_conf(text):
        if option == "listener":
            port, _, bind = value.partition(" ")
            found.append((int(port), bind or None, False))
        elif option == "certfile" and found:
            found[-1] = (*found[-1][:2], True)
    return [(port, bind) for port, bind, tls in found if not tls]
