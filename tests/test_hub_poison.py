"""One kiosk cannot stop ingest for every merchant (issue 7, items 2 and 6), on SQLite and PostgreSQL.

What must hold: whatever a kiosk publishes (a NUL byte, an integer beyond BIGINT, an event dated
2099, an 8 MB detail, a detail of the wrong kind, deep nesting, not JSON), each message ends
committed or dead-lettered (capped, with its reason) and is acknowledged, so another merchant's
events are still stored and acked by the same worker, past the broker's receive maximum; only a
database that does not answer leaves a message for redelivery.
"""

from __future__ import annotations

import gc
import json
import queue
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mosquitto import Mosquitto
from mqtt_peer import Peer
from sqlalchemy.engine import make_url
from syncrig import T0, SimKiosk, append_events, converged, wait_until

from cloud.events import DEAD_LETTER_KEEP, EventStore
from cloud.link.events import IngestWorker
from cloud.mqtt import Broker
from kiosk.common.bus import Message, MqttBus
from kiosk.protocol import topics
from kiosk.protocol.event_schema import KINDS
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import EventsAck, decode

HUB_NOW = T0 + timedelta(days=1)  # the hub's clock: the kiosks' events (T0 + seconds) are a day old
EVIL = "evil-shop"
WAIT = 15.0


def wire_event(seq: int = 1, **changes) -> dict:
    doc = {"event_id": new_event_id(), "kiosk_seq": seq, "occurred_at": T0.isoformat(), "mono_ns": 5,
           "boot_id": "b1", "kind": "earn", "member": "m-1", "delta": 1, "rule": "visit", "detail": {"cause": "v"}}
    return doc | changes


def batch(*events: dict) -> bytes:
    return json.dumps({"schema": "stempel.events.v1", "events": list(events)}).encode()


def nested(depth: int) -> dict:
    doc: dict = {}
    for _ in range(depth):
        doc = {"a": doc}
    return doc


POISON = {  # name: (payload, what the dead letter's reason says)
    "nul": (batch(wire_event(boot_id="boot\x00")), "U+0000"),
    "bigint": (batch(wire_event(kiosk_seq=2**70)), "kiosk_seq"),
    "future": (batch(wire_event(occurred_at="2099-01-01T00:00:00+00:00")), "ahead of the hub's clock"),
    "huge": (batch(wire_event(detail={"cause": "x" * 8_000_000})), "over the limit"),
    "wrong_kind_detail": (batch(wire_event(kind="visit", detail={"amount": "abc"})), "not a decimal"),
    "unknown_kind": (batch(wire_event(kind="stamp_awarded")), "unknown kind"),
    "deep": (batch(wire_event(detail=nested(500))), "detail"),
    "not_json": (b"\x00\xff{", "not JSON"),
}


def start_worker(store: EventStore, port: int, worker_id: str = "w-poison") -> IngestWorker:
    bus = MqttBus(Broker(host="127.0.0.1", port=port, session_expiry=300).settings(1, worker_id))
    worker = IngestWorker(store, bus, worker_id=worker_id, relay_interval=0.2, retry_max_delay=0.5)
    worker.start()
    bus.wait_connected(5)
    return worker


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.mark.slow  # a Mosquitto
def test_poison_from_one_kiosk_never_stops_another_merchants_ingest(tmp_path, hub_url, broker):
    store = EventStore.open(hub_url, clock=lambda: HUB_NOW)
    worker = start_worker(store, broker.port)
    evil = Peer(broker.port, None, None, client_id="evil-k1")
    good = SimKiosk(tmp_path, "counter-1", broker.port)
    try:
        assert evil.connect() is not None and evil.accepted
        for _ in range(3):  # 24 messages: more than the receive maximum (20) a stalled worker would hold
            for payload, _reason in POISON.values():
                assert not evil.publish(topics.events(EVIL, "k1"), payload).is_failure
        append_events(good.ledger, 30)
        good.start()
        wait_until(lambda: converged(store, {good.kiosk: good.path}, {good.kiosk: good.sender}), WAIT,
                   "the other merchant's events to be stored and acked")
        stored = store.events("cafe-rosa")
        assert [e.hub_seq for e in stored] == list(range(1, 31)) and store.acked_through("cafe-rosa", "counter-1") == 30
        assert store.events(EVIL) == [] and store.acked_through(EVIL, "k1") == 1  # seq 1 refused for good: settled
        letters = store.dead_letters()
        assert len(letters) == len(POISON)  # one each: a re-sent poison is not written again
        for (name, (payload, reason)), letter in zip(POISON.items(), letters):
            assert reason in letter.reason, (name, letter.reason)
            assert len(letter.payload) <= DEAD_LETTER_KEEP
        huge = letters[list(POISON).index("huge")]
        assert f"({len(POISON['huge'][0])} bytes, sha256 " in huge.reason
    finally:
        good.stop()
        evil.close()
        worker.stop()
        store.close()
        gc.collect()  # paho clients sit in reference cycles: free their sockets within this test


# -- the handler under hypothesis: every message committed or dead-lettered, and acknowledged ---------

class FakeBus:
    """Just what the worker needs to handle a message by hand: publishes are recorded."""

    connected = True

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish(self, topic, payload, *, qos=1, retain=False):
        self.published.append((topic, payload))

        class Done:
            def wait(self, timeout):
                return True
        return Done()

    def subscribe(self, *args, **kwargs) -> None: ...

    def on_connect(self, callback) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class RecordingWorker(IngestWorker):
    def _publish_ack(self, stored) -> None:
        self.last = stored
        super()._publish_ack(stored)


texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=80) | st.sampled_from(["\x00", "a\x00b", "\ud800"])
huge_ints = st.integers(min_value=-(2**80), max_value=2**80) | st.sampled_from([2**63, 2**63 - 1, -1, 0, 2**31])
stamps = (st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                       timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-23, minutes=-59))]))
          .map(lambda d: d.isoformat()) | st.sampled_from(["2099-01-01T00:00:00+00:00", "soon", "2026-03-02T09:00:00"])
          | st.just(T0.isoformat()))
json_values = st.recursive(st.none() | st.booleans() | huge_ints | texts,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
                           max_leaves=12)
details = (json_values | st.fixed_dictionaries({"amount": st.sampled_from(["12.90", "abc", "1e400", 5])})
           | st.fixed_dictionaries({"cause": texts}) | st.builds(nested, st.integers(0, 900)))


@st.composite
def events(draw) -> dict:
    doc = wire_event(seq=draw(st.integers(1, 50)))
    for name, values in (("event_id", texts), ("kiosk_seq", huge_ints), ("occurred_at", stamps), ("mono_ns", huge_ints),
                         ("boot_id", texts), ("kind", st.sampled_from([*KINDS, "stamp_awarded", "", "DROP TABLE"])),
                         ("member", texts | st.none()), ("delta", huge_ints), ("rule", texts | st.none()),
                         ("reason", texts), ("detail", details)):
        if draw(st.integers(0, 5)) == 0:  # most fields stay valid, so the checks past the first get reached
            doc[name] = draw(values)
    return doc


payloads = (st.lists(events(), min_size=1, max_size=4).map(lambda evs: batch(*evs))
            | st.binary(max_size=64) | st.sampled_from([p for p, _ in POISON.values()]))


def test_fuzz_every_message_ends_committed_or_dead_lettered_and_is_acknowledged(hub_url):
    store = EventStore.open(hub_url, clock=lambda: HUB_NOW)
    worker = RecordingWorker(store, FakeBus(), worker_id="w-fuzz")
    kiosks = st.sampled_from(["k1", "k2"])
    seen: set[str] = set()

    @settings(derandomize=True, max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(payload=payloads, kiosk=kiosks)
    def handle(payload: bytes, kiosk: str) -> None:
        acks: list[int] = []
        message = Message(topics.events("shop", kiosk), payload, 1, False, False, lambda: acks.append(1))
        worker.last = None
        worker._on_events(message)  # raises only if the database were down while stopping
        assert acks == [1]
        outcome = worker.last
        assert outcome.dead_letter or outcome.new + outcome.duplicates + outcome.rejected > 0, outcome
        seen.update(name for name, hit in (("dead", outcome.dead_letter), ("rejected", outcome.rejected),
                                            ("committed", outcome.new)) if hit)

    try:
        handle()
        assert seen == {"dead", "rejected", "committed"}  # the strategy reaches every ending
        stored, head = store.ledger_after("shop", 0, limit=10_000)
        assert len(stored) == head == len(store.events("shop"))  # everything stored can be relayed
        for kiosk in ("k1", "k2"):
            acked = [decode(EventsAck, p).acked_through_seq for t, p in worker.bus.published
                     if t == topics.events_ack("shop", kiosk)]
            assert acked == sorted(acked)
    finally:
        store.close()


@pytest.mark.slow  # a Mosquitto
@pytest.mark.parametrize("hub_url", ["postgresql"], indirect=True)
def test_a_database_outage_leaves_the_message_for_redelivery(tmp_path, hub_url, broker):
    """PostgreSQL refuses connections to the hub's database (deterministic, unlike a killed
    server): the worker neither acknowledges nor dead-letters; stopped and restarted after the
    outage, it gets the message again from the broker and stores it."""
    url = make_url(hub_url)
    admin = psycopg.connect(host=url.host, port=url.port, user=url.username, dbname="postgres", autocommit=True)
    store = EventStore.open(hub_url, clock=lambda: HUB_NOW)
    worker = start_worker(store, broker.port)
    kiosk = Peer(broker.port, None, None, client_id="counter-1")
    watcher = Peer(broker.port, None, None)
    try:
        assert kiosk.connect() is not None and watcher.connect() is not None
        assert not watcher.subscribe(topics.events_ack("cafe-rosa", "counter-1")).is_failure
        admin.execute(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                      " AND pid <> pg_backend_pid()", (url.database,))
        events = [wire_event(seq=s, occurred_at=(T0 + timedelta(seconds=s)).isoformat()) for s in (1, 2)]
        assert not kiosk.publish(topics.events("cafe-rosa", "counter-1"), batch(*events)).is_failure
        wait_until(lambda: worker.ingesting, WAIT, "the worker to take the message")
        with pytest.raises(queue.Empty):
            watcher.next(timeout=2.0)  # no ack while the database is away (the worker retries)
        assert worker.ingesting
        worker.stop()  # stops while the message is still unacknowledged
        admin.execute(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS true')
        assert store.dead_letters() == [] and store.events("cafe-rosa") == []
        again = start_worker(store, broker.port)  # same client id: the broker redelivers
        try:
            wait_until(lambda: len(store.events("cafe-rosa")) == 2, WAIT, "the redelivered message to be stored")
            ack = watcher.next(timeout=WAIT)
            assert decode(EventsAck, ack.payload).acked_through_seq == 2
            assert store.dead_letters() == []
        finally:
            again.stop()
    finally:
        admin.execute(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS true')
        admin.close()
        kiosk.close()
        watcher.close()
        store.close()
