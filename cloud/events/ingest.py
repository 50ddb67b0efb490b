"""The ingest transaction: one kiosk ``events`` message in, classified, stored, acked.

Before the database: the batch is decoded against the shared schema (kiosk/protocol/
event_schema.py) and each event checked against the hub's clock window; one that fails is
refused on its own and the rest of its batch goes on. In the transaction: the merchant's
``ledger_streams`` row is locked (``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite every
write transaction is ``BEGIN IMMEDIATE``), so ``hub_seq`` stays gapless in commit order and
the kiosk's ack is never computed from a stale view; then the events are classified (new,
already stored, or clashing with what is stored), inserted with one ``executemany``, added to
the ledger outbox, refusals dead-lettered and settled, conflicts recorded, the ack advanced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from cloud.events.conflicts import record_conflicts
from cloud.events import outbox
from cloud.events.acks import advance_ack, settle_refused
from cloud.events.deadletters import DeadLetters, item_json, ledger_id_of
from cloud.events.sql import Dialect
from cloud.models import DeadLetter, HubEvent, LedgerStream
from kiosk.common.errors import MessageError
from kiosk.protocol.event import from_wire, hub_values
from kiosk.protocol.event_schema import INT64_MAX, ClockWindow, check_time
from kiosk.protocol.messages import EventBatch, ItemsRefused, LedgerBatch, WireEvent, decode_items

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    """What one message did. ``merchant``/``kiosk`` are None if the topic was not a kiosk's.

    ``ledger`` is set when ``ingest`` was asked to lease the new outbox rows (``lease_to``):
    the accepted events, ready to publish without reading them back.
    """

    merchant: str | None
    kiosk: str | None
    new: int = 0
    duplicates: int = 0
    rejected: int = 0
    acked_through_seq: int = 0
    dead_letter: str | None = None  # why the whole message was refused
    conflicts: int = 0  # members whose balance this message took below zero
    ledger: outbox.OutboxBatch | None = field(default=None, repr=False)
    ledger_id: str = ""  # the kiosk ledger the ack is for


@dataclass(frozen=True)
class Checked:
    """A decoded batch: the events that may be stored, and those refused before the database."""

    ledger_id: str
    events: list[WireEvent]  # inside the clock window, one per event_id, by kiosk_seq
    refused: list[tuple[bytes, str]]  # refused items as JSON, and why
    settled: list[tuple[int | None, str]]  # their kiosk_seqs (None: unusable), settled for good


def decode(payload: bytes) -> tuple[EventBatch, list] | str:
    """The batch and its invalid items, or why the whole message is refused."""
    try:
        return decode_items(EventBatch, payload, "events")
    except ItemsRefused as exc:  # every event refused: settle them all, so the kiosk moves on
        ledger_id = ledger_id_of(exc.envelope)
        if ledger_id is None:
            return str(exc)
        return EventBatch.model_construct(ledger_id=ledger_id, events=[]), exc.refused
    except MessageError as exc:
        return str(exc)


def check(batch: EventBatch, invalid: list, now: datetime, window: ClockWindow, merchant: str,
          kiosk: str) -> Checked | str:
    """Split a decoded batch by the clock window; why the whole message is refused if two of its
    events share a kiosk_seq (a kiosk never numbers two events alike: a broken or hostile sender)."""
    events, untimely = _in_window(batch.events, now, window)
    events = _distinct(events)
    clash = _seq_clash(events)
    if clash is not None:
        return f"two different events share kiosk_seq {clash}"
    refused = [(item_json(r.item), r.reason) for r in invalid] + [(j, reason) for _, j, reason in untimely]
    settled = [(_seq_of(r.item), r.reason) for r in invalid] + [(seq, reason) for seq, _, reason in untimely]
    for _item, reason in refused:
        log.warning("ingest.event_refused", extra={"merchant": merchant, "kiosk": kiosk, "reason": reason[:300]})
    return Checked(batch.ledger_id, events, refused, settled)


def store(conn: Connection, sql: Dialect, dead: DeadLetters, topic: str, merchant: str, kiosk: str,
          checked: Checked, now: datetime, lease_to: str | None, lease: float) -> tuple[Stored, dict[str, Any]]:
    """The message's transaction (the caller commits); what it did, and the dead letters it wrote."""
    ledger_id = checked.ledger_id
    last = _lock_stream(conn, sql, merchant)
    fresh, duplicates, refused = _classify(conn, sql, merchant, kiosk, ledger_id, checked.events)
    rows = [_row(e, merchant, kiosk, ledger_id, last + i, now) for i, e in enumerate(fresh, 1)]
    ids: list[int] = []
    if rows:
        conn.execute(insert(outbox.EVENTS), rows)
        conn.execute(update(LedgerStream).where(LedgerStream.merchant_id == merchant)
                     .values(last_hub_seq=last + len(rows)))
        ids = outbox.add(conn, sql, merchant, last, last + len(rows), lease_to, lease, now)
    letters = [dead.letter(topic, e.model_dump_json().encode(), reason, now) for e, reason in refused]
    letters += [dead.letter(topic, item, reason, now) for item, reason in checked.refused]
    written = dict(letter for letter in letters if letter is not None)
    if written:
        conn.execute(insert(DeadLetter), list(written.values()))
    conflicts = record_conflicts(conn, merchant, rows)
    settled = checked.settled + [(e.kiosk_seq, reason) for e, reason in refused]
    settle_refused(conn, sql, merchant, kiosk, ledger_id, settled, now)
    acked = advance_ack(conn, merchant, kiosk, ledger_id,
                        [e.kiosk_seq for e in fresh] + [seq for seq, _ in settled if seq], now)
    ledger = None
    if lease_to is not None and rows:
        entries = [outbox.fresh_entry(e, kiosk, row["hub_seq"]) for e, row in zip(fresh, rows)]
        ledger = outbox.OutboxBatch(merchant, ids, LedgerBatch.model_construct(entries=entries))  # checked at decode
    return Stored(merchant, kiosk, len(rows), duplicates, len(refused) + len(checked.refused), acked,
                  conflicts=conflicts, ledger=ledger, ledger_id=ledger_id), written


def _in_window(events: list[WireEvent], now: datetime, window: ClockWindow
               ) -> tuple[list[WireEvent], list[tuple[int, bytes, str]]]:
    """Events dated within the clock window, and the others (kiosk_seq, JSON) with why."""
    inside, outside = [], []
    for e in events:
        try:
            check_time(e.occurred_at, now, window)
        except ValueError as exc:
            outside.append((e.kiosk_seq, e.model_dump_json().encode(), f"[kiosk_seq {e.kiosk_seq}] {exc}"))
        else:
            inside.append(e)
    return inside, outside


def _lock_stream(conn: Connection, sql: Dialect, merchant: str) -> int:
    """Lock the merchant's stream row (creating it on first use); its last ``hub_seq``."""
    locked = select(LedgerStream.last_hub_seq).where(LedgerStream.merchant_id == merchant).with_for_update()
    last = conn.scalar(locked)
    if last is None:
        conn.execute(sql.upsert(LedgerStream).values(merchant_id=merchant, last_hub_seq=0).on_conflict_do_nothing())
        last = conn.scalar(locked)
    return last


def _classify(conn: Connection, sql: Dialect, merchant: str, kiosk: str, ledger_id: str, events: list[WireEvent]
              ) -> tuple[list[WireEvent], int, list[tuple[WireEvent, str]]]:
    """Split *events* into new ones, the number already stored, and refused ones with why."""
    known = {row.event_id: row for row in conn.execute(
        select(HubEvent.event_id, HubEvent.merchant_id, HubEvent.kiosk_id, HubEvent.ledger_id, HubEvent.kiosk_seq)
        .where(sql.among(HubEvent.event_id, [e.event_id for e in events])))}
    taken = dict(conn.execute(
        select(HubEvent.kiosk_seq, HubEvent.event_id).where(
            HubEvent.merchant_id == merchant, HubEvent.kiosk_id == kiosk, HubEvent.ledger_id == ledger_id,
            sql.among(HubEvent.kiosk_seq, [e.kiosk_seq for e in events]))).all())
    fresh, duplicates, refused = [], 0, []
    for e in events:
        old = known.get(e.event_id)
        if old is not None and ((old.merchant_id, old.kiosk_id, old.ledger_id, old.kiosk_seq)
                                == (merchant, kiosk, ledger_id, e.kiosk_seq)):
            duplicates += 1
            continue
        if old is not None:
            reason = f"event_id already stored as {old.merchant_id}/{old.kiosk_id} seq {old.kiosk_seq}"
        elif e.kiosk_seq in taken:
            reason = f"kiosk_seq {e.kiosk_seq} already holds event {taken[e.kiosk_seq]} (ledger replaced?)"
        else:
            fresh.append(e)
            continue
        refused.append((e, reason))
        log.warning("ingest.event_refused", extra={"merchant": merchant, "kiosk": kiosk,
                                                   "event_id": e.event_id, "reason": reason})
    return fresh, duplicates, refused


def _distinct(events: list[WireEvent]) -> list[WireEvent]:
    """One copy per event_id (a batch may repeat one), oldest ``kiosk_seq`` first."""
    unique = {e.event_id: e for e in events}
    return sorted(unique.values(), key=lambda e: e.kiosk_seq)


def _seq_clash(events: list[WireEvent]) -> int | None:
    """A kiosk_seq used by two different events of one batch, if any."""
    seqs = [e.kiosk_seq for e in events]
    return next((a for a, b in zip(seqs, seqs[1:]) if a == b), None)


def _seq_of(item: Any) -> int | None:
    """The ``kiosk_seq`` of a refused raw item, if it names a usable one."""
    seq = item.get("kiosk_seq") if isinstance(item, dict) else None
    return seq if type(seq) is int and 0 < seq <= INT64_MAX else None


def _row(e: WireEvent, merchant: str, kiosk: str, ledger_id: str, hub_seq: int, now: datetime) -> dict[str, Any]:
    """The ``hub_events`` values of one accepted event (merchant and kiosk from the topic)."""
    return hub_values(from_wire(e)) | {"merchant_id": merchant, "kiosk_id": kiosk, "ledger_id": ledger_id,
                                       "hub_seq": hub_seq, "received_at": now}
