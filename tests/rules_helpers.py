"""Small helpers to drive the pure engine in tests: build programmes, run visits, read entries."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from kiosk.rules import MemberState, Program, Redeem, Visit, apply, evaluate, parse_program


def program(**doc) -> Program:
    return parse_program(doc)


class Member:
    """One member's life under a programme: visits and redemptions, with the ledger kept."""

    def __init__(self, prog: Program, member: str = "anna") -> None:
        self.program, self.state, self.entries, self.n = prog, MemberState(member), [], 0
        self.others: dict[str, MemberState] = {}

    def _run(self, event, at: datetime):
        decision = evaluate(self.state, event, at, self.program)
        for entry in decision.entries:
            if entry.member == self.state.member:
                self.state = apply(self.state, entry, at, self.program)
            else:
                self.others[entry.member] = apply(self.others.get(entry.member) or MemberState(entry.member),
                                                  entry, at, self.program)
        self.entries.extend(decision.entries)
        assert decision.state == self.state  # the engine's own view equals the fold of its entries
        return decision

    def visit(self, at: datetime, amount: str | None = None, birthday: date | None = None, referred_by=None):
        self.n += 1
        return self._run(Visit(f"v{self.n}", self.state.member, Decimal(amount) if amount else None,
                               birthday, referred_by), at)

    def redeem(self, at: datetime, reward: str | None = None):
        self.n += 1
        return self._run(Redeem(f"r{self.n}", self.state.member, reward), at)


def rules(decision) -> list[tuple[str, int]]:
    return [(e.rule, e.delta) for e in decision.entries if e.delta or e.kind == "tier_change"]
