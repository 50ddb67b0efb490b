"""The in-memory broker and bus: the MQTT semantics Stempel relies on, and the test hooks
(lost connections, killed clients) that a real broker cannot give one client at a time.
What both buses must share is in test_bus.py; here is what only the memory broker can show."""

from __future__ import annotations

import queue

import pytest

from kiosk.common.bus import BusSettings, Message, Will
from kiosk.common.errors import BusError, NotConnected
from kiosk.common.membus import MemoryBroker, MemoryBus, matches, valid_filter

WAIT = 5.0


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker()


@pytest.fixture
def buses(broker):
    made: list[MemoryBus] = []

    def make(client_id: str = "", *filters: str, sink: queue.Queue | None = None, auto_reconnect: bool = False,
             **settings) -> MemoryBus:
        bus = MemoryBus(broker, BusSettings(host="memory", client_id=client_id, reconnect_min=0.05,
                                            reconnect_max=0.1, **settings), auto_reconnect=auto_reconnect)
        for f in filters:
            bus.subscribe(f, sink.put)
        bus.start()
        bus.wait_connected(WAIT)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.stop()


def take(got: queue.Queue[Message], n: int) -> list[Message]:
    return [got.get(timeout=WAIT) for _ in range(n)]


def nothing_more(got: queue.Queue[Message], control: MemoryBus, topic: str = "control") -> list[Message]:
    """What arrives before a control message published after everything else (never a blind sleep)."""
    control.publish(topic, b"end").wait(WAIT)
    seen = []
    while (m := got.get(timeout=WAIT)).topic != topic:
        seen.append(m)
    return seen


@pytest.mark.parametrize("topic_filter, topic, expected", [
    ("a/b", "a/b", True), ("a/b", "a/c", False), ("a/+", "a/b", True), ("a/+", "a/b/c", False),
    ("a/#", "a", True), ("a/#", "a/b/c", True), ("#", "a/b", True), ("+/+", "a/b", True), ("+", "a/b", False),
    ("a/+/c", "a/b/c", True), ("#", "$SYS/x", False), ("+/x", "$SYS/x", False), ("$SYS/#", "$SYS/x", True),
    ("a//b", "a//b", True), ("a/+/b", "a//b", True),
])
def test_topic_filters_match_as_in_mqtt(topic_filter, topic, expected):
    assert matches(topic_filter, topic) is expected


@pytest.mark.parametrize("topic_filter, valid", [
    ("a/#", True), ("#", True), ("a/#/b", False), ("a#", False), ("a/b+", False), ("+/+", True),
    ("$share/g/a/#", True), ("$share/g", False), ("$share/g+/a", False), ("", False),
])
def test_invalid_filters_are_refused(topic_filter, valid):
    assert valid_filter(topic_filter) is valid


def test_an_invalid_subscription_is_refused_and_a_wildcard_publish_raises(buses):
    bus = buses("c")
    bus.subscribe("a/#/b", print)
    assert bus.last_error == "subscription refused: a/#/b"
    with pytest.raises(ValueError, match="wildcards"):
        bus.publish("a/+", b"x")


def test_the_will_is_published_when_a_client_is_killed_never_on_a_clean_stop(broker, buses):
    got: queue.Queue[Message] = queue.Queue()
    watcher = buses("watcher", "presence/#", "control", sink=got)
    will = Will("presence/k1", b"lost", qos=1, retain=True)
    first = buses("k1", will=will)
    first.stop()
    assert nothing_more(got, watcher) == []
    handled: queue.Queue[Message] = queue.Queue()
    second = buses("k1", "jobs", sink=handled, will=will)
    broker.kill("k1")
    [lost] = take(got, 1)
    assert (lost.topic, lost.payload) == ("presence/k1", b"lost")
    assert broker.retained("presence/k1") == b"lost"
    assert second.connected is False and "k1" not in broker.clients()
    with pytest.raises(NotConnected):
        second.publish("x", b"y")
    with pytest.raises(BusError):
        second.reconnect()  # a killed process does not come back; a new bus is its restart


def test_a_lost_connection_publishes_the_will_and_the_bus_reconnects_by_itself(broker, buses):
    got: queue.Queue[Message] = queue.Queue()
    watcher = buses("watcher", "presence/#", sink=got)
    connects = queue.Queue()
    kiosk = MemoryBus(broker, BusSettings(host="memory", client_id="k1", reconnect_min=0.05, reconnect_max=0.1,
                                          will=Will("presence/k1", b"lost")))
    kiosk.on_connect(lambda: connects.put(True))
    kiosk.start()
    try:
        connects.get(timeout=WAIT)
        broker.disconnect("k1")
        assert take(got, 1)[0].payload == b"lost"
        connects.get(timeout=WAIT)  # back after the back-off, callbacks run again
        assert kiosk.connected and broker.clients() == ["k1", "watcher"]
    finally:
        kiosk.stop()
    assert watcher.connected


def test_the_same_client_id_takes_the_session_over(broker, buses):
    got: queue.Queue[Message] = queue.Queue()
    watcher = buses("watcher", "presence/#", "control", sink=got)
    will = Will("presence/k1", b"lost-old", retain=False)
    old = buses("k1", will=will)
    new = buses("k1", will=Will("presence/k1", b"lost-new", retain=False))
    assert (old.connected, new.connected) == (False, True)
    assert "taken over" in old.last_error
    assert [m.payload for m in nothing_more(got, watcher)] == [b"lost-old"]  # as Mosquitto: the old will goes
    with pytest.raises(NotConnected):
        old.publish("x", b"y")
    old.reconnect()  # and the old one coming back kicks the new one (paho's reconnect does this)
    assert (old.connected, new.connected) == (True, False)


def test_unacked_messages_come_back_with_dup_after_a_reconnect_and_a_stale_ack_is_not_sent(broker, buses):
    held: list[Message] = []
    attempts: queue.Queue[Message] = queue.Queue()

    def failing(message: Message) -> None:
        held.append(message)
        attempts.put(message)
        raise RuntimeError("database down")

    worker = MemoryBus(broker, BusSettings(host="memory", client_id="w", manual_ack=True, session_expiry=60),
                       auto_reconnect=False)
    worker.subscribe("jobs/#", failing)
    worker.start()
    sender = buses("sender")
    sender.publish("jobs/1", b"a").wait(WAIT)
    sender.publish("jobs/2", b"b").wait(WAIT)
    assert [(m.payload, m.dup) for m in take(attempts, 2)] == [(b"a", False), (b"b", False)]
    broker.disconnect("w")
    worker.reconnect()
    assert [(m.payload, m.dup) for m in take(attempts, 2)] == [(b"a", True), (b"b", True)]
    held[0].ack()  # an ack from the first connection: not sent, the broker keeps "a"
    held[2].ack()  # the ack of this connection's copy of "a"
    broker.disconnect("w")
    worker.reconnect()
    assert [(m.payload, m.dup) for m in take(attempts, 1)] == [(b"b", True)]
    worker.stop()


def test_a_handler_that_returns_acks_and_one_that_raises_without_manual_ack_loses_the_message(broker, buses):
    """Without manual_ack paho acknowledges on receipt: a failing handler cannot get it back."""
    seen: queue.Queue[Message] = queue.Queue()

    def failing(message: Message) -> None:
        seen.put(message)
        raise RuntimeError("boom")

    bus = MemoryBus(broker, BusSettings(host="memory", client_id="auto", session_expiry=60), auto_reconnect=False)
    bus.subscribe("jobs", failing)
    bus.start()
    sender = buses("sender")
    sender.publish("jobs", b"x").wait(WAIT)
    assert take(seen, 1)[0]._ack is None
    broker.disconnect("auto")
    bus.reconnect()
    sender.publish("jobs", b"control").wait(WAIT)
    assert take(seen, 1)[0].payload == b"control"  # "x" did not come back
    bus.stop()


def test_at_most_max_inflight_unacked_messages_then_the_rest_wait_in_order():
    broker = MemoryBroker(max_inflight=2)
    held: list[Message] = []
    got: queue.Queue[Message] = queue.Queue()
    worker = MemoryBus(broker, BusSettings(host="memory", client_id="w", manual_ack=True, session_expiry=60))

    def hold(message: Message) -> None:
        held.append(message)
        got.put(message)
        raise RuntimeError("not yet")

    worker.subscribe("jobs/#", hold)
    worker.start()
    sender = MemoryBus(broker, BusSettings(host="memory", client_id="s"))
    sender.subscribe("control", got.put)
    sender.start()
    try:
        for i in range(4):
            sender.publish(f"jobs/{i}", b"x").wait(WAIT)
        assert [m.topic for m in take(got, 2)] == ["jobs/0", "jobs/1"]
        assert nothing_more(got, sender) == []
        held[0].ack()
        assert [m.topic for m in take(got, 1)] == ["jobs/2"]
        held[1].ack(), held[2].ack()
        assert [m.topic for m in take(got, 1)] == ["jobs/3"]
    finally:
        worker.stop(), sender.stop()


def test_a_clean_session_forgets_and_an_expired_session_is_gone():
    clock = Clock()
    broker = MemoryBroker(clock=clock)
    got: queue.Queue[Message] = queue.Queue()
    sender = MemoryBus(broker, BusSettings(host="memory", client_id="s"))
    sender.start()

    def visit(client_id: str, expiry: int) -> MemoryBus:
        bus = MemoryBus(broker, BusSettings(host="memory", client_id=client_id, session_expiry=expiry))
        bus.subscribe("jobs/#", got.put)
        bus.subscribe("control", got.put)
        bus.start()
        return bus

    visit("clean", 0).stop()
    visit("brief", 60).stop()
    sender.publish("jobs/1", b"while away").wait(WAIT)
    sender.publish("jobs/0", b"qos0 is never queued", qos=0).wait(WAIT)
    back = visit("clean", 0)
    assert nothing_more(got, back) == []
    back.stop()
    clock.t += 61
    late = visit("brief", 60)
    assert nothing_more(got, late) == []  # expired: the session and its queue are gone
    late.stop(), sender.stop()


def test_shared_subscriptions_take_turns_even_with_an_offline_member_and_get_no_retained(broker, buses):
    one: queue.Queue[Message] = queue.Queue()
    two: queue.Queue[Message] = queue.Queue()
    sender = buses("s")
    sender.publish("jobs/old", b"retained", retain=True).wait(WAIT)
    w1 = buses("w1", "$share/g/jobs/#", "control", sink=one, manual_ack=True, session_expiry=60)
    buses("w2", "$share/g/jobs/#", sink=two)
    assert nothing_more(one, w1) == []  # no retained message on a shared subscription
    for i in range(4):
        sender.publish(f"jobs/{i}", b"x").wait(WAIT)
    assert [m.topic for m in take(one, 2)] == ["jobs/0", "jobs/2"]
    assert [m.topic for m in take(two, 2)] == ["jobs/1", "jobs/3"]
    w1.stop()  # persistent member away: its turn is queued for it, as in Mosquitto
    sender.publish("jobs/4", b"x").wait(WAIT)
    sender.publish("jobs/5", b"x").wait(WAIT)
    assert [m.topic for m in take(two, 1)] == ["jobs/5"]
    back = buses("w1", "$share/g/jobs/#", sink=one, manual_ack=True, session_expiry=60)
    assert [m.topic for m in take(one, 1)] == ["jobs/4"] and back.connected


def test_a_refused_login_is_an_error_and_the_right_password_connects():
    broker = MemoryBroker(accounts={"k1": "secret"})
    bad = MemoryBus(broker, BusSettings(host="memory", client_id="k1", username="k1", password="wrong"),
                    auto_reconnect=False)
    bad.start()
    with pytest.raises(BusError, match="refused the connection: Not authorized"):
        bad.wait_connected(WAIT)
    bad.stop()
    good = MemoryBus(broker, BusSettings(host="memory", client_id="k1", username="k1", password="secret"))
    good.start()
    good.wait_connected(WAIT)
    assert good.connect_report() is None
    good.stop()
