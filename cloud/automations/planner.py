"""Decide who is due for which message, and record the decisions (outbox.record).

The reads run in one read-only snapshot (cloud/metrics/queries.py ``snapshot``: no write lock
held on SQLite while a merchant's visits are aggregated in SQL); only the INSERT of the new
decisions takes the write lock, briefly. Only members who may get marketing are candidates:
consent given (``consent_marketing_at``), not erased, not revoked. Each decision becomes one row
per channel of ``[automations] channels`` (outbox.record): e-mail only to members with an
address; the webhook to every candidate (the shop's system knows them by member id). Win-backs
held out for the control group become ``control`` rows instead, and the others put their bonus
offer on the ledger first (winback.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, select
from sqlalchemy.engine import Connection, Engine

from cloud.automations import outbox, planner_more, triggers, winback
from cloud.automations.triggers import ALMOST, Candidate, Goal, Rules
from cloud.automations.triggers_more import MoreRules
from cloud.config import AutomationsSection
from cloud.metrics.activity import Period, utc
from cloud.metrics.queries import member_activity, snapshot
from cloud.models import HubEvent, Member, Merchant
from cloud.programs import program_of

log = logging.getLogger(__name__)


def rules_of(settings: AutomationsSection) -> Rules:
    return Rules(triggers=frozenset(settings.triggers), welcome_within=timedelta(days=settings.welcome_within_days),
                 birthday_days_before=settings.birthday_days_before, winback_factor=settings.winback_factor,
                 winback_min=timedelta(days=settings.winback_min_days),
                 winback_fallback=timedelta(days=settings.winback_fallback_days),
                 winback_valid=timedelta(days=settings.winback_valid_days),
                 winback_bonus=settings.winback_bonus, winback_bonus_days=settings.winback_bonus_days,
                 control_share=settings.control_share,
                 almost_stamps=settings.almost_there_within, almost_percent=settings.almost_there_within_percent,
                 almost_valid=timedelta(days=settings.almost_there_valid_days))


def merchants(engine: Engine) -> list[str]:
    with snapshot(engine) as conn:
        return list(conn.scalars(select(Merchant.id).order_by(Merchant.id)))


def balances(conn: Connection, merchant: str, now: datetime) -> dict[str, tuple[int, int]]:
    """Per member with a delta before *now*: (balance, reward cycle) — the cycle counts the
    redemptions and expiries that took stamps or points away, so each climb is a new one."""
    E = HubEvent
    spent = case((and_(E.kind.in_(("redeem", "expire")), E.delta < 0), 1))
    query = (select(E.member_id, func.sum(E.delta), func.count(spent))
             .where(E.merchant_id == merchant, E.member_id.is_not(None), E.delta != 0, E.occurred_at < now)
             .group_by(E.member_id))
    return {member: (int(total), int(cycle)) for member, total, cycle in conn.execute(query)}


def candidates(conn: Connection, merchant: str, now: datetime, *, need_email: bool = True,
               with_balances: bool = False) -> list[tuple[Candidate, bool]]:
    """The merchant's members who may be messaged, each with their visits (and, if asked, balance
    and reward cycle) before *now*, and whether they have an e-mail address."""
    query = (select(Member.id, Member.created_at, Member.birthday, Member.email)
             .where(Member.merchant_id == merchant, Member.consent_marketing_at.is_not(None),
                    Member.erased_at.is_(None), Member.revoked.is_(False))
             .order_by(Member.id))
    if need_email:
        query = query.where(Member.email.is_not(None), Member.email != "")
    people = conn.execute(query).all()
    if not people:
        return []
    visits = {a.member_id: a for a in member_activity(conn, merchant, Period(now - timedelta(days=1), now))}
    held = balances(conn, merchant, now) if with_balances else {}
    out = []
    for member_id, joined_at, birthday, email in people:
        a = visits.get(member_id)
        balance, cycle = held.get(member_id, (0, 0))
        out.append((Candidate(member_id, utc(joined_at), birthday, a.visits if a else 0,
                              a.first_visit if a else None, a.last_visit if a else None, balance, cycle),
                    bool(email)))
    return out


def plan(engine: Engine, merchant: str, now: datetime, rules: Rules, channels: Sequence[str] = ("email",),
         more: MoreRules | None = None) -> int:
    """Record every message *merchant*'s members are due for at *now*, once per channel; how many
    rows were new. *more*: the tier and reward-expiry triggers too (planner_more.py)."""
    program = program_of(engine, merchant)
    cheapest = min(program.rewards, key=lambda r: r.cost)
    goal = Goal(cheapest.cost, program.unit)
    with snapshot(engine) as conn:
        people = candidates(conn, merchant, now, need_email=set(channels) == {"email"},
                            with_balances=ALMOST in rules.triggers)
        dues = [(d, email) for c, email in people for d in triggers.due(c, now, program.zone, rules, goal)]
        if more is not None and more.triggers:
            dues += planner_more.dues(conn, merchant, now, program, more, people, set(channels) == {"email"})
        offers = winback.to_offer(conn, merchant, [d for d, _ in dues], rules, program, now)
    winback.put_offers(engine, merchant, offers, now, rules, program.zone, program)  # before the rows: winback.py
    new = held = 0
    with engine.begin() as conn:
        for channel in channels:
            send, out = winback.split([d for d, email in dues if email or channel != "email"], rules.control_share)
            new += outbox.record(conn, merchant, send, now, channel)
            held += outbox.record(conn, merchant, out, now, channel, status=outbox.CONTROL)
    if new or held:
        log.info("automations.planned", extra={"merchant": merchant, "new": new, "held_out": held, "due": len(dues)})
    return new
