"""A lost phone: the owner revokes that one pass and gives the member a new one.

What must hold: the old pass is refused with "revoked" at the kiosk, the new pass works and
the member's balance carries over (the old pass's stamps count), and what reaches the kiosks
names the old pass's serial, never the member. A pass is issued only by the member's own
merchant. Passes from before serials (token version 1) keep working until revoked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fleetrig import LiveKiosk
from mosquitto import Mosquitto
from mqtt_peer import Peer
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from syncrig import MERCHANT, wait_until

from cloud.models import PassRecord
from cloud.models import Member
from kiosk.hardware import scenes
from kiosk.hardware.camera import Frame
from kiosk.protocol import topics
from kiosk.protocol.passes import KeyRing, PassSigner

pytestmark = pytest.mark.slow  # a Mosquitto and the stempel-hub CLI

HUB = str(Path(sys.executable).parent / "stempel-hub")
WAIT = 10.0


def hub_cli(hub, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([HUB, "--data-dir", str(hub.data_dir), *args], capture_output=True, text=True,
                          check=check, timeout=60)


def issued(result: subprocess.CompletedProcess) -> tuple[str, str, str]:
    """(member, serial, url) from issue-pass's output: ``member M: pass S written to ...`` + the URL."""
    first, url = result.stdout.strip().splitlines()
    words = first.split()
    return words[1].rstrip(":"), words[3], url


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker", extra="user root").start()
    yield b
    b.stop()


def test_lost_phone_old_pass_revoked_new_pass_keeps_the_balance(tmp_path, hub, broker, clock):
    member, serial_a, url_a = issued(hub_cli(hub, "issue-pass", "--merchant", MERCHANT, "--member-name", "Anna",
                                             "--out", str(tmp_path / "a.png")))
    kiosk = LiveKiosk(tmp_path, hub, "counter-1", broker.port, clock).start()
    try:
        first = kiosk.scan(url_a)
        assert (first.outcome, first.member, first.balance) == ("stamped", member, 1)

        revoked = hub_cli(hub, "revoke-pass", "--merchant", MERCHANT, "--member", member).stdout
        assert f"pass {serial_a}" in revoked
        again, serial_b, url_b = issued(hub_cli(hub, "issue-pass", "--merchant", MERCHANT, "--member", member,
                                                "--out", str(tmp_path / "b.png")))
        assert again == member and serial_b != serial_a and url_b != url_a
        published = hub_cli(hub, "keys", "publish", "--merchant", MERCHANT, "--port", str(broker.port)).stdout
        assert "1 revoked" in published

        peer = Peer(broker.port, None, None)  # what every kiosk of the merchant receives
        peer.connect()
        peer.subscribe(topics.keys(MERCHANT))
        doc = json.loads(peer.next().payload)
        peer.close()
        assert (doc["revoked_passes"], doc["revoked_members"]) == ([serial_a], [])
        assert member not in json.dumps(doc)  # the member is not revoked: only that one pass

        wait_until(lambda: serial_a in kiosk.kiosk.verifier.keyring.revoked_serials, WAIT, "the new keys")
        old = kiosk.scan(url_a)
        assert (old.outcome, old.reason) == ("rejected", "revoked")
        new = kiosk.scan(url_b)
        assert (new.outcome, new.member, new.balance) == ("stamped", member, 2)  # the old pass's stamp counts
        assert kiosk.scan(url_a).reason == "revoked"  # and stays refused
    finally:
        kiosk.stop()


def test_revoking_one_serial_leaves_the_members_other_pass_valid(tmp_path, hub):
    member, serial_a, _ = issued(hub_cli(hub, "issue-pass", "--merchant", MERCHANT, "--member-name", "Anna",
                                         "--out", str(tmp_path / "phone.png")))
    _, serial_b, _ = issued(hub_cli(hub, "issue-pass", "--merchant", MERCHANT, "--member", member,
                                    "--out", str(tmp_path / "card.svg")))
    assert "revoked" in hub_cli(hub, "revoke-pass", "--merchant", MERCHANT, "--serial", serial_a.upper()).stdout
    assert "already" in hub_cli(hub, "revoke-pass", "--merchant", MERCHANT, "--serial", serial_a).stdout
    keys = json.loads(hub_cli(hub, "export-keys", "--merchant", MERCHANT).stdout)
    assert keys["revoked_passes"] == [serial_a] and keys["revoked_members"] == []
    assert keys["base_url"] == "https://stempel.example"
    ring = KeyRing.from_json(json.dumps(keys))
    assert serial_b not in ring.revoked_serials
    unknown = hub_cli(hub, "revoke-pass", "--merchant", MERCHANT, "--serial", "zzzz", check=False)
    assert unknown.returncode == 2 and "no pass 'zzzz'" in unknown.stderr
    both = hub_cli(hub, "revoke-pass", "--merchant", MERCHANT, "--serial", serial_b, "--member", member, check=False)
    assert both.returncode == 2 and "exactly one" in both.stderr


def test_issue_pass_refuses_a_member_of_another_merchant(tmp_path, hub):
    hub.init("other-shop", "Other Shop")
    bob, _, _ = issued(hub_cli(hub, "issue-pass", "--merchant", "other-shop", "--member-name", "Bob",
                               "--out", str(tmp_path / "bob.png")))
    passes_before = _count(hub, PassRecord)
    stolen = hub_cli(hub, "issue-pass", "--merchant", MERCHANT, "--member", bob, "--out", str(tmp_path / "x.png"),
                     check=False)
    assert stolen.returncode == 2 and f"{bob!r} is not a member of 'cafe-rosa'" in stolen.stderr
    nobody = hub_cli(hub, "issue-pass", "--merchant", MERCHANT, "--member", "mnobody", "--out",
                     str(tmp_path / "y.png"), check=False)
    assert nobody.returncode == 2 and "no member 'mnobody'" in nobody.stderr
    across = hub_cli(hub, "revoke-pass", "--merchant", MERCHANT, "--member", bob, check=False)
    assert across.returncode == 2 and "no member" in across.stderr
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()
    assert _count(hub, PassRecord) == passes_before
    with Session(hub.engine) as session:
        assert session.get(Member, bob).merchant_id == "other-shop"


def test_a_version_1_pass_stays_valid_until_revoked_then_its_member_carries_on(tmp_path, hub, kiosk, rng):
    """A member enrolled before serials, holding the pass the hub issued then (no serial)."""
    with Session(hub.engine) as session, session.begin():
        session.add(Member(id="mlegacy01", merchant_id=MERCHANT, name="Old Anna"))
    signer = PassSigner(MERCHANT, hub.keys.load(MERCHANT, _kid(hub)))
    legacy = signer.legacy_url("https://stempel.example", "mlegacy01")

    def scan(url: str, minutes: int):
        kiosk.clock.advance(minutes * 60)
        return kiosk.handle_frame(Frame(scenes.render(url, rng), source="counter"))

    def refresh_keys() -> dict:
        keys = json.loads(hub_cli(hub, "export-keys", "--merchant", MERCHANT).stdout)
        kiosk.verifier.keyring = KeyRing.from_json(json.dumps(keys))  # what the keys topic does
        return keys

    assert (scan(legacy, 61).outcome, kiosk.ledger.member_state("mlegacy01", kiosk.program).balance) == ("stamped", 1)
    out = hub_cli(hub, "revoke-pass", "--merchant", MERCHANT, "--member", "mlegacy01").stdout
    assert "version-1 pass" in out
    _, serial, url = issued(hub_cli(hub, "issue-pass", "--merchant", MERCHANT, "--member", "mlegacy01",
                                    "--out", str(tmp_path / "new.png")))
    keys = refresh_keys()
    assert (keys["revoked_members"], keys["revoked_passes"]) == (["mlegacy01"], [])
    assert scan(legacy, 61).reason == "revoked"
    fresh = scan(url, 61)
    assert (fresh.outcome, fresh.member, fresh.balance) == ("stamped", "mlegacy01", 2)
    hub_cli(hub, "revoke-pass", "--merchant", MERCHANT, "--member", "mlegacy01")  # now the new one too
    keys = refresh_keys()
    assert (keys["revoked_members"], keys["revoked_passes"]) == (["mlegacy01"], [serial])
    assert scan(url, 61).reason == "revoked"


def _kid(hub) -> str:
    from cloud.store import active_keys

    with Session(hub.engine) as session:
        return active_keys(session, MERCHANT)[0].kid


def _count(hub, model) -> int:
    with Session(hub.engine) as session:
        return session.scalar(select(func.count()).select_from(model))
