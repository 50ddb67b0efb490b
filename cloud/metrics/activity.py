"""The period a dashboard covers and what one member did, as every metric module sees it.

All times are UTC: ``hub_events.occurred_at`` is stored in UTC (SQLite hands it back naive,
PostgreSQL aware), and the period's bounds, days and months are UTC too. A shop in Berlin sees
a "day" that runs 01:00–01:00 local time in winter; that is the price of one clock for every
merchant and both databases. A visit counts in the period when ``start <= occurred_at < end``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import NamedTuple

from kiosk.common.errors import ConfigError

DAYS_PER_MONTH = 365.25 / 12  # a mean calendar month, for "per month" and lifespans in months


def utc(moment: datetime) -> datetime:
    """*moment* in UTC; a naive datetime is taken as UTC already (what SQLite returns)."""
    if moment.tzinfo is timezone.utc:
        return moment
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class Period:
    """The half-open period [start, end) and the inactivity window that decides who still counts
    as a customer: someone whose last visit is older than *window* is lost."""

    start: datetime
    end: datetime
    window: timedelta = timedelta(days=90)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ConfigError("the dashboard period needs time-zone aware datetimes (UTC), e.g. "
                              "datetime(2026, 11, 1, tzinfo=timezone.utc)")
        object.__setattr__(self, "start", utc(self.start))
        object.__setattr__(self, "end", utc(self.end))
        if self.start >= self.end:
            raise ConfigError(f"the dashboard period starts ({self.start:%Y-%m-%d %H:%M}) at or after it ends "
                              f"({self.end:%Y-%m-%d %H:%M}); pass an earlier start")
        if self.window <= timedelta(0):
            raise ConfigError(f"the inactivity window must be positive, got {self.window}; e.g. 90 days")

    @property
    def days(self) -> float:
        return (self.end - self.start) / timedelta(days=1)

    @property
    def months(self) -> float:
        return self.days / DAYS_PER_MONTH

    def day_list(self) -> list[date]:
        """Every UTC calendar day the period touches, in order (a series has a point for each)."""
        first, last = self.start.date(), (self.end - timedelta(microseconds=1)).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]


class MemberActivity(NamedTuple):
    """One member's visits before the period's end, counted by the database (queries.member_activity).

    A named tuple, not a dataclass: a dashboard builds one per member (50,000 in the benchmark),
    and a tuple is built several times faster. ``visit_months`` is a bit set of the calendar
    months (UTC) with a visit, bit 0 being the cohort grid's first month (see cohorts.py): the grid
    comes out of the same pass over the events.
    """

    member_id: str
    first_visit: datetime
    last_visit: datetime
    visits: int
    visits_in_period: int
    visits_in_start_window: int  # visits in [start − window, start)
    visit_months: int = 0

    def customer_at_start(self, period: Period) -> bool:
        """In S: a visit within the window before the start (so the first visit is before it too)."""
        return self.visits_in_start_window > 0

    def customer_at_end(self, period: Period) -> bool:
        """In E: a visit within the window before the period's end (every visit here is before it)."""
        return self.last_visit >= period.end - period.window

    def new_in(self, period: Period) -> bool:
        """In N: the first visit ever falls in the period."""
        return self.first_visit >= period.start

    def lost_in(self, period: Period) -> bool:
        """A customer at the start with no visit in the window before the end."""
        return self.visits_in_start_window > 0 and not self.customer_at_end(period)

    @property
    def lifespan_days(self) -> float:
        """Observed lifespan: first to last visit."""
        return (self.last_visit - self.first_visit) / timedelta(days=1)

    @property
    def usual_interval(self) -> timedelta | None:
        """The member's mean time between visits, (last − first) / (visits − 1); None below 2 visits."""
        return (self.last_visit - self.first_visit) / (self.visits - 1) if self.visits >= 2 else None
