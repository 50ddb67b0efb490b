"""The hub under systemd: the ingest worker says READY once connected, keeps a status line and
pings the watchdog until a message hangs in its handler; the web master says READY when it
listens. Heard on a real NOTIFY_SOCKET."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mosquitto import Mosquitto, free_port
from notifysock import NotifySocket, pings

from cloud.db import default_url
from cloud.events import EventStore
from cloud.link.events import run_worker
from cloud.web.serve import ready_hook
from kiosk.common.bus import BusSettings
from kiosk.common.membus import MemoryBroker, MemoryBus
from kiosk.common.sdnotify import Notifier
from kiosk.protocol import topics

HUB = str(Path(sys.executable).parent / "stempel-hub")
WATCHDOG_USEC = 200_000  # a ping every 0.1 s


class GatedStore(EventStore):
    """An event store whose ``ingest`` hangs while the gate is closed, as a database that stopped
    answering in the middle of a statement would."""

    gate: threading.Event
    entered: threading.Event

    def ingest(self, topic, payload, **options):
        self.entered.set()
        self.gate.wait()
        return super().ingest(topic, payload, **options)


@pytest.fixture
def systemd(tmp_path):
    sock = NotifySocket(tmp_path)
    yield sock
    sock.close()


@pytest.fixture
def broker():
    b = MemoryBroker()
    yield b
    b.close()


class Worker:
    """``run_worker`` on a memory bus, on its own thread (``serve`` runs it on the main thread)."""

    def __init__(self, store: EventStore, broker: MemoryBroker, notifier: Notifier, **kw) -> None:
        self.stop = threading.Event()
        bus = MemoryBus(broker, BusSettings(host="memory", client_id="stempel-hub-1", manual_ack=True,
                                            session_expiry=3600))
        self.thread = threading.Thread(target=run_worker, args=(store, bus, self.stop), daemon=True,
                                       kwargs={"worker_id": "stempel-hub-1", "group": topics.INGEST_GROUP,
                                               "notifier": notifier, "broker": "memory:1883", **kw})

    def __enter__(self) -> "Worker":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def kiosk_publishes(broker: MemoryBroker, payload: bytes = b"{}") -> None:
    bus = MemoryBus(broker, BusSettings(host="memory", client_id="counter-1"))
    bus.start()
    try:
        bus.wait_connected(10)
        assert bus.publish(topics.events("cafe-rosa", "counter-1"), payload, qos=1).wait(10)
    finally:
        bus.stop()


def test_ingest_is_ready_once_connected_and_counts_what_it_handled(tmp_path, broker, systemd):
    store = EventStore.open(default_url(tmp_path))
    with Notifier.from_environ(systemd.env(watchdog_usec=WATCHDOG_USEC)) as notifier, \
            Worker(store, broker, notifier, status_every=0.05):
        ready = systemd.wait_for("READY", "1")
        assert ready["STATUS"] == "connected to memory:1883, 0 message(s) handled"
        systemd.wait_for("WATCHDOG", "1")
        kiosk_publishes(broker)  # not a valid batch: dead-lettered, which counts as handled
        systemd.wait_for("STATUS", "connected to memory:1883, 1 message(s) handled")
        systemd.wait_for("WATCHDOG", "1")
    stopping = systemd.wait_for("STOPPING", "1")
    assert stopping["STATUS"] == "stopping after 1 message(s)"


def test_a_message_hung_in_the_handler_stops_the_pings(tmp_path, broker, systemd):
    store = GatedStore.open(default_url(tmp_path))
    store.gate, store.entered = threading.Event(), threading.Event()
    try:
        with Notifier.from_environ(systemd.env(watchdog_usec=WATCHDOG_USEC)) as notifier, \
                Worker(store, broker, notifier, stuck_after=0.3):
            systemd.wait_for("READY", "1")
            systemd.wait_for("WATCHDOG", "1")
            kiosk_publishes(broker)
            assert store.entered.wait(20)
            stuck = systemd.wait_for("STATUS")  # the supervisor notices, says so, and pings no more
            assert stuck["STATUS"].startswith("stuck: one message in the handler for over 0.3 s")
            assert pings(systemd.drain()) == 0
            assert systemd.next(timeout=3 * WATCHDOG_USEC / 1e6) is None
            store.gate.set()  # the database answers again: the worker can stop
    finally:
        store.gate.set()


def test_the_web_ready_hook_tells_systemd_from_the_master(systemd):
    hook = ready_hook("listening on 127.0.0.1:8080, 2 worker(s)", lambda: Notifier.from_environ(systemd.env()))
    hook(None)  # gunicorn passes its arbiter; the hook does not need it
    assert systemd.next() == {"READY": "1", "STATUS": "listening on 127.0.0.1:8080, 2 worker(s)"}


@pytest.mark.slow  # spawns Mosquitto and the worker
def test_stempel_hub_ingest_under_a_notify_socket(tmp_path, systemd):
    broker = Mosquitto(tmp_path / "broker").start()
    env = {**os.environ, **systemd.env(watchdog_usec=1_000_000)}
    with (tmp_path / "ingest.log").open("w") as log:
        proc = subprocess.Popen([HUB, "--data-dir", str(tmp_path / "hub"), "ingest", "--host", "127.0.0.1",
                                 "--port", str(broker.port), "--worker-id", "stempel-hub-1"],
                                stdout=log, stderr=log, env=env)
    try:
        ready = systemd.wait_for("READY", "1", timeout=60)
        assert ready["STATUS"] == f"connected to 127.0.0.1:{broker.port}, 0 message(s) handled"
        systemd.wait_for("WATCHDOG", "1")
        proc.send_signal(signal.SIGTERM)
        systemd.wait_for("STOPPING", "1")
        assert proc.wait(30) == 0, (tmp_path / "ingest.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        broker.stop()


@pytest.mark.slow  # spawns gunicorn
def test_stempel_hub_serve_under_a_notify_socket(tmp_path, systemd):
    port = free_port()
    env = {**os.environ, **systemd.env()}
    with (tmp_path / "web.log").open("w") as log:
        proc = subprocess.Popen([HUB, "--data-dir", str(tmp_path / "hub"), "serve", "--port", str(port),
                                 "--workers", "1"], stdout=log, stderr=log, env=env)
    try:
        systemd.wait_for("STATUS", f"listening on 127.0.0.1:{port}, 1 worker(s)", timeout=60)
        assert any(m.get("READY") == "1" for m in systemd.seen)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "web.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
