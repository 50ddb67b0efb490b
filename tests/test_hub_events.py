"""The hub's event store on SQLite and PostgreSQL alike: exactly once, contiguous acks,
gapless hub_seq under concurrent workers, dead letters, and the ledger outbox."""

from __future__ import annotations

import json
import random
import threading
from datetime import datetime, timedelta, timezone

import pytest
from hubdb import hub_url, pg_database, store  # noqa: F401  (fixtures)

from cloud.events import EventStore
from kiosk.protocol import topics
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import EventBatch, WireEvent, encode

M = "cafe-rosa"
AT = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def kiosk_events(n: int, member: str = "m-1") -> list[WireEvent]:
    return [WireEvent(event_id=new_event_id(), kiosk_seq=seq, occurred_at=AT + timedelta(minutes=seq),
                      mono_ns=seq * 1000, boot_id="boot-1", kind="earn", member=member, delta=1,
                      rule="visit", detail={"cause": "visit"}) for seq in range(1, n + 1)]


def message(events: list[WireEvent]) -> bytes:
    return encode(EventBatch(events=events))


def test_a_batch_delivered_twice_is_stored_once(store):
    events = kiosk_events(5)
    first = store.ingest(topics.events(M, "k1"), message(events))
    again = store.ingest(topics.events(M, "k1"), message(events))
    assert (first.new, first.duplicates, first.acked_through_seq) == (5, 0, 5)
    assert (again.new, again.duplicates, again.acked_through_seq) == (0, 5, 5)
    stored = store.events(M)
    assert [e.event_id for e in stored] == [e.event_id for e in events]
    assert [e.hub_seq for e in stored] == [1, 2, 3, 4, 5]
    assert stored[0].occurred_at.replace(tzinfo=timezone.utc) == AT + timedelta(minutes=1)


def test_the_ack_covers_only_a_contiguous_run_from_seq_one(store):
    events = kiosk_events(8)
    topic = topics.events(M, "k1")
    assert store.ingest(topic, message(events[3:6])).acked_through_seq == 0  # 4..6: 1..3 missing
    assert store.ingest(topic, message(events[7:8])).acked_through_seq == 0  # 8
    assert store.ingest(topic, message(events[0:3])).acked_through_seq == 6  # 1..6 now complete
    assert store.ingest(topic, message(events[6:7])).acked_through_seq == 8  # 7 closes the gap to 8
    assert store.acked_through(M, "k1") == 8
    assert sorted(e.kiosk_seq for e in store.events(M)) == list(range(1, 9))


def test_merchant_and_kiosk_come_from_the_topic_never_the_payload(store):
    doc = json.loads(message(kiosk_events(2)))
    doc |= {"merchant": "evil-corp", "kiosk": "k9"}
    for e in doc["events"]:
        e |= {"merchant": "evil-corp", "kiosk": "k9"}
    store.ingest(topics.events(M, "k1"), json.dumps(doc).encode())
    assert {(e.merchant_id, e.kiosk_id) for e in store.events(M)} == {(M, "k1")}
    assert store.events("evil-corp") == [] and store.acked_through("evil-corp", "k9") == 0


def test_invalid_messages_go_to_dead_letters_and_valid_ones_still_count(store):
    k1, k2 = topics.events(M, "k1"), topics.events(M, "k2")
    events = kiosk_events(3)
    store.ingest(k1, message(events))
    results = [
        store.ingest(k1, b"not json"),
        store.ingest(k1, b'{"schema": "stempel.events.v1", "events": [{"kiosk_seq": -1}]}'),
        store.ingest(topics.state(M, "k1"), message(kiosk_events(1))),  # not an events topic
        store.ingest(k2, message(events[:1])),  # k1's event replayed by k2
    ]
    replaced = kiosk_events(4)  # another event claiming k1's seq 2 (a wiped ledger), and a new seq 4
    mixed = store.ingest(k1, message([replaced[1], replaced[3]]))
    # the batch of one invalid event is refused item by item (its seq is unusable, so no ack moves);
    # k2's replay of k1's event is refused for good and settled: k2's ack passes it
    assert [r.dead_letter is not None for r in results] == [True, False, True, False]
    assert (results[1].rejected, results[1].acked_through_seq) == (1, 3)
    assert (results[3].rejected, results[3].acked_through_seq) == (1, 1)
    assert (mixed.new, mixed.rejected, mixed.acked_through_seq) == (1, 1, 4)
    reasons = [d.reason for d in store.dead_letters()]
    assert len(reasons) == 5
    assert "not JSON" in reasons[0] and "[events.0." in reasons[1] and "not a kiosk events topic" in reasons[2]
    assert "already stored as cafe-rosa/k1 seq 1" in reasons[3] and "kiosk_seq 2 already holds" in reasons[4]
    assert len(store.events(M)) == 4


def test_workers_in_parallel_keep_hub_seq_gapless_and_acks_exact(hub_url):
    """Four workers (own engines, as separate processes would have) ingest three kiosks' batches,
    shuffled and each delivered twice."""
    kiosks = {f"k{i}": kiosk_events(30, member=f"m-{i}") for i in range(3)}
    work = [(topics.events(M, k), message(evs[i:i + 5])) for k, evs in kiosks.items() for i in range(0, 30, 5)] * 2
    random.Random(11).shuffle(work)
    stores = [EventStore.open(hub_url) for _ in range(4)]
    errors: list[BaseException] = []

    def run(store: EventStore, items) -> None:
        try:
            for topic, payload in items:
                store.ingest(topic, payload)
        except BaseException as exc:  # surfaced below; a thread's exception would vanish
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s, work[i::4])) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    store = stores[0]
    stored = store.events(M)
    assert [e.hub_seq for e in stored] == list(range(1, 91))
    for k, evs in kiosks.items():
        assert sorted((e.kiosk_seq, e.event_id) for e in stored if e.kiosk_id == k) == \
            [(e.kiosk_seq, e.event_id) for e in evs]
        assert store.acked_through(M, k) == 30
    for s in stores:
        s.close()


def test_the_ledger_outbox_is_leased_published_once_and_recovered_after_a_crash(store):
    store.ingest(topics.events(M, "k1"), message(kiosk_events(3)))
    store.ingest(topics.events("other-shop", "k1"), message(kiosk_events(2)))
    claims = store.claim_outbox("w1", lease=60)
    assert {c.merchant: [e.hub_seq for e in c.batch.entries] for c in claims} == {M: [1, 2, 3], "other-shop": [1, 2]}
    assert claims[0].batch.entries[0].kiosk == "k1"
    assert store.claim_outbox("w2") == []  # leased to w1
    store.mark_published(claims[0].ids)
    assert store.unpublished() == 2
    # w1 "crashes" before marking the other merchant's batch: when the lease ends, w2 takes it.
    store.claim_outbox("w1", lease=0)
    retaken = store.claim_outbox("w2")
    assert [(c.merchant, len(c.ids)) for c in retaken] == [("other-shop", 2)]
    store.mark_published(retaken[0].ids)
    assert store.unpublished() == 0 and store.claim_outbox("w1") == []


@pytest.mark.parametrize("round_", range(3))
def test_creators_started_at_the_same_instant_all_get_the_tables(hub_url, round_):
    """`systemctl start stempel-hub-ingest@1 stempel-hub-ingest@2` on a fresh database: every
    process opens the store at once, and none may die with "table ... already exists"."""
    from cloud.db import open_store

    creators = 4
    barrier = threading.Barrier(creators)
    errors: list[BaseException] = []

    def create() -> None:
        barrier.wait(10)
        try:
            open_store(hub_url).dispose()
        except BaseException as exc:  # surfaced below; a thread's exception would vanish
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(creators)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    store = EventStore.open(hub_url)
    assert store.ingest(topics.events(M, "k1"), message(kiosk_events(1))).new == 1
    store.close()


def test_two_events_with_one_kiosk_seq_are_dead_lettered_not_retried(hub_url):
    """A batch no kiosk could send must not block the worker: it goes to dead letters."""
    store = EventStore.open(hub_url)
    try:
        at = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
        twins = [WireEvent(event_id=new_event_id(), kiosk_seq=1, occurred_at=at, mono_ns=1, boot_id="b",
                           kind="earn", member="anna", delta=1) for _ in range(2)]
        stored = store.ingest(topics.events("cafe-rosa", "k1"), encode(EventBatch(events=twins)))
        assert stored.new == 0
        [dead] = store.dead_letters()
        assert "share kiosk_seq 1" in dead.reason
        assert store.events("cafe-rosa") == []
    finally:
        store.close()
