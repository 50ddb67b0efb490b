"""The dashboard's figures as pure functions of counts: no database, no clock.

Why pure: the arithmetic is what an owner will question ("how can retention be 65 %?"), so each
figure carries its formula and the numbers it was given (for the page's tooltip), and tests check
it against sums done by hand. A figure that cannot be computed (nothing to divide by, too little
data) has the value None and a note saying why, never an exception.

Rates are percentages (65.0 means 65 %); money is a Decimal in the programme's currency.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from cloud.metrics.activity import DAYS_PER_MONTH, MemberActivity, Period
from kiosk.rules.program import Program

MIN_LOST_FOR_CLV = 10  # below this many lost members an average lifespan is noise
CENT = Decimal("0.01")

Number = int | float | Decimal


@dataclass(frozen=True)
class Figure:
    """One number on the dashboard. ``unit`` is ``%`` (value in percent), ``money``, or a plural
    noun such as ``customers``; ``inputs`` are the numbers the formula was given."""

    key: str
    label: str
    value: Number | None
    formula: str
    note: str = ""
    unit: str = ""
    inputs: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Tally:
    """Counts over the members' activity in one period (see activity.py for who is in each)."""

    at_start: int = 0            # S: customers at the start
    at_end: int = 0              # E: customers at the end
    new: int = 0                 # N: first visit in the period
    lost: int = 0                # of S, no visit in the window before the end
    active: int = 0              # at least one visit in the period
    repeat: int = 0              # at least two visits in the period
    visits: int = 0              # visits in the period
    lost_lifespan_days: float = 0.0  # sum over the lost of (last visit − first visit)


@dataclass(frozen=True)
class Amounts:
    """Purchase amounts of the period's visits; a visit without an amount (or of 0) is left out."""

    total: Decimal = Decimal(0)
    visits: int = 0


@dataclass(frozen=True)
class RewardCounts:
    """Rewards up to the period's end: redeemed, expired unused, and still outstanding (None when
    the reward costs are unknown)."""

    redeemed: int = 0
    expired: int = 0
    outstanding: int | None = None


def tally(activities: Iterable[MemberActivity], period: Period) -> Tally:
    """Count S, E, N, the lost, and the period's active members and visits."""
    s = e = n = lost = active = repeat = visits = 0
    lifespan = 0.0
    for a in activities:
        at_start, at_end = a.customer_at_start(period), a.customer_at_end(period)
        s += at_start
        e += at_end
        n += a.new_in(period)
        if at_start and not at_end:
            lost += 1
            lifespan += a.lifespan_days
        active += a.visits_in_period > 0
        repeat += a.visits_in_period > 1
        visits += a.visits_in_period
    return Tally(s, e, n, lost, active, repeat, visits, lifespan)


def outstanding_rewards(balances: Iterable[int], cheapest_cost: int) -> int:
    """Rewards the members could take now: Σ floor(balance / cheapest cost); a negative
    balance (an offline double redemption) owes nothing."""
    return sum(b // cheapest_cost for b in balances if b >= cheapest_cost)


def cheapest_cost(program: Program | None) -> int | None:
    return min(r.cost for r in program.rewards) if program is not None else None


def _percent(numerator: int, denominator: int) -> float | None:
    return 100.0 * numerator / denominator if denominator else None


# -- customers -------------------------------------------------------------------------------
def member_counts(members: int, new_members: int, t: Tally) -> list[Figure]:
    """The plain counts at the top of the page."""
    return [
        Figure("members", "Members", members, "members enrolled before the end (joined on the web or at the counter)",
               unit="members"),
        Figure("new_members", "New members", new_members, "members enrolled in the period", unit="members"),
        Figure("active_members", "Active members", t.active, "members with at least one visit in the period",
               unit="members"),
        Figure("visits", "Visits", t.visits, "credited visits in the period", unit="visits"),
    ]


def customer_counts(t: Tally) -> list[Figure]:
    return [
        Figure("customers_at_start", "Customers at the start", t.at_start,
               "S = members with a visit before the start, the last of them within the inactivity window",
               unit="customers"),
        Figure("customers", "Customers at the end", t.at_end,
               "E = members with a visit within the inactivity window before the end", unit="customers"),
        Figure("new_customers", "New customers", t.new, "N = members whose first visit is in the period",
               unit="customers"),
        Figure("lost_customers", "Lost customers", t.lost,
               "customers at the start with no visit within the inactivity window before the end",
               unit="customers"),
    ]


def retention_rate(at_start: int, at_end: int, new: int) -> Figure:
    """CRR = (E − N) / S, the classic: S = 200, N = 50, E = 180 gives (180 − 50) / 200 = 65 %."""
    value = _percent(at_end - new, at_start)
    return Figure("retention_rate", "Customer retention rate", value,
                  "CRR = (E − N) / S: customers at the end less the new ones, over the customers at the start",
                  "" if value is not None else "no customers at the start of the period", "%",
                  {"S": at_start, "E": at_end, "N": new})


def churn_rate(lost: int, at_start: int) -> Figure:
    value = _percent(lost, at_start)
    return Figure("churn_rate", "Churn rate", value,
                  "lost / S: customers at the start with no visit within the inactivity window before the end",
                  "" if value is not None else "no customers at the start of the period", "%",
                  {"lost": lost, "S": at_start})


def repeat_rate(repeat: int, active: int) -> Figure:
    value = _percent(repeat, active)
    return Figure("repeat_rate", "Repeat purchase rate", value,
                  "members with 2 or more visits in the period / members with at least 1",
                  "" if value is not None else "no visits in the period", "%",
                  {"repeat": repeat, "active": active})


def purchase_frequency(visits: int, active: int) -> Figure:
    value = visits / active if active else None
    return Figure("purchase_frequency", "Purchase frequency", value,
                  "visits in the period / members with a visit in the period",
                  "" if value is not None else "no visits in the period", "visits",
                  {"visits": visits, "active": active})


def average_order_value(amounts: Amounts, currency: str = "") -> Figure:
    value = (amounts.total / amounts.visits).quantize(CENT, ROUND_HALF_EVEN) if amounts.visits else None
    return Figure("average_order_value", "Average order value", value,
                  "sum of purchase amounts / visits with an amount, in the period",
                  "" if value is not None else "no purchase amounts recorded in the period", "money",
                  {"amounts": amounts.total, "visits_with_amount": amounts.visits, "currency": currency or None})


def lifetime_value(aov: Decimal | None, frequency: float | None, period: Period, lost: int,
                   lost_lifespan_days: float) -> Figure:
    """CLV = AOV × visits per member per month × average observed lifespan (months) of the lost."""
    per_month = frequency / period.months if frequency is not None else None
    lifespan = lost_lifespan_days / lost / DAYS_PER_MONTH if lost else None
    inputs = {"AOV": aov, "visits_per_month": per_month, "lifespan_months": lifespan, "lost": lost}
    formula = ("CLV = AOV × purchase frequency per month × average lifespan in months (first to last visit) "
               "of the customers lost in the period")
    note = ""
    if lost < MIN_LOST_FOR_CLV:
        note = f"too little data: {lost} lost members, need {MIN_LOST_FOR_CLV}"
    elif aov is None:
        note = "no purchase amounts recorded in the period"
    elif per_month is None:
        note = "no visits in the period"
    value = None
    if not note:
        value = (aov * Decimal(repr(per_month * lifespan))).quantize(CENT, ROUND_HALF_EVEN)
    return Figure("lifetime_value", "Customer lifetime value", value, formula, note, "money", inputs)


# -- rewards ---------------------------------------------------------------------------------
def redemption_rate(rewards: RewardCounts) -> Figure:
    formula = ("rewards redeemed / rewards earned, earned = redeemed + expired unused + outstanding "
               "(up to the end of the period)")
    inputs = {"redeemed": rewards.redeemed, "expired": rewards.expired, "outstanding": rewards.outstanding}
    if rewards.outstanding is None:
        return Figure("redemption_rate", "Reward redemption rate", None, formula,
                      "reward costs unknown: the programme is needed to count outstanding rewards", "%", inputs)
    value = _percent(rewards.redeemed, rewards.redeemed + rewards.expired + rewards.outstanding)
    return Figure("redemption_rate", "Reward redemption rate", value, formula,
                  "" if value is not None else "no rewards earned yet", "%", inputs)


def liability(outstanding: int | None, cost: int | None) -> Figure:
    return Figure("outstanding_rewards", "Outstanding rewards", outstanding,
                  "Σ over members of floor(balance / cost of the cheapest reward), at the end of the period",
                  "" if outstanding is not None else "reward costs unknown: the programme is needed", "rewards",
                  {"cheapest_cost": cost})


@dataclass(frozen=True)
class Scores:
    """NPS answers by group: promoters score 9–10, passives 7–8, detractors 0–6."""

    promoters: int = 0
    passives: int = 0
    detractors: int = 0

    @property
    def answers(self) -> int:
        return self.promoters + self.passives + self.detractors


def nps_value(scores: Scores) -> float | None:
    """% promoters − % detractors, from −100 to 100; None without answers."""
    if not scores.answers:
        return None
    return 100.0 * (scores.promoters - scores.detractors) / scores.answers


def net_promoter_score(scores: Scores = Scores()) -> Figure:
    """NPS of the period's answers: 5 promoters, 3 passives, 2 detractors of 10 give
    50 % − 20 % = 30."""
    return Figure("nps", "Net promoter score", nps_value(scores),
                  "NPS = % promoters (score 9–10) − % detractors (score 0–6) among the answers in the period "
                  "(−100 to 100; one answer per member per quarter)",
                  "" if scores.answers else "no scores collected yet", "",
                  {"promoters": scores.promoters, "passives": scores.passives, "detractors": scores.detractors,
                   "answers": scores.answers})


def figures(t: Tally, amounts: Amounts, rewards: RewardCounts, period: Period, cost: int | None = None,
            currency: str = "", members: tuple[int, int] = (0, 0), scores: Scores = Scores()) -> list[Figure]:
    """Every figure of the dashboard, in the order the page shows them; *members* is (enrolled
    by the end, enrolled in the period), *scores* the period's NPS answers."""
    frequency = purchase_frequency(t.visits, t.active)
    aov = average_order_value(amounts, currency)
    return [*member_counts(*members, t), *customer_counts(t),
            retention_rate(t.at_start, t.at_end, t.new),
            churn_rate(t.lost, t.at_start),
            repeat_rate(t.repeat, t.active),
            frequency,
            aov,
            lifetime_value(aov.value, frequency.value, period, t.lost, t.lost_lifespan_days),
            redemption_rate(rewards),
            liability(rewards.outstanding, cost),
            net_promoter_score(scores)]
