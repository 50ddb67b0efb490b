"""The dashboard's member lists: at risk, most visits, close to a reward. At most ``LIMIT`` each.

Chosen from the per-member aggregates and balances the dashboard has already read (a sort of
a few ten thousand rows in memory costs less than another pass over the events per list); only
the names of the chosen few are then read. An erased member is listed under the member id.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cloud.metrics.activity import MemberActivity, Period
from kiosk.rules.program import Program

LIMIT = 50
CLOSE_STAMPS = 2         # a stamp card: at most this many stamps to go
CLOSE_POINTS_SHARE = 10  # points: at most 1/10 of the reward's cost to go


@dataclass(frozen=True)
class AtRisk:
    """Overdue by more than twice the member's usual interval, but not yet lost."""

    member_id: str
    name: str
    visits: int
    last_visit: datetime
    usual_interval_days: float
    days_since_last_visit: float


@dataclass(frozen=True)
class TopMember:
    member_id: str
    name: str
    visits_in_period: int
    visits: int
    last_visit: datetime


@dataclass(frozen=True)
class CloseToReward:
    """``remaining`` stamps or points to the cheapest reward (``reward``, costing ``cost``)."""

    member_id: str
    name: str
    balance: int
    remaining: int
    reward: str
    cost: int
    last_visit: datetime | None


def at_risk(activities: Iterable[MemberActivity], period: Period, limit: int = LIMIT) -> list[AtRisk]:
    """Members with 2+ visits whose time since the last one, at the period's end, is more than twice
    their usual interval ((last − first) / (visits − 1)), and who are still customers (last visit
    within the inactivity window): those can still be won back. Most visits first — the regulars
    slipping away — then the longest overdue."""
    day = timedelta(days=1)
    rows = []
    for a in activities:
        if a.visits < 2 or not a.customer_at_end(period):
            continue
        interval, since = a.usual_interval, period.end - a.last_visit
        if since > 2 * interval:
            rows.append(AtRisk(a.member_id, a.member_id, a.visits, a.last_visit, interval / day, since / day))
    return heapq.nsmallest(limit, rows, key=lambda r: (-r.visits, -r.days_since_last_visit, r.member_id))


def top_members(activities: Iterable[MemberActivity], limit: int = LIMIT) -> list[TopMember]:
    """Most visits in the period; ties by visits overall, then member id."""
    best = heapq.nsmallest(limit, (a for a in activities if a.visits_in_period),
                           key=lambda a: (-a.visits_in_period, -a.visits, a.member_id))
    return [TopMember(a.member_id, a.member_id, a.visits_in_period, a.visits, a.last_visit) for a in best]


def close_to_reward(balances: Mapping[str, int], last_visits: Mapping[str, datetime], program: Program | None,
                    limit: int = LIMIT) -> list[CloseToReward]:
    """Members who cannot afford the cheapest reward yet but are at most 2 stamps (stamp card) or
    10 % of its cost (points) short of it; fewest to go first, then the most recent visitors.
    A member who can already afford it is not "close": the kiosk offers it at the next scan.
    Empty without a programme (the costs are unknown)."""
    if program is None:
        return []
    reward = min(program.rewards, key=lambda r: r.cost)
    cost = reward.cost
    most = CLOSE_STAMPS if program.unit == "stamps" else cost // CLOSE_POINTS_SHARE
    rows = [CloseToReward(m, m, b, cost - b, reward.id, cost, last_visits.get(m))
            for m, b in balances.items() if 0 < cost - b <= most]
    return heapq.nsmallest(limit, rows, key=lambda r: (r.remaining, -_stamp(r.last_visit), r.member_id))


def _stamp(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else float("-inf")


def named(rows: list, names: Mapping[str, str]) -> list:
    """*rows* with ``name`` set from *names* (an erased member's entry is the member id)."""
    return [replace(r, name=names.get(r.member_id, r.member_id)) for r in rows]
