"""How the hub's admin commands reach the broker: options, settings, a connected bus.

The admin commands (config push, keys publish, fleet status) log in as
``stempel-hub-admin`` from ``hub-mqtt.toml`` (written by ``stempel-hub broker-config``),
so they never take an ingest worker's client id; ``--host``/``--port`` etc. override it
(a private test broker needs no account at all).
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

import click

from cloud.broker.accounts import ADMIN_USERNAME
from kiosk.common.bus import BusSettings, MqttBus, Tls
from kiosk.common.errors import ConfigError

CONNECT_TIMEOUT = 10.0


def broker_options(command):
    """Click options shared by the admin commands."""
    options = [
        click.option("--mqtt-config", type=click.Path(dir_okay=False, path_type=Path), envvar="STEMPEL_HUB_MQTT",
                     help="hub-mqtt.toml from `stempel-hub broker-config` (uses the stempel-hub-admin account)."),
        click.option("--host", help="Broker host. [from --mqtt-config, else 127.0.0.1]"),
        click.option("--port", type=int, help="Broker port. [from --mqtt-config, else 1883]"),
        click.option("--username", help="Broker username."),
        click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path)),
        click.option("--ca-file", type=click.Path(dir_okay=False, path_type=Path), help="CA for TLS."),
        click.option("--connect-timeout", type=float, default=CONNECT_TIMEOUT, show_default=True,
                     help="Seconds to keep trying the broker."),
    ]
    return functools.reduce(lambda cmd, option: option(cmd), reversed(options), command)


def admin_settings(mqtt_config: Path | None, host: str | None, port: int | None, username: str | None,
                   password_file: Path | None, ca_file: Path | None, client_id: str) -> BusSettings:
    """Merge ``hub-mqtt.toml`` (admin account) with explicit options; raises ConfigError."""
    base: dict = {"host": "127.0.0.1", "port": 1883, "username": None, "password_file": None, "ca_file": None}
    if mqtt_config is not None:
        try:
            doc = tomllib.loads(mqtt_config.read_text())
            mqtt, accounts = doc["mqtt"], doc.get("accounts", {})
        except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
            raise ConfigError(f"{mqtt_config}: not a hub MQTT settings file ({exc})") from None
        if ADMIN_USERNAME not in accounts:
            raise ConfigError(f"{mqtt_config}: no {ADMIN_USERNAME} account; rerun `stempel-hub broker-config`")
        base.update(host=mqtt["host"], port=int(mqtt["port"]), username=ADMIN_USERNAME,
                    password_file=Path(accounts[ADMIN_USERNAME]), ca_file=mqtt.get("ca_file"))
        client_id = ADMIN_USERNAME
    given = {"host": host, "port": port, "username": username, "password_file": password_file, "ca_file": ca_file}
    opts = {**base, **{k: v for k, v in given.items() if v is not None}}
    password = None
    if opts["password_file"]:
        try:
            password = Path(opts["password_file"]).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"password file {opts['password_file']}: {exc.strerror}") from None
    tls = Tls(Path(opts["ca_file"]), None, None) if opts["ca_file"] else None
    return BusSettings(host=opts["host"], port=opts["port"], client_id=opts["username"] or client_id,
                       username=opts["username"], password=password, tls=tls)


def connect(settings: BusSettings, timeout: float = CONNECT_TIMEOUT) -> MqttBus:
    """A started, connected bus; raises the bus's error (with the broker's reason) otherwise."""
    bus = MqttBus(settings)
    bus.start()
    try:
        bus.wait_connected(timeout)
    except Exception:
        bus.stop()
        raise
    return bus
