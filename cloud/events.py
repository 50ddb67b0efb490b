"""The hub's event store: idempotent ingest, per-kiosk contiguous acks, the ledger outbox.

One ``ingest`` call is one database transaction for one MQTT message. It first locks the
merchant's ``ledger_streams`` row (``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite every
write transaction is ``BEGIN IMMEDIATE``), so concurrent workers serialise per merchant:
``hub_seq`` stays gapless in commit order and the contiguous ack of a kiosk can't be
computed from a stale view. Different merchants ingest in parallel on PostgreSQL.

The write path is SQLAlchemy Core, not ORM objects: one ``executemany`` of short statements
(psycopg pipelines it and caches the statement; a 1,600-parameter multi-row ``INSERT`` is
re-parsed in Python every time) and one array parameter (``= ANY(:ids)``) instead of long
``IN`` lists on PostgreSQL. A message's rows are known in memory, so nothing written is
read back: the outbox rows come from ``INSERT … SELECT`` over the ``hub_seq`` range just
handed out, and the ``ledger`` batch is built from the decoded events.

Every event is checked against the shared schema (kiosk/protocol/event_schema.py: bounded
integers and strings, ``detail`` per kind) and the hub's clock window before it touches the
database; one that fails is dead-lettered on its own and the rest of its batch is stored.
``ingest_or_dead_letter`` decides the fate of a message the store could not take: retried
while the *database* is unavailable, else dead-lettered (after a rollback, in a transaction
of its own); a message that keeps failing is dead-lettered after ``max_attempts``.

Nothing here touches MQTT: the worker (cloud/ingest.py) commits here, then acknowledges.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (Connection, DateTime, String, any_, bindparam, cast, create_engine, event, func, insert,
                        or_, select, update)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from cloud.conflicts import record_conflicts
from cloud.store import (Conflict, DeadLetter, HubEvent, KioskProgress, LedgerOutbox, LedgerStream, RefusedEvent,
                         create_tables, utcnow)
from kiosk.common.errors import MessageError
from kiosk.protocol.event_schema import INT64_MAX, ClockWindow, check_time, printable
from kiosk.protocol.messages import (LEDGER_ID_PATTERN, MAX_PAYLOAD_BYTES, EventBatch, ItemsRefused, LedgerBatch,
                                     LedgerEntry, WireEvent, decode_items)
from kiosk.protocol.topics import parse_kiosk_topic

log = logging.getLogger(__name__)

_EVENTS, _OUTBOX = HubEvent.__table__, LedgerOutbox.__table__
DEAD_LETTER_KEEP = 4096  # bytes of a refused payload kept; its length and sha256 go in the reason
MAX_ATTEMPTS = 5  # a message that failed this often (database up) is dead-lettered
_REMEMBERED = 10_000  # message keys kept in memory (dead letters written, attempts counted)


class DatabaseUnavailable(Exception):
    """The database is down and the worker is stopping: leave the message for redelivery."""


@dataclass(frozen=True)
class OutboxBatch:
    """Outbox rows of one merchant, leased to one worker, ready to publish on its ``ledger`` topic."""

    merchant: str
    ids: list[int]
    batch: LedgerBatch = field(repr=False)


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
    ledger: OutboxBatch | None = field(default=None, repr=False)
    ledger_id: str = ""  # the kiosk ledger the ack is for


def make_engine(url: str) -> Engine:
    """An engine tuned for concurrent ingest: SQLite in WAL with ``BEGIN IMMEDIATE`` and a busy
    timeout (several processes may write), ``synchronous=FULL`` because an acked event must
    survive a power cut; PostgreSQL with pre-ping so a restarted server is noticed."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, record) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN below, not the driver
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=FULL")
        dbapi_conn.execute("PRAGMA busy_timeout=30000")

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front: no upgrade deadlocks

    return engine


class EventStore:
    """*clock* is the hub's (injected in tests); *window* bounds ``occurred_at`` around it."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow,
                 window: ClockWindow = ClockWindow()) -> None:
        self.engine = engine
        self.clock = clock
        self.window = window
        self._pg = engine.dialect.name == "postgresql"
        self._dead_seen: OrderedDict[str, None] = OrderedDict()  # dead letters already written

    @classmethod
    def open(cls, url: str, **options: Any) -> "EventStore":
        engine = make_engine(url)
        create_tables(engine)
        return cls(engine, **options)

    def healthy(self) -> bool:
        """Whether the database answers (a connection and, on SQLite, its write lock)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(select(1))
            return True
        except Exception:  # whatever the driver raises, the answer is "no"
            return False

    def close(self) -> None:
        self.engine.dispose()

    # -- ingest ----------------------------------------------------------------------------
    def ingest(self, topic: str, payload: bytes, *, lease_to: str | None = None, lease: float = 30.0,
               published: Sequence[int] = ()) -> Stored:
        """Store one ``events`` message. Invalid input is dead-lettered, never raised; a database
        failure raises ``sqlalchemy.exc.DBAPIError`` and nothing is committed (retry it).

        With *lease_to*, the new outbox rows are leased to that worker in the same transaction
        and returned as ``Stored.ledger`` for it to publish (if it dies first, the lease runs out
        and any worker's relay publishes them). *published* are outbox ids the caller has seen
        PUBACKed since its last transaction; they are marked here, in a transaction the worker
        makes anyway, instead of in one of their own (on SQLite that one would queue for the
        write lock behind every ingest).
        """
        where = parse_kiosk_topic(topic)
        if where is None or where.leaf != "events":
            return self._dead(topic, payload, "not a kiosk events topic", None, None, published)
        merchant, kiosk = where.merchant, where.kiosk
        try:
            batch, invalid = decode_items(EventBatch, payload, "events")
        except ItemsRefused as exc:  # every event refused: settle them all, so the kiosk moves on
            ledger_id = _ledger_id_of(exc.envelope)
            if ledger_id is None:
                return self._dead(topic, payload, str(exc), merchant, kiosk, published)
            batch, invalid = EventBatch.model_construct(ledger_id=ledger_id, events=[]), exc.refused
        except MessageError as exc:
            return self._dead(topic, payload, str(exc), merchant, kiosk, published)
        ledger_id = batch.ledger_id
        now = self.clock()
        events, untimely = self._in_window(batch.events, now)
        events = _distinct(events)
        clash = _seq_clash(events)
        if clash is not None:  # a kiosk never numbers two events alike: a broken or hostile sender
            return self._dead(topic, payload, f"two different events share kiosk_seq {clash}", merchant, kiosk,
                              published)
        refused_items = [(_item_json(r.item), r.reason) for r in invalid] + [(j, reason) for _, j, reason in untimely]
        settled = [(_seq_of(r.item), r.reason) for r in invalid] + [(seq, reason) for seq, _, reason in untimely]
        for item, reason in refused_items:
            log.warning("ingest.event_refused", extra={"merchant": merchant, "kiosk": kiosk, "reason": reason[:300]})
        with self.engine.begin() as conn:
            if published:
                self._mark(conn, published, now)
            last = self._lock_stream(conn, merchant)
            fresh, duplicates, refused = self._classify(conn, merchant, kiosk, ledger_id, events)
            rows = [_row(e, merchant, kiosk, ledger_id, last + i, now) for i, e in enumerate(fresh, 1)]
            ids: list[int] = []
            if rows:
                conn.execute(insert(_EVENTS), rows)
                conn.execute(update(LedgerStream).where(LedgerStream.merchant_id == merchant)
                             .values(last_hub_seq=last + len(rows)))
                ids = self._add_to_outbox(conn, merchant, last, last + len(rows), lease_to, lease, now)
            letters = [self._letter(topic, e.model_dump_json().encode(), reason, now) for e, reason in refused]
            letters += [self._letter(topic, item, reason, now) for item, reason in refused_items]
            letters = dict(letter for letter in letters if letter is not None)
            if letters:
                conn.execute(insert(DeadLetter), list(letters.values()))
            conflicts = record_conflicts(conn, merchant, rows)
            settled += [(e.kiosk_seq, reason) for e, reason in refused]
            self._settle_refused(conn, merchant, kiosk, ledger_id, settled, now)
            acked = _advance_ack(conn, merchant, kiosk, ledger_id,
                                 [e.kiosk_seq for e in fresh] + [seq for seq, _ in settled if seq], now)
        self._written(letters)
        ledger = None
        if lease_to is not None and rows:
            ledger = OutboxBatch(merchant, ids, LedgerBatch(entries=[_entry(e, kiosk, row["hub_seq"])
                                                                     for e, row in zip(fresh, rows)]))
        return Stored(merchant, kiosk, len(rows), duplicates, len(refused) + len(refused_items), acked,
                      conflicts=conflicts, ledger=ledger, ledger_id=ledger_id)

    def _settle_refused(self, conn: Connection, merchant: str, kiosk: str, ledger_id: str,
                        settled: list[tuple[int | None, str]], now: datetime) -> None:
        """Record the kiosk_seqs refused for good (their dead letters hold the events), so the
        kiosk's ack moves past them instead of stalling its outbox on one bad row."""
        rows = {seq: {"merchant_id": merchant, "kiosk_id": kiosk, "ledger_id": ledger_id, "kiosk_seq": seq,
                      "reason": printable(reason)[:500], "refused_at": now} for seq, reason in settled if seq}
        if rows:
            upsert = pg_insert if self._pg else sqlite_insert
            conn.execute(upsert(RefusedEvent).on_conflict_do_nothing(), list(rows.values()))

    def _in_window(self, events: list[WireEvent], now: datetime
                   ) -> tuple[list[WireEvent], list[tuple[int, bytes, str]]]:
        """Events dated within the clock window, and the others (kiosk_seq, JSON) with why."""
        inside, outside = [], []
        for e in events:
            try:
                check_time(e.occurred_at, now, self.window)
            except ValueError as exc:
                outside.append((e.kiosk_seq, e.model_dump_json().encode(), f"[kiosk_seq {e.kiosk_seq}] {exc}"))
            else:
                inside.append(e)
        return inside, outside

    def _lock_stream(self, conn: Connection, merchant: str) -> int:
        """Lock the merchant's stream row (creating it on first use); its last ``hub_seq``."""
        locked = select(LedgerStream.last_hub_seq).where(LedgerStream.merchant_id == merchant).with_for_update()
        last = conn.scalar(locked)
        if last is None:
            upsert = pg_insert if self._pg else sqlite_insert
            conn.execute(upsert(LedgerStream).values(merchant_id=merchant, last_hub_seq=0).on_conflict_do_nothing())
            last = conn.scalar(locked)
        return last

    def _classify(self, conn: Connection, merchant: str, kiosk: str, ledger_id: str, events: list[WireEvent]
                  ) -> tuple[list[WireEvent], int, list[tuple[WireEvent, str]]]:
        """Split *events* into new ones, the number already stored, and refused ones with why."""
        known = {row.event_id: row for row in conn.execute(
            select(HubEvent.event_id, HubEvent.merchant_id, HubEvent.kiosk_id, HubEvent.ledger_id, HubEvent.kiosk_seq)
            .where(self._among(HubEvent.event_id, [e.event_id for e in events])))}
        taken = dict(conn.execute(
            select(HubEvent.kiosk_seq, HubEvent.event_id).where(
                HubEvent.merchant_id == merchant, HubEvent.kiosk_id == kiosk, HubEvent.ledger_id == ledger_id,
                self._among(HubEvent.kiosk_seq, [e.kiosk_seq for e in events]))).all())
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

    def _add_to_outbox(self, conn: Connection, merchant: str, after: int, through: int, lease_to: str | None,
                       lease: float, now: datetime) -> list[int]:
        """One outbox row per event numbered ``after+1..through`` (this transaction's, under the
        merchant's lock), leased to *lease_to* if given; the new outbox ids."""
        until = now + timedelta(seconds=lease) if lease_to is not None else None
        rows = (select(HubEvent.id, HubEvent.merchant_id, self._value(now, DateTime(timezone=True)),
                       self._value(lease_to, String(80)), self._value(until, DateTime(timezone=True)))
                .where(HubEvent.merchant_id == merchant, HubEvent.hub_seq > after, HubEvent.hub_seq <= through))
        statement = (insert(_OUTBOX).from_select(["event_pk", "merchant_id", "created_at", "claimed_by",
                                                  "claimed_until"], rows, include_defaults=False)
                     .returning(LedgerOutbox.id))
        return list(conn.scalars(statement))

    def _dead(self, topic: str, payload: bytes, reason: str, merchant: str | None, kiosk: str | None,
              published: Sequence[int] = ()) -> Stored:
        """Dead-letter a whole message in a transaction of its own; the kiosk's ack is unchanged."""
        with self.engine.begin() as conn:
            if published:
                self._mark(conn, published, self.clock())
            letter = self._letter(topic, payload, reason, self.clock())
            if letter is not None:
                conn.execute(insert(DeadLetter).values(**letter[1]))
            acked, ledger_id = 0, _ledger_id_of(_envelope(payload)) or ""
            if merchant and kiosk:
                acked = conn.scalar(select(KioskProgress.acked_through_seq).where(
                    KioskProgress.merchant_id == merchant, KioskProgress.kiosk_id == kiosk,
                    KioskProgress.ledger_id == ledger_id)) or 0
        self._written(dict([letter] if letter else []))
        log.warning("ingest.dead_letter", extra={"topic": printable(topic)[:300], "reason": reason[:300],
                                                 "bytes": len(payload), "repeat": letter is None})
        return Stored(merchant, kiosk, acked_through_seq=acked, dead_letter=reason, ledger_id=ledger_id)

    def dead_letter(self, topic: str, payload: bytes, reason: str, published: Sequence[int] = ()) -> Stored:
        """Dead-letter a message the store failed on (call after the failed transaction rolled back)."""
        where = parse_kiosk_topic(topic)
        ok = where is not None and where.leaf == "events"
        return self._dead(topic, payload, reason, where.merchant if ok else None, where.kiosk if ok else None,
                          published)

    def _letter(self, topic: str, payload: bytes, reason: str, now: datetime) -> tuple[str, dict[str, Any]] | None:
        """The key and ``dead_letters`` row of a refusal: the first DEAD_LETTER_KEEP bytes, the
        length and sha256 in the reason, text cleaned for the column; None if this store wrote
        the same one already (a kiosk re-sending a refused event must not fill the table)."""
        key = message_key(topic, payload)
        if key in self._dead_seen:
            self._dead_seen.move_to_end(key)
            return None
        note = f" ({len(payload)} bytes, sha256 {hashlib.sha256(payload).hexdigest()})"
        return key, {"topic": printable(topic)[:300], "payload": bytes(payload[:DEAD_LETTER_KEEP]),
                     "reason": printable(reason)[:500 - len(note)] + note, "received_at": now}

    def _written(self, letters: dict[str, Any]) -> None:
        """Remember committed dead letters (only after the commit: a rolled back one is written again)."""
        for key in letters:
            _remember(self._dead_seen, key)

    # -- the ledger outbox -----------------------------------------------------------------
    def claim_outbox(self, worker: str, limit: int = 500, lease: float = 30.0, *, own: bool = True,
                     published: Sequence[int] = ()) -> list[OutboxBatch]:
        """Lease unpublished rows to *worker*: never leased, lease run out, or (with *own*) leased
        to *worker* already, by an earlier run of it; grouped per merchant in ``hub_seq`` order.
        *published* ids are marked first, in the same transaction."""
        now = utcnow()
        free = [LedgerOutbox.claimed_until.is_(None), LedgerOutbox.claimed_until < now]
        if own:
            free.append(LedgerOutbox.claimed_by == worker)
        due = (select(LedgerOutbox.id).where(LedgerOutbox.published_at.is_(None), or_(*free))
               .order_by(LedgerOutbox.id).limit(limit))
        if self._pg:
            due = due.with_for_update(skip_locked=True)
        with self.engine.begin() as conn:
            if published:
                self._mark(conn, published, now)
            claimed = dict(conn.execute(
                update(LedgerOutbox).where(LedgerOutbox.id.in_(due.scalar_subquery()))
                .values(claimed_by=worker, claimed_until=now + timedelta(seconds=lease))
                .returning(LedgerOutbox.event_pk, LedgerOutbox.id)).all())
            if not claimed:
                return []
            rows = conn.execute(select(_EVENTS).where(self._among(HubEvent.id, list(claimed)))
                                .order_by(HubEvent.merchant_id, HubEvent.hub_seq))
            grouped: dict[str, tuple[list[int], list[LedgerEntry]]] = {}
            for ev in rows:
                ids, entries = grouped.setdefault(ev.merchant_id, ([], []))
                ids.append(claimed[ev.id])  # one that fails the schema is marked published, never sent
                entry = _relayable(ev)
                if entry is not None:
                    entries.append(entry)
        return [OutboxBatch(m, ids, LedgerBatch(entries=entries)) for m, (ids, entries) in grouped.items() if entries]

    def mark_published(self, ids: Sequence[int]) -> None:
        with self.engine.begin() as conn:
            self._mark(conn, ids, utcnow())

    def _mark(self, conn: Connection, ids: Sequence[int], now: datetime) -> None:
        conn.execute(update(LedgerOutbox).where(self._among(LedgerOutbox.id, list(ids)))
                     .values(published_at=now, claimed_until=None))

    # -- SQL helpers -----------------------------------------------------------------------
    def _among(self, column: Any, values: list) -> ColumnElement[bool]:
        """``column = ANY(:array)`` on PostgreSQL: one parameter, so the statement text is the same
        for any number of values (psycopg caches it, the server can reuse its plan); SQLite has no
        arrays, so an ``IN`` list there (its driver does no query rewriting to be slow at)."""
        if self._pg:
            return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
        return column.in_(values)

    def _value(self, value: Any, type_: Any) -> ColumnElement:
        """A typed parameter in a select list (PostgreSQL needs the type when the value is None)."""
        param = bindparam(None, value, type_=type_)
        return cast(param, type_) if self._pg else param

    # -- reading ---------------------------------------------------------------------------
    def acked_through(self, merchant: str, kiosk: str, ledger_id: str | None = None) -> int:
        """How far the kiosk's ledger *ledger_id* (default: its newest) is settled."""
        query = select(KioskProgress.acked_through_seq).where(KioskProgress.merchant_id == merchant,
                                                               KioskProgress.kiosk_id == kiosk)
        if ledger_id is None:
            query = query.order_by(KioskProgress.first_seen.desc()).limit(1)
        else:
            query = query.where(KioskProgress.ledger_id == ledger_id)
        with self.engine.connect() as conn:
            return conn.scalar(query) or 0

    def events(self, merchant: str, kiosk: str | None = None) -> list[HubEvent]:
        """The merchant's (or one kiosk's) stored events in ``hub_seq`` order."""
        query = select(HubEvent).where(HubEvent.merchant_id == merchant).order_by(HubEvent.hub_seq)
        if kiosk is not None:
            query = query.where(HubEvent.kiosk_id == kiosk)
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(query))

    def ledger_after(self, merchant: str, after_hub_seq: int, limit: int = 500) -> tuple[list[LedgerEntry], int]:
        """Up to *limit* entries of *merchant*'s ledger after *after_hub_seq*, and the current head
        (the last ``hub_seq``), read in one transaction: the answer to a kiosk's sync request."""
        with self.engine.begin() as conn:
            head = conn.scalar(select(LedgerStream.last_hub_seq).where(LedgerStream.merchant_id == merchant)) or 0
            rows = conn.execute(select(_EVENTS).where(HubEvent.merchant_id == merchant,
                                                      HubEvent.hub_seq > after_hub_seq)
                                .order_by(HubEvent.hub_seq).limit(limit))
            return [entry for entry in map(_relayable, rows) if entry is not None], head

    def conflicts(self, merchant: str | None = None) -> list[Conflict]:
        """Recorded balance conflicts, oldest first."""
        query = select(Conflict).order_by(Conflict.id)
        if merchant is not None:
            query = query.where(Conflict.merchant_id == merchant)
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(query))

    def dead_letters(self) -> list[DeadLetter]:
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))

    def unpublished(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).where(LedgerOutbox.published_at.is_(None)))


def message_key(topic: str, payload: bytes) -> str:
    """What identifies a message across redeliveries: sha256 of its topic and payload."""
    return hashlib.sha256(topic.encode("utf-8", "surrogatepass") + b"\0" + bytes(payload)).hexdigest()


class Attempts:
    """How often each message (by ``message_key``) failed in this process; bounded in memory."""

    def __init__(self) -> None:
        self._counts: OrderedDict[str, int] = OrderedDict()

    def add(self, key: str) -> int:
        self._counts[key] = count = self._counts.pop(key, 0) + 1
        while len(self._counts) > _REMEMBERED:
            self._counts.popitem(last=False)
        return count

    def forget(self, key: str) -> None:
        self._counts.pop(key, None)


def ingest_or_dead_letter(store: EventStore, topic: str, payload: bytes, stopping, *, attempts: Attempts,
                          max_attempts: int = MAX_ATTEMPTS, max_delay: float = 30.0, **options: Any) -> Stored:
    """Store one message, or dead-letter it; never leave it hanging on a bad message.

    A failure while the database does not answer is waited out (with back-off) and not
    counted; raises DatabaseUnavailable only when *stopping* is set, so the message stays
    unacknowledged for redelivery. A failure with the database up is the message's: a
    transient one (lock timeout, deadlock, a unique-key race) is retried up to
    *max_attempts*, anything else is dead-lettered at once with its reason. *options* go to
    ``ingest`` (its ``published`` ids are marked by the dead letter's transaction instead).
    """
    key, delay = message_key(topic, payload), 0.05
    while True:
        try:
            stored = store.ingest(topic, payload, **options)
            attempts.forget(key)
            return stored
        except Exception as exc:
            failure = exc
        if _unavailable(failure) and not store.healthy():
            _wait_for_database(failure, stopping, delay)
            delay = min(delay * 2, max_delay)
            continue
        count = attempts.add(key)
        if _transient(failure) and count < max_attempts:
            log.warning("ingest.retry", extra={"topic": topic, "attempt": count, "error": _describe(failure)})
            stopping.wait(min(delay * count, max_delay))
            continue
        reason = f"the hub failed on it{f' {count} times' if count > 1 else ''}: {_describe(failure)}"
        log.error("ingest.failed", extra={"topic": topic, "attempts": count, "error": _describe(failure)},
                  exc_info=not isinstance(failure, DBAPIError))
        try:
            stored = store.dead_letter(topic, payload, reason, published=options.get("published", ()))
        except Exception as exc:
            if _unavailable(exc):  # a dead letter always fits: the database is the problem after all
                _wait_for_database(exc, stopping, delay)
                delay = min(delay * 2, max_delay)
                continue
            # Last resort, never expected: drop the message (logged with its key) rather than stall.
            log.critical("ingest.dead_letter_failed", extra={"topic": topic, "key": key, "reason": reason,
                                                             "error": _describe(exc)}, exc_info=True)
            stored = Stored(None, None, dead_letter=reason)
        attempts.forget(key)
        return stored


def _wait_for_database(failure: Exception, stopping, delay: float) -> None:
    if stopping.is_set():
        raise DatabaseUnavailable(_describe(failure)) from failure
    log.warning("ingest.db_retry", extra={"error": _describe(failure), "retry_in_s": delay})
    stopping.wait(delay)


def _unavailable(exc: Exception) -> bool:
    """A failure that may mean the database is down (the caller then asks it)."""
    return (isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeout))
            or (isinstance(exc, DBAPIError) and exc.connection_invalidated))


def _transient(exc: Exception) -> bool:
    """Worth another try with the database up: lock timeouts, deadlocks, a unique-key race."""
    return _unavailable(exc) or isinstance(exc, IntegrityError)


def _describe(exc: Exception) -> str:
    text = str(exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc)
    return printable(f"{type(exc).__name__}: {text}")[:300]


def _remember(seen: OrderedDict, key: str) -> bool:
    """Add *key* to the bounded set *seen*; True if it was there already."""
    if key in seen:
        seen.move_to_end(key)
        return True
    seen[key] = None
    while len(seen) > _REMEMBERED:
        seen.popitem(last=False)
    return False


def _item_json(item: Any) -> bytes:
    """A refused batch item as JSON bytes, for its dead letter."""
    try:
        return json.dumps(item, separators=(",", ":")).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError, RecursionError):
        return repr(item).encode("utf-8", "surrogatepass")


def _relayable(ev: HubEvent | Row) -> LedgerEntry | None:
    """The ``ledger`` entry of a stored event, or None (logged) if it fails today's schema: the
    hub relays only what every kiosk can apply (a row stored before the schema was closed)."""
    try:
        return ledger_entry(ev)
    except ValueError as exc:  # pydantic's ValidationError
        log.error("relay.event_refused", extra={"merchant": ev.merchant_id, "hub_seq": ev.hub_seq,
                                                "error": str(exc)[:300]})
        return None


def _seq_of(item: Any) -> int | None:
    """The ``kiosk_seq`` of a refused raw item, if it names a usable one."""
    seq = item.get("kiosk_seq") if isinstance(item, dict) else None
    return seq if type(seq) is int and 0 < seq <= INT64_MAX else None


def _envelope(payload: bytes) -> dict:
    """A message's top-level fields, for a dead letter's ack (best effort: {} if unreadable)."""
    try:
        doc = json.loads(payload) if len(payload) <= MAX_PAYLOAD_BYTES else None
    except (ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _ledger_id_of(envelope: dict) -> str | None:
    """The batch's ``ledger_id`` ("" when absent, from a kiosk before incarnations), or None if invalid."""
    value = envelope.get("ledger_id", "")
    return value if isinstance(value, str) and re.fullmatch(LEDGER_ID_PATTERN, value) else None


def _distinct(events: list[WireEvent]) -> list[WireEvent]:
    """One copy per event_id (a batch may repeat one), oldest ``kiosk_seq`` first."""
    unique = {e.event_id: e for e in events}
    return sorted(unique.values(), key=lambda e: e.kiosk_seq)


def _seq_clash(events: list[WireEvent]) -> int | None:
    """A kiosk_seq used by two different events of one batch, if any."""
    seqs = [e.kiosk_seq for e in events]
    return next((a for a, b in zip(seqs, seqs[1:]) if a == b), None)


def _advance_ack(conn: Connection, merchant: str, kiosk: str, ledger_id: str, new_seqs: list[int],
                 now: datetime) -> int:
    """Move the kiosk ledger's contiguous ack over what this message settled; the new ack.

    Usually the new events continue the run, so they are walked in memory and the database is
    asked only for rows stored earlier beyond them (out-of-order batches): an empty answer."""
    where = (KioskProgress.merchant_id == merchant, KioskProgress.kiosk_id == kiosk,
             KioskProgress.ledger_id == ledger_id)
    old = conn.scalar(select(KioskProgress.acked_through_seq).where(*where))
    acked, added = old or 0, set(new_seqs)
    while acked + 1 in added:
        acked += 1
    acked = _contiguous(conn, merchant, kiosk, ledger_id, acked)
    if old is None:
        _note_new_ledger(conn, merchant, kiosk, ledger_id)
        conn.execute(insert(KioskProgress).values(merchant_id=merchant, kiosk_id=kiosk, ledger_id=ledger_id,
                                                  acked_through_seq=acked, first_seen=utcnow(), updated_at=now))
    elif acked != old:
        conn.execute(update(KioskProgress).where(*where).values(acked_through_seq=acked, updated_at=now))
    return acked


def _note_new_ledger(conn: Connection, merchant: str, kiosk: str, ledger_id: str) -> None:
    """Log a kiosk that starts a new ledger after an earlier one (reinstalled, or restored from an
    older backup): its numbers start again at 1 and are acked apart from the old ledger's."""
    earlier = conn.scalar(select(func.count()).select_from(KioskProgress).where(
        KioskProgress.merchant_id == merchant, KioskProgress.kiosk_id == kiosk))
    if earlier:
        log.warning("ingest.new_ledger", extra={"merchant": merchant, "kiosk": kiosk, "ledger_id": ledger_id,
                                                "earlier_ledgers": earlier})


def _contiguous(conn: Connection, merchant: str, kiosk: str, ledger_id: str, acked: int) -> int:
    """The highest N with every ``kiosk_seq`` 1..N settled (stored or refused for good), walking
    up from the last known N."""
    sources = ((HubEvent.kiosk_seq, HubEvent.merchant_id, HubEvent.kiosk_id, HubEvent.ledger_id),
               (RefusedEvent.kiosk_seq, RefusedEvent.merchant_id, RefusedEvent.kiosk_id, RefusedEvent.ledger_id))
    while True:
        seqs: set[int] = set()
        full = False
        for seq_col, merchant_col, kiosk_col, ledger_col in sources:
            page = list(conn.scalars(select(seq_col).where(merchant_col == merchant, kiosk_col == kiosk,
                                                           ledger_col == ledger_id, seq_col > acked)
                                     .order_by(seq_col).limit(1000)))
            seqs.update(page)
            full = full or len(page) == 1000
        start = acked
        while acked + 1 in seqs:
            acked += 1
        if acked == start or not full:
            return acked


def _row(e: WireEvent, merchant: str, kiosk: str, ledger_id: str, hub_seq: int, now: datetime) -> dict[str, Any]:
    """The ``hub_events`` values of one accepted event (merchant and kiosk from the topic)."""
    return {"event_id": e.event_id, "merchant_id": merchant, "kiosk_id": kiosk, "ledger_id": ledger_id,
            "kiosk_seq": e.kiosk_seq,
            "hub_seq": hub_seq, "kind": e.kind, "member_id": e.member, "delta": e.delta, "rule": e.rule,
            "reward": e.reward, "reason": e.reason, "detail": e.detail,
            "occurred_at": e.occurred_at.astimezone(timezone.utc), "mono_ns": e.mono_ns, "boot_id": e.boot_id,
            "received_at": now}


def _entry(e: WireEvent, kiosk: str, hub_seq: int) -> LedgerEntry:
    """The ``ledger`` entry of an event just accepted, as ``ledger_entry`` would read it back."""
    return LedgerEntry.model_validate({**e.__dict__, "occurred_at": e.occurred_at.astimezone(timezone.utc),
                                       "kiosk": kiosk, "hub_seq": hub_seq})


def ledger_entry(ev: HubEvent | Row) -> LedgerEntry:
    """The ``ledger`` entry of a stored event (an ORM object or a row of ``hub_events``)."""
    at = ev.occurred_at if ev.occurred_at.tzinfo else ev.occurred_at.replace(tzinfo=timezone.utc)  # SQLite
    return LedgerEntry(event_id=ev.event_id, kiosk_seq=ev.kiosk_seq, occurred_at=at, mono_ns=ev.mono_ns,
                       boot_id=ev.boot_id, kind=ev.kind, member=ev.member_id, delta=ev.delta, rule=ev.rule,
                       reward=ev.reward, reason=ev.reason, detail=ev.detail or {}, kiosk=ev.kiosk_id,
                       hub_seq=ev.hub_seq)


__all__ = ["Attempts", "DatabaseUnavailable", "EventStore", "OutboxBatch", "Stored", "create_tables",
           "ingest_or_dead_letter", "ledger_entry", "make_engine", "message_key"]
