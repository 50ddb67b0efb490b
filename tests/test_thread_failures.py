"""No background thread of the kiosk dies silently.

The outbox sender retries a failed step with backoff and says why in its retained ``state``;
any other thread that dies (here the hub link's worker) is logged, put in ``state`` and stops
``stempel-kiosk run`` with a non-zero exit, so systemd starts it afresh.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import timedelta

import pytest
from mosquitto import Mosquitto
from syncrig import FAST, MERCHANT, T0, IngestProc, Watcher, append_events, kiosk_bus, wait_until

from cloud.events import EventStore
from kiosk.ledger import Ledger
from kiosk.protocol import topics
from kiosk.protocol.messages import KioskState, decode
from kiosk.rules import Entry
from kiosk.link.hub_link import HubLink

pytestmark = pytest.mark.slow  # Mosquitto, ingest and stempel-kiosk processes

RETRY_FAST = dataclasses.replace(FAST, retry_min=0.1, retry_max=0.4)


@pytest.fixture
def hub_rig(tmp_path):
    """A private broker and one ingest worker storing into SQLite."""
    broker = Mosquitto(tmp_path / "broker").start()
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    store = EventStore.open(url)
    worker = IngestProc(tmp_path, url, broker.port, "w1").start()
    wait_until(lambda: bool(worker.records("bus.connected")), 10, "ingest to connect")
    yield broker, store
    worker.stop()
    broker.stop()
    store.close()


def states(watcher: Watcher) -> list[KioskState]:
    return [decode(KioskState, m.payload) for m in watcher.drain()]


def link_for(path, port: int, kiosk: str) -> HubLink:
    return HubLink(kiosk_bus(port, kiosk, "boot-1"), merchant=MERCHANT, kiosk=kiosk, boot_id="boot-1",
                   ledger_path=path, software_version="test", settings=RETRY_FAST)


def test_an_event_the_wire_refuses_is_reported_in_state_and_retried_not_fatal(tmp_path, hub_rig):
    """The accident behind `signup = 2000000`: a ledger row the wire cannot carry. The sender used to
    die on it at every start while the hub still saw "online, outbox 0"."""
    broker, store = hub_rig
    path = tmp_path / "counter-1.sqlite3"
    ledger = Ledger(path)
    append_events(ledger, 3)
    poison = Entry(kind="bonus", member="m-1", delta=2_000_000, rule="signup-bonus", cause="visit")
    ledger.append([poison], T0 + timedelta(hours=1), 500.0, "boot-1")  # seq 4
    append_events(ledger, 2)
    watcher = Watcher(broker.port, topics.state(MERCHANT, "counter-1"))
    link = link_for(path, broker.port, "counter-1")
    sender = link.start().sender
    try:
        seen: list[KioskState] = []
        wait_until(lambda: any(s.last_error and "ledger event 4" in s.last_error
                               for s in seen.extend(states(watcher)) or seen), 10, "state to name the bad event")
        report = next(s for s in seen if s.last_error and "ledger event 4" in s.last_error)
        assert report.status == "online" and "cannot be sent to the hub" in report.last_error
        assert "[events.0.delta]" in report.last_error or "[delta]" in report.last_error
        # everything before it reached the hub; the sender keeps trying and keeps saying why
        wait_until(lambda: store.acked_through(MERCHANT, "counter-1") == 3, 10, "the hub to ack 1..3")
        wait_until(lambda: sender.failures >= 3, 10, "the sender to retry")
        assert sender._thread.is_alive()
        wait_until(lambda: any(s.outbox_depth == 3 for s in seen.extend(states(watcher)) or seen), 10,
                   "state to show the 3 events that wait")
    finally:
        left = link.stop()
        watcher.stop()
        ledger.close()
    assert left == 3  # said, not hidden: they stay in the ledger


def test_a_failing_sender_step_is_reported_then_retried_until_everything_is_acked(tmp_path, hub_rig, monkeypatch):
    broker, store = hub_rig
    path = tmp_path / "counter-2.sqlite3"
    ledger = Ledger(path)
    append_events(ledger, 12)
    calls = {"n": 0}
    real = Ledger.events_after

    def flaky(self, *args, **kwargs):  # the sender's reads fail twice, then work again
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("injected sender failure")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Ledger, "events_after", flaky)
    watcher = Watcher(broker.port, topics.state(MERCHANT, "counter-2"))
    link = link_for(path, broker.port, "counter-2")
    sender = link.start().sender
    try:
        seen: list[KioskState] = []
        wait_until(lambda: store.acked_through(MERCHANT, "counter-2") == 12, 15, "every event acked after retries")
        wait_until(lambda: sender.acked_through_seq == 12, 5, "the sender to hear the ack")
        seen.extend(states(watcher))
        errors = [s.last_error for s in seen if s.last_error]
        assert any("outbox sender: RuntimeError: injected sender failure" in e for e in errors), errors
        wait_until(lambda: (seen.extend(states(watcher)) or seen)[-1].last_error is None
                   and seen[-1].outbox_depth == 0, 10, "state to clear the error once recovered")
        assert sender.failures == 0 and sender._thread.is_alive()
    finally:
        assert link.stop(drain=5) == 0
        watcher.stop()
        ledger.close()
    assert len(store.events(MERCHANT, "counter-2")) == 12


_DYING_REMOTE = """
import sys
import kiosk.link.hub_link

class Broken:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("injected remote failure")

kiosk.link.hub_link.LedgerFollower = Broken
from kiosk.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_run_exits_non_zero_and_says_why_when_a_background_thread_dies(tmp_path, kiosk_dir):
    """`stempel-kiosk run` whose hub-link worker thread dies: logged, in the retained state, exit 1."""
    broker = Mosquitto(tmp_path / "broker").start()
    watcher = Watcher(broker.port, topics.state("cafe-rosa", "counter-1"))
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[kiosk]\nid = "counter-1"\ndata_dir = "{kiosk_dir}"\n[hardware]\nbackend = "sim"\n'
                      f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n')
    try:
        run = subprocess.run([sys.executable, "-c", _DYING_REMOTE, "run", "--config", str(config)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 1, run.stderr
        assert "thread hub-link-counter-1 failed: RuntimeError: injected remote failure" in run.stderr
        assert '"event": "kiosk.thread_failed"' in run.stderr  # logged with its traceback
        seen: list[KioskState] = []
        wait_until(lambda: any(s.status == "offline" for s in seen.extend(states(watcher)) or seen), 10,
                   "the goodbye")
        goodbye = [s for s in seen if s.status == "offline"][-1]
        assert "injected remote failure" in (goodbye.last_error or "")
    finally:
        watcher.stop()
        broker.stop()


def test_a_failing_bus_handler_is_reported_in_state_and_the_next_message_still_arrives(tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    path = tmp_path / "counter-3.sqlite3"
    Ledger(path).close()
    link = link_for(path, broker.port, "counter-3")
    got: list[bytes] = []

    def handler(message) -> None:
        if message.payload == b"poison":
            raise RuntimeError("handler cannot take this")
        got.append(message.payload)

    link.bus.subscribe("test/in", handler)
    watcher = Watcher(broker.port, topics.state(MERCHANT, "counter-3"))
    link.start()
    try:
        link.bus.wait_connected(10)
        for payload in (b"poison", b"fine"):
            link.bus.publish("test/in", payload).wait(5)  # its own connection: subscribed before
        wait_until(lambda: got == [b"fine"], 10, "the next message")
        seen: list[KioskState] = []
        wait_until(lambda: any("the handler of test/in failed: RuntimeError: handler cannot take this"
                               in (s.last_error or "") for s in seen.extend(states(watcher)) or seen), 10,
                   "state to carry the handler failure")
    finally:
        link.stop()
        watcher.stop()
        broker.stop()
