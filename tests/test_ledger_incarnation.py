"""A reinstalled kiosk (issue 7, item 5) and events refused for good (item 2's other half).

A kiosk whose ledger is wiped and restored from the same bundle numbers its events from 1
again. Its ledger has a new ``ledger_id``; every batch names it and every ack answers for it,
so the old ledger's retained ack can never release the new ledger's events, and the hub keeps
both ledgers' events apart. An event the hub refuses for good is dead-lettered and settled,
so the kiosk's ack moves past it instead of stalling its outbox.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from mosquitto import Mosquitto
from syncrig import MERCHANT, IngestProc, SimKiosk, Watcher, append_events, wait_until

from cloud.events import EventStore
from kiosk.ledger import Ledger
from kiosk.protocol import topics
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import EventBatch, EventsAck, WireEvent, decode, encode

AT = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
OLD, NEW = "a" * 32, "b" * 32


def events(seqs: list[int], at: datetime = AT) -> list[WireEvent]:
    return [WireEvent(event_id=new_event_id(), kiosk_seq=seq, occurred_at=at + timedelta(minutes=seq),
                      mono_ns=seq, boot_id="boot-1", kind="earn", member="m-1", delta=1, rule="visit",
                      detail={"cause": "visit"}) for seq in seqs]


def batch(ledger_id: str, evs: list[WireEvent]) -> bytes:
    return encode(EventBatch(ledger_id=ledger_id, events=evs))


@pytest.fixture
def store(hub_url):
    s = EventStore.open(hub_url, clock=lambda: AT + timedelta(days=1))
    yield s
    s.close()


def test_two_ledgers_of_one_kiosk_are_stored_and_acked_apart(store):
    topic = topics.events(MERCHANT, "k1")
    assert store.ingest(topic, batch(OLD, events([1, 2, 3]))).acked_through_seq == 3
    new = store.ingest(topic, batch(NEW, events([1, 2])))
    assert (new.new, new.rejected, new.acked_through_seq, new.ledger_id) == (2, 0, 2, NEW)
    assert store.acked_through(MERCHANT, "k1", OLD) == 3
    assert store.acked_through(MERCHANT, "k1") == 2  # the newest ledger is the kiosk's current one
    assert sorted((e.ledger_id, e.kiosk_seq) for e in store.events(MERCHANT)) == [
        (OLD, 1), (OLD, 2), (OLD, 3), (NEW, 1), (NEW, 2)]
    assert [e.hub_seq for e in store.events(MERCHANT)] == [1, 2, 3, 4, 5]
    # a late batch of the old ledger is still stored under its own numbers, nothing lost
    assert store.ingest(topic, batch(OLD, events([4]))).acked_through_seq == 4
    assert store.dead_letters() == []


def test_an_event_refused_for_good_is_settled_so_the_ack_moves_past_it(store):
    topic = topics.events(MERCHANT, "k1")
    future = events([2], at=datetime(2099, 1, 1, tzinfo=timezone.utc))
    stored = store.ingest(topic, batch(NEW, events([1]) + future + events([3])))
    assert (stored.new, stored.rejected, stored.acked_through_seq) == (2, 1, 3)
    assert [e.kiosk_seq for e in store.events(MERCHANT)] == [1, 3]
    [letter] = store.dead_letters()
    assert "kiosk_seq 2" in letter.reason and b"2099" in letter.payload  # the owner still sees the event
    # a batch whose every event is refused settles them too (it is not left to stall the kiosk)
    alone = store.ingest(topic, batch(NEW, events([4], at=datetime(2099, 1, 1, tzinfo=timezone.utc))))
    assert (alone.dead_letter, alone.rejected, alone.acked_through_seq) == (None, 1, 4)


def test_a_forged_ledger_id_is_refused(store):
    bad = batch(NEW, events([1])).replace(NEW.encode(), b"k1\\n" + b"0" * 29)
    stored = store.ingest(topics.events(MERCHANT, "k1"), bad)
    assert stored.dead_letter is not None and "ledger_id" in stored.dead_letter
    assert store.events(MERCHANT) == []


def test_a_new_ledger_gets_its_own_id_and_keeps_it(tmp_path):
    first = Ledger(tmp_path / "a.sqlite3")
    again = Ledger(tmp_path / "a.sqlite3")
    other = Ledger(tmp_path / "b.sqlite3")
    try:
        assert len(first.ledger_id) == 32 and first.ledger_id == again.ledger_id != other.ledger_id
    finally:
        for ledger in (first, again, other):
            ledger.close()


@pytest.mark.slow
def test_a_reinstalled_kiosk_never_releases_its_new_events_on_the_old_ack(tmp_path, hub_url):
    """The attack of item 5 through MQTT: k1 stamps 3, is wiped and reinstalled, stamps 4 while
    the hub's ingest is down. The old ledger's retained ack (3) reaches the new ledger, whose
    last seq (4) is above it: before ledger ids, the kiosk released 1..3 unsent."""
    broker = Mosquitto(tmp_path / "broker").start()
    store = EventStore.open(hub_url)
    ingest = IngestProc(tmp_path, hub_url, broker.port, "w1").start()
    watcher = Watcher(broker.port, topics.events_ack(MERCHANT, "k1"), topics.events(MERCHANT, "k1"))
    try:
        first = SimKiosk(tmp_path, "k1", broker.port).start()
        append_events(first.ledger, 3)
        wait_until(lambda: first.sender.acked_through_seq == 3, 20, "the first ledger to be acked")
        old_id = first.ledger.ledger_id
        first.stop()
        ingest.stop()
        for path in tmp_path.glob("k1.sqlite3*"):  # the reinstall: the same bundle, a new ledger
            path.unlink()

        second = SimKiosk(tmp_path, "k1", broker.port)
        assert second.ledger.ledger_id != old_id
        append_events(second.ledger, 4)  # stamped before the kiosk reached the broker
        second.start()
        sent = lambda: [m for m in watcher.drain() if m.topic.endswith("/events")]  # noqa: E731
        wait_until(lambda: len(sent()) >= 2, 20, "the new ledger's events to be sent")
        acks = [decode(EventsAck, m.payload) for m in watcher.drain() if m.topic.endswith("/ack")]
        assert (acks[-1].ledger_id, acks[-1].acked_through_seq) == (old_id, 3)  # the stale one is there
        assert second.sender.acked_through_seq == 0  # and released nothing

        ingest.start()
        wait_until(lambda: second.sender.acked_through_seq == 4, 20, "the new ledger to be acked")
        stored = store.events(MERCHANT, "k1")
        assert sorted((e.ledger_id, e.kiosk_seq) for e in stored) == sorted(
            [(old_id, s) for s in (1, 2, 3)] + [(second.ledger.ledger_id, s) for s in (1, 2, 3, 4)])
        assert {e.event_id for e in stored} >= {e.event_id for e in second.ledger.events()}
        assert store.acked_through(MERCHANT, "k1") == 4
        second.stop()
    finally:
        watcher.stop()
        ingest.stop()
        broker.stop()
        store.close()
