"""A member's card as the engine sees it: what the card page, the owner's member page and the
API show. Balances are folded by the rules engine (kiosk/rules) from the hub's ledger, in the
order every kiosk folds them, so the web, the kiosks and ``simulate-program`` agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cloud.models import HubEvent, Member
from cloud.programs import program_of
from kiosk.protocol.event import Event, engine_entry, from_hub
from kiosk.rules import MemberState, Program, fold, ready_rewards
from kiosk.rules.engine import next_goal, tier_at
from kiosk.rules.experiments import for_member
from kiosk.rules.explain import describe
from kiosk.rules.state import VISIT


@dataclass(frozen=True)
class Line:
    """One ledger entry with the words for the rule behind it."""

    at: datetime
    kind: str
    delta: int
    rule: str
    why: str
    by: str | None = None  # a manual adjustment's author


@dataclass(frozen=True)
class VisitLine:
    """A visit and what it earned (the entries it caused)."""

    at: datetime
    earned: int
    reasons: tuple[str, ...]


@dataclass
class CardView:
    member: Member
    program: Program
    state: MemberState
    goal: int
    ready: tuple[str, ...]
    tier: str | None
    next_tier: tuple[str, str] | None  # (name, what it needs)
    lines: list[Line] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return max(0, self.goal - self.state.balance)

    @property
    def ready_names(self) -> list[str]:
        return [self.program.reward(r).name for r in self.ready]

    def visits(self, limit: int = 10) -> list[VisitLine]:
        """The last visits, newest first, each with what it earned and why."""
        out: list[VisitLine] = []
        current: list[Line] = []
        for line in self.lines:
            if line.kind == VISIT:
                if current:
                    out.append(_visit(current))
                current = [line]
            elif current and line.kind in ("earn", "bonus", "tier_change") and line.at == current[0].at:
                current.append(line)
        if current:
            out.append(_visit(current))
        return out[::-1][:limit]


def _visit(lines: list[Line]) -> VisitLine:
    return VisitLine(lines[0].at, sum(l.delta for l in lines), tuple(l.why for l in lines[1:]) or (lines[0].why,))


def member_events(engine: Engine, merchant: str, member: str) -> list[Event]:
    """*member*'s events in the merchant-wide order (``occurred_at``, ``event_id``)."""
    with Session(engine) as session:
        rows = session.scalars(select(HubEvent).where(HubEvent.merchant_id == merchant, HubEvent.member_id == member)
                               .order_by(HubEvent.occurred_at, HubEvent.event_id))
        return [from_hub(r) for r in rows]


def card(engine: Engine, member: Member, now: datetime, program: Program | None = None) -> CardView:
    """The card of *member* at *now* under *program* (default: the merchant's programme in force)."""
    program = program or program_of(engine, member.merchant_id)
    events = member_events(engine, member.merchant_id, member.id)
    state = fold(member.id, ((engine_entry(e), e.occurred_at) for e in events), program)
    program = for_member(program, member.id, now)  # what the member sees: their A/B variants' costs
    tier, value = tier_at(state, now, program)
    language = member.language or program.language
    lines = [Line(e.occurred_at, e.kind, e.delta, e.rule or "", describe(engine_entry(e), program, language),
                  e.detail.get("by")) for e in events]
    return CardView(member, program, state, next_goal(state, program), ready_rewards(state, now, program), tier,
                    _next_tier(program, tier, value), lines)


def _next_tier(program: Program, tier: str | None, value) -> tuple[str, str] | None:
    if program.tiers is None:
        return None
    levels = program.tiers.levels
    names = [t.name for t in levels]
    at = names.index(tier) if tier in names else -1
    if at + 1 >= len(levels):
        return None
    nxt = levels[at + 1]
    unit = "visits" if program.tiers.basis == "visits" else program.earning.currency
    return nxt.name, f"{nxt.threshold - value} more {unit} within {program.tiers.window_days} days"
