"""Store and forward under faults, on a real Mosquitto with real ingest processes.

Each test breaks something (the broker, an ingest worker, a kiosk, the delivery order),
lets the system recover, and ends with the same check: every kiosk event is in the hub
exactly once, the merchant's hub_seq has no gap, and the hub's acked_through_seq equals
each kiosk's last seq. Waits are bounded polls; randomness is seeded.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from mosquitto import Mosquitto
from syncrig import (FAST, MERCHANT, IngestProc, SimKiosk, Watcher, append_events, assert_exactly_once, converged,
                     wait_until)

from cloud.events import EventStore
from cloud.link.events import CRASH_EXIT_CODE
from kiosk.common.bus import BusSettings, MqttBus
from kiosk.ledger import Ledger
from kiosk.protocol import topics
from kiosk.protocol.messages import KioskState, LedgerBatch, decode
from kiosk.link.events import batch_message
from kiosk.link.hub_link import HubLink

pytestmark = pytest.mark.slow  # Mosquitto and ingest processes, killed on purpose

KIOSK_PROC = str(Path(__file__).parent / "kiosk_sync_proc.py")


def started(*workers: IngestProc) -> None:
    for w in workers:
        wait_until(lambda: bool(w.records("bus.connected")), 10, f"ingest {w.worker_id} to connect")


@pytest.mark.parametrize("persistence", [False, True], ids=["no-persistence", "persistence"])
def test_broker_sigkill_and_restart_while_two_kiosks_produce(tmp_path, hub_url, persistence):
    broker = Mosquitto(tmp_path / "broker", persistence=persistence).start()
    store = EventStore.open(hub_url)
    workers = [IngestProc(tmp_path, hub_url, broker.port, f"w{i}").start() for i in (1, 2)]
    kiosks = [SimKiosk(tmp_path, f"k{i}", broker.port).start() for i in (1, 2)]
    try:
        started(*workers)
        producers = [threading.Thread(target=_produce, args=(k.ledger, 150)) for k in kiosks]
        for p in producers:
            p.start()
        for _ in range(2):  # two outages, each while both kiosks keep stamping
            before = len(store.events(MERCHANT))
            wait_until(lambda: len(store.events(MERCHANT)) >= before + 20, 10, "the hub to store events")
            marks = [k.ledger.last_seq() for k in kiosks]
            broker.kill()
            wait_until(lambda: all(k.ledger.last_seq() >= m + 15 for k, m in zip(kiosks, marks)), 10,
                       "kiosks to write events while the broker is down")
            broker.start()
        for p in producers:
            p.join(30)
        ledgers = {k.kiosk: k.path for k in kiosks}
        wait_until(lambda: converged(store, ledgers, {k.kiosk: k.sender for k in kiosks}), 25,
                   "hub and kiosks to agree on every ack")
        assert_exactly_once(store, ledgers)
    finally:
        for k in kiosks:
            k.stop()
        for w in workers:
            w.stop()
        broker.stop()
        store.close()


def test_ingest_sigkill_between_commit_and_puback_counts_once(tmp_path, hub_url):
    """The worker exits right after its third commit, before the PUBACK (a power cut there);
    restarted with the same id it gets the message again and must not count it twice."""
    broker = Mosquitto(tmp_path / "broker").start()
    store = EventStore.open(hub_url)
    worker = IngestProc(tmp_path, hub_url, broker.port, "w1", crash_after=3).start()
    kiosk = SimKiosk(tmp_path, "k1", broker.port)
    try:
        started(worker)
        kiosk.start()
        append_events(kiosk.ledger, 60)
        assert worker.wait_exit(15) == CRASH_EXIT_CODE
        committed = len(store.events(MERCHANT))
        assert committed > 0 and kiosk.sender.acked_through_seq < 60
        worker.crash_after = None
        worker.start()
        ledgers = {"k1": kiosk.path}
        wait_until(lambda: converged(store, ledgers, {"k1": kiosk.sender}), 20, "the restarted worker to catch up")
        assert_exactly_once(store, ledgers)
        redelivered = sum(r["duplicates"] for r in worker.records("ingest.stored"))
        assert redelivered >= 1, "the committed-but-unacknowledged batch should have come back"
        wait_until(lambda: store.unpublished() == 0, 10, "the crashed worker's ledger outbox rows to be published")
    finally:
        kiosk.stop()
        worker.stop()
        broker.stop()
        store.close()


def test_kiosk_sigkill_mid_burst_then_restart(tmp_path, hub_url):
    broker = Mosquitto(tmp_path / "broker").start()
    store = EventStore.open(hub_url)
    worker = IngestProc(tmp_path, hub_url, broker.port, "w1").start()
    watcher = Watcher(broker.port, topics.state(MERCHANT, "k1"))
    ledger = tmp_path / "k1.sqlite3"
    try:
        started(worker)
        first = _kiosk_proc(ledger, broker.port, "boot-a", count=300, interval=0.005)
        seqs = [int(first.stdout.readline()) for _ in range(60)]
        first.kill()  # SIGKILL mid-burst: no goodbye, events possibly unsent or unacked
        first.wait(10)
        first.stdout.close()
        wait_until(lambda: _states(watcher)[-1:] == [("lost", "boot-a")], 10, "the broker to publish the last will")
        second = _kiosk_proc(ledger, broker.port, "boot-b", count=40, interval=0.0)
        out, _ = second.communicate(timeout=25)
        assert out.splitlines()[-1] == "drained"
        ledgers = {"k1": ledger}
        wait_until(lambda: converged(store, ledgers), 10, "the hub to ack the restarted kiosk")
        assert_exactly_once(store, ledgers)
        assert len(store.events(MERCHANT)) >= seqs[-1] + 40
        assert ("online", "boot-b") in _states(watcher)
    finally:
        watcher.stop()
        worker.stop()
        broker.stop()
        store.close()


def test_every_batch_twice_and_out_of_order(tmp_path, hub_url):
    """Batches of two kiosks, each published twice, in a seeded random order; then the kiosks'
    senders start and learn from the retained ack that nothing is left to send."""
    broker = Mosquitto(tmp_path / "broker").start()
    store = EventStore.open(hub_url)
    worker = IngestProc(tmp_path, hub_url, broker.port, "w1").start()
    watcher = Watcher(broker.port, topics.ledger(MERCHANT))
    paths = {k: tmp_path / f"{k}.sqlite3" for k in ("k1", "k2")}
    messages = []
    for kiosk, path in paths.items():
        ledger = Ledger(path)
        append_events(ledger, 40)
        events = ledger.events()
        ledger.close()
        messages += [(topics.events(MERCHANT, kiosk), batch_message(events[i:i + 5])) for i in range(0, 40, 5)] * 2
    random.Random(20261124).shuffle(messages)
    publisher = MqttBus(BusSettings(host="127.0.0.1", port=broker.port, client_id="chaos"))
    links: list[HubLink] = []
    try:
        started(worker)
        publisher.start()
        publisher.wait_connected(5)
        for topic, payload in messages:
            assert publisher.publish(topic, payload, qos=1).wait(5)
        wait_until(lambda: converged(store, paths), 15, "the hub to ack both kiosks")
        assert_exactly_once(store, paths)
        stream = {e.hub_seq for m in watcher.drain() for e in decode(LedgerBatch, m.payload).entries}
        wait_until(lambda: {e.hub_seq for m in watcher.drain() for e in decode(LedgerBatch, m.payload).entries}
                   >= set(range(1, 81)), 10, "every accepted event on the ledger topic")
        for kiosk, path in paths.items():
            link = HubLink(MqttBus(BusSettings(host="127.0.0.1", port=broker.port, client_id=kiosk)),
                           merchant=MERCHANT, kiosk=kiosk, boot_id="boot-1", ledger_path=path,
                           software_version="test", settings=FAST)
            links.append(link)
            link.start()
        wait_until(lambda: all(lk.sender.acked_through_seq == 40 for lk in links), 10,
                   "the senders to read the retained ack")
        assert len(store.events(MERCHANT)) == 80 and stream <= set(range(1, 81))
    finally:
        for link in links:
            link.stop()
        publisher.stop()
        watcher.stop()
        worker.stop()
        broker.stop()
        store.close()


def _produce(ledger: Ledger, n: int) -> None:
    for _ in range(n):
        append_events(ledger, 1)
        time.sleep(0.01)


def _kiosk_proc(ledger: Path, port: int, boot: str, count: int, interval: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, KIOSK_PROC, str(ledger), str(port), "k1", boot, str(count),
                             str(interval)], stdout=subprocess.PIPE, text=True)


def _states(watcher: Watcher) -> list[tuple[str, str]]:
    return [(s.status, s.boot_id) for s in (decode(KioskState, m.payload) for m in watcher.drain())]
