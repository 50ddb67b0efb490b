"""The event schema both ends apply: everything the engine writes passes, poison does not, and a
full batch at every bound still fits the payload limit."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kiosk.common.errors import MessageError
from kiosk.ledger import SCAN_REJECTED as LEDGER_SCAN_REJECTED
from kiosk.protocol.event_schema import (DETAILS, KINDS, SCAN_REJECTED, ClockWindow, check_detail, check_time,
                                         printable)
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import (MAX_BATCH, MAX_PAYLOAD_BYTES, EventBatch, LedgerBatch, LedgerEntry, WireEvent,
                                     decode, decode_items, encode)
from kiosk.rules import load_program
from kiosk.rules.simulate import parse_visits, simulate
from kiosk.rules.state import KINDS as ENGINE_KINDS

AT = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
VISITS = """member,time,amount,birthday,referred_by,redeem
anna,2026-03-02T09:00:00+01:00,12.90,1990-03-04,,
ben,2026-03-03T10:00:00+01:00,250,,anna,
anna,2026-03-04T09:00:00+01:00,80,,,
ben,2026-03-09T10:00:00+01:00,500,,,
anna,2026-03-10T09:00:00+01:00,99.99,,,
ben,2026-04-09T10:00:00+01:00,30,,,
anna,2026-06-10T09:00:00+01:00,40,,,
ben,2027-09-09T10:00:00+01:00,30,,,
"""


def event(**changes) -> dict:
    doc = {"event_id": new_event_id(), "kiosk_seq": 1, "occurred_at": AT.isoformat(), "mono_ns": 5, "boot_id": "b1",
           "kind": "visit", "member": "m-1", "delta": 0, "rule": "visit", "detail": {"amount": "12.90"}}
    return doc | changes


def test_the_kinds_are_the_engines_and_the_ledgers():
    assert set(KINDS) == set(ENGINE_KINDS) | {LEDGER_SCAN_REJECTED} == set(DETAILS)
    assert SCAN_REJECTED == LEDGER_SCAN_REJECTED


@pytest.mark.parametrize("example", ["cafe.toml", "boutique.toml", "salon.toml"])
def test_every_entry_the_engine_writes_passes_the_schema(example):
    program = load_program(EXAMPLES / example)
    run = simulate(program, parse_visits(VISITS, program))
    assert len(run.ledger) > 8
    for row in run.ledger:  # the ledger adds the cause (the visit's id) to each detail
        WireEvent.model_validate(event(kind=row["kind"], member=row["member"], delta=row["delta"], rule=row["rule"],
                                       reward=row["reward"], detail={**row["detail"], "cause": new_event_id()}))


def test_a_scan_rejected_event_as_the_kiosk_writes_it_passes_even_for_a_nul_code():
    shown = b"\x00\x01evil\xff\x9b" * 10
    preview = printable(shown[:48].decode("latin-1"))
    detail = {"detail": "the code is not a Stempel pass", "codes": 1, "preview": preview}
    WireEvent.model_validate(event(kind=SCAN_REJECTED, member=None, rule=None, reason="not_a_pass", detail=detail))


@pytest.mark.parametrize("changes, reason", [
    ({"boot_id": "b\x00"}, "boot_id"),
    ({"rule": "visit\x00"}, "rule"),
    ({"reward": "\ud800"}, "reward"),
    ({"kiosk_seq": 2**70}, "kiosk_seq"),
    ({"mono_ns": 2**63}, "mono_ns"),
    ({"delta": 2**31}, "delta"),
    ({"member": "anna\n"}, "member"),
    ({"kind": "stamp_awarded"}, "unknown kind"),
    ({"occurred_at": "0001-01-01T00:00:00+01:00"}, "between 1900 and 9000"),
    ({"detail": {"amount": "abc"}}, "not a decimal"),
    ({"detail": {"amount": "NaN"}}, "finite"),
    ({"detail": {"amount": 12}}, "string"),
    ({"detail": {"boot": "b1"}}, "boot and mono"),
    ({"detail": {"colour": "red"}}, "colour"),
    ({"detail": {"amount": {"a": [1, {"b": 2}]}}}, "amount"),
    ({"detail": {"cause": "x" * 2000}}, "bytes"),
    ({"kind": "tier_change", "detail": {"to": 5}}, "to"),
    ({"kind": "bonus", "rule": "birthday-bonus", "detail": {}}, "occurrence"),
    ({"kind": "bonus", "detail": {"occurrence": "1990-02-30"}}, "occurrence"),
    ({"kind": "expire", "detail": {"months": True}}, "months"),
])
def test_poison_is_refused_naming_the_field(changes, reason):
    with pytest.raises(MessageError, match=reason):
        decode(EventBatch, json.dumps({"schema": "stempel.events.v1", "events": [event(**changes)]}))


@pytest.mark.parametrize("payload, reason", [
    (b'{"schema": "stempel.events.v1", "events": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", "nested"),
    (b'{"schema": "stempel.events.v1", "n": ' + b"9" * 5000 + b"}", "not JSON"),
    (b"x" * (MAX_PAYLOAD_BYTES + 1), "over the limit"),
])
def test_hostile_json_is_a_message_error_not_a_crash(payload, reason):
    with pytest.raises(MessageError, match=reason):
        decode(EventBatch, payload)


def test_one_bad_item_is_refused_alone_and_a_batch_of_only_bad_ones_as_a_whole():
    good, bad = event(kiosk_seq=1), event(kiosk_seq=2, detail={"amount": "abc"})
    batch, refused = decode_items(EventBatch, json.dumps({"schema": "stempel.events.v1", "events": [good, bad]}),
                                  "events")
    assert [e.kiosk_seq for e in batch.events] == [1]
    assert [(r.index, r.item["kiosk_seq"]) for r in refused] == [(1, 2)] and "[events.1]" in refused[0].reason
    with pytest.raises(MessageError, match=r"\[events.0\].*not a decimal"):
        decode_items(EventBatch, json.dumps({"schema": "stempel.events.v1", "events": [bad]}), "events")


@pytest.mark.parametrize("at, ok", [
    (AT + timedelta(minutes=4), True), (AT - timedelta(days=3649), True),
    (AT + timedelta(minutes=6), False), (datetime(2099, 1, 1, tzinfo=timezone.utc), False),
    (AT - timedelta(days=3651), False), (datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=23))), False),
])
def test_the_clock_window_bounds_the_future_tightly_and_the_past_loosely(at, ok):
    if ok:
        check_time(at, AT, ClockWindow())
    else:
        with pytest.raises(ValueError, match="hub's clock|out of range"):
            check_time(at, AT, ClockWindow())


def test_a_full_batch_with_every_field_at_its_bound_fits_the_payload_limit():
    wide = "\U0001F600"  # four bytes of UTF-8 per character
    detail = {"from": '"' * 64, "to": wide * 20, "reason": '"' * 200, "cause": "c" * 64}
    check_detail("tier_change", None, detail)
    entry = LedgerEntry(event_id=new_event_id(), kiosk_seq=2**63 - 1, occurred_at=AT, mono_ns=2**63 - 1,
                        boot_id=wide * 64, kind="tier_change", member="m" * 32, delta=-1_000_000, rule=wide * 64,
                        reward=wide * 64, reason=wide * 64, detail=detail, kiosk="k" * 32, hub_seq=2**63 - 1)
    payload = encode(LedgerBatch(entries=[entry] * MAX_BATCH))
    assert len(payload) <= MAX_PAYLOAD_BYTES
    assert decode(LedgerBatch, payload).entries[0] == entry
