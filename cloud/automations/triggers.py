"""When a member is due for a message: pure functions of the member, their visits and a moment.

Every date is the shop's local date (the programme's ``timezone``): a birthday begins at local
midnight, not at UTC midnight. Each decision comes with its *occasion*, the part of the
message's unique key that says which one it is — ``join`` for the welcome, the year of the
birthday greeted (a greeting on 30 December for a 2 January birthday is the next year's), the
local date of the last visit for a win-back (a new visit starts a new lapse, so one message per
lapse), the reward cycle for "almost there" (``cycle-<n>``: n rewards redeemed or balances
expired so far, so one message per climb towards a reward) — and the moment it stops being
worth sending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WELCOME, BIRTHDAY, WINBACK, ALMOST = "welcome", "birthday", "winback", "almost_there"
MIN_VISITS_FOR_INTERVAL = 3  # two intervals before a member's own rhythm is trusted


@dataclass(frozen=True)
class Rules:
    """The knobs of the triggers (``[automations]`` of hub.toml)."""

    triggers: frozenset[str] = frozenset({WELCOME, BIRTHDAY, WINBACK, ALMOST})
    welcome_within: timedelta = timedelta(days=7)
    birthday_days_before: int = 0
    winback_factor: float = 3.0
    winback_min: timedelta = timedelta(days=14)
    winback_fallback: timedelta = timedelta(days=45)
    winback_valid: timedelta = timedelta(days=14)
    winback_bonus: int = 0  # offered on the ledger with each win-back, granted by the engine (0: none)
    winback_bonus_days: int = 30  # the offer's validity, in the shop's local days
    control_share: float = 0.0  # share of due win-backs held out: no message, no offer (winback.py)
    almost_stamps: int = 2    # stamp cards: at most this many stamps to go
    almost_percent: int = 10  # points: at most this share (%) of the cheapest reward's cost to go
    almost_valid: timedelta = timedelta(days=2)  # "after a visit": no later than this after it


@dataclass(frozen=True)
class Goal:
    """The cheapest reward of a merchant's programme: what "almost there" measures against."""

    cost: int
    unit: str  # "stamps" or "points"

    def within(self, rules: Rules) -> int:
        """How close counts as almost there: stamps, or a share of the cost (at least 1 point)."""
        if self.unit == "stamps":
            return rules.almost_stamps
        return max(1, self.cost * rules.almost_percent // 100)


@dataclass(frozen=True)
class Candidate:
    """A member who may be messaged (consent given, not erased, an e-mail), and their visits."""

    member_id: str
    joined_at: datetime
    birthday: date | None
    visits: int = 0
    first_visit: datetime | None = None
    last_visit: datetime | None = None
    balance: int = 0
    cycle: int = 0  # rewards redeemed and balances expired so far: a new climb after each


@dataclass(frozen=True)
class Due:
    member_id: str
    trigger: str
    occasion: str
    expires_at: datetime


def birthday_in(year: int, birthday: date) -> date:
    """*birthday*'s date in *year*: 29 February is kept on 28 February in other years."""
    if birthday.month == 2 and birthday.day == 29:
        try:
            return date(year, 2, 29)
        except ValueError:
            return date(year, 2, 28)
    return birthday.replace(year=year)


def birthday_due(birthday: date, today: date, days_before: int) -> date | None:
    """The birthday to greet on *today* (local), or None: from *days_before* days ahead of it
    through the day itself, so a worker that was down on the first day still greets."""
    for year in (today.year, today.year + 1):  # the next one may be across New Year
        day = birthday_in(year, birthday)
        if 0 <= (day - today).days <= days_before:
            return day
    return None


def lapse_after(c: Candidate, rules: Rules) -> timedelta:
    """How long without a visit makes *c* lapsed: their own mean interval × the factor (at least
    ``winback_min``), or the fixed fallback below three visits."""
    if c.visits < MIN_VISITS_FOR_INTERVAL or c.first_visit is None or c.last_visit is None:
        return rules.winback_fallback
    usual = (c.last_visit - c.first_visit) / (c.visits - 1)
    return max(usual * rules.winback_factor, rules.winback_min)


def _end_of_day(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), zone)


def almost_there(c: Candidate, now: datetime, rules: Rules, goal: Goal) -> Due | None:
    """Due if *c* visited within ``almost_valid`` before *now* and is now short of the cheapest
    reward by at most ``goal.within``; one per reward cycle. A member who can afford it already is
    not "almost": the kiosk offers it at the next scan."""
    if c.last_visit is None or not c.last_visit <= now < c.last_visit + rules.almost_valid:
        return None
    if not 0 < goal.cost - c.balance <= goal.within(rules):
        return None
    return Due(c.member_id, ALMOST, f"cycle-{c.cycle}", c.last_visit + rules.almost_valid)


def due(c: Candidate, now: datetime, zone: ZoneInfo, rules: Rules, goal: Goal | None = None) -> list[Due]:
    """The messages *c* is due for at *now* (aware), in the shop's *zone*; "almost there" only
    with the programme's *goal*."""
    today = now.astimezone(zone).date()
    out: list[Due] = []
    if WELCOME in rules.triggers and now - rules.welcome_within <= c.joined_at <= now:
        out.append(Due(c.member_id, WELCOME, "join", c.joined_at + rules.welcome_within))
    if BIRTHDAY in rules.triggers and c.birthday is not None:
        day = birthday_due(c.birthday, today, rules.birthday_days_before)
        if day is not None:
            out.append(Due(c.member_id, BIRTHDAY, str(day.year), _end_of_day(day, zone)))
    if WINBACK in rules.triggers and c.last_visit is not None and now - c.last_visit > lapse_after(c, rules):
        lapse = c.last_visit.astimezone(zone).date().isoformat()
        out.append(Due(c.member_id, WINBACK, lapse, now + rules.winback_valid))
    if ALMOST in rules.triggers and goal is not None:
        close = almost_there(c, now, rules, goal)
        if close is not None:
            out.append(close)
    return out
