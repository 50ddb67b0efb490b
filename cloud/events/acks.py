"""The kiosk's cumulative ack: the highest ``kiosk_seq`` N of its ledger with 1..N all settled.

Settled means stored, or refused for good (a ``refused_events`` row; its dead letter holds
the event), so one bad row never stalls a kiosk's outbox. Acks are kept per kiosk ledger
(``ledger_id``): a reinstalled kiosk numbers from 1 again and is acked apart from the old one.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Connection, func, insert, select, update

from cloud.events.sql import Dialect
from cloud.models import HubEvent, KioskProgress, RefusedEvent, utcnow
from kiosk.protocol.event_schema import printable

log = logging.getLogger(__name__)

PAGE = 1000  # settled seqs read per query while walking the ack up


def settle_refused(conn: Connection, sql: Dialect, merchant: str, kiosk: str, ledger_id: str,
                   settled: list[tuple[int | None, str]], now: datetime) -> None:
    """Record the kiosk_seqs refused for good (their dead letters hold the events), so the
    kiosk's ack moves past them instead of stalling its outbox on one bad row."""
    rows = {seq: {"merchant_id": merchant, "kiosk_id": kiosk, "ledger_id": ledger_id, "kiosk_seq": seq,
                  "reason": printable(reason)[:500], "refused_at": now} for seq, reason in settled if seq}
    if rows:
        conn.execute(sql.upsert(RefusedEvent).on_conflict_do_nothing(), list(rows.values()))


def acked_through(conn: Connection, merchant: str, kiosk: str, ledger_id: str) -> int:
    """The ack of one kiosk ledger as stored (0 if the hub never heard of it)."""
    return conn.scalar(select(KioskProgress.acked_through_seq).where(
        KioskProgress.merchant_id == merchant, KioskProgress.kiosk_id == kiosk,
        KioskProgress.ledger_id == ledger_id)) or 0


def advance_ack(conn: Connection, merchant: str, kiosk: str, ledger_id: str, new_seqs: list[int],
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
                                     .order_by(seq_col).limit(PAGE)))
            seqs.update(page)
            full = full or len(page) == PAGE
        start = acked
        while acked + 1 in seqs:
            acked += 1
        if acked == start or not full:
            return acked
