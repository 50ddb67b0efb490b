"""One event type from ledger to hub (issue 8 item 5): every copy of an event carries exactly
``kiosk.protocol.event.FIELDS``, and each mapper gives back the event it was given."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from cloud.events.outbox import ledger_entry
from cloud.models import HubEvent
from kiosk.ledger import Ledger
from kiosk.link.events import to_wire
from kiosk.protocol.event import FIELDS, HUB_COLUMNS, Event, from_hub, from_sqlite, from_wire, hub_values
from kiosk.protocol.messages import LedgerEntry, WireEvent
from kiosk.rules import Entry

AT = datetime(2026, 3, 2, 9, 0, 30, 123456, tzinfo=timezone(timedelta(hours=1)))
EVENT = Event(7, "0190f1e2-7b1c-7abc-8def-0123456789ab", "earn", "m-anna", 3, "visit", None, None,
              {"cause": "visit", "amount": "12.50"}, AT, 123_456_789, "boot-1")


def columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def test_every_copy_carries_exactly_the_event_fields(tmp_path):
    assert set(WireEvent.model_fields) == set(FIELDS)
    assert set(LedgerEntry.model_fields) == set(FIELDS) | {"kiosk", "hub_seq"}
    hub_columns = set(HubEvent.__table__.columns.keys())
    assert set(HUB_COLUMNS.values()) <= hub_columns
    assert hub_columns - set(HUB_COLUMNS.values()) == {"id", "merchant_id", "kiosk_id", "ledger_id", "hub_seq",
                                                        "received_at"}  # where it is, not what it says
    Ledger(tmp_path / "l.sqlite3").close()
    with sqlite3.connect(tmp_path / "l.sqlite3") as db:
        assert columns(db, "events") == list(FIELDS)
        assert columns(db, "hub_events") == ["hub_seq", "event_id", "kiosk", "kiosk_seq", *FIELDS[2:]]


def test_each_mapper_gives_back_the_event():
    assert from_wire(to_wire(EVENT)) == EVENT
    row = HubEvent(**hub_values(EVENT), merchant_id="cafe-rosa", kiosk_id="k1", ledger_id="", hub_seq=5)
    assert from_hub(row) == replace(EVENT, occurred_at=AT.astimezone(timezone.utc))
    naive = HubEvent(**{**hub_values(EVENT), "occurred_at": AT.astimezone(timezone.utc).replace(tzinfo=None)},
                     merchant_id="cafe-rosa", kiosk_id="k1", hub_seq=5)  # as SQLite reads it back
    assert from_hub(naive).occurred_at == AT
    entry = ledger_entry(row)
    assert (entry.kiosk, entry.hub_seq) == ("k1", 5) and from_wire(entry) == from_hub(row)


def test_the_kiosk_ledger_stores_and_reads_back_own_and_foreign_events(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    try:
        [own] = ledger.append([Entry("earn", "m-anna", 3, "visit", "visit", None, {"amount": "12.50"})],
                              AT, 123.456789, "boot-1")
        assert ledger.events() == [own] and from_sqlite(
            sqlite3.connect(tmp_path / "l.sqlite3").execute("SELECT * FROM events").fetchone()) == own
        foreign = LedgerEntry(**to_wire(replace(EVENT, event_id="0190f1e2-7b1c-7abc-8def-0123456789ac")).__dict__,
                              kiosk="k2", hub_seq=1)
        ledger.apply_hub_entries([foreign], own_kiosk="k1")
        assert ledger.foreign_events() == [from_wire(foreign)]
    finally:
        ledger.close()
