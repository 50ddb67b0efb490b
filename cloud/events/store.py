"""``EventStore``: the hub's event store, the one object the ingest worker and the commands use.

It holds the engine, the hub's clock (injected in tests) and the clock window, and runs each
job in a transaction of its own: ingest one message (cloud/events/ingest.py), dead-letter a
whole message, lease and mark ledger outbox rows (outbox.py), and the reads the commands,
the sync responder and the tests make. Nothing here touches MQTT.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cloud.db import create_tables, make_engine
from cloud.events import ingest as ingesting
from cloud.events import outbox
from cloud.events.acks import acked_through
from cloud.events.deadletters import DeadLetters, envelope, ledger_id_of
from cloud.events.ingest import Stored
from cloud.events.sql import Dialect
from cloud.models import Conflict, DeadLetter, HubEvent, KioskProgress, LedgerOutbox, LedgerStream, utcnow
from kiosk.protocol.event_schema import ClockWindow, printable
from kiosk.protocol.messages import LedgerEntry
from kiosk.protocol.topics import parse_kiosk_topic

log = logging.getLogger(__name__)


class EventStore:
    """*clock* is the hub's (injected in tests); *window* bounds ``occurred_at`` around it."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow,
                 window: ClockWindow = ClockWindow()) -> None:
        self.engine = engine
        self.clock = clock
        self.window = window
        self._sql = Dialect(engine)
        self._dead = DeadLetters()

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

    # -- writing -----------------------------------------------------------------------------
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
            return self._dead_message(topic, payload, "not a kiosk events topic", None, None, published)
        merchant, kiosk = where.merchant, where.kiosk
        decoded = ingesting.decode(payload)
        if isinstance(decoded, str):
            return self._dead_message(topic, payload, decoded, merchant, kiosk, published)
        now = self.clock()
        checked = ingesting.check(*decoded, now, self.window, merchant, kiosk)
        if isinstance(checked, str):
            return self._dead_message(topic, payload, checked, merchant, kiosk, published)
        with self.engine.begin() as conn:
            if published:
                outbox.mark(conn, self._sql, published, now)
            stored, letters = ingesting.store(conn, self._sql, self._dead, topic, merchant, kiosk, checked, now,
                                              lease_to, lease)
        self._dead.written(letters)
        return stored

    def dead_letter(self, topic: str, payload: bytes, reason: str, published: Sequence[int] = ()) -> Stored:
        """Dead-letter a message the store failed on (call after the failed transaction rolled back)."""
        where = parse_kiosk_topic(topic)
        ok = where is not None and where.leaf == "events"
        return self._dead_message(topic, payload, reason, where.merchant if ok else None,
                                  where.kiosk if ok else None, published)

    def _dead_message(self, topic: str, payload: bytes, reason: str, merchant: str | None, kiosk: str | None,
                      published: Sequence[int] = ()) -> Stored:
        """Dead-letter a whole message in a transaction of its own; the kiosk's ack is unchanged."""
        with self.engine.begin() as conn:
            if published:
                outbox.mark(conn, self._sql, published, self.clock())
            letter = self._dead.letter(topic, payload, reason, self.clock())
            if letter is not None:
                conn.execute(insert(DeadLetter).values(**letter[1]))
            acked, ledger_id = 0, ledger_id_of(envelope(payload)) or ""
            if merchant and kiosk:
                acked = acked_through(conn, merchant, kiosk, ledger_id)
        self._dead.written([letter[0]] if letter else [])
        log.warning("ingest.dead_letter", extra={"topic": printable(topic)[:300], "reason": reason[:300],
                                                 "bytes": len(payload), "repeat": letter is None})
        return Stored(merchant, kiosk, acked_through_seq=acked, dead_letter=reason, ledger_id=ledger_id)

    def claim_outbox(self, worker: str, limit: int = 500, lease: float = 30.0, *, own: bool = True,
                     published: Sequence[int] = ()) -> list[outbox.OutboxBatch]:
        """Lease unpublished rows to *worker* (see ``outbox.claim``); *published* ids are marked
        first, in the same transaction."""
        now = utcnow()
        with self.engine.begin() as conn:
            if published:
                outbox.mark(conn, self._sql, published, now)
            return outbox.claim(conn, self._sql, worker, limit, lease, own, now)

    def mark_published(self, ids: Sequence[int]) -> None:
        with self.engine.begin() as conn:
            outbox.mark(conn, self._sql, ids, utcnow())

    # -- reading -------------------------------------------------------------------------------
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
            rows = conn.execute(select(outbox.EVENTS).where(HubEvent.merchant_id == merchant,
                                                            HubEvent.hub_seq > after_hub_seq)
                                .order_by(HubEvent.hub_seq).limit(limit))
            return [entry for entry in map(outbox.relayable, rows) if entry is not None], head

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
