"""Offline double spending, found when the kiosks' ledgers merge at the hub.

Two kiosks offline at once may both let a member redeem the same stamps: each saw a
balance that covered it. The hub is the first place that sees both events. Whenever a
merge brings in a spending event (negative delta), the member's history is walked in the
merchant-wide order (``occurred_at``, then ``event_id``, as every kiosk folds it); if the
running balance goes below zero, a ``conflicts`` row records the member, how low it went,
and the spending events since the balance last peaked (the ones that shared the same
stamps). The owner settles it; nothing is reversed automatically. Positive events never
create a dip, so they are not checked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from sqlalchemy import Connection, insert, select

from cloud.models import Conflict, HubEvent

log = logging.getLogger(__name__)


class Spend(Protocol):
    """What the walk needs of a stored event: a ``HubEvent`` or a row selected from ``hub_events``."""

    event_id: str
    kiosk_id: str
    delta: int
    occurred_at: datetime


@dataclass(frozen=True)
class Dip:
    """Where a member's running balance first went below zero."""

    first_event_id: str
    lowest: int
    spending: tuple[Spend, ...]  # negative events from the last peak through the dip


def find_dip(events: Sequence[Spend]) -> Dip | None:
    """Walk one member's events in merchant order; the first dip below zero, or None."""
    ordered = sorted(events, key=_order)
    balance, peak, peak_at, dip_at = 0, 0, -1, None
    lowest = 0
    for i, event in enumerate(ordered):
        balance += event.delta
        if dip_at is None and balance >= peak:
            peak, peak_at = balance, i
        if balance < 0 and dip_at is None:
            dip_at = i
        lowest = min(lowest, balance)
    if dip_at is None:
        return None
    spending = tuple(e for e in ordered[peak_at + 1:dip_at + 1] if e.delta < 0)
    return Dip(ordered[dip_at].event_id, lowest, spending)


def _order(event: Spend) -> tuple[datetime, str]:
    """Merchant order; SQLite hands back stored times without a zone (they are UTC), new rows keep theirs."""
    at = event.occurred_at
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)), event.event_id


def record_conflicts(conn: Connection, merchant: str, new_rows: Iterable[Mapping[str, Any]]) -> int:
    """Check every member whose spending *new_rows* (``hub_events`` values just inserted) brought;
    insert a ``conflicts`` row per new dip and return how many. *conn* is inside the ingest
    transaction, which holds the merchant's lock, so check-then-insert cannot race."""
    members = sorted({r["member_id"] for r in new_rows if r["delta"] < 0 and r["member_id"]})
    found = 0
    for member in members:
        history = conn.execute(select(HubEvent.event_id, HubEvent.kiosk_id, HubEvent.delta, HubEvent.occurred_at)
                               .where(HubEvent.merchant_id == merchant, HubEvent.member_id == member)).all()
        dip = find_dip(history)
        if dip is None:
            continue
        known = conn.scalar(select(Conflict.id).where(Conflict.merchant_id == merchant, Conflict.member_id == member,
                                                      Conflict.first_event_id == dip.first_event_id))
        if known is not None:
            continue
        event_ids, kiosks = [e.event_id for e in dip.spending], sorted({e.kiosk_id for e in dip.spending})
        conn.execute(insert(Conflict), {"merchant_id": merchant, "member_id": member, "balance": dip.lowest,
                                        "first_event_id": dip.first_event_id, "event_ids": event_ids,
                                        "kiosks": kiosks})
        found += 1
        log.warning("ingest.conflict", extra={"merchant": merchant, "member": member, "balance": dip.lowest,
                                              "events": event_ids, "kiosks": kiosks})
    return found
