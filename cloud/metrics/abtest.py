"""The arithmetic of an A/B test's figures: pure functions of counts, no database, no clock.

Why pure: the verdict is what an owner acts on ("keep B"), so it is checked against sums done
by hand (tests/test_experiments_hub.py).

The confidence interval of the difference of two return rates is **Newcombe's hybrid score
interval** (Newcombe 1998, method 10) built from each arm's **Wilson score interval**. A
café's arms are small (tens to hundreds of members) and return rates can sit near 0 or 1,
where the textbook normal ("Wald") interval is too narrow and can leave [−1, 1]; Newcombe's
keeps close to its nominal 95 % there and needs no more than square roots.

Rates are fractions here (0.38); the page shows them as percentages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile: a two-sided 95 % interval
MIN_MEASURED = 10  # below this many measured members in an arm, no verdict at all


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def wilson(successes: int, n: int, z: float = Z95) -> Interval:
    """The Wilson score interval of the proportion *successes* / *n* (n > 0)::

        centre = (p + z²/2n) / (1 + z²/n)
        half   = z / (1 + z²/n) · √(p(1 − p)/n + z²/4n²)
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson needs 0 <= successes <= n and n > 0, got {successes}/{n}")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> Interval:
    """The interval of p2 − p1 (arm 2 minus arm 1) from the arms' Wilson intervals (l, u)::

        low  = d − √((p2 − l2)² + (u1 − p1)²)
        high = d + √((u2 − p2)² + (p1 − l1)²)
    """
    p1, p2 = x1 / n1, x2 / n2
    a, b = wilson(x1, n1, z), wilson(x2, n2, z)
    d = p2 - p1
    return Interval(d - math.sqrt((p2 - b.low) ** 2 + (a.high - p1) ** 2),
                    d + math.sqrt((b.high - p2) ** 2 + (p1 - a.low) ** 2))


@dataclass(frozen=True)
class Arm:
    """One arm's counts. *measured* members had their first exposure at least N days before
    the end of observation, so each had the whole window to come back; *returned* of them did."""

    variant: str
    members: int
    measured: int
    returned: int
    visits: int
    redeemed: int  # members with at least one redemption

    @property
    def return_rate(self) -> float | None:
        return self.returned / self.measured if self.measured else None

    @property
    def visits_per_member(self) -> float | None:
        return self.visits / self.members if self.members else None

    @property
    def redemption_rate(self) -> float | None:
        return self.redeemed / self.members if self.members else None


@dataclass(frozen=True)
class Comparison:
    """*arm* against the *control* (the first variant): the difference of return rates
    (arm − control), its 95 % interval, and the verdict in words."""

    control: str
    variant: str
    difference: float | None
    interval: Interval | None
    outcome: str  # "better", "worse", "unclear" or "too_early"
    verdict: str


def compare(control: Arm, arm: Arm, days: int, min_measured: int = MIN_MEASURED) -> Comparison:
    """How *arm* does against *control* at bringing members back within *days*."""
    if control.measured < min_measured or arm.measured < min_measured:
        return Comparison(control.variant, arm.variant, None, None, "too_early",
                          f"Too early to tell: {control.measured} and {arm.measured} members have had {days} days "
                          f"to come back; wait for at least {min_measured} in each arm.")
    ci = newcombe(control.returned, control.measured, arm.returned, arm.measured)
    d = arm.return_rate - control.return_rate
    outcome = "better" if ci.low > 0 else "worse" if ci.high < 0 else "unclear"
    more = "more" if d >= 0 else "fewer"
    said = (f"{arm.variant} brings {_pct(abs(d))} % {more} members back within {days} days than "
            f"{control.variant} ({_pct(arm.return_rate)} % vs {_pct(control.return_rate)} %), "
            f"95 % CI {_range(ci)}")
    verdict = {"better": f"{said}: likely better.", "worse": f"{said}: likely worse.",
               "unclear": f"No clear difference yet: {said}."}[outcome]
    return Comparison(control.variant, arm.variant, d, ci, outcome, verdict)


def _pct(fraction: float) -> str:
    """A fraction as a percentage: whole numbers, one decimal where rounding would show 0."""
    value = fraction * 100
    return f"{value:.0f}" if abs(value) >= 0.5 or value == 0 else f"{value:.1f}"


def _range(ci: Interval) -> str:
    """``2–14 %`` when both ends are positive, else ``−4 to 10 %`` (a dash between negatives misleads)."""
    low, high = _pct(ci.low).replace("-", "−"), _pct(ci.high).replace("-", "−")
    return f"{low}–{high} %" if ci.low >= 0 else f"{low} to {high} %"
