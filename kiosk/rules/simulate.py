"""Try a programme before launch: run a CSV of visits through the engine, in memory.

Rows are validated first (member, ISO time with offset, amount, birthday, referred_by,
redeem); one bad row stops the run with its row number and nothing is applied.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from kiosk.common.errors import ConfigError
from kiosk.protocol.ids import ID_PATTERN
from kiosk.rules.engine import Outcome, Redeem, Visit, evaluate, ready_rewards, tier_at
from kiosk.rules.program import Program
from kiosk.rules.state import Entry, MemberState, apply

REQUIRED = ("member", "time")
OPTIONAL = ("amount", "birthday", "referred_by", "redeem")


@dataclass(frozen=True)
class Row:
    number: int  # line number in the file, header = 1
    member: str
    time: datetime
    amount: Decimal | None
    birthday: date | None
    referred_by: str | None
    redeem: str | None


def parse_visits(text: str, program: Program) -> list[Row]:
    """Validate every row; raise ConfigError naming the row and the field."""
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ConfigError(f"visits CSV: the header lacks {', '.join(missing)} (required: member,time)")
    unknown = [c for c in columns if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise ConfigError(f"visits CSV: unknown column {unknown[0]!r}; allowed: {', '.join(REQUIRED + OPTIONAL)}")
    rows = []
    for number, raw in enumerate(reader, start=2):
        if None in raw:
            raise ConfigError(f"visits CSV row {number}: more fields than the header has "
                              "(a decimal comma? write amounts with a dot: 12.50)")
        rows.append(_row(number, {k.strip(): (v or "").strip() for k, v in raw.items()}, program))
    return rows


def _row(number: int, raw: dict[str, str], program: Program) -> Row:
    def fail(field: str, why: str) -> ConfigError:
        return ConfigError(f"visits CSV row {number}: {field}: {why}")

    member = raw.get("member", "")
    if not ID_PATTERN.fullmatch(member):
        raise fail("member", f"{member!r} is not a member id (a-z, 0-9, '-')")
    try:
        at = datetime.fromisoformat(raw["time"])
    except ValueError:
        raise fail("time", f"{raw['time']!r} is not ISO 8601, e.g. 2026-03-03T09:15:00+01:00") from None
    if at.tzinfo is None:
        raise fail("time", "add the UTC offset, e.g. +01:00")
    amount = None
    if raw.get("amount"):
        try:
            amount = Decimal(raw["amount"])
        except InvalidOperation:
            raise fail("amount", f"{raw['amount']!r} is not a number (use a dot: 12.50)") from None
        if amount < 0 or not amount.is_finite():
            raise fail("amount", "must be zero or more")
    birthday = None
    if raw.get("birthday"):
        try:
            birthday = date.fromisoformat(raw["birthday"])
        except ValueError:
            raise fail("birthday", f"{raw['birthday']!r} is not YYYY-MM-DD") from None
    referred_by = raw.get("referred_by") or None
    if referred_by and not ID_PATTERN.fullmatch(referred_by):
        raise fail("referred_by", f"{referred_by!r} is not a member id")
    redeem = raw.get("redeem") or None
    if redeem and program.reward(redeem) is None:
        raise fail("redeem", f"unknown reward {redeem!r}; the programme has {', '.join(r.id for r in program.rewards)}")
    return Row(number, member, at, amount, birthday, referred_by, redeem)


@dataclass
class Simulation:
    ledger: list[dict]
    states: dict[str, MemberState]
    notes: list[str]
    end: datetime | None

    def balances(self, program: Program) -> dict[str, dict]:
        out = {}
        for member, state in sorted(self.states.items()):
            tier = tier_at(state, self.end, program)[0] if self.end and program.tiers else state.tier
            out[member] = {program.unit: state.balance, "tier": tier,
                           "rewards_ready": list(ready_rewards(state, self.end, program)) if self.end else []}
        return out


def simulate(program: Program, rows: list[Row]) -> Simulation:
    """Run the rows, in time order, through the engine; returns the ledger and final states."""
    states: dict[str, MemberState] = {}
    ledger: list[dict] = []
    notes: list[str] = []

    def book(entries: tuple[Entry, ...], at: datetime) -> None:
        for entry in entries:
            state = states.get(entry.member) or MemberState(entry.member)
            states[entry.member] = apply(state, entry, at, program)
            ledger.append({"member": entry.member, "time": at.isoformat(), "kind": entry.kind,
                           "delta": entry.delta, "rule": entry.rule, "reward": entry.reward,
                           "detail": dict(entry.detail)})

    for row in sorted(rows, key=lambda r: (r.time, r.number)):
        state = states.get(row.member) or MemberState(row.member)
        states.setdefault(row.member, state)
        visit = Visit(f"row-{row.number}", row.member, row.amount, row.birthday, row.referred_by)
        decision = evaluate(state, visit, row.time, program)
        book(decision.entries, row.time)
        if decision.feedback.outcome in (Outcome.ALREADY_STAMPED, Outcome.AMOUNT_REQUIRED):
            notes.append(f"row {row.number}: {row.member}: {decision.feedback.outcome.value}")
        if row.redeem:
            redeemed = evaluate(states[row.member], Redeem(f"row-{row.number}-redeem", row.member, row.redeem),
                                row.time, program)
            book(redeemed.entries, row.time)
            if redeemed.feedback.outcome is not Outcome.REDEEMED:
                notes.append(f"row {row.number}: {row.member}: {row.redeem} not redeemed ({redeemed.feedback.reason})")
    end = max((r.time for r in rows), default=None)
    return Simulation(ledger, states, notes, end)
