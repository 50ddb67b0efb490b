"""Decide who is due for which message, and record the decisions (outbox.record).

The reads run in one read-only snapshot (cloud/metrics/queries.py ``snapshot``: no write lock
held on SQLite while a merchant's visits are aggregated in SQL); only the INSERT of the new
decisions takes the write lock, briefly. Only members who may get marketing are candidates:
consent given (``consent_marketing_at``), not erased, not revoked, with an e-mail address.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from cloud.automations import outbox, triggers
from cloud.automations.triggers import Candidate, Rules
from cloud.config import AutomationsSection
from cloud.metrics.activity import Period, utc
from cloud.metrics.queries import member_activity, snapshot
from cloud.models import Member, Merchant
from cloud.programs import program_of

log = logging.getLogger(__name__)


def rules_of(settings: AutomationsSection) -> Rules:
    return Rules(triggers=frozenset(settings.triggers), welcome_within=timedelta(days=settings.welcome_within_days),
                 birthday_days_before=settings.birthday_days_before, winback_factor=settings.winback_factor,
                 winback_min=timedelta(days=settings.winback_min_days),
                 winback_fallback=timedelta(days=settings.winback_fallback_days),
                 winback_valid=timedelta(days=settings.winback_valid_days))


def merchants(engine: Engine) -> list[str]:
    with snapshot(engine) as conn:
        return list(conn.scalars(select(Merchant.id).order_by(Merchant.id)))


def candidates(conn: Connection, merchant: str, now: datetime) -> list[Candidate]:
    """The merchant's members who may be messaged, each with their visits before *now*."""
    query = (select(Member.id, Member.created_at, Member.birthday)
             .where(Member.merchant_id == merchant, Member.consent_marketing_at.is_not(None),
                    Member.erased_at.is_(None), Member.revoked.is_(False), Member.email.is_not(None),
                    Member.email != "")
             .order_by(Member.id))
    people = conn.execute(query).all()
    if not people:
        return []
    visits = {a.member_id: a for a in member_activity(conn, merchant, Period(now - timedelta(days=1), now))}
    out = []
    for member_id, joined_at, birthday in people:
        a = visits.get(member_id)
        out.append(Candidate(member_id, utc(joined_at), birthday, a.visits if a else 0,
                             a.first_visit if a else None, a.last_visit if a else None))
    return out


def plan(engine: Engine, merchant: str, now: datetime, rules: Rules) -> int:
    """Record every message *merchant*'s members are due for at *now*; how many were new."""
    zone = program_of(engine, merchant).zone
    with snapshot(engine) as conn:
        dues = [d for c in candidates(conn, merchant, now) for d in triggers.due(c, now, zone, rules)]
    with engine.begin() as conn:
        new = outbox.record(conn, merchant, dues, now)
    if new:
        log.info("automations.planned", extra={"merchant": merchant, "new": new, "due": len(dues)})
    return new
