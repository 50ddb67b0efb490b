"""What triggers_more.py needs from the hub's ledger, read in the planner's snapshot: recent
``tier_change`` entries, each member's tier window, and since when their rewards are affordable.

Each read is one query per merchant, never one per member, and rides on migration 0005's indexes:

* tier changes: ``hub_events_kind_time (merchant_id, kind, occurred_at)``, a few days' range;
* the tier window: a GROUP BY over the window's visits through ``hub_events_kind_member``
  (covering for the visit count), plus the visits that leave the window within the warning
  time (a range of ``tier_loss_days_before`` days on ``hub_events_kind_time``);
* affordable since: only members whose balance reaches an expiring reward's cost (a GROUP BY
  HAVING on ``hub_events_member_time``); their deltas are folded here exactly as
  kiosk/rules/state.py ``_affordable`` folds them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Float, and_, cast, func, select
from sqlalchemy.engine import Connection

from cloud.automations.triggers import Candidate, Due
from cloud.automations.triggers_more import (REWARD_EXPIRY, TIER_LOSS, TIER_REACHED, MoreRules, TierChange, Window,
                                             reward_expiry, tier_loss, tier_reached)
from cloud.config import AutomationsSection
from cloud.metrics.activity import utc
from cloud.models import HubEvent, Member
from kiosk.rules.program import Program, Reward, Tiers

log = logging.getLogger(__name__)
E = HubEvent


def rules_of(settings: AutomationsSection) -> MoreRules:
    return MoreRules(triggers=frozenset(settings.triggers) & {TIER_REACHED, TIER_LOSS, REWARD_EXPIRY},
                     tier_reached_valid=timedelta(days=settings.tier_reached_valid_days),
                     tier_loss_days_before=settings.tier_loss_days_before,
                     reward_expiry_days_before=settings.reward_expiry_days_before,
                     transactional_without_consent=settings.transactional_without_consent)


def tier_changes(conn: Connection, merchant: str, since: datetime, now: datetime) -> dict[str, TierChange]:
    """Each member's newest ``tier_change`` in [since, now]."""
    rows = conn.execute(select(E.member_id, E.occurred_at, E.detail)
                        .where(E.merchant_id == merchant, E.kind == "tier_change", E.member_id.is_not(None),
                               E.occurred_at >= since, E.occurred_at <= now)
                        .order_by(E.occurred_at, E.event_id))
    return {member: TierChange(utc(at), (detail or {}).get("from"), (detail or {}).get("to"))
            for member, at, detail in rows}


def _amount() -> object:
    return cast(E.detail["amount"].as_string(), Float)


def windows(conn: Connection, merchant: str, now: datetime, tiers: Tiers, days_ahead: int) -> dict[str, Window]:
    """Per member with a visit in the tier window ``(now − window_days, now]``: the window's value
    and the visits that leave it within *days_ahead* days. Members below the second level's
    threshold are left out (they have no tier to lose)."""
    oldest = now - timedelta(days=tiers.window_days)
    horizon = oldest + timedelta(days=days_ahead)
    visits = tiers.basis == "visits"
    measure = func.count() if visits else func.sum(_amount())
    floor = tiers.levels[1].threshold if len(tiers.levels) > 1 else None
    if floor is None:
        return {}
    query = (select(E.member_id, measure)
             .where(E.merchant_id == merchant, E.kind == "visit", E.member_id.is_not(None),
                    E.occurred_at > oldest, E.occurred_at <= now)
             .group_by(E.member_id).having(measure >= (int(floor) if visits else float(floor))))
    values = {member: Decimal(str(v)) for member, v in conn.execute(query)}
    if not values:
        return {}
    leaving: dict[str, list] = defaultdict(list)
    soon = (select(E.member_id, E.occurred_at, *([] if visits else [_amount()]))
            .where(E.merchant_id == merchant, E.kind == "visit", E.member_id.is_not(None),
                   E.occurred_at > oldest, E.occurred_at <= min(horizon, now))
            .order_by(E.occurred_at, E.event_id))
    for row in conn.execute(soon):
        if row[0] in values:
            leaving[row[0]].append((utc(row[1]), Decimal(1) if visits else Decimal(str(row[2] or 0))))
    return {m: Window(v, tuple(leaving.get(m, ()))) for m, v in values.items()}


def affordable(conn: Connection, merchant: str, now: datetime,
               rewards: Sequence[Reward]) -> dict[str, tuple[int, tuple[tuple[str, datetime], ...]]]:
    """(balance, affordable_since) of each member who can afford an expiring reward at *now*."""
    expiring = [r for r in rewards if r.expires_after_days]
    if not expiring:
        return {}
    cheapest = min(r.cost for r in expiring)
    mine = and_(E.merchant_id == merchant, E.member_id.is_not(None), E.delta != 0, E.occurred_at < now)
    rich = select(E.member_id).where(mine).group_by(E.member_id).having(func.sum(E.delta) >= cheapest)
    rows = conn.execute(select(E.member_id, E.occurred_at, E.delta, E.rule)
                        .where(mine, E.member_id.in_(rich))
                        .order_by(E.member_id, E.occurred_at, E.event_id))
    out: dict[str, tuple[int, tuple[tuple[str, datetime], ...]]] = {}
    member, balance, since = None, 0, {}
    for who, at, delta, rule in rows:
        if who != member:
            if member is not None:
                out[member] = (balance, tuple(since.items()))
            member, balance, since = who, 0, {}
        balance += delta
        if rule and rule.startswith("reward-expiry:"):
            since.pop(rule.split(":", 1)[1], None)
        since = {r.id: since.get(r.id, utc(at)) for r in expiring if balance >= r.cost}
    if member is not None:
        out[member] = (balance, tuple(since.items()))
    return out


def transactional_candidates(conn: Connection, merchant: str, need_email: bool) -> dict[str, bool]:
    """Members who may get a service message without marketing consent: agreed to the programme,
    not erased, not revoked; each with whether they have an e-mail address."""
    query = select(Member.id, Member.email).where(Member.merchant_id == merchant, Member.consent_program_at.is_not(None),
                                                  Member.erased_at.is_(None), Member.revoked.is_(False))
    if need_email:
        query = query.where(Member.email.is_not(None), Member.email != "")
    return {member: bool(email) for member, email in conn.execute(query)}


def dues(conn: Connection, merchant: str, now: datetime, program: Program, rules: MoreRules,
         people: Iterable[tuple[Candidate, bool]], need_email: bool = True) -> list[tuple[Due, bool]]:
    """The tier and reward-expiry messages due at *now*, for *people* (the marketing candidates,
    with whether they have an address) and, with ``transactional_without_consent``, for every
    member who agreed to the programme where the message is a service message."""
    allowed = {c.member_id: email for c, email in people}
    zone, out = program.zone, []
    tiers = program.tiers
    if tiers is not None and TIER_REACHED in rules.triggers:
        for member, change in tier_changes(conn, merchant, now - rules.tier_reached_valid, now).items():
            due = tier_reached(member, change, now, tiers, rules, zone) if member in allowed else None
            if due is not None:
                out.append((due, allowed[member]))
    if tiers is not None and TIER_LOSS in rules.triggers:
        for member, window in windows(conn, merchant, now, tiers, rules.tier_loss_days_before).items():
            due = tier_loss(member, window, now, tiers, rules, zone) if member in allowed else None
            if due is not None:
                out.append((due, allowed[member]))
    if REWARD_EXPIRY in rules.triggers:
        service = dict(allowed)
        if rules.transactional_without_consent:
            service.update(transactional_candidates(conn, merchant, need_email))
        for member, (balance, since) in affordable(conn, merchant, now, program.rewards).items():
            if member in service:
                out.extend((d, service[member])
                           for d in reward_expiry(member, since, balance, now, program.rewards, rules))
    return out
