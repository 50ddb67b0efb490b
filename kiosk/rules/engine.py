"""The loyalty engine: ``evaluate(state, event, now, program) -> Decision``.

Pure and deterministic: no I/O, no clock reads. A visit is checked (duplicate, cooldown,
amount), housekeeping runs (expiry, tier), then earning (base rate, tier and campaign
multipliers, campaign and spend bonuses, capped by the abuse limits) and gifts (signup,
birthday, milestones, referral). Every entry names its rule, so a balance can be explained.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from enum import Enum

from kiosk.rules.calendar import add_months, birthday_occurrence, campaign_applies, local
from kiosk.rules.experiments import for_member, label
from kiosk.rules.program import MAX_DELTA, Program
from kiosk.rules.state import (BONUS, EARN, EXPIRE, REDEEM, TIER_CHANGE, VISIT, WINBACK_RULE, Entry, MemberState,
                               apply, birthday_of, visit_time)


class Outcome(str, Enum):
    STAMPED = "stamped"                  # credited (stamps or points)
    REWARD_READY = "reward_ready"        # credited, and a reward can be redeemed now
    ALREADY_STAMPED = "already_stamped"  # inside the cooldown: nothing credited
    AMOUNT_REQUIRED = "amount_required"  # a points programme needs the purchase amount
    REDEEMED = "redeemed"
    NOTHING_TO_REDEEM = "nothing_to_redeem"
    DUPLICATE = "duplicate"              # this event was already applied: nothing changes


@dataclass(frozen=True)
class ClockReading:
    """A reading of the kiosk's monotonic clock: it never jumps, but counts only within one boot."""

    boot: str
    mono: float


@dataclass(frozen=True)
class Visit:
    """A member showed a valid pass; *amount* is the purchase (points programmes).

    *clock* (from the kiosk) lets the cooldown use monotonic time when the member's last
    visit was on this kiosk in this boot, so an NTP step of the wall clock neither grants
    nor blocks a stamp.
    """

    id: str
    member: str
    amount: Decimal | None = None
    birthday: date | None = None
    referred_by: str | None = None
    clock: ClockReading | None = None


@dataclass(frozen=True)
class Redeem:
    """Staff redeem *reward* (or the first ready one) for the member."""

    id: str
    member: str
    reward: str | None = None


@dataclass(frozen=True)
class Feedback:
    """What the counter should be told, independent of how it is shown."""

    outcome: Outcome
    member: str
    balance: int
    unit: str
    goal: int | None = None
    earned: int = 0
    tier: str | None = None
    rewards_ready: tuple[str, ...] = ()
    reward: str | None = None
    minutes_left: int = 0
    capped: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class Decision:
    entries: tuple[Entry, ...]
    feedback: Feedback
    state: MemberState = field(compare=False)


class _Book:
    """Collects entries and keeps the state they lead to (private helper of one evaluation)."""

    def __init__(self, state: MemberState, now: datetime, program: Program) -> None:
        self.state, self.now, self.program, self.entries = state, now, program, []

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)
        if entry.member == self.state.member:
            self.state = apply(self.state, entry, self.now, self.program)


def evaluate(state: MemberState, event: Visit | Redeem, now: datetime, program: Program) -> Decision:
    """Decide what *event* at *now* does to the member in *state* under *program*: under the
    member's own variants of its A/B tests, each entry a variant made naming it (experiments.py)."""
    decision = _evaluate(state, event, now, for_member(program, event.member, now))
    return Decision(label(decision.entries, program, event.member, now), decision.feedback, decision.state)


def _evaluate(state: MemberState, event: Visit | Redeem, now: datetime, program: Program) -> Decision:
    if event.id in state.applied:
        return _decision(_Book(state, now, program), Outcome.DUPLICATE, reason="already applied")
    if isinstance(event, Visit):
        return _visit(state, event, now, program)
    return _redeem(state, event, now, program)


def _visit(state: MemberState, visit: Visit, now: datetime, program: Program) -> Decision:
    book = _Book(state, now, program)
    elapsed = since_last_visit(state, visit, now)
    if elapsed is not None and elapsed < program.cooldown:
        left = (program.cooldown - elapsed).total_seconds() / 60
        minutes = min(max(1, math.ceil(left)), program.limits.cooldown_minutes)
        return _decision(book, Outcome.ALREADY_STAMPED, minutes_left=minutes)
    if program.unit == "points" and visit.amount is None:
        return _decision(book, Outcome.AMOUNT_REQUIRED, reason="enter the purchase amount")
    _housekeeping(book, visit.id)
    amount = visit.amount if visit.amount is not None else Decimal(0)
    detail = {"amount": str(amount)}
    if visit.clock is not None:
        detail.update(boot=visit.clock.boot, mono=visit.clock.mono)
    book.add(Entry(VISIT, visit.member, 0, "visit", visit.id, detail=detail))
    _update_tier(book, visit.id)
    capped = _earn(book, visit.id, amount)
    _gifts(book, visit, state)
    ready = ready_rewards(book.state, now, program)
    return _decision(book, Outcome.REWARD_READY if ready else Outcome.STAMPED,
                     earned=sum(e.delta for e in book.entries if e.member == visit.member and e.kind in (EARN, BONUS)),
                     capped=capped)


def since_last_visit(state: MemberState, visit: Visit, now: datetime) -> timedelta | None:
    """Time since the member's last credited visit, by the most trustworthy clock at hand.

    Same kiosk, same boot: the monotonic clock (immune to NTP steps). Otherwise wall time;
    a wall clock behind the last visit (a Pi booted offline without an RTC) counts as
    "just now", so a wrong clock never gives a free credit.
    """
    if state.last_visit_at is None:
        return None
    last = state.last_visit_clock
    if visit.clock is not None and last is not None and last[0] == visit.clock.boot:
        return timedelta(seconds=max(0.0, visit.clock.mono - last[1]))
    return max(timedelta(0), now - state.last_visit_at)


def _redeem(state: MemberState, redeem: Redeem, now: datetime, program: Program) -> Decision:
    book = _Book(state, now, program)
    _housekeeping(book, redeem.id)
    _update_tier(book, redeem.id)
    ready = ready_rewards(book.state, now, program)
    choice = redeem.reward if redeem.reward is not None else (ready[0] if ready else None)
    if choice is None or choice not in ready:
        reason = "no_reward_ready" if choice is None else f"reward {choice!r} is not ready"
        return _decision(book, Outcome.NOTHING_TO_REDEEM, reason=reason)
    cost = program.reward(choice).cost
    book.add(Entry(REDEEM, redeem.member, -cost, f"reward:{choice}", redeem.id, reward=choice))
    return _decision(book, Outcome.REDEEMED, reward=choice)


def _housekeeping(book: _Book, cause: str) -> None:
    """Expire a dormant balance, then rewards left unused past their deadline."""
    state, program, now = book.state, book.program, book.now
    months = program.expiry.inactive_months
    if months and state.last_activity_at and state.balance > 0 and now >= add_months(state.last_activity_at, months):
        detail = {"inactive_since": state.last_activity_at.isoformat(), "months": months}
        for part in _parts(state.balance):  # one entry may move at most MAX_DELTA (the wire's bound)
            book.add(Entry(EXPIRE, state.member, -part, "inactivity-expiry", cause, detail=detail))
    for reward_id, since in book.state.affordable_since:
        reward = program.reward(reward_id)
        if reward and now > since + timedelta(days=reward.expires_after_days) and book.state.balance >= reward.cost:
            book.add(Entry(EXPIRE, state.member, -reward.cost, f"reward-expiry:{reward_id}", cause,
                           reward=reward_id, detail={"affordable_since": since.isoformat()}))


def _parts(amount: int) -> list[int]:
    """*amount* as entries of at most MAX_DELTA each: a balance grown over years can exceed what
    one ledger entry may carry, and an entry the wire refuses would stall the kiosk's outbox."""
    return [MAX_DELTA] * (amount // MAX_DELTA) + ([amount % MAX_DELTA] if amount % MAX_DELTA else [])


def tier_at(state: MemberState, now: datetime, program: Program) -> tuple[str | None, Decimal]:
    """The member's tier at *now* and the visits/spend that earned it."""
    if program.tiers is None:
        return None, Decimal(0)
    oldest = now - timedelta(days=program.tiers.window_days)
    lo = bisect_right(state.recent, oldest, key=visit_time)
    hi = bisect_right(state.recent, now, key=visit_time)  # a clock set back must not count "future" visits
    window = state.recent[lo:hi]
    value = Decimal(len(window)) if program.tiers.basis == "visits" else sum((a for _, a in window), Decimal(0))
    name = [t.name for t in program.tiers.levels if t.threshold <= value][-1]
    return name, value


def _update_tier(book: _Book, cause: str) -> None:
    tiers = book.program.tiers
    if tiers is None:
        return
    name, value = tier_at(book.state, book.now, book.program)
    if name != book.state.tier:
        what = f"{value} visits" if tiers.basis == "visits" else f"{value} {book.program.earning.currency} spent"
        reason = f"{what} in the last {tiers.window_days} days"
        book.add(Entry(TIER_CHANGE, book.state.member, 0, f"tier:{name.lower()}", cause,
                       detail={"from": book.state.tier, "to": name, "reason": reason}))


def base_earn(amount: Decimal, program: Program) -> int:
    """Stamps per visit, or points for *amount* by rate or bands, with the rounding rule."""
    earning = program.earning
    if earning.type == "stamps":
        return earning.per_visit
    if earning.rounding == "whole_units":
        amount = amount.to_integral_value(ROUND_FLOOR)
    raw, lower = Decimal(0), Decimal(0)
    for band in earning.bands or ():
        upper = band.up_to if band.up_to is not None else max(amount, lower)
        raw += max(Decimal(0), min(amount, upper) - lower) * band.rate
        lower = upper
    if not earning.bands:
        raw = amount * earning.rate
    mode = ROUND_HALF_UP if earning.rounding == "nearest" else ROUND_FLOOR
    return int(raw.to_integral_value(mode))


def _earn(book: _Book, cause: str, amount: Decimal) -> bool:
    """Base, multipliers and earn-class bonuses, trimmed to the caps; True if a cap bit."""
    program, member, now = book.program, book.state.member, book.now
    base = base_earn(amount, program)
    parts: list[tuple[int, str, dict]] = [(base, "base-rate", {"amount": str(amount)})]
    value = Decimal(base)
    tier = next((t for t in program.tiers.levels if t.name == book.state.tier), None) if program.tiers else None
    if tier is not None and tier.multiplier != 1:
        parts.append(_multiplied(value, tier.multiplier, f"tier-multiplier:{tier.name.lower()}"))
        value *= tier.multiplier
    running = [c for c in program.campaigns if campaign_applies(c, now, program.zone, book.state.tier)]
    best = max((c for c in running if c.multiplier), key=lambda c: c.multiplier, default=None)
    if best is not None:
        before = int(value.to_integral_value(ROUND_FLOOR))
        value *= best.multiplier
        parts.append((int(value.to_integral_value(ROUND_FLOOR)) - before, f"campaign:{best.id}",
                      {"multiplier": str(best.multiplier)}))
    parts += [(c.bonus, f"campaign:{c.id}", {"bonus": c.bonus}) for c in running if c.bonus]
    met = [s for s in program.bonuses.spend if amount >= s.min_amount]
    if met:
        top = max(met, key=lambda s: s.min_amount)
        parts.append((top.bonus, f"spend-bonus:{top.min_amount}", {"min_amount": str(top.min_amount)}))
    room = _room(book)
    capped = False
    for delta, rule, detail in parts:
        if delta <= 0:
            continue
        if room is not None and delta > room:
            delta, capped, detail = room, True, {**detail, "capped": True}
        if delta > 0:
            book.add(Entry(EARN, member, delta, rule, cause, detail=detail))
            room = None if room is None else room - delta
    return capped


def _multiplied(value: Decimal, multiplier: Decimal, rule: str) -> tuple[int, str, dict]:
    before = int(value.to_integral_value(ROUND_FLOOR))
    after = int((value * multiplier).to_integral_value(ROUND_FLOOR))
    return after - before, rule, {"multiplier": str(multiplier)}


def _room(book: _Book) -> int | None:
    """How much more may be earned now under max_per_scan and daily_cap (None: no limit)."""
    limits, state = book.program.limits, book.state
    rooms = []
    if limits.max_per_scan is not None:
        rooms.append(limits.max_per_scan)
    if limits.daily_cap is not None:
        today = local(book.now, book.program.zone).date()
        rooms.append(max(0, limits.daily_cap - (state.earned_today if state.day == today else 0)))
    return min(rooms) if rooms else None


def _gifts(book: _Book, visit: Visit, before: MemberState) -> None:
    """Signup, birthday, milestone, referral and offered (win-back) bonuses; not subject to the caps."""
    bonuses, member, cause = book.program.bonuses, visit.member, visit.id
    first_visit = before.visits == 0
    if first_visit and bonuses.signup:
        book.add(Entry(BONUS, member, bonuses.signup, "signup-bonus", cause))
    birthday = visit.birthday or birthday_of(before)  # the scan's (a CSV run), else the profile's
    if bonuses.birthday and birthday:
        today = local(book.now, book.program.zone).date()
        occurrence = birthday_occurrence(birthday, today, bonuses.birthday.window_days)
        if occurrence is not None and occurrence != book.state.birthday_credited:
            book.add(Entry(BONUS, member, bonuses.birthday.amount, "birthday-bonus", cause,
                           detail={"occurrence": occurrence.isoformat()}))
    for milestone in bonuses.milestones:
        if book.state.visits == milestone.visit:
            book.add(Entry(BONUS, member, milestone.bonus, f"milestone:{milestone.visit}", cause))
    referral = bonuses.referral
    referred_by = visit.referred_by or before.referred_by
    if referral and first_visit and referred_by and referred_by != member:
        if referral.referee:
            book.add(Entry(BONUS, member, referral.referee, "referral-bonus:referee", cause,
                           detail={"referrer": referred_by}))
        if referral.referrer:
            book.add(Entry(BONUS, referred_by, referral.referrer, "referral-bonus:referrer", cause,
                           detail={"referee": member}))
    offer = before.offer  # from the hub's ledger (a win-back message); its grant closes it (state.apply)
    if offer is not None and offer.bonus > 0 and local(book.now, book.program.zone).date() <= offer.expires:
        book.add(Entry(BONUS, member, offer.bonus, WINBACK_RULE, cause, detail={"offer": offer.id}))


def ready_rewards(state: MemberState, now: datetime, program: Program) -> tuple[str, ...]:
    """Rewards the member can redeem now (affordable, allowed for their tier), catalogue order."""
    program = for_member(program, state.member, now)  # a reward's cost may be an A/B test's variant
    tier = (state.tier or "").lower()
    return tuple(r.id for r in program.rewards
                 if state.balance >= r.cost and (r.tiers is None or tier in {t.lower() for t in r.tiers}))


def next_goal(state: MemberState, program: Program, now: datetime | None = None) -> int:
    """The cost to aim for: the cheapest reward not yet affordable, else the dearest one; at *now*
    a reward's cost is the member's A/B variant's (without *now*, the programme's as given)."""
    costs = sorted(r.cost for r in for_member(program, state.member, now).rewards)
    return next((c for c in costs if c > state.balance), costs[-1])


def _decision(book: _Book, outcome: Outcome, **extra) -> Decision:
    state, program = book.state, book.program
    ready = ready_rewards(state, book.now, program)
    reward = extra.pop("reward", None) or (ready[0] if ready else None)
    feedback = Feedback(outcome, state.member, state.balance, program.unit, goal=next_goal(state, program, book.now),
                        tier=state.tier, rewards_ready=ready, reward=reward, **extra)
    return Decision(tuple(book.entries), feedback, state)
