"""The cohort retention grid: rows are the month of a member's first visit, columns the months
since, cells the percentage of that cohort with at least one visit in that month.

Made from the per-member bit sets of ``queries.member_activity`` (bit k = a visit in the grid's
k-th month), so the grid costs no second pass over the events. Months are UTC calendar months.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from cloud.metrics.activity import MemberActivity
from kiosk.common.errors import ConfigError

MAX_MONTHS = 60  # the bit set is a 64-bit integer in both databases


@dataclass(frozen=True)
class CohortRow:
    """``month`` is ``YYYY-MM``; ``percents[k]`` is 0–100 for k months after it, None for a month
    after the period's end."""

    month: str
    size: int
    percents: list[float | None]


@dataclass(frozen=True)
class CohortGrid:
    """Rows oldest first, each with as many cells as the grid has months (later ones None)."""

    rows: list[CohortRow]

    def as_rows(self) -> list[tuple[str, int, list[float | None]]]:
        """(month, size, percents) per row: what ``cloud.web.charts.cohort_grid_html`` draws."""
        return [(r.month, r.size, r.percents) for r in self.rows]


def _month_index(moment: datetime | date) -> int:
    return moment.year * 12 + moment.month - 1


def _label(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def grid_start(end: datetime, months: int) -> date:
    """The first day of the grid's first month: *months* UTC months up to and including the one
    the period's last instant falls in."""
    if not 1 <= months <= MAX_MONTHS:
        raise ConfigError(f"a cohort grid has 1 to {MAX_MONTHS} months, not {months}; e.g. 12")
    first = _month_index(end - timedelta(microseconds=1)) - (months - 1)
    return date(first // 12, first % 12 + 1, 1)


def month_starts(start: date, months: int) -> list[datetime]:
    """The first instant (UTC) of each of the *months* months from *start*: bit k of
    ``MemberActivity.visit_months`` is a visit at or after the k-th of them, before the next."""
    first = _month_index(start)
    return [datetime((first + k) // 12, (first + k) % 12 + 1, 1, tzinfo=timezone.utc) for k in range(months)]


def cohort_grid(activities: Iterable[MemberActivity], start: date, months: int) -> CohortGrid:
    """The grid of members whose first visit falls in the *months* months from *start*; leading
    months nobody joined in are left out, so a new shop does not see a year of empty rows."""
    base = _month_index(start)
    patterns = Counter((_month_index(a.first_visit) - base, a.visit_months)
                       for a in activities if 0 <= _month_index(a.first_visit) - base < months)
    sizes = Counter()
    returned: Counter = Counter()  # (cohort, months since) -> members
    for (cohort, mask), count in patterns.items():
        sizes[cohort] += count
        mask >>= cohort
        since = 0
        while mask:
            if mask & 1:
                returned[cohort, since] += count
            mask >>= 1
            since += 1
    if not sizes:
        return CohortGrid([])
    rows = []
    for cohort in range(min(sizes), months):
        size = sizes[cohort]
        reached = months - cohort  # months from the cohort's own to the grid's last
        percents: list[float | None] = [100.0 * returned[cohort, k] / size if size else None for k in range(reached)]
        rows.append(CohortRow(_label(base + cohort), size, percents + [None] * (months - reached)))
    return CohortGrid(rows)
