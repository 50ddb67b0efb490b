"""TLS on the fleet broker: server certificates, the CA in the kiosk bundle, client certificates.

Every key and certificate is made here at run time (ECDSA P-256, one day): nothing secret
is committed. The broker runs the listeners ``stempel-hub broker-config`` generated.
"""

from __future__ import annotations

import ipaddress
import ssl
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker_fleet import Fleet
from cloud.broker.conf import Listener, TlsFiles
from cloud.provision import Endpoint
from kiosk.protocol import topics
from mosquitto import free_port
from mqtt_peer import Peer

pytestmark = pytest.mark.slow  # a Mosquitto with TLS listeners

ROSA = "cafe-rosa"


class Authority:
    """A throwaway certificate authority writing PEM files into *folder*."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (self._builder(subject, self.key.public_key())
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.ca_file = self._write(f"{name}.crt", self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, common_name: str, *, server: bool) -> tuple[Path, Path]:
        """(certificate, key) files for a server on 127.0.0.1/localhost or for a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key.public_key())
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        if server:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return (self._write(f"{common_name}.crt", cert.public_bytes(serialization.Encoding.PEM)),
                self._write(f"{common_name}.key", key_pem))

    def _builder(self, subject: x509.Name, public_key) -> x509.CertificateBuilder:
        now = datetime.now(timezone.utc)
        issuer = self.cert.subject if hasattr(self, "cert") else subject
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1)))

    def _write(self, name: str, data: bytes) -> Path:
        path = self.folder / f"{self.name}-{name}"
        path.write_bytes(data)
        return path


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
