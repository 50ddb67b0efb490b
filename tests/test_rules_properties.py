"""Properties of the engine over random programmes and visit streams (hypothesis, fixed seed).

For every programme and stream: replaying the ledger reproduces the state, no balance
goes negative, re-delivering any past event changes nothing, and the engine is
deterministic.
"""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.rules import MemberState, Outcome, Redeem, Visit, apply, evaluate, fold, parse_program

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
MEMBERS = ["anna", "ben", "cleo"]


@st.composite
def programmes(draw):
    kind = draw(st.sampled_from(["stamps", "points"]))
    earning = {"type": kind, "per_visit": draw(st.integers(1, 3))} if kind == "stamps" else {
        "type": "points", "rate": draw(st.sampled_from([1, 5, 10])),
        "rounding": draw(st.sampled_from(["whole_units", "floor", "nearest"]))}
    if kind == "points" and draw(st.booleans()):
        earning["bands"] = [{"up_to": 50, "rate": 5}, {"rate": 10}]
    costs = draw(st.lists(st.integers(1, 400 if kind == "points" else 12), min_size=1, max_size=3, unique=True))
    tiers = None
    if draw(st.booleans()):
        tiers = {"basis": draw(st.sampled_from(["visits", "spend"])), "window_days": draw(st.sampled_from([7, 30, 365])),
                 "levels": [{"name": "bronze", "threshold": 0}, {"name": "silver", "threshold": 3, "multiplier": 1.25},
                            {"name": "gold", "threshold": 8, "multiplier": 1.5}]}
    rewards = [{"id": f"r{i}", "name": f"R{i}", "cost": c, "expires_after_days": draw(st.none() | st.integers(1, 20)),
                "tiers": ["silver", "gold"] if tiers and i == 0 and draw(st.booleans()) else None}
               for i, c in enumerate(costs)]
    doc = {
        "earning": earning, "rewards": rewards, "tiers": tiers,
        "campaigns": [{"id": "tue", "name": "Tue", "weekdays": ["tue"], "multiplier": 2}] if draw(st.booleans()) else [],
        "bonuses": {"signup": draw(st.integers(0, 5)), "milestones": [{"visit": 3, "bonus": 2}],
                    "referral": {"referrer": 5, "referee": 5}, "spend": [{"min_amount": 40, "bonus": 7}]},
        "limits": {"cooldown_minutes": draw(st.sampled_from([0, 30, 120])),
                   "daily_cap": draw(st.none() | st.integers(1, 50)), "max_per_scan": draw(st.none() | st.integers(1, 80))},
        "expiry": {"inactive_months": draw(st.none() | st.integers(1, 2))},
    }
    return parse_program({k: v for k, v in doc.items() if v is not None})


events = st.lists(st.tuples(
    st.sampled_from(MEMBERS),
    st.integers(0, 60 * 24 * 20),             # minutes since the previous event
    st.one_of(st.none(), st.decimals(0, 120, places=2)),
    st.sampled_from(["visit", "visit", "visit", "redeem"]),
    st.one_of(st.none(), st.sampled_from(MEMBERS)),
), min_size=1, max_size=40)


def run(program, stream):
    """Apply the stream; returns (states, ledger of (entry, at), list of (event, at))."""
    states, ledger, seen, now = {}, [], [], START
    for i, (member, gap, amount, what, referrer) in enumerate(stream):
        now += timedelta(minutes=gap)
        event = Visit(f"e{i}", member, amount if amount is not None else Decimal(10), None, referrer) \
            if what == "visit" else Redeem(f"e{i}", member)
        decision = evaluate(states.get(member) or MemberState(member), event, now, program)
        for entry in decision.entries:
            states[entry.member] = apply(states.get(entry.member) or MemberState(entry.member), entry, now, program)
            ledger.append((entry, now))
        seen.append((event, now))
    return states, ledger, seen


SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(programmes(), events)
def test_replaying_the_ledger_reproduces_every_balance(program, stream):
    states, ledger, _ = run(program, stream)
    for member, state in states.items():
        assert fold(member, [(e, at) for e, at in ledger if e.member == member], program) == state


@SETTINGS
@given(programmes(), events)
def test_no_balance_ever_goes_negative(program, stream):
    states, ledger, _ = run(program, stream)
    running: dict[str, int] = {}
    for entry, _ in ledger:
        running[entry.member] = running.get(entry.member, 0) + entry.delta
        assert running[entry.member] >= 0, entry
    assert all(s.balance >= 0 for s in states.values())


@SETTINGS
@given(programmes(), events)
def test_redelivering_an_event_right_away_changes_nothing(program, stream):
    states, now = {}, START
    for i, (member, gap, amount, what, referrer) in enumerate(stream):
        now += timedelta(minutes=gap)
        event = Visit(f"e{i}", member, amount, None, referrer) if what == "visit" else Redeem(f"e{i}", member)
        state = states.get(member) or MemberState(member)
        first = evaluate(state, event, now, program)
        states[member] = first.state
        again = evaluate(first.state, event, now, program)
        assert again.entries == ()
        assert again.feedback.balance == first.feedback.balance


@SETTINGS
@given(programmes(), events, st.integers(0, 39))
def test_redelivering_an_applied_event_later_is_a_duplicate(program, stream, pick):
    states, _, seen = run(program, stream)
    event, at = seen[pick % len(seen)]
    state = states.get(event.member) or MemberState(event.member)
    if event.id in state.applied:
        again = evaluate(state, event, at, program)
        assert again.entries == () and again.feedback.outcome is Outcome.DUPLICATE


@SETTINGS
@given(programmes(), events)
def test_the_engine_is_deterministic(program, stream):
    assert run(program, stream)[1] == run(program, stream)[1]
