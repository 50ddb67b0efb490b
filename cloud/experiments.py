"""The owner's A/B tests at the hub: per-arm figures from the ledger, and ending a test.

A member's arm is not stored anywhere: it is ``kiosk.rules.experiments.assign`` of the member
id, the same pure function the kiosks ran, so the hub recomputes it for each member the SQL
query returns. A member counts in an arm from their **first exposure**: their first credited
visit on or after the experiment's start (the shop's local midnight) and before its end (the
local midnight of ``ended``, or now). From there:

* *returned*: a second visit within N days of the first exposure, before the end. Only members
  whose first exposure is at least N days before the end are *measured*: a member who joined
  yesterday has not yet had the chance to come back, and counting them would dilute the rate;
* *visits per member*: visits in the experiment's time, over the arm's members;
* *redemption rate*: members with a redemption in the experiment's time, over the arm's members.

Ending keeps a winner: a new programme version with ``ended`` (today, local) and ``winner``
set, which every kiosk then applies to everyone (kiosk/rules/experiments.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection, Engine

from cloud.metrics.abtest import Arm, Comparison, compare
from cloud.metrics.activity import utc
from cloud.metrics.queries import snapshot
from cloud.models import HubEvent
from kiosk.common.errors import ConfigError
from kiosk.rules.experiments import assign, status
from kiosk.rules.program import Experiment, Program, parse_program

RETURN_DAYS = 30  # "came back within 30 days of their first exposure", unless the page asks otherwise
MAX_RETURN_DAYS = 365
E = HubEvent


@dataclass(frozen=True)
class Exposure:
    """A member's visits in an experiment's time: the first, the second (if any) and how many."""

    member: str
    first: datetime
    second: datetime | None
    visits: int


def exposures(conn: Connection, merchant: str, start: datetime, end: datetime) -> list[Exposure]:
    """One row per member with a visit in [start, end): a window function numbers each member's
    visits, so the database returns only the first two, never the raw events."""
    ranked = (select(E.member_id.label("member"), E.occurred_at.label("at"),
                     func.row_number().over(partition_by=E.member_id, order_by=(E.occurred_at, E.id)).label("n"),
                     func.count().over(partition_by=E.member_id).label("visits"))
              .where(E.merchant_id == merchant, E.kind == "visit", E.member_id.is_not(None),
                     E.occurred_at >= start, E.occurred_at < end)
              .subquery())
    query = (select(ranked.c.member, func.min(ranked.c.at), func.max(case((ranked.c.n == 2, ranked.c.at))),
                    func.max(ranked.c.visits))
             .where(ranked.c.n <= 2)
             .group_by(ranked.c.member))
    return [Exposure(member, utc(first), utc(second) if second is not None else None, int(visits))
            for member, first, second, visits in conn.execute(query)]


def redeemers(conn: Connection, merchant: str, start: datetime, end: datetime) -> set[str]:
    """Members with at least one redemption in [start, end)."""
    query = (select(E.member_id)
             .where(E.merchant_id == merchant, E.kind == "redeem", E.member_id.is_not(None),
                    E.occurred_at >= start, E.occurred_at < end)
             .group_by(E.member_id))
    return {member for (member,) in conn.execute(query)}


@dataclass(frozen=True)
class Result:
    """What the owner's page shows of one experiment."""

    experiment: Experiment
    status: str  # kiosk.rules.experiments.status
    start: datetime
    end: datetime
    days: int
    arms: tuple[Arm, ...]
    not_enrolled: int  # exposed members outside the enrolled share
    comparisons: tuple[Comparison, ...]  # each later variant against the first


def span(experiment: Experiment, program: Program, now: datetime) -> tuple[datetime, datetime]:
    """The experiment's time in UTC: from the local midnight of ``started`` to that of ``ended``
    (or *now*)."""
    def midnight(day: date) -> datetime:
        return utc(datetime.combine(day, time(0), tzinfo=program.zone))
    end = utc(now) if experiment.ended is None else min(utc(now), midnight(experiment.ended))
    return midnight(experiment.started), end


def arms(experiment: Experiment, seen: list[Exposure], redeemed: set[str], end: datetime,
         days: int) -> tuple[tuple[Arm, ...], int]:
    """Per-arm counts of the members *seen* (pure: the page's figures from the query's rows)."""
    window = timedelta(days=days)
    counts: dict[str, Counter] = {v.id: Counter() for v in experiment.variants}
    outside = 0
    for e in seen:
        variant = assign(experiment, e.member)
        if variant is None:
            outside += 1
            continue
        c = counts[variant]
        c["members"] += 1
        c["visits"] += e.visits
        c["redeemed"] += e.member in redeemed
        if e.first + window <= end:
            c["measured"] += 1
            c["returned"] += e.second is not None and e.second - e.first <= window
    return tuple(Arm(v, c["members"], c["measured"], c["returned"], c["visits"], c["redeemed"])
                 for v, c in counts.items()), outside


def results(engine: Engine, merchant: str, program: Program, now: datetime,
            days: int = RETURN_DAYS) -> list[Result]:
    """Every experiment of *program* (the one in force) with its figures, in one read snapshot."""
    if not 1 <= days <= MAX_RETURN_DAYS:
        raise ConfigError(f"the return window must be 1 to {MAX_RETURN_DAYS} days, got {days}")
    out = []
    today = now.astimezone(program.zone).date()
    with snapshot(engine) as conn:
        for experiment in program.experiments:
            start, end = span(experiment, program, now)
            seen = exposures(conn, merchant, start, end) if start < end else []
            redeemed = redeemers(conn, merchant, start, end) if start < end else set()
            per_arm, outside = arms(experiment, seen, redeemed, end, days)
            comparisons = tuple(compare(per_arm[0], arm, days) for arm in per_arm[1:])
            out.append(Result(experiment, status(experiment, today), start, end, days, per_arm, outside, comparisons))
    return out


def keep_winner(program: Program, experiment_id: str, winner: str, today: date) -> Program:
    """*program* with *experiment_id* ended today keeping *winner* for everyone; raises
    ConfigError naming the problem (unknown experiment or variant, already ended, not started)."""
    experiment = next((e for e in program.experiments if e.id == experiment_id), None)
    if experiment is None:
        raise ConfigError(f"no experiment {experiment_id!r} in the programme in force")
    if experiment.ended is not None:
        raise ConfigError(f"experiment {experiment_id!r} already ended on {experiment.ended:%Y-%m-%d}")
    if winner not in {v.id for v in experiment.variants}:
        raise ConfigError(f"experiment {experiment_id!r} has no variant {winner!r}")
    raw = program.model_dump(mode="json")
    for doc in raw["experiments"]:
        if doc["id"] == experiment_id:
            doc.update(ended=today.isoformat(), winner=winner)
    return parse_program(raw, f"experiment {experiment_id}")  # the kiosk's own checks, once more
