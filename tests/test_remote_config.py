"""Fleet config on the kiosk (kiosk/link/documents.py): only a signed, newer, valid programme for
this kiosk is applied.

What must survive a bad document: the running programme, and the applied one on disk.
"""

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.protocol.passes import key_id
from kiosk.protocol.signed import sign
from kiosk.link.documents import KIOSK, MERCHANT, DocumentFollower
from kiosk.rules import Program, load_program

HUB = Ed25519PrivateKey.generate()
CAFE = load_program("examples/cafe.toml").model_dump(mode="json")


def doc(version=1, program=CAFE, merchant="cafe-rosa", kiosk=None, key=HUB, **extra):
    return sign({"schema": "stempel.config.v1", "merchant": merchant, "kiosk": kiosk, "version": version,
                 "program": program, **extra}, key)


TRUSTED = {key_id(HUB.public_key()): HUB.public_key()}


@pytest.fixture
def applier(tmp_path):
    """The documents follower, fed merchant-wide config documents."""
    return DocumentFollower("cafe-rosa", "counter-1", TRUSTED, tmp_path)


def send(applier, document) -> dict:
    payload = document if isinstance(document, bytes) else json.dumps(document).encode()
    return json.loads(applier.handle(MERCHANT, payload).report.to_json())


def test_valid_programme_is_applied_and_survives_a_restart(applier, tmp_path):
    assert send(applier, doc(3)) == {"schema": "stempel.config-report.v1", "version": 3, "status": "applied",
                                     "errors": [], "restart_required": False}
    assert isinstance(applier.program(), Program) and applier.program().name == "Cafe Rosa"
    again = DocumentFollower("cafe-rosa", "counter-1", applier.trusted, tmp_path).restore()
    assert again.program().name == "Cafe Rosa" and again.version(MERCHANT) == 3


def test_older_or_repeated_versions_are_ignored_but_re_reported(applier):
    send(applier, doc(5))
    first = applier.program()
    assert send(applier, doc(4))["version"] == 5
    assert send(applier, doc(5))["status"] == "applied"
    assert applier.program() is first  # re-reported, not applied again


def tampered():
    d = doc(2)
    d["program"] = {**d["program"], "name": "Free Coffee For All"}
    return d


@pytest.mark.parametrize("payload, error", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"schema": "stempel.config.v1", "version": 2, "merchant": "cafe-rosa", "program": CAFE}).encode(),
     "not signed"),
    (doc(2, key=Ed25519PrivateKey.generate()), "does not trust"),
    (tampered(), "altered or forged"),
    (doc(2, merchant="other-shop"), "for merchant 'other-shop'"),
    (doc(2, kiosk="counter-2"), "another kiosk"),
    (doc(2, program={**CAFE, "rewards": [{"id": "x", "name": "X", "cost": -1}]}), "[rewards.0.cost]"),
    (doc(2, program={**CAFE, "colour": "red"}), "unknown field"),
    (doc(2, schema="stempel.config/9"), "schema"),
    (doc(0), "version"),
    (doc(True), "[version] Input should be a valid integer"),  # not 1: a bool is no version
    (doc(2, kiosk="counter-1\n"), "[kiosk] String should match pattern"),  # ids are whole ids
    (doc(2, issued_at="x" * 65), "[issued_at]"),  # every field is bounded
    (b"x" * (1024 * 1024), "limit"),
])
def test_hostile_or_broken_documents_are_rejected_and_the_programme_stays(applier, payload, error):
    send(applier, doc(1))
    first = applier.program()
    report = send(applier, payload)
    assert report["status"] == "rejected" and any(error in e for e in report["errors"]), report
    assert applier.program() is first and applier.version(MERCHANT) == 1


def test_a_damaged_applied_file_is_ignored_on_restore(tmp_path, applier):
    (tmp_path / "applied-config.json").write_text('{"version": 9, "program": {}}')
    assert applier.restore().version(MERCHANT) is None and applier.program() == Program()


# -- the kiosk's own document and how the two add up ------------------------------------------

from kiosk.config import HardwareSection  # noqa: E402

SALON = load_program("examples/salon.toml")


def kiosk_doc(version=1, program=None, hardware=None, kiosk="counter-1", **extra):
    body = {"schema": "stempel.config.v1", "merchant": "cafe-rosa", "kiosk": kiosk, "version": version, **extra}
    if program is not None:
        body["program"] = program
    if hardware is not None:
        body["hardware"] = hardware
    return sign(body, HUB)


def payload(document) -> bytes:
    return json.dumps(document).encode()


@pytest.fixture
def fleet(tmp_path):
    return DocumentFollower("cafe-rosa", "counter-1", TRUSTED, tmp_path, base_program=Program(),
                            base_hardware=HardwareSection(led_pin=17)).restore()


def test_the_kiosk_document_overrides_the_merchant_programme_in_its_own_version_space(fleet):
    assert fleet.handle("merchant", payload(doc(7))).program.name == "Cafe Rosa"
    outcome = fleet.handle(KIOSK, payload(kiosk_doc(1, SALON.model_dump(mode="json"))))
    assert (outcome.report.version, outcome.report.status, outcome.program.name) == (1, "applied", SALON.name)
    assert fleet.handle("merchant", payload(doc(8))).program is None  # still overridden: nothing to switch
    assert fleet.versions() == {"merchant": 8, "kiosk": 1, "keys": 0}  # keys 0: no keys file here
    outcome = fleet.handle(KIOSK, payload(kiosk_doc(2, hardware={"buzzer_pin": 4})))  # override dropped
    assert outcome.program.name == "Cafe Rosa"


def test_hardware_settings_are_validated_kept_and_need_a_restart(fleet, tmp_path):
    bad = fleet.handle(KIOSK, payload(kiosk_doc(1, hardware={"led_pin": 99, "camera": "webcam"})))
    assert bad.report.status == "rejected" and len(bad.report.errors) == 2
    assert any("[led_pin]" in e for e in bad.report.errors) and fleet.hardware().led_pin == 17
    good = fleet.handle(KIOSK, payload(kiosk_doc(1, hardware={"led_pin": 5})))
    assert good.report.restart_required and good.program is None
    report = json.loads(fleet.report_payload())
    assert report["restart_required"] and report["kiosk_config"]["version"] == 1 and report["version"] is None
    assert fleet.handle(KIOSK, payload(kiosk_doc(1, hardware={"led_pin": 5}))).report.restart_required  # re-report
    after = DocumentFollower("cafe-rosa", "counter-1", fleet.trusted, tmp_path, base_program=Program(),
                             base_hardware=HardwareSection(led_pin=17))
    after.restore()  # the restart: the new pin is now the one in force
    assert after.hardware().led_pin == 5 and after.hardware().buzzer_pin == 27 and not after.restart_required()


@pytest.mark.parametrize("scope, document, error", [
    ("merchant", kiosk_doc(3, CAFE), "merchant-wide topic"),
    (KIOSK, doc(3), "merchant-wide document arrived on this kiosk's topic"),
    (KIOSK, kiosk_doc(3, CAFE, kiosk="counter-2"), "another kiosk"),
    ("merchant", doc(3, hardware={"led_pin": 5}), "only a kiosk's own document"),
    (KIOSK, kiosk_doc(3, program=[1]), "[program] Input should be a valid dictionary"),
])
def test_a_document_cannot_cross_into_the_other_scope(fleet, scope, document, error):
    report = fleet.handle(scope, payload(document)).report
    assert report.status == "rejected" and any(error in e for e in report.errors), report
    assert fleet.versions() == {"keys": 0}
