"""Fleet configuration and pass keys reaching running kiosks, over a real Mosquitto and (the
tests that take ``bus_factory``) over the in-memory broker too.

What must hold: a pushed programme is applied by every kiosk without a restart and
reported (retained) with its version; a hostile or broken document is refused with the
reason while the kiosk keeps scanning under the programme it had; what was applied
survives a restart, and a stale retained copy never rolls it back; a key rotation and a
revocation pushed on ``keys`` change which passes the kiosk accepts.
"""

from __future__ import annotations

import json
import shutil

import pytest
from buses import bus_factory  # noqa: F401  (fixture)
from fleetrig import WAIT, LiveKiosk, reports
from mosquitto import Mosquitto
from sqlalchemy import update
from sqlalchemy.orm import Session
from syncrig import MERCHANT, Watcher, wait_until

from cloud.link import documents
from cloud.hubkey import hub_signing_key
from cloud.link.documents import build_keys_document, publish_keys
from cloud.passes import init_merchant, revoke_member
from cloud.models import SigningKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kiosk.common.bus import BusSettings, MqttBus
from kiosk.protocol import signed, topics
from kiosk.protocol.messages import KioskState, decode
from kiosk.protocol.passes import public_key_entry
from kiosk.rules import load_program
from kiosk.wiring import effective_config

CAFE = load_program("examples/cafe.toml")
SALON = load_program("examples/salon.toml")
REPORTED = f"{topics.ROOT}/{MERCHANT}/kiosks/+/config/reported"
STATES = f"{topics.ROOT}/{MERCHANT}/kiosks/+/state"


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def admin(bus_factory):
    """The hub's admin connection (what `stempel-hub config push` uses), on either bus."""
    bus = bus_factory.connected("hub-admin")
    yield bus
    bus.stop()


@pytest.fixture
def mqtt_admin(broker):
    """The admin connection on this module's Mosquitto (for the tests that restart it)."""
    bus = MqttBus(BusSettings(host="127.0.0.1", port=broker.port, client_id="hub-admin",
                              reconnect_min=0.2, reconnect_max=1.0))
    bus.start()
    bus.wait_connected(5)
    yield bus
    bus.stop()


def hub_doc(hub, version, program=CAFE, kiosk=None, key=None, **extra) -> dict:
    body = {"schema": "stempel.config.v1", "merchant": MERCHANT, "kiosk": kiosk, "version": version,
            "program": program.model_dump(mode="json") if hasattr(program, "model_dump") else program, **extra}
    return signed.sign(body, key or hub_signing_key(hub.data_dir))


def push(bus, payload, kiosk=None) -> None:
    topic = topics.kiosk_config_desired(MERCHANT, kiosk) if kiosk else topics.config_desired(MERCHANT)
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    assert bus.publish(topic, data, qos=1, retain=True).wait(5)


def last_state(watcher: Watcher, kiosk: str) -> KioskState | None:
    states = [m for m in watcher.drain() if m.topic == topics.state(MERCHANT, kiosk)]
    return decode(KioskState, states[-1].payload) if states else None


def next_report(watcher: Watcher, kiosk: str, seen: int, check=lambda r: True) -> dict:
    """The first report of *kiosk* after the *seen* first ones that passes *check*."""
    found: list[dict] = []

    def arrived() -> bool:
        found[:] = [r for r in reports(watcher.drain(), kiosk)[seen:] if check(r)]
        return bool(found)
    wait_until(arrived, WAIT, f"a config report from {kiosk}")
    return found[0]


def test_config_pushed_to_two_kiosks_is_applied_and_reported_by_both(tmp_path, hub, bus_factory, admin, clock):
    watcher = bus_factory.watcher(REPORTED, STATES)
    kiosks = [LiveKiosk(tmp_path, hub, k, bus_factory, clock).start() for k in ("counter-1", "counter-2")]
    anna = hub.issue("Anna")
    try:
        documents.publish(admin, documents.prepare(hub.engine, hub.data_dir, MERCHANT, CAFE))
        for k in kiosks:
            report = next_report(watcher, k.id, 0, lambda r: r["version"] == 1)
            assert (report["status"], report["errors"], report["restart_required"]) == ("applied", [], False)
            wait_until(lambda k=k: k.kiosk.program.name == "Cafe Rosa", WAIT, f"{k.id} to run the pushed programme")
            wait_until(lambda k=k: (last_state(watcher, k.id) or KioskState(status="lost", boot_id="-"))
                       .applied_config.get("merchant") == 1, WAIT, f"{k.id}'s state to name config v1")
        first = kiosks[0].scan(anna.url)
        assert (first.outcome, first.balance) == ("stamped", 2)  # the café's signup bonus: the new programme

        # counter-2 alone gets its own programme and a hardware setting (which needs a restart)
        seen = len(reports(watcher.drain(), "counter-2"))
        push(admin, hub_doc(hub, 1, SALON, kiosk="counter-2", hardware={"led_pin": 5}), kiosk="counter-2")
        report = next_report(watcher, "counter-2", seen, lambda r: r["kiosk_config"] is not None)
        assert report["kiosk_config"]["version"] == 1 and report["kiosk_config"]["status"] == "applied"
        assert report["restart_required"] and report["version"] == 1 and report["applied"] == {"merchant": 1,
                                                                                                 "kiosk": 1}
        wait_until(lambda: kiosks[1].kiosk.program.name == SALON.name, WAIT, "counter-2 to run its own programme")
        assert kiosks[0].kiosk.program.name == "Cafe Rosa"
    finally:
        for k in kiosks:
            k.stop()
        watcher.stop()


def _tampered(hub) -> dict:
    doc = hub_doc(hub, 2)
    doc["program"] = {**doc["program"], "name": "Free Coffee For All"}
    return doc


HOSTILE = [
    ("bad JSON", lambda hub: b"{not json", "not JSON"),
    ("wrong schema", lambda hub: hub_doc(hub, 2, schema="stempel.config/9"), "schema"),
    ("invalid value", lambda hub: hub_doc(hub, 2, {**CAFE.model_dump(mode="json"),
                                                    "rewards": [{"id": "x", "name": "X", "cost": -1}]}),
     "[rewards.0.cost]"),
    ("unsigned", lambda hub: {k: v for k, v in hub_doc(hub, 2).items() if k != "signature"}, "not signed"),
    ("signed by another key", lambda hub: hub_doc(hub, 2, key=Ed25519PrivateKey.generate()), "does not trust"),
    ("altered after signing", _tampered, "altered or forged"),
    ("1 MB", lambda hub: b"x" * (1024 * 1024), "the limit is"),
    ("kiosk document on the merchant topic", lambda hub: hub_doc(hub, 2, kiosk="counter-1"), "merchant-wide topic"),
]


def test_hostile_config_is_rejected_with_the_reason_while_the_kiosk_keeps_scanning(tmp_path, hub, bus_factory,
                                                                                     admin, clock):
    """The broker (Mosquitto's default message_size_limit is unlimited) delivers even the 1 MB
    payload; the kiosk's own limit refuses it."""
    watcher = bus_factory.watcher(REPORTED, STATES)
    kiosk = LiveKiosk(tmp_path, hub, "counter-1", bus_factory, clock).start()
    anna = hub.issue("Anna")
    v1 = hub_doc(hub, 1)
    try:
        push(admin, v1)
        next_report(watcher, kiosk.id, 0, lambda r: r["version"] == 1)
        wait_until(lambda: kiosk.kiosk.program.name == "Cafe Rosa", WAIT, "the programme to apply")
        assert kiosk.scan(anna.url).balance == 2
        for n, (name, make, reason) in enumerate(HOSTILE, start=1):
            seen = len(reports(watcher.drain(), kiosk.id))
            push(admin, make(hub))
            report = next_report(watcher, kiosk.id, seen)
            assert report["status"] == "rejected" and any(reason in e for e in report["errors"]), (name, report)
            result = kiosk.scan(anna.url)  # still scanning, under the café programme
            assert result.outcome in ("stamped", "reward_ready"), name
            assert (result.balance, kiosk.kiosk.program.name) == (2 + n, "Cafe Rosa"), name
        wait_until(lambda: "rejected" in ((last_state(watcher, kiosk.id) or KioskState(status="lost", boot_id="-"))
                                          .last_error or ""), WAIT, "the state to carry the last refusal")

        # an older version is ignored but re-reported with the version in force
        push(admin, hub_doc(hub, 3, {**CAFE.model_dump(mode="json"), "name": "Cafe Rosa 3"}))
        wait_until(lambda: kiosk.kiosk.program.name == "Cafe Rosa 3", WAIT, "v3 to apply")
        seen = len(reports(watcher.drain(), kiosk.id))
        push(admin, v1)
        report = next_report(watcher, kiosk.id, seen)
        assert (report["version"], report["status"]) == (3, "applied")
        assert kiosk.scan(anna.url).balance == 3 + len(HOSTILE) and kiosk.kiosk.program.name == "Cafe Rosa 3"
    finally:
        kiosk.stop()
        watcher.stop()


@pytest.mark.slow
def test_applied_config_survives_a_restart_and_a_broker_that_forgot_it(tmp_path, hub, broker, mqtt_admin, clock):
    admin = mqtt_admin
    watcher = Watcher(broker.port, REPORTED)
    kiosk = LiveKiosk(tmp_path, hub, "counter-1", broker.port, clock).start()
    try:
        push(admin, hub_doc(hub, 4))
        push(admin, hub_doc(hub, 2, SALON, kiosk="counter-1", hardware={"led_pin": 5}), kiosk="counter-1")
        next_report(watcher, kiosk.id, 0, lambda r: r["version"] == 4 and (r["kiosk_config"] or {}).get("version") == 2)
    finally:
        kiosk.stop()
        watcher.stop()
    broker.restart()  # no persistence: every retained document and report is gone
    watcher = Watcher(broker.port, REPORTED)
    again = LiveKiosk(tmp_path, hub, "counter-1", broker.port, clock)
    assert effective_config(again.config).hardware.led_pin == 5
    again.start()
    try:
        assert again.kiosk.program.name == SALON.name  # in force from the first frame, before any message
        report = next_report(watcher, again.id, 0)  # reported again on connect
        assert (report["version"], report["kiosk_config"]["version"], report["restart_required"]) == (4, 2, False)
    finally:
        again.stop()
        watcher.stop()


@pytest.mark.slow
def test_a_stale_retained_config_after_a_broker_restart_is_ignored_but_re_reported(tmp_path, hub, clock):
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    admin = MqttBus(BusSettings(host="127.0.0.1", port=broker.port, client_id="hub-admin", reconnect_min=0.2,
                                reconnect_max=1.0))
    admin.start()
    admin.wait_connected(5)
    kiosk = watcher = None
    try:
        push(admin, hub_doc(hub, 1))
        broker.stop()  # a clean stop saves the retained v1 ...
        shutil.copy(tmp_path / "broker" / "mosquitto.db", tmp_path / "old.db")  # ... which a backup keeps
        broker.start()
        admin.wait_connected(10)
        push(admin, hub_doc(hub, 2, {**CAFE.model_dump(mode="json"), "name": "Cafe Rosa 2"}))
        kiosk = LiveKiosk(tmp_path, hub, "counter-1", broker.port, clock).start()
        wait_until(lambda: kiosk.kiosk.program.name == "Cafe Rosa 2", WAIT, "v2 to apply")
        broker.kill()
        shutil.copy(tmp_path / "old.db", tmp_path / "broker" / "mosquitto.db")  # the broker comes back with v1
        broker.start()
        watcher = Watcher(broker.port, REPORTED)
        report = next_report(watcher, kiosk.id, 0, lambda r: r["version"] == 2)
        assert report["status"] == "applied"
        wait_until(lambda: kiosk.link.documents.version("merchant") == 2 and kiosk.status.applied()
                   .get("merchant") == 2, WAIT, "the kiosk to stay on v2")
        assert kiosk.kiosk.program.name == "Cafe Rosa 2"
    finally:
        for thing in (kiosk, watcher):
            if thing is not None:
                thing.stop()
        admin.stop()
        broker.stop()


def test_keys_rotation_and_revocation_over_mqtt(tmp_path, hub, bus_factory, admin, clock):
    watcher = bus_factory.watcher(STATES)
    kiosk = LiveKiosk(tmp_path, hub, "counter-1", bus_factory, clock).start()
    anna, bob = hub.issue("Anna"), hub.issue("Bob")
    new_key = hub.keys.create(MERCHANT)  # the rotation: a second key; passes are signed with it from now on
    with Session(hub.engine) as session, session.begin():
        entry = public_key_entry(MERCHANT, new_key.public_key())
        session.execute(update(SigningKey).values(active=False))
        session.add(SigningKey(kid=entry.kid, merchant_id=MERCHANT, public_key=entry.public_key))
    carl = hub.issue("Carl")
    try:
        assert kiosk.scan(carl.url).reason == "unknown_key"
        assert kiosk.scan(bob.url).outcome == "stamped"
        with Session(hub.engine) as session, session.begin():  # keep the old key valid; revoke Bob
            session.execute(update(SigningKey).values(active=True))
        revoke_member(hub.engine, MERCHANT, bob.member)
        publish_keys(admin, build_keys_document(hub.engine, hub.data_dir, MERCHANT))
        wait_until(lambda: bob.serial in kiosk.kiosk.verifier.keyring.revoked_serials, WAIT, "the new keys")
        assert kiosk.scan(carl.url).outcome == "stamped"
        assert kiosk.scan(anna.url).outcome == "stamped"
        assert kiosk.scan(bob.url).reason == "revoked"
        assert json.loads((kiosk.data / "keys.json").read_text())["version"] == 1

        # forged, unsigned and foreign documents change nothing and show up as the last error
        good = build_keys_document(hub.engine, hub.data_dir, MERCHANT)
        init_merchant(hub.engine, hub.keys, "other-shop", "Other", "https://stempel.example")
        hostile = [
            ({k: v for k, v in good.items() if k != "signature"}, "not signed by the hub"),
            (signed.sign({**good, "revoked_passes": []}, Ed25519PrivateKey.generate()), "does not trust"),
            (build_keys_document(hub.engine, hub.data_dir, "other-shop"), "for merchant 'other-shop'"),
        ]
        for doc, reason in hostile:
            assert admin.publish(topics.keys(MERCHANT), json.dumps(doc).encode(), qos=1, retain=True).wait(5)
            wait_until(lambda: reason in (kiosk.status.last_error() or ""), WAIT, f"keys refused: {reason}")
        assert kiosk.scan(bob.url).reason == "revoked" and kiosk.scan(carl.url).outcome == "stamped"
        assert json.loads((kiosk.data / "keys.json").read_text())["version"] == 1
        wait_until(lambda: (last_state(watcher, kiosk.id) or KioskState(status="lost", boot_id="-"))
                   .applied_config.get("keys") == 1, WAIT, "the state to name keys v1")
    finally:
        kiosk.stop()
        watcher.stop()
