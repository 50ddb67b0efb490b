"""`stempel-hub config push` and `fleet status` against a real Mosquitto.

What must hold: only a valid programme leaves the hub; each push is the next version,
signed by the hub key the kiosks trust, and retained for kiosks that connect later; the
status table says which kiosks run the latest version.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cloud.hubkey import hub_signing_key
from kiosk.protocol import topics
from kiosk.protocol.passes import key_id
from kiosk.link.documents import MERCHANT, DocumentFollower
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from mosquitto import Mosquitto
from mqtt_peer import Peer

pytestmark = pytest.mark.slow  # a Mosquitto and the stempel-hub CLI

HUB = str(Path(sys.executable).parent / "stempel-hub")


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker", extra="user root").start()
    yield b
    b.stop()


def hub_cmd(hub, broker, *args, check=True):
    return subprocess.run([HUB, "--data-dir", str(hub.data_dir), *args, "--port", str(broker.port)],
                          capture_output=True, text=True, check=check, timeout=60)


def test_push_publishes_a_signed_retained_programme_the_kiosk_applies(hub, broker, tmp_path):
    first = hub_cmd(hub, broker, "config", "push", "examples/cafe.toml", "--merchant", "cafe-rosa")
    assert "version 1" in first.stdout
    second = hub_cmd(hub, broker, "config", "push", "examples/boutique.toml", "--merchant", "cafe-rosa")
    assert "version 2" in second.stdout

    late = Peer(broker.port, None, None)  # a kiosk that connects after the push still gets it
    late.connect()
    late.subscribe(topics.config_desired("cafe-rosa"))
    message = late.next()
    late.close()
    assert message.retain
    public = hub_signing_key(hub.data_dir).public_key()
    applier = DocumentFollower("cafe-rosa", "counter-1", {key_id(public): public}, tmp_path)
    report = json.loads(applier.handle(MERCHANT, message.payload).report.to_json())
    assert (report["status"], report["version"]) == ("applied", 2)
    assert applier.program().name == "Boutique Lina" and applier.program().unit == "points"


def test_an_invalid_programme_never_leaves_the_hub(hub, broker, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rewards]]\nid = "x"\nname = "X"\ncost = -1\n')
    result = hub_cmd(hub, broker, "config", "push", str(bad), "--merchant", "cafe-rosa", check=False)
    assert result.returncode == 2 and "[rewards.0.cost]" in result.stderr
    watcher = Peer(broker.port, None, None)
    watcher.connect()
    watcher.subscribe(topics.config_desired("cafe-rosa"))
    watcher.publish("control/after", b"x")  # nothing retained arrives before the control message
    watcher.subscribe("control/#")
    watcher.publish("control/after", b"y")
    assert [m.topic for m in watcher.until("control/after", b"y")] == ["control/after"]
    watcher.close()


def test_unknown_merchant_and_unreachable_broker_are_clear_errors(hub, broker, tmp_path):
    result = hub_cmd(hub, broker, "config", "push", "examples/cafe.toml", "--merchant", "nobody", check=False)
    assert result.returncode == 2 and "stempel-hub init --merchant nobody" in result.stderr
    broker.stop()
    result = hub_cmd(hub, broker, "config", "push", "examples/cafe.toml", "--merchant", "cafe-rosa",
                     "--connect-timeout", "1", check=False)
    assert result.returncode == 2 and "no connection to 127.0.0.1" in result.stderr


def test_fleet_status_shows_who_runs_the_latest_version(hub, broker):
    hub_cmd(hub, broker, "config", "push", "examples/cafe.toml", "--merchant", "cafe-rosa")
    hub_cmd(hub, broker, "config", "push", "examples/cafe.toml", "--merchant", "cafe-rosa")
    kiosks = Peer(broker.port, None, None)
    kiosks.connect()
    for kiosk, version, depth in (("counter-1", 2, 0), ("counter-2", 1, 37)):
        base = f"stempel/v1/cafe-rosa/kiosks/{kiosk}"
        kiosks.publish(f"{base}/state", json.dumps({"schema": "stempel.kiosk-state.v1", "status": "online",
                                                    "boot_id": "b", "software_version": "0.1.0",
                                                    "outbox_depth": depth}), retain=True)
        kiosks.publish(f"{base}/config/reported", json.dumps({"version": version, "status": "applied"}), retain=True)
    kiosks.close()
    doc = json.loads(hub_cmd(hub, broker, "fleet", "status", "--merchant", "cafe-rosa", "--json").stdout)
    assert doc["latest_config"] == 2
    assert {k: (v["up_to_date"], v["state"]["outbox_depth"]) for k, v in doc["kiosks"].items()} == {
        "counter-1": (True, 0), "counter-2": (False, 37)}
    table = hub_cmd(hub, broker, "fleet", "status", "--merchant", "cafe-rosa").stdout
    assert "counter-2" in table and "no (latest v2)" in table


def test_versions_count_up_per_scope_on_sqlite_and_postgresql(hub_url, broker, tmp_path):
    base = [HUB, "--data-dir", str(tmp_path / "hub"), "--db-url", hub_url]
    subprocess.run([*base, "init", "--merchant", "cafe-rosa", "--name", "Cafe Rosa"], check=True, capture_output=True)

    def push(*extra):
        done = subprocess.run([*base, "config", "push", "examples/cafe.toml", "--merchant", "cafe-rosa", *extra,
                               "--port", str(broker.port)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "version 1" in push() and "version 2" in push()
    assert "version 1" in push("--kiosk", "counter-1")  # a kiosk override has its own versions
    assert "version 3" in push()


def test_keys_publish_sends_signed_keys_with_revocations(hub, broker):
    anna = hub.issue("Anna")
    member = anna.member
    subprocess.run([HUB, "--data-dir", str(hub.data_dir), "revoke-pass", "--merchant", "cafe-rosa",
                    "--member", member], check=True, capture_output=True)
    out = hub_cmd(hub, broker, "keys", "publish", "--merchant", "cafe-rosa").stdout
    assert "keys version 1" in out and "1 revoked" in out
    peer = Peer(broker.port, None, None)
    peer.connect()
    peer.subscribe(topics.keys("cafe-rosa"))
    doc = json.loads(peer.next().payload)
    peer.close()
    from kiosk.protocol.signed import verify

    public = hub_signing_key(hub.data_dir).public_key()
    verify(doc, {key_id(public): public})
    assert doc["revoked_passes"] == [anna.serial] and doc["revoked_members"] == [] and doc["version"] == 1


def test_conflicts_command_lists_none_for_a_quiet_shop(hub):
    out = subprocess.run([HUB, "--data-dir", str(hub.data_dir), "conflicts", "--merchant", "cafe-rosa"],
                         check=True, capture_output=True, text=True).stdout
    assert "no conflicts for cafe-rosa" in out
