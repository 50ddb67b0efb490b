"""Ledger entries and the member state folded from them.

``apply`` is the only way state changes, so replaying a member's ledger through ``fold``
reproduces exactly the state the engine saw (the snapshot the kiosk keeps in memory).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from kiosk.rules.calendar import local
from kiosk.rules.experiments import for_member
from kiosk.rules.program import Program

VISIT = "visit"            # a credited visit (delta 0; carries the amount)
EARN = "earn"              # earned by buying: base rate, multipliers, campaign and spend bonuses (capped)
BONUS = "bonus"            # gifts: signup, birthday, milestone, referral (not capped)
REDEEM = "redeem"          # a reward taken (negative delta)
EXPIRE = "expire"          # balance or reward expired (negative delta)
TIER_CHANGE = "tier_change"  # delta 0; detail has from, to and the reason
ADJUST = "adjust"          # a manual correction by the owner at the hub (± delta; detail: by, note)
PROFILE = "profile"        # what the engine knows of a member beyond the pass (delta 0; detail:
                           # birthday "MM-DD" and referred_by, each optional; an empty one erases)
OFFER = "offer"            # a bonus the hub offers a member for their next visit (delta 0; detail:
                           # bonus, expires "YYYY-MM-DD" (the last local day), offer id); the win-back
WINBACK_RULE = "winback-bonus"  # the BONUS entry that grants an offer (detail: offer id)

KINDS = (VISIT, EARN, BONUS, REDEEM, EXPIRE, TIER_CHANGE, ADJUST, PROFILE, OFFER)

# The engine remembers this many recent event ids per member to ignore a re-delivered event;
# older re-deliveries are stopped by the ledgers' unique event ids. Bounded so a scan costs
# the same for a member with 5 visits or 5,000.
APPLIED_MEMORY = 256


@dataclass(frozen=True)
class Entry:
    """One ledger entry; ``rule`` names the rule that made it, ``cause`` the event behind it."""

    kind: str
    member: str
    delta: int
    rule: str
    cause: str
    reward: str | None = None
    detail: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class Offer:
    """A bonus the hub put on the ledger for the member's next credited visit up to ``expires``
    (a local date, inclusive); granted once, then closed by its ``winback-bonus`` entry."""

    id: str
    bonus: int
    expires: date


@dataclass(frozen=True)
class MemberState:
    """Everything the engine needs about one member; a pure fold of their ledger."""

    member: str
    balance: int = 0
    visits: int = 0
    redeemed: int = 0
    last_visit_at: datetime | None = None
    last_visit_clock: tuple[str, float] | None = None  # (boot id, monotonic seconds) of that visit
    last_activity_at: datetime | None = None
    recent: tuple[tuple[datetime, Decimal], ...] = ()  # credited visits inside the tier window
    tier: str | None = None
    day: date | None = None           # local date that earned_today counts
    earned_today: int = 0
    birthday_credited: date | None = None
    birthday: tuple[int, int] | None = None  # (month, day) from the member's latest profile
    referred_by: str | None = None            # from the member's latest profile
    offer: Offer | None = None                # the open offer (the latest OFFER entry, until granted)
    affordable_since: tuple[tuple[str, datetime], ...] = ()
    applied: tuple[str, ...] = ()  # ids of the last APPLIED_MEMORY visits and redemptions


def apply(state: MemberState, entry: Entry, at: datetime, program: Program) -> MemberState:
    """The state after one more entry, recorded at *at*."""
    program = for_member(program, state.member, at)  # the member's A/B variants (reward costs)
    changes: dict = {}
    if entry.kind == VISIT:
        amount = Decimal(entry.detail.get("amount") or 0)
        clock = (entry.detail["boot"], float(entry.detail["mono"])) if "boot" in entry.detail else None
        changes = dict(visits=state.visits + 1, last_visit_at=at, last_activity_at=at, last_visit_clock=clock,
                       recent=_window(state.recent + ((at, amount),), at, program),
                       applied=(state.applied + (entry.cause,))[-APPLIED_MEMORY:])
    elif entry.kind == REDEEM:
        changes = dict(redeemed=state.redeemed + 1, last_activity_at=at,
                       applied=(state.applied + (entry.cause,))[-APPLIED_MEMORY:])
    elif entry.kind == TIER_CHANGE:
        changes = dict(tier=entry.detail.get("to"))
    elif entry.kind == EARN:
        day = local(at, program.zone).date()
        earned = (state.earned_today if state.day == day else 0) + entry.delta
        changes = dict(day=day, earned_today=earned)
    elif entry.kind == PROFILE:
        changes = dict(birthday=month_day(entry.detail.get("birthday")), referred_by=entry.detail.get("referred_by"))
    elif entry.kind == BONUS and entry.rule == "birthday-bonus":
        changes = dict(birthday_credited=date.fromisoformat(entry.detail["occurrence"]))
    elif entry.kind == OFFER:
        changes = dict(offer=Offer(entry.detail["offer"], int(entry.detail["bonus"]),
                                   date.fromisoformat(entry.detail["expires"])))
    elif entry.kind == BONUS and entry.rule == WINBACK_RULE and state.offer is not None:
        if state.offer.id == entry.detail.get("offer"):  # a newer offer stays open
            changes = dict(offer=None)
    if entry.delta:
        balance = state.balance + entry.delta
        changes.update(balance=balance, affordable_since=_affordable(state, balance, at, entry, program))
    return replace(state, **changes) if changes else state


def fold(member: str, entries: Iterable[tuple[Entry, datetime]], program: Program,
         start: MemberState | None = None) -> MemberState:
    """Fold ``(entry, at)`` pairs, oldest first, onto *start* (or an empty state)."""
    state = start or MemberState(member)
    for entry, at in entries:
        state = apply(state, entry, at, program)
    return state


def month_day(text: str | None) -> tuple[int, int] | None:
    """``"MM-DD"`` as (month, day); None for None (the profile names no birthday)."""
    if not text:
        return None
    month, day = text.split("-")
    return int(month), int(day)


def birthday_of(state: MemberState) -> date | None:
    """The member's birthday as a date the calendar helpers take (year 2000: 29 Feb exists)."""
    return date(2000, *state.birthday) if state.birthday else None


def _window(recent, at: datetime, program: Program):
    if program.tiers is None:
        return ()
    oldest = at - timedelta(days=program.tiers.window_days)
    return recent[bisect_right(recent, oldest, key=visit_time):]  # recent is in time order


def visit_time(visit: tuple[datetime, Decimal]) -> datetime:
    return visit[0]


def _affordable(state: MemberState, balance: int, at: datetime, entry: Entry, program: Program):
    """Since when each expiring reward has been affordable (restarts after it expired)."""
    since = dict(state.affordable_since)
    if entry.rule.startswith("reward-expiry:"):
        since.pop(entry.rule.split(":", 1)[1], None)
    out = []
    for reward in program.rewards:
        if reward.expires_after_days and balance >= reward.cost:
            out.append((reward.id, since.get(reward.id, at)))
    return tuple(out)
