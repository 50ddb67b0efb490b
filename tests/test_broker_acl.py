"""The broker ACL and accounts, against a real Mosquitto running the files the hub generated.

Mosquitto 2.0's ACL file acts when a message is routed: a denied QoS 1 PUBLISH is answered
with PUBACK 0x87 and goes nowhere; a SUBSCRIBE is granted (or, in a stricter broker,
refused with 0x87) but delivers nothing the account may not read. "Nothing arrives" is
shown by a control message sent afterwards on the same path, never by sleeping.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid

import pytest

from broker_fleet import Fleet
from cloud.broker.conf import Listener
from cloud.provision import Endpoint
from kiosk.protocol import topics
from mosquitto import free_port
from mqtt_peer import NOT_AUTHORIZED, Peer

pytestmark = pytest.mark.slow  # a Mosquitto running the hub's broker files

ROSA, KURZ = "cafe-rosa", "baeckerei-kurz"
A, B = (ROSA, "k-a"), (ROSA, "k-b")
X = (KURZ, "k-a")  # the same kiosk id as A, at another merchant
TAKEN_OVER, CONNECTION_LOST = 0x8E, 0x80


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    fleet = Fleet(tmp_path_factory.mktemp("hub"), (ROSA, KURZ))
    port = free_port()
    endpoint = Endpoint("127.0.0.1", port)
    fleet.configure([Listener(port, "127.0.0.1")], endpoint)
    fleet.bundles = {kiosk: fleet.add_kiosk(*kiosk, endpoint) for kiosk in (A, B, X)}
    fleet.start()
    yield fleet
    fleet.close()


@pytest.fixture
def connect(fleet):
    """``connect("hub")`` or ``connect(A)``: a connected Peer, closed after the test."""
    opened: list[Peer] = []

    def _connect(who, number: int = 1, **options) -> Peer:
        peer = fleet.hub_peer(number, **options) if who == "hub" else fleet.kiosk_peer(fleet.bundles[who], **options)
        opened.append(peer)
        code = peer.connect()
        assert peer.accepted, f"{who} refused: {code}"
        return peer

    yield _connect
    for peer in opened:
        peer.close()


def marker() -> bytes:
    return uuid.uuid4().hex.encode()


def reads_of(merchant: str, kiosk: str) -> set[str]:
    return {topics.events_ack(merchant, kiosk), topics.kiosk_config_desired(merchant, kiosk),
            topics.sync_response(merchant, kiosk), topics.config_desired(merchant), topics.ledger(merchant),
            topics.keys(merchant)}


# -- what a kiosk may do, end to end through the hub account -----------------------------------

def test_a_kiosk_sends_its_topics_to_the_hub_and_receives_its_own(connect):
    hub, kiosk = connect("hub"), connect(A)
    for topic_filter in (topics.ALL_EVENTS, topics.ALL_STATES, topics.ALL_REPORTS, topics.ALL_SYNC_REQUESTS):
        assert not hub.subscribe(topic_filter).is_failure
    for topic in (topics.events(*A), topics.state(*A), topics.config_reported(*A), topics.sync_request(*A)):
        payload = marker()
        assert not kiosk.publish(topic, payload).is_failure
        got = hub.until(topic, payload)[-1]
        assert topics.parse_kiosk_topic(got.topic) == topics.KioskTopic(ROSA, "k-a", got.topic.split("k-a/")[1])

    for topic in sorted(reads_of(*A)):
        assert not kiosk.subscribe(topic).is_failure
    for topic in sorted(reads_of(*A)):
        payload = marker()
        assert not hub.publish(topic, payload, retain=topic.endswith(("ack", "desired", "keys"))).is_failure
        assert kiosk.until(topic, payload)  # leftovers retained by earlier tests may come first


# -- what a kiosk may not publish --------------------------------------------------------------

DENIED_PUBLISH = {
    "other kiosk's events": topics.events(*B),
    "other kiosk's state": topics.state(*B),
    "other kiosk's config/reported": topics.config_reported(*B),
    "other kiosk's sync/request": topics.sync_request(*B),
    "own events/ack": topics.events_ack(*A),
    "own kiosk config/desired": topics.kiosk_config_desired(*A),
    "own sync/response": topics.sync_response(*A),
    "merchant config/desired": topics.config_desired(ROSA),
    "merchant ledger": topics.ledger(ROSA),
    "merchant keys": topics.keys(ROSA),
    "same kiosk id at another merchant": topics.events(*X),
    "another merchant's ledger": topics.ledger(KURZ),
    "below its own events": topics.events(*A) + "/more",
    "outside stempel": "elsewhere/anything",
}


@pytest.mark.parametrize("topic", DENIED_PUBLISH.values(), ids=DENIED_PUBLISH.keys())
def test_a_kiosk_cannot_publish_outside_its_own_topics(connect, topic):
    hub, kiosk = connect("hub"), connect(A)
    hub.subscribe("#")  # the hub may read every stempel topic: it would see a leak
    forged, control = marker(), marker()
    assert kiosk.publish(topic, forged, retain=True).value == NOT_AUTHORIZED
    kiosk.publish(topics.events(*A), control)
    seen = hub.until(topics.events(*A), control)
    assert forged not in [m.payload for m in seen]


def test_a_denied_qos0_publish_is_dropped_silently(connect):
    hub, kiosk = connect("hub"), connect(A)
    hub.subscribe("#")
    forged, control = marker(), marker()
    for topic in (topics.ledger(ROSA), topics.events(*B), topics.events(*X)):
        assert kiosk.publish(topic, forged, qos=0) is None
    kiosk.publish(topics.state(*A), control, qos=0)
    seen = hub.until(topics.state(*A), control)
    assert forged not in [m.payload for m in seen]
    assert kiosk.disconnects == []  # denied, not punished: Mosquitto keeps the connection


def test_a_kiosk_last_will_counts_only_on_its_own_state_topic(fleet, connect):
    """Mosquitto accepts a forged will at CONNECT and drops it when it would be published."""
    hub = connect("hub")
    hub.subscribe(topics.ALL_STATES)
    forged, own = marker(), marker()
    for target, payload in ((B, forged), (A, own)):  # the second login also ends the first
        peer = fleet.kiosk_peer(fleet.bundles[A])
        peer.client.will_set(topics.state(*target), payload, qos=1)
        assert not peer.connect().is_failure
        peer.client.socket().shutdown(socket.SHUT_RDWR)  # vanish without DISCONNECT: the will fires
        peer.close()
    seen = hub.until(topics.state(*A), own)
    assert forged not in [m.payload for m in seen]


# -- what a kiosk may not read ---------------------------------------------------------------

FORBIDDEN_FILTERS = ["#", "$SYS/#", topics.SHARED_EVENTS, topics.ALL_EVENTS, topics.events_ack(*B),
                     topics.kiosk_config_desired(*B), topics.sync_response(*B), topics.events_ack(*X),
                     topics.ledger(KURZ), topics.keys(KURZ), topics.config_desired(KURZ)]


def test_a_kiosk_reads_nothing_but_its_own_and_its_merchants_topics(connect):
    hub, kiosk, other, foreign = connect("hub"), connect(A), connect(B), connect(X)
    for topic_filter in FORBIDDEN_FILTERS:
        # Mosquitto 2.0 grants every SUBSCRIBE and filters at delivery; a stricter broker may say 0x87.
        assert kiosk.subscribe(topic_filter).value in (1, NOT_AUTHORIZED), topic_filter
    secret = marker()
    for topic in (topics.events_ack(*B), topics.kiosk_config_desired(*B), topics.sync_response(*B),
                  topics.events_ack(*X), topics.ledger(KURZ), topics.keys(KURZ), topics.config_desired(KURZ)):
        assert not hub.publish(topic, secret).is_failure
    assert not other.publish(topics.events(*B), secret).is_failure
    assert not foreign.publish(topics.events(*X), secret).is_failure
    control = marker()
    hub.publish(topics.events_ack(*A), control, retain=True)
    seen = kiosk.until(topics.events_ack(*A), control)
    assert secret not in [m.payload for m in seen]
    assert {m.topic for m in seen} <= reads_of(*A)  # e.g. its own retained ack from an earlier test


# -- shared subscriptions ---------------------------------------------------------------------

def shared(group: str) -> str:
    return f"$share/{group}/{topics.ALL_EVENTS}"


def test_ingest_workers_share_the_events_and_the_default_group_name_is_no_way_in(fleet, connect):
    group = fleet.hub_settings["mqtt"]["ingest_group"]
    assert group.startswith(topics.INGEST_GROUP + "-") and len(group) > len(topics.INGEST_GROUP) + 10
    workers = [connect("hub", 1), connect("hub", 2)]
    for worker in workers:
        worker.subscribe(shared(group))
        worker.subscribe(topics.state(*A))
    intruder = connect(B)
    intruder.subscribe(topics.events_ack(*B))
    intruder.subscribe(topics.SHARED_EVENTS)  # the well-known name: a group of its own
    sender = connect(A)
    sent = [marker() for _ in range(10)]
    for payload in sent:
        assert not sender.publish(topics.events(*A), payload).is_failure
    control = marker()
    sender.publish(topics.state(*A), control)
    got = [m.payload for w in workers for m in w.until(topics.state(*A), control) if m.topic != topics.state(*A)]
    assert sorted(got) == sorted(sent)  # each event to exactly one worker, none lost
    fleet_ack = marker()
    workers[0].publish(topics.events_ack(*B), fleet_ack)
    assert [m.payload for m in intruder.until(topics.events_ack(*B), fleet_ack)] == [fleet_ack]


def test_a_kiosk_that_knew_the_group_name_would_make_the_broker_drop_events(fleet, connect):
    """Why ingest_group is secret: Mosquitto 2.0 gives the intruder its round-robin turn and
    then drops the message it may not read. (If this starts failing, the broker checks
    subscriptions now, and the secret group is belt and braces.)"""
    group = fleet.hub_settings["mqtt"]["ingest_group"]
    worker = connect("hub")
    worker.subscribe(shared(group))
    worker.subscribe(topics.state(*A))
    intruder = connect(B)
    intruder.subscribe(shared(group))
    sender = connect(A)
    for _ in range(10):
        sender.publish(topics.events(*A), marker())
    control = marker()
    sender.publish(topics.state(*A), control)
    got = [m for m in worker.until(topics.state(*A), control) if m.topic != topics.state(*A)]
    assert len(got) < 10
    assert intruder.messages.empty()


# -- client ids -------------------------------------------------------------------------------

def test_a_kiosk_cannot_take_over_another_kiosks_client_id(fleet, connect):
    victim = connect(B)
    hub = connect("hub")
    hub.subscribe(topics.ALL_EVENTS)
    impostor = connect(A, client_id="cafe-rosa-k-b")  # B's username, hence B's client id
    payload = marker()
    assert not victim.publish(topics.events(*B), payload).is_failure  # after A's CONNACK: B is still on
    assert hub.next().payload == payload
    mine = marker()
    assert impostor.publish(topics.events(*B), marker()).value == NOT_AUTHORIZED  # still A in B's id
    impostor.publish(topics.events(*A), mine)
    assert (hub.next().topic, victim.disconnects) == (topics.events(*A), [])


def test_the_broker_uses_the_username_as_client_id(connect):
    first = connect(A, client_id="any-id-1")
    connect(A, client_id="any-id-2")  # a different id, the same account: the same session
    # Mosquitto logs "Client cafe-rosa-k-a already connected, closing old connection"; 2.0.11
    # closes the socket without a DISCONNECT 0x8E, which paho reports as 0x80 (connection lost).
    assert first.wait_dropped().value in (TAKEN_OVER, CONNECTION_LOST)


# -- names and passwords ----------------------------------------------------------------------

@pytest.mark.parametrize("username", ["cafe-rosa-k+1", "#", "+", "cafe-rosa/k-a", "CAFE-ROSA-K-A", "$SYS", ""])
def test_names_outside_the_id_alphabet_cannot_connect(fleet, username):
    password = (fleet.bundles[A] / "mqtt.password").read_text().strip()
    peer = Peer(fleet.port, username, password)
    try:
        assert peer.connect().value in (0x86, NOT_AUTHORIZED)
    finally:
        peer.close()


def test_wrong_password_and_no_credentials_are_refused(fleet):
    for username, password in (("cafe-rosa-k-a", "guess"), (None, None), ("stempel-hub-1", "")):
        peer = Peer(fleet.port, username, password)
        try:
            assert peer.connect().value in (0x86, NOT_AUTHORIZED), username
        finally:
            peer.close()


def test_new_kiosks_and_new_passwords_take_effect_on_sighup(tmp_path):
    fleet = Fleet(tmp_path / "hub")
    try:
        port = free_port()
        endpoint = Endpoint("127.0.0.1", port)
        fleet.configure([Listener(port, "127.0.0.1")], endpoint, hub_workers=1)
        old = fleet.add_kiosk(ROSA, "k-old", endpoint, out=tmp_path / "old-bundle")
        fleet.start()
        newcomer = fleet.add_kiosk(ROSA, "k-new", endpoint)
        rotated = fleet.add_kiosk(ROSA, "k-old", endpoint, rotate=True)
        assert not _login(fleet, newcomer) and _login(fleet, old)  # not reloaded yet
        os.kill(fleet.broker.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not _login(fleet, newcomer) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _login(fleet, newcomer) and _login(fleet, rotated) and not _login(fleet, old)
    finally:
        fleet.close()


def _login(fleet: Fleet, bundle) -> bool:
    peer = fleet.kiosk_peer(bundle)
    try:
        peer.connect()
        return peer.accepted
    finally:
        peer.close()
