"""The ledger event, defined once, and its explicit mappers to every place it is kept.

One event travels: the kiosk's ``events`` table → the wire (``WireEvent`` in a batch) → the
hub's ``hub_events`` → the ``ledger`` stream (``LedgerEntry``) → the other kiosks'
``hub_events``. ``FIELDS`` lists what every copy carries, in one order; each mapper below
goes through it, so a new field is added here and then only where its storage needs it (a
column, a migration). tests/test_event_type.py fails when a copy lacks a field or has one
more.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any

from kiosk.rules.state import Entry


@dataclass(frozen=True)
class Event:
    """A committed ledger event. ``kiosk_seq`` numbers it within the ledger of the kiosk that
    made it; ``event_id`` (UUIDv7) names it everywhere."""

    kiosk_seq: int
    event_id: str
    kind: str
    member: str | None
    delta: int
    rule: str | None
    reward: str | None
    reason: str | None
    detail: dict
    occurred_at: datetime
    mono_ns: int
    boot_id: str

    def order(self) -> tuple[datetime, str]:
        """Where this event sits in a member's history on every kiosk of the merchant."""
        return self.occurred_at, self.event_id


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Event))
"""Every field of an event, in the order of ``Event`` (and of the kiosk's SQLite columns)."""

# -- the kiosk's SQLite tables (``events`` and ``hub_events``) -----------------------------------
SQLITE_TYPES: Mapping[str, str] = {
    "kiosk_seq": "INTEGER NOT NULL", "event_id": "TEXT NOT NULL UNIQUE", "kind": "TEXT NOT NULL",
    "member": "TEXT", "delta": "INTEGER NOT NULL DEFAULT 0", "rule": "TEXT", "reward": "TEXT", "reason": "TEXT",
    "detail": "TEXT", "occurred_at": "TEXT NOT NULL", "mono_ns": "INTEGER NOT NULL", "boot_id": "TEXT NOT NULL",
}
CONTENT: tuple[str, ...] = FIELDS[2:]
"""What an event says (everything but its two names), as the kiosk inserts it."""


def sqlite_values(event: Event) -> tuple:
    """The ``CONTENT`` columns of *event* as SQLite stores them (JSON detail, ISO time)."""
    return tuple(_to_sqlite(name, getattr(event, name)) for name in CONTENT)


def from_sqlite(row: tuple) -> Event:
    """An event from the ``FIELDS`` columns of a kiosk table, in that order."""
    values = dict(zip(FIELDS, row, strict=True))
    values["detail"] = json.loads(values["detail"] or "{}")
    values["occurred_at"] = datetime.fromisoformat(values["occurred_at"])
    return Event(**values)


def _to_sqlite(name: str, value: Any) -> Any:
    if name == "detail":
        return json.dumps(value)
    if name == "occurred_at":
        return value.isoformat()
    return value


# -- the wire (``WireEvent``, ``LedgerEntry``) --------------------------------------------------
def wire_fields(event: Event) -> dict[str, Any]:
    """The keyword arguments of ``WireEvent`` for *event* (the wire validates them)."""
    return {name: getattr(event, name) for name in FIELDS}


def from_wire(wire: Any) -> Event:
    """An event from a ``WireEvent`` or ``LedgerEntry`` (anything with the ``FIELDS`` attributes)."""
    return Event(**{name: getattr(wire, name) for name in FIELDS})


# -- the hub's ``hub_events`` table -----------------------------------------------------------
HUB_COLUMNS: Mapping[str, str] = {name: name for name in FIELDS} | {"member": "member_id"}
"""Event field → ``hub_events`` column (the hub names foreign keys ``*_id``)."""


def hub_values(event: Event) -> dict[str, Any]:
    """The ``hub_events`` columns of *event* (its place — merchant, kiosk, ledger, hub_seq — apart)."""
    values = {column: getattr(event, name) for name, column in HUB_COLUMNS.items()}
    values["occurred_at"] = event.occurred_at.astimezone(timezone.utc)
    return values


def from_hub(row: Any) -> Event:
    """An event from a ``hub_events`` row or ORM object (SQLite gives its times back naive, UTC)."""
    values = {name: getattr(row, column) for name, column in HUB_COLUMNS.items()}
    at = values["occurred_at"]
    values["occurred_at"] = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    values["detail"] = values["detail"] or {}
    return Event(**values)


# -- the rules engine --------------------------------------------------------------------------
def engine_entry(event: Event) -> Entry:
    """The engine's view of a stored event (kiosk or hub): what ``kiosk.rules.fold`` takes."""
    detail = {k: v for k, v in event.detail.items() if k != "cause"}
    return Entry(event.kind, event.member or "", event.delta, event.rule or "", event.detail.get("cause", ""),
                 event.reward, detail)
