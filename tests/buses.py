"""One broker per test, real or in memory, and buses on it: the fixture ``bus_factory``.

A test that takes ``bus_factory`` runs twice: on a private Mosquitto (marked ``slow``: it
spawns a process) and on a ``MemoryBroker``. Adopt it with
``from buses import bus_factory  # noqa: F401`` and build clients with ``bus_factory.bus(...)``.
Fault tests that kill or restart the broker stay on Mosquitto alone.
"""

from __future__ import annotations

import logging
import queue
from dataclasses import replace
from pathlib import Path

import pytest
from mosquitto import Mosquitto, free_port
from syncrig import IngestProc, Watcher

from cloud.events import EventStore
from cloud.link.events import IngestWorker
from cloud.link.ledger import SyncResponder
from kiosk.common.bus import Bus, BusSettings, MqttBus
from kiosk.common.membus import MemoryBroker, MemoryBus
from kiosk.protocol import topics

FAST = dict(reconnect_min=0.2, reconnect_max=1.0)  # so a test never waits out a long back-off


class Buses:
    """A broker and a way to build clients on it; ``kind`` is ``mosquitto`` or ``memory``."""

    kind = ""
    host = "127.0.0.1"
    port = 0

    def settings(self, client_id: str = "", **kw) -> BusSettings:
        return BusSettings(**{"host": self.host, "port": self.port, "client_id": client_id, **FAST, **kw})

    def bus(self, client_id: str = "", **kw) -> Bus:
        """A new (not started) client with these ``BusSettings`` fields."""
        return self.make(self.settings(client_id, **kw))

    def make(self, settings: BusSettings) -> Bus:
        raise NotImplementedError

    def connected(self, client_id: str = "", **kw) -> Bus:
        """A started client, connected."""
        bus = self.bus(client_id, **kw)
        bus.start()
        bus.wait_connected(5)
        return bus

    def locked(self, tmp_path: Path) -> "Buses":
        """Another broker, refusing every login (no anonymous clients, no accounts)."""
        raise NotImplementedError

    def unreachable(self, client_id: str = "", **kw) -> Bus:
        """A client of a broker that is not there."""
        raise NotImplementedError

    def ingest(self, workdir: Path, url: str, worker_id: str):
        """A started ``stempel-hub ingest`` worker (``records(event)`` reads its log, ``stop()``)."""
        raise NotImplementedError

    def watcher(self, *filters: str) -> Watcher:
        """syncrig's Watcher (a queue of everything heard), on this broker."""
        return BusWatcher(self.bus(), *filters)

    def stop(self) -> None:
        pass


class MosquittoBuses(Buses):
    kind = "mosquitto"

    def __init__(self, workdir: Path, **broker) -> None:
        self.broker = Mosquitto(workdir, **broker).start()
        self.port = self.broker.port

    def make(self, settings: BusSettings) -> Bus:
        return MqttBus(settings)

    def locked(self, tmp_path: Path) -> Buses:
        return MosquittoBuses(tmp_path / "locked", anonymous=False)

    def ingest(self, workdir: Path, url: str, worker_id: str) -> IngestProc:
        return IngestProc(workdir, url, self.port, worker_id).start()

    def unreachable(self, client_id: str = "", **kw) -> Bus:
        return MqttBus(replace(self.settings(client_id, **kw), port=free_port()))

    def stop(self) -> None:
        self.broker.stop()


class MemoryBuses(Buses):
    kind = "memory"
    host, port = MemoryBroker.host, MemoryBroker.port

    def __init__(self, **broker) -> None:
        self.broker = MemoryBroker(**{"max_queued": 100000, **broker})  # as tests/mosquitto.py configures

    def make(self, settings: BusSettings) -> Bus:
        return MemoryBus(self.broker, settings)

    def locked(self, tmp_path: Path) -> Buses:
        return MemoryBuses(accounts={})

    def ingest(self, workdir: Path, url: str, worker_id: str) -> "InProcessIngest":
        return InProcessIngest(self, url, worker_id).start()

    def unreachable(self, client_id: str = "", **kw) -> Bus:
        gone = MemoryBroker()
        gone.close()
        return MemoryBus(gone, self.settings(client_id, **kw))


@pytest.fixture(params=[pytest.param("mosquitto", marks=pytest.mark.slow), "memory"])
def bus_factory(request, tmp_path):
    buses = MosquittoBuses(tmp_path / "broker") if request.param == "mosquitto" else MemoryBuses()
    yield buses
    buses.stop()


class BusWatcher(Watcher):
    """syncrig.Watcher on any bus (its own constructor takes a Mosquitto port)."""

    def __init__(self, bus: Bus, *filters: str) -> None:
        self.messages = queue.Queue()
        self.seen = []
        self.bus = bus
        for f in filters:
            bus.subscribe(f, self.messages.put)
        bus.start()
        bus.wait_connected(5)


class InProcessIngest:
    """``stempel-hub ingest`` in this process (what ``serve`` builds) on any bus: for the memory
    broker, which a child process cannot reach. ``records`` reads its log like IngestProc's."""

    def __init__(self, buses: Buses, url: str, worker_id: str, group: str = topics.INGEST_GROUP) -> None:
        self.worker_id = worker_id
        self.store = EventStore.open(url)
        self.bus = buses.bus(worker_id, manual_ack=True, session_expiry=3600)
        self.responder = SyncResponder(self.store, self.bus, group=group)
        self.worker = IngestWorker(self.store, self.bus, worker_id=worker_id, group=group)
        self._records: list[dict] = []
        self._handler = _Collect(self)
        self._levels = {}
        for name in _LOGGERS:  # what ``-v`` turns on in the process
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.INFO)
            logger.addHandler(self._handler)

    def start(self) -> "InProcessIngest":
        self.responder.start()
        self.worker.start()
        return self

    def records(self, event: str) -> list[dict]:
        return [r for r in list(self._records) if r["event"] == event]

    def stop(self) -> None:
        self.worker.stop()
        self.responder.stop()
        self.store.close()
        for name, level in self._levels.items():
            logging.getLogger(name).removeHandler(self._handler)
            logging.getLogger(name).setLevel(level)


_LOGGERS = ("cloud", "kiosk.common.bus", "kiosk.common.membus")


class _Collect(logging.Handler):
    """Keeps the hub's log records, and the bus records of the worker's own client id."""

    def __init__(self, ingest: InProcessIngest) -> None:
        super().__init__(logging.DEBUG)
        self.ingest = ingest

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("cloud.") or getattr(record, "client_id", None) == self.ingest.worker_id:
            self.ingest._records.append({**record.__dict__, "event": record.getMessage()})
