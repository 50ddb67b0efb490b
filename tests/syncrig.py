"""A test rig for kiosk ↔ hub sync: ingest worker processes, simulated kiosks, a watcher,
bounded waits and the exactly-once check every fault test ends with."""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cloud.devbroker import terminate
from cloud.events import EventStore
from kiosk.common.bus import BusSettings, Message, MqttBus
from kiosk.ledger import Ledger
from kiosk.rules import Entry
from kiosk.link.events import OutboxSender, SenderSettings
from kiosk.link.hub_link import HubLink
from kiosk.link.state import state_will

HUB = str(Path(sys.executable).parent / "stempel-hub")
MERCHANT = "cafe-rosa"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
FAST = SenderSettings(batch_size=10, max_in_flight=200, ack_timeout=1.0, max_ack_timeout=2.0,
                      poll_interval=0.05, state_interval=5.0)
_ids = itertools.count(1)


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    """Poll *check* until true; fail with *what* at the deadline (never sleep blindly)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def append_events(ledger: Ledger, n: int, boot: str = "boot-1") -> None:
    """*n* stamp entries, one transaction each, as the kiosk loop writes them."""
    for _ in range(n):
        i = next(_ids)
        entry = Entry(kind="earn", member=f"m-{i % 7}", delta=1, rule="visit", cause="visit")
        ledger.append([entry], T0 + timedelta(seconds=i), 100.0 + i, boot)


def kiosk_bus(port: int, kiosk: str, boot: str) -> MqttBus:
    return MqttBus(BusSettings(host="127.0.0.1", port=port, client_id=kiosk, will=state_will(MERCHANT, kiosk, boot),
                               reconnect_min=0.2, reconnect_max=1.0))


class SimKiosk:
    """A kiosk without camera: a ledger we append to and the real hub link (events and state) on a real bus."""

    def __init__(self, workdir: Path, kiosk: str, port: int, settings: SenderSettings = FAST) -> None:
        self.kiosk = kiosk
        self.path = workdir / f"{kiosk}.sqlite3"
        self.ledger = Ledger(self.path)
        self.link = HubLink(kiosk_bus(port, kiosk, "boot-1"), merchant=MERCHANT, kiosk=kiosk, boot_id="boot-1",
                            ledger_path=self.path, software_version="test", settings=settings)
        self.sender = self.link.sender

    def start(self) -> "SimKiosk":
        self.link.start()
        return self

    def stop(self) -> None:
        self.link.stop()
        self.ledger.close()


class IngestProc:
    """``stempel-hub ingest`` in its own process, so tests can SIGKILL it."""

    def __init__(self, workdir: Path, url: str, port: int, worker_id: str, crash_after: int | None = None) -> None:
        self.workdir, self.url, self.port, self.worker_id = workdir, url, port, worker_id
        self.crash_after = crash_after
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    @property
    def log(self) -> Path:
        return self.workdir / f"ingest-{self.worker_id}-{self.runs}.log"

    def start(self) -> "IngestProc":
        self.runs += 1
        env = dict(os.environ)
        env.pop("STEMPEL_TEST_CRASH_AFTER_COMMITS", None)
        if self.crash_after is not None:
            env["STEMPEL_TEST_CRASH_AFTER_COMMITS"] = str(self.crash_after)
        with self.log.open("w") as err:
            self.proc = subprocess.Popen([HUB, "--data-dir", str(self.workdir / "hub"), "--db-url", self.url, "ingest",
                                          "--port", str(self.port), "--worker-id", self.worker_id, "-v"],
                                         stdout=subprocess.DEVNULL, stderr=err, env=env)
        return self

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        terminate(self.proc)

    def records(self, event: str) -> list[dict]:
        """Structured log lines named *event* from the current run."""
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                doc = json.loads(line)
                if doc.get("event") == event:
                    out.append(doc)
        return out


class Watcher:
    """Subscribes and keeps everything it hears (on the bus's dispatch thread) in a queue."""

    def __init__(self, port: int, *filters: str) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()
        self.seen: list[Message] = []
        self.bus = MqttBus(BusSettings(host="127.0.0.1", port=port, client_id="", reconnect_min=0.2, reconnect_max=1.0))
        for f in filters:
            self.bus.subscribe(f, self.messages.put)
        self.bus.start()
        self.bus.wait_connected(5)

    def drain(self) -> list[Message]:
        while True:
            try:
                self.seen.append(self.messages.get_nowait())
            except queue.Empty:
                return self.seen

    def stop(self) -> None:
        self.bus.stop()


def converged(store: EventStore, ledgers: dict[str, Path], senders: dict[str, OutboxSender] | None = None) -> bool:
    """The hub acked each kiosk's last seq (and each sender heard it)."""
    for kiosk, path in ledgers.items():
        last = _last_seq(path)
        if store.acked_through(MERCHANT, kiosk) != last:
            return False
        if senders and senders[kiosk].acked_through_seq != last:
            return False
    return True


def assert_exactly_once(store: EventStore, ledgers: dict[str, Path]) -> None:
    """Every kiosk event is in the hub once, with its seq; the merchant's hub_seq has no gap."""
    stored = store.events(MERCHANT)
    assert [e.hub_seq for e in stored] == list(range(1, len(stored) + 1))
    assert len({e.event_id for e in stored}) == len(stored)
    for kiosk, path in ledgers.items():
        ledger = Ledger(path)
        try:
            mine = [(e.kiosk_seq, e.event_id) for e in ledger.events()]
        finally:
            ledger.close()
        assert sorted((e.kiosk_seq, e.event_id) for e in stored if e.kiosk_id == kiosk) == mine
        assert store.acked_through(MERCHANT, kiosk) == len(mine)
    assert sum(1 for _ in stored) == sum(_last_seq(p) for p in ledgers.values())
    assert store.dead_letters() == []


def _last_seq(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("SELECT COALESCE(MAX(kiosk_seq), 0) FROM events").fetchone()[0]
    finally:
        db.close()
