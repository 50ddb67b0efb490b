"""The segments an owner can send a campaign to, as sets of member ids, from the same reads and
rules as the dashboard's lists (cloud/metrics/lists.py) so "at risk" means the same on both pages:

* ``all`` — every member;
* ``active`` — a visit within the inactivity window (90 days), the dashboard's "customer";
* ``at_risk`` — overdue by more than twice their usual interval, not yet lost (lists.at_risk);
* ``vip`` — the top tenth (at least one member) by visits in the last 90 days (lists.top_members);
* ``tier`` — members whose tier at the moment is the one named (the engine's tier_at window);
* ``close`` — close to the cheapest reward (lists.close_to_reward).

Consent is not decided here: the campaign planner intersects with the members who may be messaged.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from cloud.automations.planner_more import _amount
from cloud.automations.triggers_more import level, tier_of
from cloud.metrics import lists
from cloud.metrics.activity import Period
from cloud.metrics.queries import balances, member_activity
from cloud.models import HubEvent, Member
from kiosk.common.errors import ConfigError
from kiosk.rules.program import Program

SEGMENTS = ("all", "active", "at_risk", "vip", "tier", "close")
LABELS = {"all": "All members", "active": "Active (a visit in the last 90 days)", "at_risk": "At risk",
          "vip": "VIP (top 10 % by visits, 90 days)", "tier": "Members of a tier", "close": "Close to a reward"}
WINDOW = timedelta(days=90)
VIP_SHARE = 10  # the top 1/10
EVERYONE = 10 ** 9
E = HubEvent


def check(segment: str, tier: str | None, program: Program) -> None:
    """Raises ConfigError naming the fix for an unknown segment or tier."""
    if segment not in SEGMENTS:
        raise ConfigError(f"unknown segment {segment!r}: choose one of {', '.join(SEGMENTS)}")
    if segment == "tier":
        if program.tiers is None:
            raise ConfigError("the programme has no tiers: choose another segment, or add [tiers] to the programme")
        if level(program.tiers, tier) < 0:
            raise ConfigError(f"unknown tier {tier!r}: choose one of "
                              f"{', '.join(t.name for t in program.tiers.levels)}")


def members(conn: Connection, merchant: str, now: datetime, program: Program, segment: str,
            tier: str | None = None) -> set[str]:
    """The ids of *merchant*'s members in *segment* at *now*; raises ConfigError (see check)."""
    check(segment, tier, program)
    if segment == "all":
        return set(conn.scalars(select(Member.id).where(Member.merchant_id == merchant)))
    if segment == "tier":
        return in_tier(conn, merchant, now, program, tier or "")
    period = Period(now - WINDOW, now)
    activity = member_activity(conn, merchant, period)
    if segment == "active":
        return {a.member_id for a in activity if a.customer_at_end(period)}
    if segment == "at_risk":
        return {r.member_id for r in lists.at_risk(activity, period, EVERYONE)}
    if segment == "vip":
        visitors = sum(1 for a in activity if a.visits_in_period)
        return {r.member_id for r in lists.top_members(activity, max(1, math.ceil(visitors / VIP_SHARE)))}
    held = balances(conn, merchant, now)
    return {r.member_id for r in lists.close_to_reward(held, {a.member_id: a.last_visit for a in activity},
                                                       program, EVERYONE)}


def in_tier(conn: Connection, merchant: str, now: datetime, program: Program, tier: str) -> set[str]:
    """Members whose tier at *now* is *tier*: the visits (or spend) in ``(now − window, now]``; the
    first tier holds every member with less than the second's threshold, visits or not."""
    tiers = program.tiers
    if tiers is None:
        return set()
    wanted = level(tiers, tier)
    visits = tiers.basis == "visits"
    measure = func.count() if visits else func.sum(_amount())
    query = (select(E.member_id, measure)
             .where(E.merchant_id == merchant, E.kind == "visit", E.member_id.is_not(None),
                    E.occurred_at > now - timedelta(days=tiers.window_days), E.occurred_at <= now)
             .group_by(E.member_id))
    values = {m: tier_of(tiers, Decimal(str(v or 0))) for m, v in conn.execute(query)}
    if wanted > 0:
        return {m for m, at in values.items() if at == wanted}
    everyone = set(conn.scalars(select(Member.id).where(Member.merchant_id == merchant)))
    return {m for m in everyone if values.get(m, 0) == 0}
