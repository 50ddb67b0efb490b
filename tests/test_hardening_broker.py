"""Issue 7, the broker: a newline in an id, broker files that must read back, a Mosquitto that
fails closed on a broken ACL, payload limits, and plaintext kept on the broker's own host.

Each attack goes through a public interface: the ``stempel-hub`` CLI, the files on disk, and a
real Mosquitto running the generated configuration with paho clients.
"""

from __future__ import annotations

import os
import signal
import socket
import string
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Annotated

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import Field, TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from broker_fleet import Fleet
from cloud import cli
from cloud.broker.accounts import Account, hub_account
from cloud.broker.acl import kiosk_rules, parse_acl
from cloud.broker.conf import PACKET_OVERHEAD, Listener, parse_conf
from cloud.broker.files import BrokerFiles
from cloud.broker.passwd import hash_password, parse_passwd
from cloud.models import BrokerAccount
from cloud.provision import Endpoint, regenerate_broker_files
from cloud.db import default_url, open_store
from kiosk.common.errors import ConfigError, ProvisioningError
from kiosk.protocol import topics
from kiosk.protocol.ids import ID_PATTERN, ID_REGEX, WIRE_ID_PATTERN, check_id, is_id
from kiosk.protocol.messages import MAX_PAYLOAD_BYTES
from mosquitto import Mosquitto, free_port
from mqtt_peer import NOT_AUTHORIZED, Peer

ROSA, KURZ = "cafe-rosa", "baeckerei-kurz"
PACKET_TOO_LARGE = 0x95
HASH = hash_password("fixed", salt=b"0123456789ab")
ID_ALPHABET = set(string.ascii_lowercase + string.digits + "-")


def hub_cli(data: Path, *args: str):
    return CliRunner().invoke(cli.main, ["--data-dir", str(data), *args])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# -- (a) a newline (or any stray byte) in an id, through the CLI ---------------------------------

@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    data = tmp_path / "hub"
    for args in (("init", "--merchant", ROSA, "--name", "Cafe Rosa"), ("broker-config",),
                 ("add-kiosk", "--merchant", ROSA, "--kiosk", "k1", "--broker-host", "b.lan")):
        done = hub_cli(data, *args)
        assert done.exit_code == 0, done.output
    return data


@pytest.mark.parametrize("merchant, kiosk", [(ROSA, "k3\n"), (ROSA, "\nk3"), (ROSA + "\n", "k3"), (ROSA, "k3\r"),
                                             (ROSA, "k3\x00"), (ROSA, "k3\ntopic readwrite #"), (ROSA, "k3 ")])
def test_add_kiosk_refuses_a_stray_byte_in_an_id_and_leaves_the_broker_files(hub_dir, merchant, kiosk):
    before = snapshot(hub_dir / "broker")
    refused = hub_cli(hub_dir, "add-kiosk", "--merchant", merchant, "--kiosk", kiosk, "--broker-host", "b.lan")
    assert refused.exit_code == 2
    assert "is not a valid id" in refused.stderr and "a-z, 0-9 and '-'" in refused.stderr
    assert snapshot(hub_dir / "broker") == before
    assert sorted(p.name for p in (hub_dir / "bundles").iterdir()) == [f"{ROSA}-k1"]


@pytest.mark.parametrize("row", [
    {"username": f"{ROSA}-k3\n", "kiosk_id": "k3\n", "password_hash": HASH},  # left by an older hub
    {"username": f"{ROSA}-k3", "kiosk_id": "k3", "password_hash": HASH + "\nintruder:" + HASH},
    {"username": f"{ROSA}-k3", "kiosk_id": "k3\n", "password_hash": HASH},
], ids=["newline-in-username", "newline-in-hash", "newline-in-kiosk-id"])
def test_a_bad_account_in_the_database_blocks_the_write_not_the_acl(hub_dir, row):
    """Files that would not read back into exactly the accounts intended are never written, and
    the account being added is not committed either (no half-provisioned kiosk)."""
    engine = open_store(default_url(hub_dir))
    try:
        with Session(engine) as session, session.begin():
            session.add(BrokerAccount(role="kiosk", merchant_id=ROSA, **row))
        before = snapshot(hub_dir / "broker")
        refused = hub_cli(hub_dir, "add-kiosk", "--merchant", ROSA, "--kiosk", "k4", "--broker-host", "b.lan")
        assert refused.exit_code == 2 and "error:" in refused.stderr and "k3" in refused.stderr
        assert hub_cli(hub_dir, "broker-config").exit_code == 2
        assert snapshot(hub_dir / "broker") == before
        with Session(engine) as session:
            assert session.get(BrokerAccount, f"{ROSA}-k4") is None
    finally:
        engine.dispose()


# -- (c) fuzz: the id validators and the broker-file writer -------------------------------------

NASTY = "az09-\n\r\x00\t #+/$:\u00e4\u0130\u212a\ufeff\ud800K"
TEXTS = st.one_of(
    st.text(st.sampled_from(NASTY), max_size=36),
    st.text(max_size=36),
    st.from_regex(ID_REGEX, fullmatch=True),
    st.tuples(st.from_regex(ID_REGEX, fullmatch=True), st.sampled_from(["\n", "\r\n", "\x00", " ", "\n#", "/+"]))
    .map("".join),
)
WIRE_ID = TypeAdapter(Annotated[str, Field(pattern=WIRE_ID_PATTERN)])


def in_id_alphabet(text: str) -> bool:
    return 1 <= len(text) <= 32 and set(text) <= ID_ALPHABET and text[0] != "-" and text[-1] != "-"


@settings(derandomize=True, max_examples=600, deadline=None)
@given(text=TEXTS)
def test_every_id_validator_accepts_exactly_the_id_alphabet(text):
    expected = in_id_alphabet(text)
    assert is_id(text) is expected
    assert bool(ID_PATTERN.match(text)) is bool(ID_PATTERN.search(text)) is expected  # even misused
    try:
        WIRE_ID.validate_python(text)  # pydantic's engine, as the wire models use the pattern
        wire = True
    except ValidationError:
        wire = False
    assert wire is expected
    if expected:
        assert check_id(text, "kiosk") == text
    else:
        with pytest.raises(ConfigError, match="is not a valid id"):
            check_id(text, "kiosk")


@pytest.fixture(scope="module")
def writer_dir(tmp_path_factory) -> BrokerFiles:
    return BrokerFiles(tmp_path_factory.mktemp("writer"))


BASE = [hub_account(1), Account(f"{ROSA}-k1", "kiosk", ROSA, "k1")]


@pytest.mark.slow  # 300 examples, each writing and fsyncing the broker files: seconds on a busy disk
@settings(derandomize=True, max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(merchant=TEXTS, kiosk=TEXTS)
def test_the_broker_file_writer_refuses_or_grants_exactly_the_intended_topics(writer_dir, merchant, kiosk):
    files = writer_dir
    files.write(BASE, [(a.username, HASH) for a in BASE])
    before = snapshot(files.root)
    account = Account(f"{merchant}-{kiosk}", "kiosk", merchant, kiosk)  # unvalidated: the writer must catch it
    accounts = [*BASE, account]
    try:
        files.write(accounts, [(a.username, HASH) for a in accounts])
    except (ConfigError, ProvisioningError) as exc:
        event("refused")
        assert str(exc)
        assert snapshot(files.root) == before
        assert not (is_id(merchant) and is_id(kiosk) and len(account.username) <= 65
                    and account.username not in {a.username for a in BASE})
        return
    event("written")
    assert is_id(merchant) and is_id(kiosk)
    raw = files.acl.read_bytes()
    assert raw.isascii() and b"\r" not in raw and b"\x00" not in raw
    grants = parse_acl(raw.decode())
    assert set(grants) == {a.username for a in accounts}
    assert set(parse_passwd(files.passwd.read_text())) == set(grants)
    own = f"stempel/v1/{merchant}/kiosks/{kiosk}/"
    assert grants[account.username] == tuple(kiosk_rules(merchant, kiosk))
    for access, topic in grants[account.username]:
        assert "+" not in topic and "#" not in topic and topic.startswith(f"stempel/v1/{merchant}/")
        assert access == "read" or topic.startswith(own)
    assert all(line == "" or line.startswith(("#", "user ", "topic ")) for line in raw.decode().split("\n"))


HANDFUL = [("0", "0"), ("a", "b-c"), ("m" * 16, "k" * 32), ("9-9", "x1-y2-z3"), (ROSA, "counter-10")]


@pytest.mark.slow  # a Mosquitto
def test_ids_the_writer_accepts_are_accepted_by_mosquitto(tmp_path):
    """A handful of edge ids (shortest, longest kiosk id, digits, dashes) provisioned for real: the broker
    starts on the files, each kiosk sends on its own topics and is refused on the next one's."""
    fleet = Fleet(tmp_path / "hub", tuple(sorted({m for m, _ in HANDFUL})))
    peers: list[Peer] = []
    try:
        endpoint = Endpoint("127.0.0.1", free_port())
        fleet.configure([Listener(endpoint.port, "127.0.0.1")], endpoint, hub_workers=1)
        bundles = [fleet.add_kiosk(merchant, kiosk, endpoint) for merchant, kiosk in HANDFUL]
        fleet.start()
        hub = fleet.hub_peer()
        peers.append(hub)
        assert hub.connect().value == 0 and not hub.subscribe(topics.ALL_EVENTS).is_failure
        for n, ((merchant, kiosk), bundle) in enumerate(zip(HANDFUL, bundles)):
            peer = fleet.kiosk_peer(bundle)
            peers.append(peer)
            assert peer.connect().value == 0, (merchant, kiosk)
            other = HANDFUL[(n + 1) % len(HANDFUL)]
            assert peer.publish(topics.events(*other), b"forged").value == NOT_AUTHORIZED
            assert not peer.publish(topics.events(merchant, kiosk), b"mine").is_failure
            assert [(m.topic, m.payload) for m in [hub.next()]] == [(topics.events(merchant, kiosk), b"mine")]
        assert "Error" not in fleet.broker.log.read_text()
    finally:
        for peer in peers:
            peer.close()
        fleet.close()


# -- (b) a broken ACL file: Mosquitto must refuse, not allow all ---------------------------------

A, X = (ROSA, "k-a"), (KURZ, "k-x")
# What the hub wrote before issue 7 for `add-kiosk --kiosk $'k3\n'`: a block Mosquitto rejects.
OLD_K3_BLOCK = (f"\nuser {ROSA}-k3\n\ntopic write stempel/v1/{ROSA}/kiosks/k3\n/events\n")


def _fleet(tmp_path: Path, **options) -> Fleet:
    fleet = Fleet(tmp_path / "hub", (ROSA, KURZ))
    endpoint = Endpoint("127.0.0.1", free_port())
    fleet.configure([Listener(endpoint.port, "127.0.0.1")], endpoint, hub_workers=1, **options)
    fleet.bundles = {who: fleet.add_kiosk(*who, endpoint) for who in (A, X)}
    return fleet


@pytest.fixture
def open_peers():
    opened: list[Peer] = []

    def _open(peer: Peer) -> Peer:
        opened.append(peer)
        assert peer.connect().value == 0
        return peer

    yield _open
    for peer in opened:
        peer.close()


def reload_with_broken_acl(fleet: Fleet) -> None:
    """Append the old hub's bad block, SIGHUP, and wait until Mosquitto has said it failed."""
    errors = fleet.broker.log.read_text().count("Error opening acl file")
    with fleet.files.acl.open("a") as acl:
        acl.write(OLD_K3_BLOCK)
    os.kill(fleet.broker.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while fleet.broker.log.read_text().count("Error opening acl file") == errors:
        assert time.monotonic() < deadline, "mosquitto did not reload"
        time.sleep(0.05)


@pytest.mark.slow  # a Mosquitto
def test_a_reload_with_a_broken_acl_denies_every_client(tmp_path, open_peers):
    fleet = _fleet(tmp_path)
    try:
        fleet.start()
        hub, x_before = open_peers(fleet.hub_peer()), open_peers(fleet.kiosk_peer(fleet.bundles[X]))
        assert not hub.publish(topics.keys(ROSA), b"rosa keys", retain=True).is_failure
        reload_with_broken_acl(fleet)
        for peer in (x_before, hub):  # connected before the reload
            for topic in (topics.ledger(ROSA), topics.events(*A), topics.events(*X), topics.keys(KURZ)):
                assert peer.publish(topic, b"leak").value == NOT_AUTHORIZED, topic
        # One connection per account (use_username_as_clientid): a second one for X takes the first
        # over, and paho's automatic reconnect would take it back, over and over, each request
        # falling in a gap without a connection. So X's old connection ends first, as at a restart.
        x_before.close()
        x_after = open_peers(fleet.kiosk_peer(fleet.bundles[X]))  # a new connection, as after a restart
        for topic_filter in ("#", topics.keys(ROSA), topics.ledger(ROSA)):
            assert x_after.subscribe(topic_filter).value == NOT_AUTHORIZED
        assert x_after.publish(topics.events(*X), b"own").value == NOT_AUTHORIZED
        # Fixed by the hub (the same files it writes) and reloaded: the fleet works again, and
        # the retained message of the other merchant still never reaches X.
        regenerate_broker_files(fleet.engine, fleet.files)
        os.kill(fleet.broker.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while x_after.publish(topics.events(*X), b"ok").value == NOT_AUTHORIZED:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert not x_after.subscribe("#").is_failure
        assert not hub.publish(topics.ledger(KURZ), b"control").is_failure
        seen = x_after.until(topics.ledger(KURZ), b"control")
        assert not any(m.topic.startswith(f"stempel/v1/{ROSA}/") for m in seen)
    finally:
        fleet.close()


@pytest.mark.slow  # a Mosquitto
def test_without_the_backstop_the_same_reload_lets_a_kiosk_read_another_merchant(tmp_path, open_peers):
    """What conf.py documents: Mosquitto 2.0 alone runs with no ACL after a failed reload. If this
    ever stops leaking, the backstop may be dropped (and conf.py's docstring updated)."""
    fleet = _fleet(tmp_path, acl_backstop=None)
    try:
        fleet.start()
        assert "plugin" not in fleet.files.conf.read_text()
        hub = open_peers(fleet.hub_peer())
        reload_with_broken_acl(fleet)
        x = open_peers(fleet.kiosk_peer(fleet.bundles[X]))
        x.subscribe(topics.ledger(ROSA))
        assert not hub.publish(topics.ledger(ROSA), b"rosa's ledger").is_failure
        assert x.next().payload == b"rosa's ledger"
    finally:
        fleet.close()


@pytest.mark.slow  # a Mosquitto
def test_a_broker_started_with_a_broken_acl_does_not_run(tmp_path):
    fleet = _fleet(tmp_path)
    try:
        with fleet.files.acl.open("a") as acl:
            acl.write(OLD_K3_BLOCK)
        broker = Mosquitto(tmp_path / "mosquitto", anonymous=False, extra=f"{fleet.files.conf.read_text()}\nuser root\n")
        try:
            with pytest.raises(RuntimeError, match="mosquitto exited"):
                broker.start()
        finally:
            broker.stop()
        assert "Invalid line in acl_file" in broker.log.read_text()
    finally:
        fleet.close()


# -- (d) payload limits at the broker ----------------------------------------------------------

@pytest.mark.slow  # a Mosquitto
def test_the_broker_refuses_payloads_over_the_limit(tmp_path, open_peers):
    """Over ``MAX_PAYLOAD_BYTES`` an MQTT 5 client gets PUBACK 0x95 and nothing is delivered; a
    packet beyond it by more than a topic's worth costs the connection. (paho 2.x takes that
    PUBACK for a malformed packet, reconnects and re-sends: the kiosk must, and does, keep its
    batches below the limit; mosquitto_pub shows the broker's answer here.)"""
    fleet = _fleet(tmp_path)
    try:
        fleet.start()
        assert int(dict(parse_conf(fleet.files.conf.read_text()))["message_size_limit"]) == MAX_PAYLOAD_BYTES
        hub, kiosk = open_peers(fleet.hub_peer()), open_peers(fleet.kiosk_peer(fleet.bundles[A]))
        hub.subscribe(topics.ALL_EVENTS)
        topic = topics.events(*A)
        over = mosquitto_pub(fleet, tmp_path, topic, MAX_PAYLOAD_BYTES + 1, "mqttv5")
        assert f"received PUBACK (Mid: 1, RC:{PACKET_TOO_LARGE})" in over.stdout + over.stderr
        far_over = mosquitto_pub(fleet, tmp_path, topic, MAX_PAYLOAD_BYTES + PACKET_OVERHEAD + 1, "mqttv311")
        assert "received PUBACK" not in far_over.stdout + far_over.stderr
        assert not kiosk.publish(topic, b"y" * MAX_PAYLOAD_BYTES).is_failure
        assert len(hub.next().payload) == MAX_PAYLOAD_BYTES  # neither refused one arrived before it
    finally:
        fleet.close()


def mosquitto_pub(fleet: Fleet, tmp_path: Path, topic: str, size: int, version: str) -> subprocess.CompletedProcess:
    """Publish *size* bytes at QoS 1 as kiosk A with the real ``mosquitto_pub`` (debug output kept)."""
    mqtt_doc = tomllib.loads((fleet.bundles[A] / "kiosk.toml").read_text())["mqtt"]
    payload = tmp_path / f"payload-{size}"
    payload.write_bytes(b"z" * size)
    password = (fleet.bundles[A] / "mqtt.password").read_text().strip()
    return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mqtt_doc["port"]), "-V", version, "-q", "1",
                           "-d", "-i", mqtt_doc["username"], "-u", mqtt_doc["username"], "-P", password,
                           "-t", topic, "-f", str(payload)], check=False, capture_output=True, text=True, timeout=30)


# -- (e) with TLS, plaintext stays on the broker's host ----------------------------------------

@pytest.fixture
def tls_hub(tmp_path: Path) -> Path:
    data = tmp_path / "hub"
    assert hub_cli(data, "init", "--merchant", ROSA, "--name", "Cafe Rosa").exit_code == 0
    return data


TLS_ARGS = ("--certfile", "/etc/mosquitto/certs/broker.crt", "--keyfile", "/etc/mosquitto/certs/broker.key",
            "--cafile", "/etc/mosquitto/certs/ca.crt")


def test_with_tls_the_plain_listener_binds_to_loopback_and_a_remote_hub_uses_tls(tls_hub):
    done = hub_cli(tls_hub, "broker-config", *TLS_ARGS)
    assert done.exit_code == 0, done.output
    listeners = [v for k, v in parse_conf((tls_hub / "broker" / "mosquitto-stempel.conf").read_text()) if k == "listener"]
    assert listeners == ["1883 127.0.0.1", "8883"]
    local = tomllib.loads((tls_hub / "broker" / "hub-mqtt.toml").read_text())["mqtt"]
    assert (local["host"], local["port"], local["tls"]) == ("127.0.0.1", 1883, False)

    done = hub_cli(tls_hub, "broker-config", *TLS_ARGS, "--hub-host", "broker.example")
    assert done.exit_code == 0, done.output
    remote = tomllib.loads((tls_hub / "broker" / "hub-mqtt.toml").read_text())["mqtt"]
    assert (remote["host"], remote["port"], remote["tls"], remote["ca_file"]) == \
        ("broker.example", 8883, True, "/etc/mosquitto/certs/ca.crt")


def test_with_tls_a_remote_kiosk_is_not_given_a_plaintext_bundle(tls_hub, tmp_path):
    assert hub_cli(tls_hub, "broker-config", *TLS_ARGS).exit_code == 0
    before = snapshot(tls_hub / "broker")
    refused = hub_cli(tls_hub, "add-kiosk", "--merchant", ROSA, "--kiosk", "k1", "--broker-host", "broker.example")
    assert refused.exit_code == 2 and "give --ca-file" in refused.stderr
    assert snapshot(tls_hub / "broker") == before
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n(test)\n-----END CERTIFICATE-----\n")
    made = hub_cli(tls_hub, "add-kiosk", "--merchant", ROSA, "--kiosk", "k1", "--broker-host", "broker.example",
                   "--ca-file", str(ca))
    assert made.exit_code == 0, made.output
    mqtt_doc = tomllib.loads((tls_hub / "bundles" / f"{ROSA}-k1" / "kiosk.toml").read_text())["mqtt"]
    assert (mqtt_doc["port"], mqtt_doc["tls"]) == (8883, True)


CERT_ARGS = TLS_ARGS[:4]


@pytest.mark.parametrize("args, message", [
    ((*TLS_ARGS, "--bind", "0.0.0.0"), "not a loopback address"),
    ((*TLS_ARGS, "--bind", "192.168.1.5"), "not a loopback address"),
    ((*CERT_ARGS, "--hub-host", "10.0.0.2"), "give --cafile"),
])
def test_tls_refuses_a_public_plain_listener_and_a_remote_hub_without_a_ca(tls_hub, args, message):
    refused = hub_cli(tls_hub, "broker-config", *args)
    assert refused.exit_code == 2 and message in refused.output
    assert not (tls_hub / "broker" / "mosquitto-stempel.conf").exists()


def test_without_tls_nothing_changes_and_tls_only_is_allowed(tls_hub):
    assert hub_cli(tls_hub, "broker-config").exit_code == 0
    conf = tls_hub / "broker" / "mosquitto-stempel.conf"
    assert [v for k, v in parse_conf(conf.read_text()) if k == "listener"] == ["1883"]
    assert hub_cli(tls_hub, "broker-config", *TLS_ARGS, "--port", "0", "--hub-host", "localhost").exit_code == 0
    assert [v for k, v in parse_conf(conf.read_text()) if k == "listener"] == ["8883"]
    hub = tomllib.loads((tls_hub / "broker" / "hub-mqtt.toml").read_text())["mqtt"]
    assert (hub["port"], hub["tls"]) == (8883, True)


def _outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.mark.slow  # a Mosquitto
def test_a_real_broker_with_tls_serves_plaintext_on_loopback_only(tmp_path):
    from testca import Authority

    outward = _outward_address()
    if outward is None:
        pytest.skip("no non-loopback address on this machine")
    ca = Authority(tmp_path, "ca")
    cert, key = ca.issue("broker", server=True)
    plain, tls = free_port(), free_port()
    data = tmp_path / "hub"
    assert hub_cli(data, "init", "--merchant", ROSA, "--name", "Cafe Rosa").exit_code == 0
    done = hub_cli(data, "broker-config", "--port", str(plain), "--tls-port", str(tls), "--certfile", str(cert),
                   "--keyfile", str(key), "--cafile", str(ca.ca_file), "--install-dir", str(data / "broker"))
    assert done.exit_code == 0, done.output
    broker = Mosquitto(tmp_path / "mosquitto", anonymous=False, port=free_port(),
                       extra=(data / "broker" / "mosquitto-stempel.conf").read_text() + "\nuser root\n").start()
    try:
        socket.create_connection(("127.0.0.1", plain), timeout=2).close()
        socket.create_connection((outward, tls), timeout=2).close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((outward, plain), timeout=2)
    finally:
        broker.stop()
