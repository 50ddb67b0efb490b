"""The ledger outbox: accepted events waiting to go out on each merchant's ``ledger`` topic.

Rows are written in the ingest transaction (so a crash between commit and publish loses
nothing), leased to one worker at a time, and marked published after the broker's PUBACK.
A stored event that fails today's schema is marked published and never sent: the hub
relays only what every kiosk can apply.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, DateTime, String, insert, or_, select, update
from sqlalchemy.engine import Row

from cloud.events.sql import Dialect
from cloud.models import HubEvent, LedgerOutbox
from kiosk.protocol.event import from_hub, wire_fields
from kiosk.protocol.messages import LedgerBatch, LedgerEntry, WireEvent

log = logging.getLogger(__name__)

EVENTS, OUTBOX = HubEvent.__table__, LedgerOutbox.__table__


@dataclass(frozen=True)
class OutboxBatch:
    """Outbox rows of one merchant, leased to one worker, ready to publish on its ``ledger`` topic."""

    merchant: str
    ids: list[int]
    batch: LedgerBatch = field(repr=False)


def add(conn: Connection, sql: Dialect, merchant: str, after: int, through: int, lease_to: str | None,
        lease: float, now: datetime) -> list[int]:
    """One outbox row per event numbered ``after+1..through`` (this transaction's, under the
    merchant's lock), leased to *lease_to* if given; the new outbox ids."""
    until = now + timedelta(seconds=lease) if lease_to is not None else None
    rows = (select(HubEvent.id, HubEvent.merchant_id, sql.value(now, DateTime(timezone=True)),
                   sql.value(lease_to, String(80)), sql.value(until, DateTime(timezone=True)))
            .where(HubEvent.merchant_id == merchant, HubEvent.hub_seq > after, HubEvent.hub_seq <= through))
    statement = (insert(OUTBOX).from_select(["event_pk", "merchant_id", "created_at", "claimed_by",
                                             "claimed_until"], rows, include_defaults=False)
                 .returning(LedgerOutbox.id))
    return list(conn.scalars(statement))


def claim(conn: Connection, sql: Dialect, worker: str, limit: int, lease: float, own: bool,
          now: datetime) -> list[OutboxBatch]:
    """Lease unpublished rows to *worker*: never leased, lease run out, or (with *own*) leased
    to *worker* already, by an earlier run of it; grouped per merchant in ``hub_seq`` order."""
    free = [LedgerOutbox.claimed_until.is_(None), LedgerOutbox.claimed_until < now]
    if own:
        free.append(LedgerOutbox.claimed_by == worker)
    due = (select(LedgerOutbox.id).where(LedgerOutbox.published_at.is_(None), or_(*free))
           .order_by(LedgerOutbox.id).limit(limit))
    if sql.pg:
        due = due.with_for_update(skip_locked=True)
    claimed = dict(conn.execute(
        update(LedgerOutbox).where(LedgerOutbox.id.in_(due.scalar_subquery()))
        .values(claimed_by=worker, claimed_until=now + timedelta(seconds=lease))
        .returning(LedgerOutbox.event_pk, LedgerOutbox.id)).all())
    if not claimed:
        return []
    rows = conn.execute(select(EVENTS).where(sql.among(HubEvent.id, list(claimed)))
                        .order_by(HubEvent.merchant_id, HubEvent.hub_seq))
    grouped: dict[str, tuple[list[int], list[LedgerEntry]]] = {}
    for ev in rows:
        ids, entries = grouped.setdefault(ev.merchant_id, ([], []))
        ids.append(claimed[ev.id])  # one that fails the schema is marked published, never sent
        entry = relayable(ev)
        if entry is not None:
            entries.append(entry)
    return [OutboxBatch(m, ids, LedgerBatch(entries=entries)) for m, (ids, entries) in grouped.items() if entries]


def mark(conn: Connection, sql: Dialect, ids: Sequence[int], now: datetime) -> None:
    """Mark outbox rows published (their batch was PUBACKed)."""
    conn.execute(update(LedgerOutbox).where(sql.among(LedgerOutbox.id, list(ids)))
                 .values(published_at=now, claimed_until=None))


def relayable(ev: HubEvent | Row) -> LedgerEntry | None:
    """The ``ledger`` entry of a stored event, or None (logged) if it fails today's schema: the
    hub relays only what every kiosk can apply (a row stored before the schema was closed)."""
    try:
        return ledger_entry(ev)
    except ValueError as exc:  # pydantic's ValidationError
        log.error("relay.event_refused", extra={"merchant": ev.merchant_id, "hub_seq": ev.hub_seq,
                                                "error": str(exc)[:300]})
        return None


def fresh_entry(e: WireEvent, kiosk: str, hub_seq: int) -> LedgerEntry:
    """The ``ledger`` entry of an event just accepted, as ``ledger_entry`` would read it back."""
    # *e* passed the schema at decode: built, not validated a second time (it is the hot path)
    return LedgerEntry.model_construct(**{**e.__dict__, "occurred_at": e.occurred_at.astimezone(timezone.utc),
                                          "kiosk": kiosk, "hub_seq": hub_seq})


def ledger_entry(ev: HubEvent | Row) -> LedgerEntry:
    """The ``ledger`` entry of a stored event (an ORM object or a row of ``hub_events``)."""
    return LedgerEntry(**wire_fields(from_hub(ev)), kiosk=ev.kiosk_id, hub_seq=ev.hub_seq)
