"""The hub's answer to ``sync/request``: one batch per request from the database, requests
of one kiosk merged, garbage ignored (never fatal). Uses a recording bus, and (the last test) both real buses through
a shared subscription; the path through ``stempel-hub ingest`` is in test_convergence.py."""

from __future__ import annotations

import json
import queue
import threading

import pytest
from buses import bus_factory  # noqa: F401  (fixture)
from syncrig import wait_until

from cloud.events import EventStore
from cloud.link.ledger import SyncResponder
from kiosk.common.bus import Message
from kiosk.protocol import topics
from kiosk.protocol.messages import EventBatch, SyncResponse, decode, encode
from test_hub_conflicts import Kiosk

M = "cafe-rosa"


class RecordingBus:
    connected = True

    def __init__(self) -> None:
        self.subscriptions: dict[str, object] = {}
        self.published: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def subscribe(self, topic_filter, handler, qos=1) -> None:
        self.subscriptions[topic_filter] = handler

    def publish(self, topic, payload, *, qos=1, retain=False):
        with self.lock:
            self.published.append((topic, payload))


@pytest.fixture
def rig(tmp_path):
    store = EventStore.open(f"sqlite:///{tmp_path / 'hub.sqlite3'}")
    bus = RecordingBus()
    responder = SyncResponder(store, bus, group="g", batch=3)
    responder.start()
    yield store, bus, responder
    responder.stop()
    store.close()


def request(bus: RecordingBus, topic: str, payload: bytes) -> None:
    [handler] = bus.subscriptions.values()
    handler(Message(topic, payload, 1, False, False))


def test_requests_are_answered_in_batches_up_to_the_head(rig):
    store, bus, responder = rig
    assert list(bus.subscriptions) == [f"$share/g/{topics.ALL_SYNC_REQUESTS}"]
    k1 = Kiosk("k1")
    store.ingest(topics.events(M, "k1"), encode(EventBatch(events=[k1.event(i, 1) for i in range(5)])))
    request(bus, topics.sync_request(M, "k2"), b'{"schema": "stempel.sync-request.v1", "after_hub_seq": 1}')
    wait_until(lambda: responder.answered == 1, 5, "an answer")
    topic, payload = bus.published[0]
    answer = decode(SyncResponse, payload)
    assert topic == topics.sync_response(M, "k2")
    assert ([e.hub_seq for e in answer.entries], answer.head_hub_seq) == ([2, 3, 4], 5)


@pytest.mark.parametrize("topic, payload", [
    (topics.sync_request(M, "k2"), b"{"),
    (topics.sync_request(M, "k2"), json.dumps({"schema": "stempel.sync-request.v1", "after_hub_seq": -1}).encode()),
    (f"{topics.ROOT}/{M}/kiosks/k2/sync/other", b'{"schema": "stempel.sync-request.v1", "after_hub_seq": 0}'),
])
def test_garbage_is_ignored_and_the_next_request_is_still_answered(rig, topic, payload):
    store, bus, responder = rig
    request(bus, topic, payload)
    request(bus, topics.sync_request(M, "k3"), b'{"schema": "stempel.sync-request.v1", "after_hub_seq": 0}')
    wait_until(lambda: responder.answered == 1, 5, "an answer to the good request")
    assert [t for t, _ in bus.published] == [topics.sync_response(M, "k3")]


def test_a_request_over_the_bus_is_answered_on_the_kiosk_topic(tmp_path, bus_factory):
    store = EventStore.open(f"sqlite:///{tmp_path / 'hub.sqlite3'}")
    hub = bus_factory.bus("hub-1", manual_ack=True, session_expiry=60)
    responder = SyncResponder(store, hub, group="g", batch=3)
    responder.start()
    hub.start()
    hub.wait_connected(5)
    got: queue.Queue[Message] = queue.Queue()
    kiosk = bus_factory.bus("k2")
    kiosk.subscribe(topics.sync_response(M, "k2"), got.put)
    kiosk.start()
    kiosk.wait_connected(5)
    try:
        k1 = Kiosk("k1")
        store.ingest(topics.events(M, "k1"), encode(EventBatch(events=[k1.event(i, 1) for i in range(5)])))
        kiosk.publish(topics.sync_request(M, "k2"), b'{"schema": "stempel.sync-request.v1", "after_hub_seq": 3}')
        answer = decode(SyncResponse, got.get(timeout=5).payload)
        assert ([e.hub_seq for e in answer.entries], answer.head_hub_seq) == ([4, 5], 5)
    finally:
        kiosk.stop()
        responder.stop()
        hub.stop()
        store.close()
