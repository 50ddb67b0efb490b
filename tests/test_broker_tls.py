"""TLS on the fleet broker: server certificates, the CA in the kiosk bundle, client certificates.

Every key and certificate is made here at run time (ECDSA P-256, one day): nothing secret
is committed. The broker runs the listeners ``stempel-hub broker-config`` generated.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from broker_fleet import Fleet
from cloud.broker.conf import Listener, TlsFiles
from cloud.provision import Endpoint
from kiosk.protocol import topics
from mosquitto import free_port
from mqtt_peer import Peer
from testca import Authority

pytestmark = pytest.mark.slow  # a Mosquitto with TLS listeners

ROSA = "cafe-rosa"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    return Authority(folder, "stempel-ca"), Authority(folder, "rogue-ca")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, pki):
    ca, rogue = pki
    server_cert, server_key = ca.issue("broker", server=True)
    fleet = Fleet(tmp_path_factory.mktemp("hub"))
    fleet.tls_port, fleet.mtls_port = free_port(), free_port()
    fleet.configure([Listener(fleet.tls_port, "127.0.0.1", TlsFiles(ca.ca_file, server_cert, server_key)),
                     Listener(fleet.mtls_port, "127.0.0.1", TlsFiles(ca.ca_file, server_cert, server_key, True))],
                    Endpoint("localhost", fleet.tls_port, ca.ca_file))
    fleet.kiosk = fleet.add_kiosk(ROSA, "k-tls", Endpoint("localhost", fleet.tls_port, ca.ca_file))
    cert, key = ca.issue("cafe-rosa-k-mtls", server=False)
    fleet.mtls_kiosk = fleet.add_kiosk(ROSA, "k-mtls", Endpoint("127.0.0.1", fleet.mtls_port, ca.ca_file, cert, key))
    fleet.rogue_client = rogue.issue("cafe-rosa-k-mtls", server=False)
    fleet.start()
    yield fleet
    fleet.close()


@pytest.fixture
def peers():
    opened: list[Peer] = []
    yield opened
    for peer in opened:
        peer.close()


def attempt(peers: list[Peer], peer: Peer) -> bool:
    """True if the broker accepted the client; a failed TLS handshake counts as refused."""
    peers.append(peer)
    try:
        peer.connect()
    except (ssl.SSLError, ConnectionError):
        return False
    return peer.accepted


def test_kiosk_and_hub_talk_over_tls_with_the_ca_from_their_files(fleet, peers):
    bundle = fleet.kiosk
    assert (bundle / "ca.crt").read_bytes() == Path(fleet.hub_settings["mqtt"]["ca_file"]).read_bytes()
    hub, kiosk = fleet.hub_peer(), fleet.kiosk_peer(bundle)
    assert attempt(peers, hub) and attempt(peers, kiosk)
    hub.subscribe(topics.ALL_EVENTS)
    kiosk.subscribe(topics.events_ack(ROSA, "k-tls"))
    assert not kiosk.publish(topics.events(ROSA, "k-tls"), b"stamp").is_failure
    assert hub.next().payload == b"stamp"
    hub.publish(topics.events_ack(ROSA, "k-tls"), b'{"acked_through_seq": 1}', retain=True)
    assert kiosk.next().payload == b'{"acked_through_seq": 1}'


def test_a_client_trusting_another_ca_fails_the_handshake(fleet, pki, peers):
    _, rogue = pki
    peer = fleet.kiosk_peer(fleet.kiosk, ca=rogue.ca_file)
    peers.append(peer)
    with pytest.raises(ssl.SSLCertVerificationError):
        peer.connect()


def test_plain_mqtt_gets_nowhere_on_the_tls_port(fleet, peers):
    password = (fleet.kiosk / "mqtt.password").read_text().strip()
    assert not attempt(peers, Peer(fleet.tls_port, "cafe-rosa-k-tls", password))


def test_require_certificate_admits_only_clients_with_a_certificate_from_the_ca(fleet, peers):
    with_cert = fleet.kiosk_peer(fleet.mtls_kiosk)
    assert (fleet.mtls_kiosk / "client.key").stat().st_mode & 0o077 == 0
    assert attempt(peers, with_cert)
    without = fleet.kiosk_peer(fleet.mtls_kiosk, cert=None, key=None)
    assert not attempt(peers, without)
    rogue_cert, rogue_key = fleet.rogue_client
    assert not attempt(peers, fleet.kiosk_peer(fleet.mtls_kiosk, cert=rogue_cert, key=rogue_key))
    # the certificate is on top of the password, not instead of it
    bundle = fleet.mtls_kiosk
    assert not attempt(peers, Peer(fleet.mtls_port, "cafe-rosa-k-mtls", "wrong", ca=bundle / "ca.crt",
                                   cert=bundle / "client.crt", key=bundle / "client.key"))
