"""Daily series of the period: visits, and the visits split into new and returning.

A visit is new when it is the member's first visit ever, so a day's new visits are the members
whose first visit falls on it (from the per-member aggregates), and returning = visits − new.
Every UTC day of the period has a point, zero when nothing happened: a chart needs the gaps.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from cloud.metrics.activity import MemberActivity, Period


@dataclass(frozen=True)
class Series:
    """``points`` are (UTC day, number), one per day of the period, oldest first."""

    key: str
    label: str
    points: list[tuple[date, int]]
    unit: str = "visits"


def daily(period: Period, counts: Mapping[date, int]) -> list[tuple[date, int]]:
    return [(day, counts.get(day, 0)) for day in period.day_list()]


def new_per_day(activities: Iterable[MemberActivity], period: Period) -> Counter:
    return Counter(a.first_visit.date() for a in activities if a.new_in(period))


def visit_series(period: Period, visits: Mapping[date, int], new: Mapping[date, int]) -> list[Series]:
    """visits, new_visits and returning_visits for the period."""
    days = period.day_list()
    return [Series("visits", "Visits", daily(period, visits)),
            Series("new_visits", "New customers' first visits", daily(period, new)),
            Series("returning_visits", "Returning customers' visits",
                   [(d, visits.get(d, 0) - new.get(d, 0)) for d in days])]
