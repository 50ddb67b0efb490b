"""The stamp-card engine and the folding of ledger entries into member state.

Everything here is a pure function of its arguments. ``evaluate`` decides; ``fold``
derives state from past entries, so replaying a member's ledger reproduces the balance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum

from kiosk.rules.program import StampCard

STAMP_AWARDED = "stamp_awarded"
REWARD_REDEEMED = "reward_redeemed"


class Outcome(str, Enum):
    STAMPED = "stamped"
    REWARD_READY = "reward_ready"
    ALREADY_STAMPED = "already_stamped"
    REDEEMED = "redeemed"
    NOTHING_TO_REDEEM = "nothing_to_redeem"


@dataclass(frozen=True)
class Visit:
    """A member showed a valid pass."""

    member: str


@dataclass(frozen=True)
class Redeem:
    """Staff asked to redeem the member's ready reward."""

    member: str


@dataclass(frozen=True)
class Entry:
    """One ledger entry the engine wants written; ``rule`` names the rule that made it."""

    kind: str
    member: str
    delta: int
    rule: str
    reward: str | None = None


@dataclass(frozen=True)
class MemberState:
    """What the engine needs to know about a member, folded from the ledger."""

    member: str
    stamps: int = 0
    visits: int = 0
    redeemed: int = 0
    last_stamp_at: datetime | None = None

    def apply(self, kind: str, delta: int, at: datetime) -> "MemberState":
        """The state after one more ledger entry (unknown kinds change nothing)."""
        if kind == STAMP_AWARDED:
            return replace(self, stamps=self.stamps + delta, visits=self.visits + 1, last_stamp_at=at)
        if kind == REWARD_REDEEMED:
            return replace(self, stamps=self.stamps + delta, redeemed=self.redeemed + 1)
        return self


def fold(member: str, entries: Iterable[tuple[str, int, datetime]]) -> MemberState:
    """Fold ``(kind, delta, occurred_at)`` entries, oldest first, into a member state."""
    state = MemberState(member)
    for kind, delta, at in entries:
        state = state.apply(kind, delta, at)
    return state


@dataclass(frozen=True)
class Feedback:
    """What the counter should see and hear, independent of how it is shown."""

    outcome: Outcome
    member: str
    stamps: int
    goal: int
    reward: str | None = None
    minutes_left: int = 0


@dataclass(frozen=True)
class Decision:
    entries: tuple[Entry, ...]
    feedback: Feedback


def evaluate(state: MemberState, event: Visit | Redeem, now: datetime, program: StampCard) -> Decision:
    """Decide what a visit or a redemption does to a member's card."""
    if isinstance(event, Visit):
        return _visit(state, now, program)
    return _redeem(state, program)


def _visit(state: MemberState, now: datetime, program: StampCard) -> Decision:
    if state.last_stamp_at is not None:
        elapsed = now - state.last_stamp_at
        # A clock behind the last stamp counts as "inside the cooldown": never a free stamp.
        if elapsed < program.cooldown:
            left = max(1, -(-(program.cooldown - elapsed).total_seconds() // 60))
            feedback = Feedback(Outcome.ALREADY_STAMPED, state.member, state.stamps, program.goal,
                                minutes_left=int(min(left, program.cooldown_minutes)))
            return Decision((), feedback)
    entry = Entry(STAMP_AWARDED, state.member, program.stamps_per_visit, rule="stamp-per-visit")
    stamps = state.stamps + program.stamps_per_visit
    ready = stamps >= program.goal
    outcome = Outcome.REWARD_READY if ready else Outcome.STAMPED
    feedback = Feedback(outcome, state.member, stamps, program.goal, reward=program.reward_id if ready else None)
    return Decision((entry,), feedback)


def _redeem(state: MemberState, program: StampCard) -> Decision:
    if state.stamps < program.goal:
        return Decision((), Feedback(Outcome.NOTHING_TO_REDEEM, state.member, state.stamps, program.goal))
    entry = Entry(REWARD_REDEEMED, state.member, -program.goal, rule="reward-redeemed", reward=program.reward_id)
    left = state.stamps - program.goal
    return Decision((entry,), Feedback(Outcome.REDEEMED, state.member, left, program.goal, reward=program.reward_id))
