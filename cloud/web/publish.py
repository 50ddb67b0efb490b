"""The web's way to the kiosks: signed documents out and the kiosks' retained state in.

Each call connects as the admin account (``stempel-hub-admin``, from ``hub-mqtt.toml``),
does its work and disconnects, exactly as the CLI's ``config push``, ``keys publish`` and
``fleet status`` do: an owner's click is rare, and a page never holds a broker session open.
A broker that cannot be reached raises ``BusError``; the page says so and nothing is lost:
the document is recorded first, and publishing again sends the newest version.
"""

from __future__ import annotations

from collections.abc import Callable

from cloud.app import Hub
from cloud.link import documents, state
from cloud.link.state import KioskRow
from kiosk.common.bus import Bus

SETTLE = 0.5  # seconds of quiet after the retained states arrive


class BrokerPublisher:
    """*connect* makes a started bus (default: the hub's admin connection)."""

    def __init__(self, hub: Hub, connect: Callable[[], Bus] | None = None) -> None:
        self.hub = hub
        self.connect = connect or hub.connect

    def program(self, doc: dict) -> str:
        """Publish a signed programme document (``documents.prepare``); returns the topic."""
        bus = self.connect()
        try:
            return documents.publish(bus, doc)
        finally:
            bus.stop()

    def keys(self, merchant: str) -> dict:
        """Sign and publish the merchant's keys and revocations (as ``stempel-hub keys publish``)."""
        doc = documents.build_keys_document(self.hub.engine, self.hub.data_dir, merchant)
        bus = self.connect()
        try:
            documents.publish_keys(bus, doc)
        finally:
            bus.stop()
        return doc

    def kiosk_states(self, merchant: str) -> dict[str, KioskRow]:
        bus = self.connect()
        try:
            return state.collect(bus, merchant, settle=SETTLE, timeout=3.0)
        finally:
            bus.stop()
