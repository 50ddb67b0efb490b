"""The stamp-card engine is pure: state + event + now + programme → entries + feedback."""

from datetime import datetime, timedelta, timezone

import pytest

from kiosk.rules import MemberState, Outcome, Redeem, StampCard, Visit, evaluate, fold
from kiosk.rules.engine import REWARD_REDEEMED, STAMP_AWARDED

NOW = datetime(2026, 5, 5, 12, 0, tzinfo=timezone.utc)
CARD = StampCard(goal=10, cooldown_minutes=60)


@pytest.mark.parametrize("stamps, last, outcome, delta", [
    (0, None, Outcome.STAMPED, 1),
    (8, NOW - timedelta(hours=2), Outcome.STAMPED, 1),
    (9, NOW - timedelta(hours=2), Outcome.REWARD_READY, 1),
    (12, NOW - timedelta(days=3), Outcome.REWARD_READY, 1),
    (3, NOW - timedelta(minutes=59), Outcome.ALREADY_STAMPED, None),
    (3, NOW - timedelta(minutes=60), Outcome.STAMPED, 1),
    (3, NOW + timedelta(minutes=5), Outcome.ALREADY_STAMPED, None),  # clock behind the last stamp
])
def test_visit(stamps, last, outcome, delta):
    decision = evaluate(MemberState("m1", stamps=stamps, last_stamp_at=last), Visit("m1"), NOW, CARD)
    assert decision.feedback.outcome is outcome
    assert [e.delta for e in decision.entries] == ([delta] if delta else [])
    assert all(e.rule == "stamp-per-visit" for e in decision.entries)


@pytest.mark.parametrize("stamps, outcome, left", [
    (10, Outcome.REDEEMED, 0), (13, Outcome.REDEEMED, 3), (9, Outcome.NOTHING_TO_REDEEM, 9), (0, Outcome.NOTHING_TO_REDEEM, 0),
])
def test_redeem(stamps, outcome, left):
    decision = evaluate(MemberState("m1", stamps=stamps), Redeem("m1"), NOW, CARD)
    assert (decision.feedback.outcome, decision.feedback.stamps) == (outcome, left)


def test_already_stamped_says_how_long_to_wait():
    state = MemberState("m1", stamps=3, last_stamp_at=NOW - timedelta(minutes=15, seconds=30))
    assert evaluate(state, Visit("m1"), NOW, CARD).feedback.minutes_left == 45


def test_replaying_the_entries_reproduces_the_balance():
    state, log = MemberState("m1"), []
    now = NOW
    for i in range(40):
        event = Redeem("m1") if i % 12 == 11 else Visit("m1")
        decision = evaluate(state, event, now, CARD)
        for e in decision.entries:
            log.append((e.kind, e.delta, now))
            state = state.apply(e.kind, e.delta, now)
        now += timedelta(minutes=90)
    assert fold("m1", log) == state
    assert state.stamps >= 0
    assert {k for k, _, _ in log} == {STAMP_AWARDED, REWARD_REDEEMED}


def test_programme_validation_names_the_field():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="goal"):
        StampCard(goal=0)
    with pytest.raises(ValidationError, match="reward_id"):
        StampCard(reward_id="Free Coffee!")
