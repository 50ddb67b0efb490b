"""A provisioned fleet for broker tests: a hub database, accounts, bundles and a real Mosquitto.

The broker runs the files ``stempel-hub broker-config`` and ``add-kiosk`` write, unchanged;
only its listener ports and the folder they name are the test's own.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from cloud import provision
from cloud.broker.conf import Listener
from cloud.broker.files import BrokerFiles
from cloud.keys import KeyStore
from cloud.passes import init_merchant
from cloud.db import default_url, open_store
from mosquitto import Mosquitto
from mqtt_peer import Peer

# Root drops to the `mosquitto` user, which could not read pytest's private tmp dir (also on
# SIGHUP); `user root` keeps it. A broker not started as root ignores the line.
KEEP_USER = "user root"


class Fleet:
    """Hub side of a test fleet; ``start()`` runs a broker with its generated config."""

    def __init__(self, data_dir: Path, merchants: tuple[str, ...] = ("cafe-rosa",)) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = open_store(default_url(data_dir))
        self.files = BrokerFiles(data_dir)
        self.broker: Mosquitto | None = None
        self.port = 0
        for merchant in merchants:
            init_merchant(self.engine, KeyStore(data_dir), merchant, merchant.title(), "https://stempel.example")

    def configure(self, listeners: list[Listener], hub: provision.Endpoint, hub_workers: int = 2, **options) -> None:
        provision.broker_config(self.engine, self.data_dir, listeners, hub, hub_workers, self.files.root, **options)
        self.port = listeners[0].port

    def add_kiosk(self, merchant: str, kiosk: str, endpoint: provision.Endpoint, **options) -> Path:
        return provision.add_kiosk(self.engine, self.data_dir, merchant, kiosk, endpoint, **options).bundle

    def start(self) -> Mosquitto:
        self.broker = Mosquitto(self.data_dir / "mosquitto", anonymous=False,
                                extra=f"{self.files.conf.read_text()}\n{KEEP_USER}\n").start()
        return self.broker

    def close(self) -> None:
        if self.broker:
            self.broker.stop()
        self.engine.dispose()

    # -- credentials, read back the way a kiosk or a hub process reads them ---------------------
    @property
    def hub_settings(self) -> dict:
        return tomllib.loads(self.files.hub_settings.read_text())

    def hub_peer(self, number: int = 1, port: int | None = None, **options) -> Peer:
        settings = self.hub_settings
        username = f"stempel-hub-{number}"
        password = Path(settings["accounts"][username]).read_text().strip()
        ca = settings["mqtt"].get("ca_file")
        return Peer(port or settings["mqtt"]["port"], username, password, ca=ca and Path(ca), **options)

    def kiosk_peer(self, bundle: Path, port: int | None = None, **options) -> Peer:
        """A client configured only from the bundle ``add-kiosk`` wrote."""
        mqtt = tomllib.loads((bundle / "kiosk.toml").read_text())["mqtt"]
        password = (bundle / mqtt["password_file"]).read_text().strip()
        files = {name: bundle / mqtt[key] for name, key in (("ca", "ca_file"), ("cert", "cert_file"),
                                                               ("key", "key_file")) if key in mqtt}
        options = {"client_id": mqtt["username"]} | files | options  # a kiosk's id is its username
        return Peer(port or mqtt["port"], mqtt["username"], password, host=mqtt["host"], **options)
