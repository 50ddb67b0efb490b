"""What the members said: the NPS per month (the trend) and their latest comments, for the
dashboard's NPS card. Counts come from queries.py; the score is formulas.nps_value.

Months are UTC calendar months, as everywhere on the dashboard; the quarter a member may answer
once in is the shop's (cloud/nps.py), which only decides who may answer, not where it counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cloud.metrics.formulas import Scores, nps_value

TREND_MONTHS = 6
COMMENTS = 20  # the newest comments shown and exported; the page is not an archive


@dataclass(frozen=True)
class NpsMonth:
    """One month of the trend: ``month`` is ``YYYY-MM``; ``nps`` None for a month without answers."""

    month: str
    answers: int
    promoters: int
    passives: int
    detractors: int
    nps: float | None


@dataclass(frozen=True)
class NpsComment:
    """A comment with its score; ``name`` is None for an erased member (never their old name)."""

    member_id: str
    name: str | None
    score: int
    comment: str
    answered_at: datetime


def nps_trend(month_starts: Sequence[datetime], per_month: Mapping[int, Scores]) -> list[NpsMonth]:
    """One row per month of *month_starts*, oldest first; *per_month* is keyed by the month's index."""
    rows = []
    for k, start in enumerate(month_starts):
        s = per_month.get(k, Scores())
        rows.append(NpsMonth(f"{start.year:04d}-{start.month:02d}", s.answers, s.promoters, s.passives,
                             s.detractors, nps_value(s)))
    return rows
