"""The hub's event store: idempotent ingest, per-kiosk contiguous acks, the ledger outbox.

One ``ingest`` call is one database transaction for one MQTT message. It first locks the
merchant's ``ledger_streams`` row (``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite every
write transaction is ``BEGIN IMMEDIATE``), so concurrent workers serialise per merchant:
``hub_seq`` stays gapless in commit order and the contiguous ack of a kiosk can't be
computed from a stale view. Different merchants ingest in parallel on PostgreSQL.

Nothing here touches MQTT: the worker (cloud/ingest.py) commits here, then acknowledges.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta, timezone

from sqlalchemy import create_engine, event, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from cloud.conflicts import record_conflicts
from cloud.store import Base, Conflict, DeadLetter, HubEvent, KioskProgress, LedgerOutbox, LedgerStream, utcnow
from kiosk.errors import MessageError
from kiosk.protocol.messages import EventBatch, LedgerBatch, LedgerEntry, WireEvent, decode
from kiosk.protocol.topics import parse_kiosk_topic

log = logging.getLogger(__name__)

_SCHEMA_LOCK = 0x5354_4D50  # PostgreSQL advisory lock around CREATE TABLE ("STMP")


@dataclass(frozen=True)
class Stored:
    """What one message did. ``merchant``/``kiosk`` are None if the topic was not a kiosk's."""

    merchant: str | None
    kiosk: str | None
    new: int = 0
    duplicates: int = 0
    rejected: int = 0
    acked_through_seq: int = 0
    dead_letter: str | None = None  # why the whole message was refused
    conflicts: int = 0  # members whose balance this message took below zero


@dataclass(frozen=True)
class OutboxBatch:
    """Claimed outbox rows of one merchant, ready to publish on its ``ledger`` topic."""

    merchant: str
    ids: list[int]
    batch: LedgerBatch = field(repr=False)


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


def create_tables(engine: Engine) -> None:
    """Create missing tables; on PostgreSQL under an advisory lock so workers starting together
    don't race on CREATE TABLE."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
        Base.metadata.create_all(conn)


class EventStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> "EventStore":
        engine = make_engine(url)
        create_tables(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- ingest ----------------------------------------------------------------------------
    def ingest(self, topic: str, payload: bytes) -> Stored:
        """Store one ``events`` message. Invalid input is dead-lettered, never raised; a database
        failure raises ``sqlalchemy.exc.DBAPIError`` and nothing is committed (retry it)."""
        where = parse_kiosk_topic(topic)
        if where is None or where.leaf != "events":
            return self._dead(topic, payload, "not a kiosk events topic", None, None)
        merchant, kiosk = where.merchant, where.kiosk
        try:
            batch = decode(EventBatch, payload)
        except MessageError as exc:
            return self._dead(topic, payload, str(exc), merchant, kiosk)
        events = _distinct(batch.events)
        with Session(self.engine) as session, session.begin():
            stream = self._lock_stream(session, merchant)
            progress = session.get(KioskProgress, (merchant, kiosk))
            if progress is None:
                progress = KioskProgress(merchant_id=merchant, kiosk_id=kiosk, acked_through_seq=0)
                session.add(progress)
            rows, duplicates, rejected = self._insert(session, stream, topic, merchant, kiosk, events)
            conflicts = record_conflicts(session, merchant, rows)
            progress.acked_through_seq = _contiguous(session, merchant, kiosk, progress.acked_through_seq)
            acked = progress.acked_through_seq
        return Stored(merchant, kiosk, len(rows), duplicates, rejected, acked, conflicts=len(conflicts))

    def _lock_stream(self, session: Session, merchant: str) -> LedgerStream:
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        session.execute(insert(LedgerStream).values(merchant_id=merchant, last_hub_seq=0).on_conflict_do_nothing())
        return session.scalars(select(LedgerStream).where(LedgerStream.merchant_id == merchant)
                               .with_for_update()).one()

    def _insert(self, session: Session, stream: LedgerStream, topic: str, merchant: str, kiosk: str,
                events: list[WireEvent]) -> tuple[list[HubEvent], int, int]:
        known = {row.event_id: row for row in session.execute(
            select(HubEvent.event_id, HubEvent.merchant_id, HubEvent.kiosk_id, HubEvent.kiosk_seq)
            .where(HubEvent.event_id.in_([e.event_id for e in events])))}
        taken = dict(session.execute(
            select(HubEvent.kiosk_seq, HubEvent.event_id).where(
                HubEvent.merchant_id == merchant, HubEvent.kiosk_id == kiosk,
                HubEvent.kiosk_seq.in_([e.kiosk_seq for e in events]))).all())
        rows, duplicates, rejected = [], 0, 0
        for e in events:
            old = known.get(e.event_id)
            if old is not None and (old.merchant_id, old.kiosk_id, old.kiosk_seq) == (merchant, kiosk, e.kiosk_seq):
                duplicates += 1
                continue
            if old is not None:
                reason = f"event_id already stored as {old.merchant_id}/{old.kiosk_id} seq {old.kiosk_seq}"
            elif e.kiosk_seq in taken:
                reason = f"kiosk_seq {e.kiosk_seq} already holds event {taken[e.kiosk_seq]} (ledger replaced?)"
            else:
                stream.last_hub_seq += 1
                rows.append(_row(e, merchant, kiosk, stream.last_hub_seq))
                continue
            rejected += 1
            session.add(DeadLetter(topic=topic, payload=e.model_dump_json().encode(), reason=reason))
            log.warning("ingest.event_refused", extra={"merchant": merchant, "kiosk": kiosk,
                                                       "event_id": e.event_id, "reason": reason})
        session.add_all(rows)
        session.flush()
        session.add_all(LedgerOutbox(event_pk=r.id, merchant_id=merchant) for r in rows)
        return rows, duplicates, rejected

    def _dead(self, topic: str, payload: bytes, reason: str, merchant: str | None, kiosk: str | None) -> Stored:
        with Session(self.engine) as session, session.begin():
            session.add(DeadLetter(topic=topic[:300], payload=payload, reason=reason[:500]))
            acked = 0
            if merchant and kiosk:
                progress = session.get(KioskProgress, (merchant, kiosk))
                acked = progress.acked_through_seq if progress else 0
        log.warning("ingest.dead_letter", extra={"topic": topic, "reason": reason})
        return Stored(merchant, kiosk, acked_through_seq=acked, dead_letter=reason)

    # -- the ledger outbox -----------------------------------------------------------------
    def claim_outbox(self, worker: str, limit: int = 500, lease: float = 30.0) -> list[OutboxBatch]:
        """Lease unpublished rows to *worker* (rows of a crashed worker come back when their lease
        ends); grouped per merchant in ``hub_seq`` order."""
        now = utcnow()
        with Session(self.engine) as session, session.begin():
            query = (select(LedgerOutbox.id).where(
                LedgerOutbox.published_at.is_(None),
                or_(LedgerOutbox.claimed_until.is_(None), LedgerOutbox.claimed_until < now,
                    LedgerOutbox.claimed_by == worker))
                .order_by(LedgerOutbox.id).limit(limit))
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = list(session.scalars(query))
            if not ids:
                return []
            session.execute(update(LedgerOutbox).where(LedgerOutbox.id.in_(ids))
                            .values(claimed_by=worker, claimed_until=now + timedelta(seconds=lease)))
            rows = session.execute(select(LedgerOutbox.id, HubEvent).join(HubEvent, HubEvent.id == LedgerOutbox.event_pk)
                                   .where(LedgerOutbox.id.in_(ids)).order_by(HubEvent.merchant_id, HubEvent.hub_seq))
            grouped: dict[str, tuple[list[int], list[LedgerEntry]]] = {}
            for outbox_id, ev in rows:
                ids_, entries = grouped.setdefault(ev.merchant_id, ([], []))
                ids_.append(outbox_id)
                entries.append(ledger_entry(ev))
        return [OutboxBatch(m, ids_, LedgerBatch(entries=entries)) for m, (ids_, entries) in grouped.items()]

    def mark_published(self, ids: Sequence[int]) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(LedgerOutbox).where(LedgerOutbox.id.in_(list(ids)))
                            .values(published_at=utcnow(), claimed_until=None))

    # -- reading ---------------------------------------------------------------------------
    def acked_through(self, merchant: str, kiosk: str) -> int:
        with Session(self.engine) as session:
            progress = session.get(KioskProgress, (merchant, kiosk))
            return progress.acked_through_seq if progress else 0

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
        with Session(self.engine) as session, session.begin():
            head = session.scalar(select(LedgerStream.last_hub_seq).where(LedgerStream.merchant_id == merchant)) or 0
            rows = session.scalars(select(HubEvent).where(HubEvent.merchant_id == merchant,
                                                          HubEvent.hub_seq > after_hub_seq)
                                   .order_by(HubEvent.hub_seq).limit(limit))
            return [ledger_entry(ev) for ev in rows], head

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


def ingest_with_retry(store: EventStore, topic: str, payload: bytes, stopping, max_delay: float = 30.0) -> Stored:
    """Retry while the database is unavailable (locked, restarting); raise only if *stopping*
    is set, leaving the message unacknowledged for redelivery."""
    delay = 0.05
    while True:
        try:
            return store.ingest(topic, payload)
        except DBAPIError as exc:
            if stopping.is_set():
                raise
            log.warning("ingest.db_retry", extra={"error": str(exc.orig or exc)[:300], "retry_in_s": delay})
            stopping.wait(delay)
            delay = min(delay * 2, max_delay)


def _distinct(events: list[WireEvent]) -> list[WireEvent]:
    """One copy per event_id (a batch may repeat one), oldest ``kiosk_seq`` first."""
    unique = {e.event_id: e for e in events}
    return sorted(unique.values(), key=lambda e: e.kiosk_seq)


def _contiguous(session: Session, merchant: str, kiosk: str, acked: int) -> int:
    """The highest N with every ``kiosk_seq`` 1..N stored, walking up from the last known N."""
    while True:
        seqs = list(session.scalars(
            select(HubEvent.kiosk_seq).where(HubEvent.merchant_id == merchant, HubEvent.kiosk_id == kiosk,
                                             HubEvent.kiosk_seq > acked)
            .order_by(HubEvent.kiosk_seq).limit(1000)))
        for seq in seqs:
            if seq != acked + 1:
                return acked
            acked = seq
        if len(seqs) < 1000:
            return acked


def _row(e: WireEvent, merchant: str, kiosk: str, hub_seq: int) -> HubEvent:
    return HubEvent(event_id=e.event_id, merchant_id=merchant, kiosk_id=kiosk, kiosk_seq=e.kiosk_seq,
                    hub_seq=hub_seq, kind=e.kind, member_id=e.member, delta=e.delta, rule=e.rule,
                    reward=e.reward, reason=e.reason, detail=json.loads(json.dumps(e.detail)),
                    occurred_at=e.occurred_at.astimezone(timezone.utc), mono_ns=e.mono_ns, boot_id=e.boot_id)


def ledger_entry(ev: HubEvent) -> LedgerEntry:
    at = ev.occurred_at if ev.occurred_at.tzinfo else ev.occurred_at.replace(tzinfo=timezone.utc)  # SQLite
    return LedgerEntry(event_id=ev.event_id, kiosk_seq=ev.kiosk_seq, occurred_at=at, mono_ns=ev.mono_ns,
                       boot_id=ev.boot_id, kind=ev.kind, member=ev.member_id, delta=ev.delta, rule=ev.rule,
                       reward=ev.reward, reason=ev.reason, detail=ev.detail or {}, kiosk=ev.kiosk_id,
                       hub_seq=ev.hub_seq)


__all__ = ["EventStore", "OutboxBatch", "Stored", "create_tables", "ingest_with_retry", "ledger_entry", "make_engine"]
