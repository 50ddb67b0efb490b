"""Wire payloads: what a peer may send, what is refused and why."""

import json
from datetime import datetime, timezone

import pytest

from kiosk.common.errors import MessageError
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import EventBatch, EventsAck, KioskState, LedgerBatch, WireEvent, decode, encode

AT = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def event(seq: int = 1, **changes) -> dict:
    doc = {"event_id": new_event_id(), "kiosk_seq": seq, "occurred_at": AT.isoformat(), "mono_ns": 5,
           "boot_id": "b1", "kind": "earn", "member": "m-1", "delta": 1, "rule": "visit",
           "reward": None, "reason": None, "detail": {"cause": "visit"}}
    return doc | changes


def batch(*events: dict, **extra) -> bytes:
    return json.dumps({"schema": "stempel.events.v1", "events": list(events)} | extra).encode()


def test_a_batch_round_trips_with_the_schema_field_on_the_wire():
    original = EventBatch(events=[WireEvent.model_validate(event(1)), WireEvent.model_validate(event(2))])
    wire = encode(original)
    assert json.loads(wire)["schema"] == "stempel.events.v1"
    assert decode(EventBatch, wire) == original


def test_unknown_fields_are_ignored_so_newer_peers_can_add_some():
    got = decode(EventBatch, batch(event(1, colour="red"), merchant="someone-else"))
    assert got.events[0].kiosk_seq == 1
    assert not hasattr(got, "merchant")


@pytest.mark.parametrize("payload, reason", [
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"schema": "stempel.events.v2", "events": []}).encode(), "schema"),
    (batch(), "events"),
    (batch(event(0)), "kiosk_seq"),
    (batch(event(1, member="Not Valid")), "member"),
    (batch(event(1, occurred_at="2026-03-02T09:00:00")), "occurred_at"),  # no time zone
    (batch(event(1, event_id="42")), "event_id"),
    (batch(event(1, kind="DROP TABLE")), "kind"),
])
def test_invalid_payloads_raise_message_error_naming_the_problem(payload, reason):
    with pytest.raises(MessageError, match=reason):
        decode(EventBatch, payload)


def test_ack_state_and_ledger_messages():
    assert decode(EventsAck, encode(EventsAck(acked_through_seq=7))).acked_through_seq == 7
    lost = decode(KioskState, b'{"schema": "stempel.kiosk-state.v1", "status": "lost", "boot_id": "b1"}')
    assert (lost.status, lost.outbox_depth, lost.applied_config) == ("lost", None, {})
    entry = event(3) | {"kiosk": "counter-1", "hub_seq": 12}
    ledger = decode(LedgerBatch, json.dumps({"schema": "stempel.ledger.v1", "entries": [entry]}))
    assert (ledger.entries[0].hub_seq, ledger.entries[0].kiosk) == (12, "counter-1")
    with pytest.raises(MessageError, match="schema"):
        decode(EventsAck, encode(KioskState(status="online", boot_id="b1")))
