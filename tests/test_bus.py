"""The bus wrapper against a real Mosquitto: results instead of return codes, no false "connected"."""

from __future__ import annotations

import queue

import pytest
from mosquitto import Mosquitto, free_port

from kiosk.bus import BusSettings, Message, MqttBus
from kiosk.errors import BusError, NotConnected


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


def bus(port: int, **kw) -> MqttBus:
    return MqttBus(BusSettings(host="127.0.0.1", port=port, reconnect_min=0.2, reconnect_max=1.0, **kw))


def test_publish_and_subscribe_round_trip_with_retained_messages(broker):
    got: queue.Queue[Message] = queue.Queue()
    a = bus(broker.port, client_id="a")
    a.start()
    a.wait_connected(5)
    assert a.publish("t/retained", b"kept", retain=True).wait(5) is True
    b = bus(broker.port, client_id="b")
    b.subscribe("t/#", got.put)
    b.start()
    b.wait_connected(5)
    first = got.get(timeout=5)
    assert (first.topic, first.payload, first.retain) == ("t/retained", b"kept", True)
    a.publish("t/live", b"now").wait(5)
    assert got.get(timeout=5).payload == b"now"
    a.stop(), b.stop()


def test_a_refused_connection_is_an_error_never_connected(tmp_path):
    locked = Mosquitto(tmp_path / "locked", anonymous=False).start()
    try:
        client = bus(locked.port, client_id="nobody", username="nobody", password="wrong")
        client.start()
        with pytest.raises(BusError, match="refused"):
            client.wait_connected(5)
        assert client.connected is False
        with pytest.raises(NotConnected):
            client.publish("t", b"x")
        client.stop()
    finally:
        locked.stop()


def test_an_unreachable_broker_times_out_with_the_address():
    client = bus(free_port(), client_id="lonely")
    client.start()
    with pytest.raises(BusError, match="127.0.0.1"):
        client.wait_connected(0.5)
    client.stop()


def test_an_unacknowledged_message_is_redelivered_to_the_same_session(broker):
    """Manual ack: a handler that fails leaves the message with the broker, which hands it again
    when the same client id comes back (persistent session)."""
    got: queue.Queue[Message] = queue.Queue()

    def failing(message: Message) -> None:
        got.put(message)
        raise RuntimeError("database down")

    settings = dict(client_id="worker-1", manual_ack=True, session_expiry=60)
    worker = bus(broker.port, **settings)
    worker.subscribe("jobs/#", failing)
    worker.start()
    worker.wait_connected(5)
    sender = bus(broker.port, client_id="sender")
    sender.start()
    sender.wait_connected(5)
    sender.publish("jobs/1", b"job").wait(5)
    assert got.get(timeout=5).dup is False
    worker.stop()

    again = bus(broker.port, **settings)
    again.subscribe("jobs/#", got.put)
    again.start()
    redelivered = got.get(timeout=5)
    assert (redelivered.payload, redelivered.dup) == (b"job", True)
    again.stop()

    third = bus(broker.port, **settings)  # acknowledged now: nothing comes back
    third.subscribe("jobs/#", got.put)
    third.start()
    third.wait_connected(5)
    sender.publish("jobs/2", b"control").wait(5)
    assert got.get(timeout=5).payload == b"control"
    third.stop(), sender.stop()
