"""A/B tests at the kiosk: the ``[[experiments]]`` schema, the stateless balanced assignment,
and the engine giving each member their variant (and naming it in the entries it made)."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kiosk.common.errors import ConfigError
from kiosk.protocol.event_schema import check_detail
from kiosk.rules import MemberState, Outcome, parse_program
from kiosk.rules.engine import next_goal
from kiosk.rules.experiments import (BLOCKS, K, arm_of_slot, assign, block_arms, enrolled, for_member, message_for,
                                     slot)

from rules_helpers import Member

BERLIN = ZoneInfo("Europe/Berlin")
DAY = datetime(2026, 11, 2, 9, tzinfo=BERLIN)  # experiments below start on 1 November


def experiment(**extra) -> dict:
    base = {"id": "signup-size", "name": "Signup bonus 2 or 5", "varies": "bonus", "target": "signup",
            "started": "2026-11-01", "variants": [{"id": "a", "value": 2}, {"id": "b", "value": 5}]}
    return {**base, **extra}


def programme(*experiments: dict, **extra) -> dict:
    base = {"earning": {"type": "stamps", "per_visit": 1}, "bonuses": {"signup": 1},
            "limits": {"cooldown_minutes": 60},
            "rewards": [{"id": "free-coffee", "name": "Free coffee", "cost": 10}], "experiments": list(experiments)}
    return {**base, **extra}


# -- the schema ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("doc, field, fix", [
    (programme(experiment(variants=[{"id": "a", "value": 2}])), "experiments.0.variants", "at least 2"),
    (programme(experiment(variants=[{"id": "a", "value": 2}, {"id": "a", "value": 3}])), "experiments.0",
     "two variants have the same id"),
    (programme(experiment(winner="c", ended="2026-12-01")), "experiments.0", "winner: 'c' is not one of"),
    (programme(experiment(winner="a")), "experiments.0", "set 'ended' too"),
    (programme(experiment(ended="2026-10-01")), "experiments.0", "ended is before started"),
    (programme(experiment(target="birthday")), "experiments.0", "target: a bonus experiment varies one of"),
    (programme(experiment(variants=[{"id": "a", "value": 2}, {"id": "b", "value": "5"}])), "experiments.0",
     "variants.1.value: '5' is not a whole number"),
    (programme(experiment(target="per_visit", variants=[{"id": "a", "value": 1}, {"id": "b", "value": 500}])),
     "experiments.0", "variants.1.value: 500 is outside 0..100"),
    (programme(experiment(varies="reward", target="free-tea")), "programme",
     "experiments[signup-size].target: no reward 'free-tea'"),
    (programme(experiment(varies="message", target="winback", variants=[{"id": "a", "value": 1},
                                                                         {"id": "b", "value": "short"}])),
     "experiments.0", "variants.0.value: a message variant names a template key"),
    (programme(experiment(varies="message", target="welcome-back", variants=[{"id": "a", "value": "x"},
                                                                              {"id": "b", "value": "y"}])),
     "experiments.0", "target: a message experiment varies the words of one of welcome, birthday, almost_there"),
    (programme(experiment(target="per_visit"), earning={"type": "points", "rate": 10}), "programme",
     "per_visit applies to stamp cards"),
    (programme(experiment(), experiment(id="other")), "programme", "experiment 'signup-size' already varies bonus"),
    (programme(experiment(), experiment()), "programme", "experiments: ids must be unique"),
    (programme(experiment(share=0)), "experiments.0.share", "greater than 0"),
    (programme(experiment(share=1.5)), "experiments.0.share", "less than or equal to 1"),
    (programme(experiment(arms=3)), "experiments.0.arms", "unknown field"),
    (programme(experiment(id="Signup Size")), "experiments.0.id", "is not an id"),
])
def test_an_invalid_experiment_names_the_field_and_the_fix(doc, field, fix):
    with pytest.raises(ConfigError) as info:
        parse_program(doc, "shop.toml")
    assert f"shop.toml: [{field}]" in str(info.value) and fix in str(info.value), str(info.value)


def test_an_experiment_ended_without_a_winner_frees_its_parameter_for_the_next_one():
    prog = parse_program(programme(experiment(ended="2026-11-20"), experiment(id="second", started="2026-11-20")))
    assert [e.id for e in prog.experiments] == ["signup-size", "second"]


# -- the assignment ------------------------------------------------------------------------------------
IDS = [f"m{i:09d}" for i in range(10_000)]


@pytest.mark.parametrize("arms", [2, 3, 5])
def test_every_block_deals_exactly_k_slots_to_each_arm(arms):
    for block in [0, 1, 2, 77, 12345, BLOCKS - 1]:
        dealt = Counter(arm_of_slot("exp", block * arms * K + i, arms) for i in range(arms * K))
        assert dealt == {arm: K for arm in range(arms)}
    assert len({block_arms("exp", b, arms) for b in range(50)}) > 10  # blocks are shuffled differently


@pytest.mark.parametrize("arms", [2, 3])
def test_ten_thousand_members_split_evenly_and_always_the_same_way(arms):
    exp = parse_program(programme(experiment(varies="message", target="winback", variants=[
        {"id": f"v{i}", "value": f"text-{i}"} for i in range(arms)]))).experiments[0]
    first = [assign(exp, m) for m in IDS]
    assert first == [assign(exp, m) for m in reversed(IDS)][::-1]  # deterministic, order-free
    counts = Counter(first)
    # Stateless: each member is a fair draw, so an arm's size is Binomial(10,000, 1/arms);
    # 4 standard deviations (√(n·p·(1−p)) = 50 for two arms, 47 for three) bound it.
    sd = (len(IDS) * (1 / arms) * (1 - 1 / arms)) ** 0.5
    assert set(counts) == {f"v{i}" for i in range(arms)}
    assert all(abs(n - len(IDS) / arms) <= 4 * sd for n in counts.values()), counts
    # the slot of every member lies in the slot space, and its arm is the block's deal
    m = IDS[0]
    assert first[0] == exp.variants[block_arms(exp.id, slot(exp.id, m, arms) // (arms * K), arms)
                                    [slot(exp.id, m, arms) % (arms * K)]].id


def test_share_enrols_that_fraction_and_experiments_are_independent():
    prog = parse_program(programme(experiment(share=0.3), experiment(id="cost", varies="reward", target="free-coffee",
                                                                     variants=[{"id": "a", "value": 10},
                                                                               {"id": "b", "value": 8}])))
    size, cost = prog.experiments
    enrolled_now = sum(enrolled(size, m) for m in IDS)
    assert abs(enrolled_now - 3000) <= 4 * (10_000 * 0.3 * 0.7) ** 0.5  # ±183
    same = sum(assign(cost, m) == "a" for m in IDS if assign(size, m) == "a")
    assert abs(same / sum(assign(size, m) == "a" for m in IDS) - 0.5) < 0.06  # one arm says nothing of the other


# -- the engine applying variants ----------------------------------------------------------------------
def member_in(prog, experiment_id: str, variant: str | None) -> str:
    exp = next(e for e in prog.experiments if e.id == experiment_id)
    return next(m for m in IDS if assign(exp, m) == variant)


COST = experiment(id="cost", varies="reward", target="free-coffee", variants=[{"id": "a", "value": 10},
                                                                             {"id": "b", "value": 3}])
STAMPS = experiment(id="stamps", target="per_visit", variants=[{"id": "a", "value": 1}, {"id": "b", "value": 2}])


@pytest.mark.parametrize("exp, variant, expected", [
    # signup bonus 2 or 5 instead of the programme's 1
    (experiment(), "a", [("base-rate", 1, None), ("signup-bonus", 2, "a")]),
    (experiment(), "b", [("base-rate", 1, None), ("signup-bonus", 5, "b")]),
    # 1 or 2 stamps per visit
    (STAMPS, "a", [("base-rate", 1, "a"), ("signup-bonus", 1, None)]),
    (STAMPS, "b", [("base-rate", 2, "b"), ("signup-bonus", 1, None)]),
    # not enrolled (share): the programme's own bonus, no attribution
    (experiment(share=0.5), None, [("base-rate", 1, None), ("signup-bonus", 1, None)]),
    # not started yet
    (experiment(started="2026-11-03"), "b", [("base-rate", 1, None), ("signup-bonus", 1, None)]),
    # ended on 2 November keeping b: everyone gets b, enrolled or not, in arm a or not
    (experiment(ended="2026-11-02", winner="b", share=0.5), "a", [("base-rate", 1, None), ("signup-bonus", 5, "b")]),
    (experiment(ended="2026-11-02", winner="b", share=0.5), None, [("base-rate", 1, None), ("signup-bonus", 5, "b")]),
    # ended the next day: still running
    (experiment(ended="2026-11-03", winner="b"), "a", [("base-rate", 1, None), ("signup-bonus", 2, "a")]),
    # ended without a winner: the programme again
    (experiment(ended="2026-11-02"), "b", [("base-rate", 1, None), ("signup-bonus", 1, None)]),
])
def test_the_engine_gives_each_member_their_variant_and_names_it(exp, variant, expected):
    prog = parse_program(programme(exp))
    pick = parse_program(programme({**exp, "ended": None, "winner": None, "started": "2026-11-01"}))
    anna = Member(prog, member_in(pick, exp["id"], variant))
    decision = anna.visit(DAY)
    got = [(e.rule, e.delta, e.detail.get("variant")) for e in decision.entries if e.delta]
    assert got == expected
    for entry in decision.entries:
        check_detail(entry.kind, entry.rule, dict(entry.detail))  # the wire takes every entry
        if entry.detail.get("variant"):
            assert entry.detail["experiment"] == exp["id"]


@pytest.mark.parametrize("variant, visits_to_reward, cost", [("a", 10, 10), ("b", 3, 3)])
def test_a_reward_cost_variant_sets_when_the_reward_is_ready_and_what_it_takes(variant, visits_to_reward, cost):
    prog = parse_program(programme(COST, bonuses={"signup": 0}))
    anna = Member(prog, member_in(prog, "cost", variant))
    outcomes = [anna.visit(DAY + timedelta(days=i)).feedback for i in range(visits_to_reward)]
    assert [f.outcome for f in outcomes][-2:] == [Outcome.STAMPED, Outcome.REWARD_READY]
    assert outcomes[-1].goal == cost
    redeemed = anna.redeem(DAY + timedelta(days=visits_to_reward, minutes=1))
    (entry,) = redeemed.entries
    assert (entry.rule, entry.delta, entry.detail) == ("reward:free-coffee", -cost, {"experiment": "cost",
                                                                                    "variant": variant})
    assert anna.state.balance == 0


def test_a_member_runs_the_programme_with_their_values_and_nothing_else_changes():
    prog = parse_program(programme(COST))
    b = member_in(prog, "cost", "b")
    mine = for_member(prog, b, DAY)
    assert mine.reward("free-coffee").cost == 3 and mine.experiments == ()
    assert for_member(mine, b, DAY) is mine  # applying again changes nothing
    assert for_member(prog, b, DAY) is mine  # and is remembered
    assert mine.model_dump(exclude={"rewards", "experiments"}) == prog.model_dump(exclude={"rewards", "experiments"})
    assert for_member(prog, b, datetime(2026, 10, 31, 23, 59, tzinfo=BERLIN)) is prog  # not started


def test_a_message_variant_changes_no_entry_and_tells_the_automations_the_template():
    exp = experiment(id="winback-text", varies="message", target="winback",
                     variants=[{"id": "a", "value": "winback"}, {"id": "b", "value": "winback-short"}])
    prog = parse_program(programme(exp))
    b = member_in(prog, "winback-text", "b")
    assert for_member(prog, b, DAY) is prog
    assert message_for(prog, b, "winback", date(2026, 11, 2)).value == "winback-short"
    assert message_for(prog, b, "birthday", date(2026, 11, 2)) is None
    assert message_for(prog, b, "winback", date(2026, 10, 31)) is None  # not started


def test_the_goal_a_member_sees_is_their_variants_cost():
    """The card, the kiosk's undo screen and the staff screen ask next_goal with the time: a member
    whose arm makes the coffee cost 3 is shown "of 3", not the programme's 10."""
    prog = parse_program(programme(COST, bonuses={"signup": 0}))
    b, a = member_in(prog, "cost", "b"), member_in(prog, "cost", "a")
    assert next_goal(MemberState(b, balance=1), prog, DAY) == 3
    assert next_goal(MemberState(a, balance=1), prog, DAY) == 10
    assert next_goal(MemberState(b, balance=1), prog) == 10  # no time, no variant: the programme as given
    assert next_goal(MemberState(b, balance=1), prog, DAY - timedelta(days=5)) == 10  # before the test began


def test_every_automated_message_can_be_tested_and_nothing_else():
    """The programme (read by kiosks, which know no messages) lists the hub's triggers itself."""
    from cloud.automations.templates import TEXTS
    from kiosk.rules.program import MESSAGE_TRIGGERS
    assert set(MESSAGE_TRIGGERS) == {trigger for trigger, _ in TEXTS}
    for trigger in MESSAGE_TRIGGERS:
        doc = programme(experiment(varies="message", target=trigger, variants=[{"id": "a", "value": trigger.replace("_", "-")},
                                                                               {"id": "b", "value": "short"}]))
        assert parse_program(doc).experiments[0].target == trigger
