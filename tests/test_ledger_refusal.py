"""A kiosk that receives a ledger entry it cannot apply refuses it and keeps scanning (issue 7, item 3).

The attack: a compromised hub or broker publishes on the merchant's ``ledger`` topic an entry
whose detail the fold cannot read (``{"amount": "abc"}`` made every other kiosk's scan path
crash), next to valid ones and alone. What must hold: the kiosk refuses exactly those entries
(logged, kept in ``hub_refused``, reported in its ``state``), applies the rest, moves its
cursor past them, and goes on stamping every member.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fleetrig import WAIT, LiveKiosk
from mosquitto import Mosquitto
from mqtt_peer import Peer
from syncrig import MERCHANT, T0, Watcher, wait_until

from kiosk.protocol import topics
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import KioskState, decode

pytestmark = pytest.mark.slow  # a Mosquitto


def entry(hub_seq: int, member: str, kind: str = "earn", delta: int = 1, detail: dict | None = None) -> dict:
    return {"event_id": new_event_id(), "kiosk_seq": hub_seq, "occurred_at": (T0 - timedelta(days=1)).isoformat(),
            "mono_ns": 1, "boot_id": "b2", "kind": kind, "member": member, "delta": delta, "rule": "visit",
            "detail": {"cause": f"c{hub_seq}"} if detail is None else detail, "kiosk": "counter-2",
            "hub_seq": hub_seq}


def ledger(*entries: dict) -> bytes:
    return json.dumps({"schema": "stempel.ledger.v1", "entries": list(entries)}).encode()


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


def test_a_relayed_entry_the_kiosk_cannot_apply_is_refused_and_scanning_goes_on(tmp_path, hub, broker, clock):
    anna, ben = hub.issue("Anna"), hub.issue("Ben")
    kiosk = LiveKiosk(tmp_path, hub, "counter-1", broker.port, clock).start()
    states = Watcher(broker.port, topics.state(MERCHANT, "counter-1"))
    forger = Peer(broker.port, None, None, client_id="stempel-hub-admin")
    try:
        assert forger.connect() is not None and forger.accepted
        wait_until(lambda: kiosk.sender.bus.connected, WAIT, "the kiosk to connect")
        poison = entry(1, anna.member, kind="visit", delta=0, detail={"amount": "abc"})
        assert not forger.publish(topics.ledger(MERCHANT), ledger(poison, entry(2, ben.member))).is_failure
        assert not forger.publish(topics.ledger(MERCHANT), ledger(entry(3, ben.member, detail={"to": 5}))).is_failure
        assert not forger.publish(topics.ledger(MERCHANT), ledger(entry(4, anna.member))).is_failure
        wait_until(lambda: kiosk.cursor() == 4, WAIT, "the kiosk to pass the refused entries")

        refused = kiosk.read(lambda lg: lg.hub_refused())
        assert [seq for seq, _ in refused] == [1, 3]
        assert "not a decimal" in refused[0][1] and "to" in refused[1][1]
        assert kiosk.foreign() == 2  # entries 2 and 4 applied
        first = kiosk.scan(anna.url)  # the scan that crashed before: anna's history holds the poison
        assert (first.outcome, first.balance) == ("stamped", 2)
        assert kiosk.scan(ben.url).balance == 2
        assert kiosk.scan(anna.url).balance == 3

        def refusal_reported() -> bool:
            seen = [decode(KioskState, m.payload) for m in states.drain()]
            return any("refused hub_seq" in (s.last_error or "") for s in seen)
        kiosk.sender.request_state()
        wait_until(refusal_reported, WAIT, "the kiosk's state to report the refusal")
    finally:
        forger.close()
        states.stop()
        kiosk.stop()
