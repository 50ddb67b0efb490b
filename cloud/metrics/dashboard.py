"""The owner dashboard of one merchant for one period, and its parts as CSV.

``dashboard()`` reads everything in one read transaction (queries.snapshot) — two passes over
the merchant's events (visits per member, balances per member) and three short ranges of the
period — and computes the rest in memory. The result is a plain dataclass of plain values the
web pages render and export; nothing in it refers back to the database.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy.engine import Engine

from cloud.metrics import cohorts, feedback, formulas, lists, queries
from cloud.metrics.activity import Period
from cloud.metrics.cohorts import CohortGrid
from cloud.metrics.feedback import NpsComment, NpsMonth
from cloud.metrics.formulas import Figure, RewardCounts
from cloud.metrics.lists import AtRisk, CloseToReward, TopMember
from cloud.metrics.series import Series, new_per_day, visit_series
from kiosk.rules.program import Program

log = logging.getLogger(__name__)

COHORT_MONTHS = 12


@dataclass(frozen=True)
class Dashboard:
    """What the owner's dashboard shows for ``merchant`` over ``period`` (UTC, see activity.py).

    * ``figures`` — in page order; look one up with ``figure(key)``. Keys: members, new_members,
      active_members, visits, customers_at_start,
      customers, new_customers, lost_customers, retention_rate, churn_rate, repeat_rate,
      purchase_frequency, average_order_value, lifetime_value, redemption_rate,
      outstanding_rewards, nps. ``value`` None means "cannot say", and ``note`` says why.
    * ``series`` — visits, new_visits, returning_visits: one (date, count) per UTC day.
    * ``cohorts`` — the retention grid of the last ``COHORT_MONTHS`` months of first visits.
    * ``at_risk``, ``top_members``, ``close_to_reward`` — at most 50 members each.
    * ``nps_trend`` — the NPS of each of the last ``feedback.TREND_MONTHS`` UTC months up to the
      period's end; ``nps_comments`` — the period's newest comments (at most ``feedback.COMMENTS``).
    """

    merchant: str
    period: Period
    figures: list[Figure]
    series: list[Series]
    cohorts: CohortGrid
    at_risk: list[AtRisk]
    top_members: list[TopMember]
    close_to_reward: list[CloseToReward]
    currency: str = ""
    nps_trend: list[NpsMonth] = field(default_factory=list)
    nps_comments: list[NpsComment] = field(default_factory=list)

    def figure(self, key: str) -> Figure:
        """The figure named *key*; KeyError if there is none."""
        for f in self.figures:
            if f.key == key:
                return f
        raise KeyError(key)

    def series_named(self, key: str) -> Series:
        """The series named *key*; KeyError if there is none."""
        for s in self.series:
            if s.key == key:
                return s
        raise KeyError(key)

    def new_and_returning(self) -> list[tuple[date, int, int]]:
        """(day, new, returning) per day: what ``cloud.web.charts.stacked_bars`` draws."""
        new, back = self.series_named("new_visits").points, self.series_named("returning_visits").points
        return [(day, n, r) for (day, n), (_, r) in zip(new, back)]


def dashboard(engine: Engine, merchant: str, start: datetime, end: datetime, program: Program | None = None,
              window_days: int = 90, *, cohort_months: int = COHORT_MONTHS, limit: int = lists.LIMIT) -> Dashboard:
    """The dashboard of *merchant* for [start, end) (aware datetimes), with members lost after
    *window_days* without a visit. *program* gives the reward costs (outstanding rewards, the
    redemption rate, who is close to a reward) and the currency; without it those say "unknown".
    Raises ConfigError for a period that ends before it starts or naive datetimes."""
    period = Period(start, end, timedelta(days=window_days))
    grid_from = cohorts.grid_start(period.end, cohort_months)
    began = time.perf_counter()
    with queries.snapshot(engine) as conn:
        activity = queries.member_activity(conn, merchant, period, cohorts.month_starts(grid_from, cohort_months))
        balances = queries.balances(conn, merchant, period.end)
        per_day = queries.visits_per_day(conn, merchant, period)
        amounts = queries.amounts(conn, merchant, period)
        redeemed, expired = queries.reward_counts(conn, merchant, period.end)
        enrolled = queries.member_counts(conn, merchant, period)
        trend_starts = cohorts.month_starts(cohorts.grid_start(period.end, feedback.TREND_MONTHS),
                                            feedback.TREND_MONTHS)
        scores = queries.nps_scores(conn, merchant, period)
        per_month = queries.nps_per_month(conn, merchant, trend_starts, period.end)
        comments = queries.nps_comments(conn, merchant, period, feedback.COMMENTS)
        read = time.perf_counter()
        at_risk = lists.at_risk(activity, period, limit)
        top = lists.top_members(activity, limit)
        close = lists.close_to_reward(balances, {a.member_id: a.last_visit for a in activity}, program, limit)
        names = queries.names(conn, merchant, {r.member_id for r in (*at_risk, *top, *close)})

    cost = formulas.cheapest_cost(program)
    outstanding = formulas.outstanding_rewards(balances.values(), cost) if cost is not None else None
    currency = program.earning.currency if program is not None else ""
    figures = formulas.figures(formulas.tally(activity, period), amounts, RewardCounts(redeemed, expired, outstanding),
                               period, cost, currency, enrolled, scores)
    board = Dashboard(merchant, period, figures, visit_series(period, per_day, new_per_day(activity, period)),
                      cohorts.cohort_grid(activity, grid_from, cohort_months), lists.named(at_risk, names),
                      lists.named(top, names), lists.named(close, names), currency,
                      feedback.nps_trend(trend_starts, per_month), comments)
    log.info("metrics.dashboard", extra={"merchant": merchant, "members": len(activity),
                                         "read_ms": round((read - began) * 1000, 1),
                                         "total_ms": round((time.perf_counter() - began) * 1000, 1)})
    return board


# -- CSV -------------------------------------------------------------------------------------
def _cell(value: object) -> object:
    """A CSV cell: empty for None, ISO 8601 for times, 4 decimals at most for a float."""
    if value is None:
        return ""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, Decimal):
        return str(value)
    return value


def _write(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([[_cell(v) for v in row] for row in rows])
    return out.getvalue()


def figures_csv(board: Dashboard) -> str:
    return _write(["key", "label", "value", "unit", "formula", "inputs", "note"],
                  [[f.key, f.label, f.value, f.unit, f.formula,
                    "; ".join(f"{k}={_cell(v)}" for k, v in f.inputs.items()), f.note] for f in board.figures])


def series_csv(board: Dashboard, keys: Sequence[str] | None = None) -> str:
    """One row per day, one column per series (all of them unless *keys* are given)."""
    chosen = [board.series_named(k) for k in keys] if keys else board.series
    days = [day for day, _ in chosen[0].points] if chosen else []
    return _write(["date", *(s.key for s in chosen)],
                  [[day, *(s.points[i][1] for s in chosen)] for i, day in enumerate(days)])


def cohorts_csv(board: Dashboard) -> str:
    months = max((len(r.percents) for r in board.cohorts.rows), default=0)
    return _write(["first_visit_month", "customers", *(f"month_{k}" for k in range(months))],
                  [[r.month, r.size, *r.percents] for r in board.cohorts.rows])


def rows_csv(rows: Sequence[object], kind: type) -> str:
    """A member list as CSV, one column per field of its dataclass *kind*."""
    names = [f.name for f in dataclasses.fields(kind)]
    return _write(names, [[getattr(r, n) for n in names] for r in rows])


CSV_PARTS: dict[str, Callable[[Dashboard], str]] = {
    "figures": figures_csv,
    "series": series_csv,
    "visits": lambda b: series_csv(b, ["visits"]),
    "new_visits": lambda b: series_csv(b, ["new_visits"]),
    "returning_visits": lambda b: series_csv(b, ["returning_visits"]),
    "cohorts": cohorts_csv,
    "at_risk": lambda b: rows_csv(b.at_risk, AtRisk),
    "top_members": lambda b: rows_csv(b.top_members, TopMember),
    "close_to_reward": lambda b: rows_csv(b.close_to_reward, CloseToReward),
    "nps": lambda b: rows_csv(b.nps_trend, NpsMonth),
    "nps_comments": lambda b: rows_csv(b.nps_comments, NpsComment),
}
"""Every part of a dashboard that downloads as CSV, by name."""


def to_csv(board: Dashboard, part: str) -> str:
    """*part* of *board* (a name of CSV_PARTS) as CSV text; KeyError for an unknown part."""
    return CSV_PARTS[part](board)
