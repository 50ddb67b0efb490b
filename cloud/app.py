"""The hub application: ``create_hub(config)`` builds everything a hub process needs.

The role Flask's ``create_app`` plays in its tutorial: the CLI's command groups, the ingest
worker and (later) the web blueprints receive a ``Hub`` and never read the environment or
open the database themselves. The database is opened on first use, through the one engine
factory (cloud/db.py) and brought to the current schema then; the broker settings are
merged once (cloud/mqtt.py); nothing connects before it is asked for.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from cloud.config import HubConfig
from cloud.db import create_tables, default_url, make_engine
from cloud.events import EventStore
from cloud.keys import KeyStore
from cloud.mqtt import ADMIN, Broker, connect, resolve_broker
from kiosk.common.bus import BusSettings, MqttBus


class Hub:
    """One hub process's resources, built from one ``HubConfig``."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.data_dir: Path = config.hub.data_dir  # type: ignore[assignment]  (load_hub_config sets it)
        self.db_url = config.hub.db_url or default_url(self.data_dir)
        self.keys = KeyStore(self.data_dir)

    @cached_property
    def engine(self) -> Engine:
        """The database at the current schema revision (upgraded on first use)."""
        engine = make_engine(self.db_url)
        create_tables(engine)
        return engine

    def unopened_engine(self) -> Engine:
        """An engine whose schema is left as it is: for ``stempel-hub db upgrade`` to report on."""
        return make_engine(self.db_url)

    def events(self, **options: Any) -> EventStore:
        """The event store on the hub's engine, with the configured clock window."""
        return EventStore(self.engine, **{"window": self.config.ingest.window(), **options})

    @cached_property
    def broker(self) -> Broker:
        """The broker settings, ``hub-mqtt.toml`` read once; raises ConfigError."""
        return resolve_broker(self.config.mqtt, self.config.ingest.session_expiry)

    def bus(self, role: str | int = ADMIN, worker_id: str | None = None) -> BusSettings:
        """The connection settings of the admin commands or of ingest worker *role* (1, 2, ...)."""
        return self.broker.settings(role, worker_id)

    def connect(self, role: str | int = ADMIN) -> MqttBus:
        """A started bus, connected within ``[mqtt] connect_timeout``; raises the bus's error."""
        return connect(self.bus(role), self.config.mqtt.connect_timeout)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()


def create_hub(config: HubConfig) -> Hub:
    """The hub for *config*; its data dir is made (0700) if missing."""
    hub = Hub(config)
    hub.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return hub
