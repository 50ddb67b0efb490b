"""The bus contract, on a real Mosquitto (MqttBus) and in memory (MemoryBus): results instead of
return codes, no false "connected", retained messages, QoS 1 redelivery, shared subscriptions."""

from __future__ import annotations

import queue
import re
import time

import pytest
from buses import bus_factory  # noqa: F401  (fixture)

from kiosk.common.bus import Message
from kiosk.common.errors import BusError, NotConnected


def until(got: queue.Queue[Message], topic: str) -> list[Message]:
    """Everything received up to and including the first message on *topic* (a control message)."""
    seen = []
    while True:
        seen.append(got.get(timeout=5))
        if seen[-1].topic == topic:
            return seen


def test_publish_and_subscribe_round_trip_with_retained_messages(bus_factory):
    got: queue.Queue[Message] = queue.Queue()
    a = bus_factory.connected("a")
    assert a.publish("t/retained", b"kept", retain=True).wait(5) is True
    b = bus_factory.bus("b")
    b.subscribe("t/#", got.put)
    b.start()
    b.wait_connected(5)
    first = got.get(timeout=5)
    assert (first.topic, first.payload, first.retain) == ("t/retained", b"kept", True)
    a.publish("t/live", b"now").wait(5)
    live = got.get(timeout=5)
    assert (live.payload, live.retain) == (b"now", False)  # only the copy sent on subscribe is flagged
    a.stop(), b.stop()


def test_an_empty_retained_payload_deletes_the_retained_message(bus_factory):
    got: queue.Queue[Message] = queue.Queue()
    a = bus_factory.connected("a")
    a.publish("cfg/x", b"v1", retain=True).wait(5)
    a.publish("cfg/x", b"", retain=True).wait(5)
    late = bus_factory.bus("late")
    late.subscribe("cfg/#", got.put)
    late.subscribe("control", got.put)
    late.start()
    late.wait_connected(5)
    late.publish("control", b"after").wait(5)  # on the same connection: after the SUBSCRIBE
    assert [m.topic for m in until(got, "control")] == ["control"]
    a.stop(), late.stop()


def test_a_refused_connection_is_an_error_never_connected(bus_factory, tmp_path):
    locked = bus_factory.locked(tmp_path)
    try:
        client = locked.bus("nobody", username="nobody", password="wrong")
        client.start()
        with pytest.raises(BusError, match="refused"):
            client.wait_connected(5)
        assert client.connected is False
        with pytest.raises(NotConnected):
            client.publish("t", b"x")
        client.stop()
    finally:
        locked.stop()


def test_an_unreachable_broker_times_out_with_the_address(bus_factory):
    client = bus_factory.unreachable("lonely")
    client.start()
    with pytest.raises(BusError, match=re.escape(bus_factory.host)):
        client.wait_connected(0.5)
    with pytest.raises(NotConnected):
        client.publish("t", b"x")
    client.stop()


def test_an_unacknowledged_message_is_redelivered_to_the_same_session(bus_factory):
    """Manual ack: a handler that fails leaves the message with the broker, which hands it again
    when the same client id comes back (persistent session)."""
    got: queue.Queue[Message] = queue.Queue()

    def failing(message: Message) -> None:
        got.put(message)
        raise RuntimeError("database down")

    settings = dict(manual_ack=True, session_expiry=60)
    worker = bus_factory.bus("worker-1", **settings)
    worker.subscribe("jobs/#", failing)
    worker.start()
    worker.wait_connected(5)
    sender = bus_factory.connected("sender")
    sender.publish("jobs/1", b"job").wait(5)
    assert got.get(timeout=5).dup is False
    worker.stop()

    again = bus_factory.bus("worker-1", **settings)
    again.subscribe("jobs/#", got.put)
    again.start()
    redelivered = got.get(timeout=5)
    assert (redelivered.payload, redelivered.dup) == (b"job", True)
    again.stop()

    third = bus_factory.bus("worker-1", **settings)  # acknowledged now: nothing comes back
    third.subscribe("jobs/#", got.put)
    third.start()
    third.wait_connected(5)
    sender.publish("jobs/2", b"control").wait(5)
    assert got.get(timeout=5).payload == b"control"
    third.stop(), sender.stop()


def test_a_persistent_session_keeps_what_was_published_while_it_was_away(bus_factory):
    got: queue.Queue[Message] = queue.Queue()
    settings = dict(manual_ack=True, session_expiry=60)
    worker = bus_factory.bus("worker-1", **settings)
    worker.subscribe("jobs/#", got.put)
    worker.start()
    worker.wait_connected(5)
    worker.stop()
    sender = bus_factory.connected("sender")
    for i in range(3):
        sender.publish(f"jobs/{i}", b"queued").wait(5)
    back = bus_factory.bus("worker-1", **settings)
    back.subscribe("jobs/#", got.put)
    back.start()
    assert [(m.topic, m.dup) for m in (got.get(timeout=5) for _ in range(3))] == [
        ("jobs/0", False), ("jobs/1", False), ("jobs/2", False)]
    back.stop(), sender.stop()


def test_a_shared_subscription_hands_each_message_to_one_member(bus_factory):
    one: queue.Queue[Message] = queue.Queue()
    two: queue.Queue[Message] = queue.Queue()
    members = []
    for client_id, got in (("w1", one), ("w2", two)):
        member = bus_factory.bus(client_id)
        member.subscribe("$share/workers/jobs/#", got.put)
        member.start()
        member.wait_connected(5)
        members.append(member)
    sender = bus_factory.connected("sender")
    sent = [f"job-{i}".encode() for i in range(10)]
    for payload in sent:
        sender.publish("jobs/x", payload).wait(5)
    received: dict[str, list[bytes]] = {"w1": [], "w2": []}
    deadline = time.monotonic() + 5
    while sum(map(len, received.values())) < len(sent) and time.monotonic() < deadline:
        for client_id, got in (("w1", one), ("w2", two)):
            while not got.empty():
                received[client_id].append(got.get().payload)
        time.sleep(0.01)
    assert sorted(received["w1"] + received["w2"]) == sorted(sent)  # each once, none twice
    assert received["w1"] and received["w2"]  # and the group shares the load
    for m in members + [sender]:
        m.stop()
