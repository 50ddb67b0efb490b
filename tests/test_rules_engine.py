"""The programme engine, model by model, with the worked examples owners ask about."""

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from kiosk.rules import Outcome, load_program

from rules_helpers import Member, program, rules

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc


def berlin(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def stamps(**extra):
    base = {"earning": {"type": "stamps", "per_visit": 1}, "limits": {"cooldown_minutes": 60},
            "rewards": [{"id": "free-coffee", "name": "Free coffee", "cost": 10}]}
    return program(**{**base, **extra})


def points(rate=10, **extra):
    base = {"earning": {"type": "points", "rate": rate, "currency": "EUR"}, "limits": {"cooldown_minutes": 0},
            "rewards": [{"id": "voucher", "name": "Voucher", "cost": 500}]}
    return program(**{**base, **extra})


def test_cafe_card_ten_stamps_earn_a_free_coffee():
    anna, day = Member(stamps()), berlin(2026, 3, 2, 9)  # a Monday, no campaigns
    outcomes = [anna.visit(day + timedelta(days=i)).feedback.outcome for i in range(10)]
    assert outcomes == [Outcome.STAMPED] * 9 + [Outcome.REWARD_READY]
    redeemed = anna.redeem(day + timedelta(days=9, minutes=1))
    assert (redeemed.feedback.outcome, redeemed.feedback.reward, anna.state.balance) == \
        (Outcome.REDEEMED, "free-coffee", 0)
    assert anna.redeem(day + timedelta(days=9, minutes=2)).feedback.outcome is Outcome.NOTHING_TO_REDEEM


@pytest.mark.parametrize("amount, expected", [("12.50", 120), ("0.99", 0), ("100", 1000), ("7", 70)])
def test_ten_points_per_dollar_counts_whole_dollars(amount, expected):
    prog = points(earning={"type": "points", "rate": 10, "currency": "USD", "rounding": "whole_units"})
    visit = Member(prog).visit(berlin(2026, 3, 2, 9), amount)
    assert (visit.feedback.balance, visit.feedback.unit) == (expected, "points")


@pytest.mark.parametrize("rounding, amount, expected", [
    ("floor", "12.57", 125), ("nearest", "12.57", 126), ("nearest", "12.55", 126), ("whole_units", "12.57", 120)])
def test_rounding_rules(rounding, amount, expected):
    prog = points(earning={"type": "points", "rate": 10, "rounding": rounding})
    assert rules(Member(prog).visit(berlin(2026, 3, 2, 9), amount)) == [("base-rate", expected)]


@pytest.mark.parametrize("amount, expected", [("30", 150), ("50", 250), ("80", 550), ("50.99", 250), ("51", 260)])
def test_five_points_up_to_50_euro_and_ten_above(amount, expected):
    prog = points(earning={"type": "points", "bands": [{"up_to": 50, "rate": 5}, {"rate": 10}]})
    assert rules(Member(prog).visit(berlin(2026, 3, 2, 9), amount)) == [("base-rate", expected)]


DOUBLE_TUESDAY = [{"id": "double-tuesday", "name": "Double Points Tuesday", "weekdays": ["tue"], "multiplier": 2}]


@pytest.mark.parametrize("utc, doubled", [
    # Berlin leaves winter time on Sunday 29 March 2026 (UTC+1 -> UTC+2).
    (datetime(2026, 3, 23, 23, 30, tzinfo=UTC), True),   # Tue 00:30 CET
    (datetime(2026, 3, 30, 22, 30, tzinfo=UTC), True),   # Tue 00:30 CEST (same UTC hour would be Mon in winter)
    (datetime(2026, 3, 30, 21, 30, tzinfo=UTC), False),  # Mon 23:30 CEST
    (datetime(2026, 3, 31, 21, 59, tzinfo=UTC), True),   # Tue 23:59 CEST
    (datetime(2026, 3, 31, 22, 0, tzinfo=UTC), False),   # Wed 00:00 CEST
    # ... and returns on Sunday 25 October 2026.
    (datetime(2026, 10, 26, 23, 0, tzinfo=UTC), True),   # Tue 00:00 CET
    (datetime(2026, 10, 26, 22, 30, tzinfo=UTC), False),  # Mon 23:30 CET
])
def test_double_points_tuesday_follows_the_shop_clock_across_dst(utc, doubled):
    got = rules(Member(points(campaigns=DOUBLE_TUESDAY)).visit(utc, "10"))
    assert got == [("base-rate", 100)] + ([("campaign:double-tuesday", 100)] if doubled else [])


def test_happy_hour_by_time_of_day_and_tier_limited_campaign():
    prog = points(campaigns=[{"id": "happy-hour", "name": "Happy hour", "start_time": "14:00", "end_time": "16:00",
                              "bonus": 15}])
    assert ("campaign:happy-hour", 15) in rules(Member(prog).visit(berlin(2026, 7, 1, 14, 0), "1"))
    assert ("campaign:happy-hour", 15) not in rules(Member(prog).visit(berlin(2026, 7, 1, 16, 0), "1"))


def test_campaign_date_range_is_inclusive_in_local_dates():
    prog = points(campaigns=[{"id": "launch", "name": "Launch week", "multiplier": 3,
                              "start_date": "2026-05-01", "end_date": "2026-05-07"}])
    assert len(rules(Member(prog).visit(berlin(2026, 5, 7, 23, 59), "1"))) == 2
    assert len(rules(Member(prog).visit(berlin(2026, 5, 8, 0, 0), "1"))) == 1
    assert len(rules(Member(prog).visit(berlin(2026, 4, 30, 23, 59), "1"))) == 1


def test_signup_bonus_of_25_points_on_the_first_visit_only():
    anna = Member(points(bonuses={"signup": 25}))
    assert rules(anna.visit(berlin(2026, 3, 2, 9), "3")) == [("base-rate", 30), ("signup-bonus", 25)]
    assert rules(anna.visit(berlin(2026, 3, 3, 9), "3")) == [("base-rate", 30)]


def test_birthday_bonus_within_three_days_once_per_year():
    anna = Member(points(bonuses={"birthday": {"amount": 100, "window_days": 3}}))
    bday = date(1990, 6, 15)
    visits = [(berlin(2026, 6, 11, 10), False),  # 4 days early
              (berlin(2026, 6, 12, 10), True),   # 3 days early
              (berlin(2026, 6, 15, 10), False),  # the day itself, but already credited this year
              (berlin(2026, 6, 19, 10), False),
              (berlin(2027, 6, 18, 10), True)]   # next year, 3 days late
    got = [("birthday-bonus", 100) in rules(anna.visit(at, "1", birthday=bday)) for at, _ in visits]
    assert got == [want for _, want in visits]


def test_birthday_window_crosses_new_year_and_leap_day():
    anna = Member(points(bonuses={"birthday": {"amount": 100, "window_days": 3}}))
    assert ("birthday-bonus", 100) in rules(anna.visit(berlin(2026, 12, 30, 10), "1", birthday=date(1990, 1, 1)))
    leap = Member(points(bonuses={"birthday": {"amount": 100, "window_days": 0}}))
    assert ("birthday-bonus", 100) in rules(leap.visit(berlin(2027, 2, 28, 10), "1", birthday=date(2000, 2, 29)))


def test_referral_credits_both_sides_at_the_new_members_first_visit():
    prog = points(bonuses={"referral": {"referrer": 50, "referee": 50}})
    ben = Member(prog, "ben")
    first = ben.visit(berlin(2026, 3, 2, 9), "1", referred_by="anna")
    assert [(e.member, e.rule, e.delta) for e in first.entries if e.kind == "bonus"] == [
        ("ben", "referral-bonus:referee", 50), ("anna", "referral-bonus:referrer", 50)]
    assert ben.others["anna"].balance == 50
    assert not [e for e in ben.visit(berlin(2026, 3, 3, 9), "1", referred_by="anna").entries if e.kind == "bonus"]
    assert not Member(prog, "anna").visit(berlin(2026, 3, 2, 9), "1", referred_by="anna").entries[2:]


def test_cooldown_gives_already_stamped_with_the_wait():
    anna = Member(stamps())
    anna.visit(berlin(2026, 3, 2, 9))
    again = anna.visit(berlin(2026, 3, 2, 9, 40))
    assert (again.feedback.outcome, again.feedback.minutes_left, again.entries) == (Outcome.ALREADY_STAMPED, 20, ())
    assert anna.visit(berlin(2026, 3, 2, 10, 0)).feedback.outcome is Outcome.STAMPED


def test_daily_cap_counts_the_local_day_and_resets_at_local_midnight():
    anna = Member(stamps(earning={"type": "stamps", "per_visit": 2}, limits={"cooldown_minutes": 0, "daily_cap": 3}))
    got = [sum(d for _, d in rules(anna.visit(berlin(2026, 3, 2, h)))) for h in (9, 10, 11)]
    assert got == [2, 1, 0]
    assert anna.visit(berlin(2026, 3, 2, 11)).feedback.capped
    assert sum(d for _, d in rules(anna.visit(berlin(2026, 3, 3, 0, 1)))) == 2


def test_max_per_scan_caps_earning_but_not_gifts():
    prog = points(limits={"cooldown_minutes": 0, "max_per_scan": 300}, bonuses={"signup": 25})
    got = rules(Member(prog).visit(berlin(2026, 3, 2, 9), "100"))
    assert got == [("base-rate", 300), ("signup-bonus", 25)]


def test_spend_threshold_bonus_takes_the_highest_threshold_met():
    prog = points(bonuses={"spend": [{"min_amount": 45, "bonus": 20}, {"min_amount": 100, "bonus": 60}]})
    assert rules(Member(prog).visit(berlin(2026, 3, 2, 9), "44.99")) == [("base-rate", 440)]
    assert rules(Member(prog).visit(berlin(2026, 3, 2, 9), "45")) == [("base-rate", 450), ("spend-bonus:45", 20)]
    assert rules(Member(prog).visit(berlin(2026, 3, 2, 9), "120"))[-1] == ("spend-bonus:100", 60)


def test_milestone_bonuses_on_the_10th_and_100th_visit():
    anna = Member(stamps(bonuses={"milestones": [{"visit": 10, "bonus": 3}, {"visit": 100, "bonus": 20}]}))
    got = [rules(anna.visit(berlin(2026, 1, 1, 9) + timedelta(days=i))) for i in range(100)]
    assert ("milestone:10", 3) in got[9] and ("milestone:100", 20) in got[99]
    assert sum(("milestone:10", 3) in g or ("milestone:100", 20) in g for g in got) == 2


def test_points_visit_without_amount_says_so_and_changes_nothing():
    decision = Member(points()).visit(berlin(2026, 3, 2, 9))
    assert (decision.feedback.outcome, decision.entries) == (Outcome.AMOUNT_REQUIRED, ())
    assert "amount" in decision.feedback.reason


def test_salon_tiers_upgrade_multiply_and_downgrade_with_reasons():
    salon = Member(load_program("examples/salon.toml"))
    day = berlin(2026, 1, 5, 10)
    first = [salon.visit(day + timedelta(days=7 * i), "40") for i in range(5)]
    assert rules(first[0])[:2] == [("tier:bronze", 0), ("base-rate", 200)]
    assert rules(first[4]) == [("tier:silver", 0), ("base-rate", 200), ("tier-multiplier:silver", 50)]
    change = [e for e in first[4].entries if e.kind == "tier_change"][0]
    assert change.detail == {"from": "Bronze", "to": "Silver", "reason": "5 visits in the last 365 days"}
    assert rules(salon.visit(day + timedelta(days=40), "33")) == [("base-rate", 165), ("tier-multiplier:silver", 41)]
    # A year and a half of absence: back to Bronze at the next visit, with the reason.
    back = salon.visit(day + timedelta(days=600), "10")
    assert rules(back)[0] == ("tier:bronze", 0)
    assert "1 visits in the last 365 days" in [e for e in back.entries if e.kind == "tier_change"][0].detail["reason"]


def test_tier_restricted_reward_is_only_ready_for_silver_and_gold():
    salon = Member(load_program("examples/salon.toml"))
    first = salon.visit(berlin(2026, 1, 5, 10), "80")  # 400 points, but Bronze
    assert first.feedback.balance == 400 and first.feedback.rewards_ready == ()
    assert salon.redeem(berlin(2026, 1, 5, 10, 1), "free-treatment").feedback.outcome is Outcome.NOTHING_TO_REDEEM
    for i in range(1, 5):
        last = salon.visit(berlin(2026, 1, 5, 10) + timedelta(days=i), "1")
    assert last.feedback.tier == "Silver" and last.feedback.rewards_ready == ("free-treatment",)


def test_rewards_catalogue_first_ready_and_chosen_reward():
    prog = points(rewards=[{"id": "pastry", "name": "Pastry", "cost": 50}, {"id": "coffee", "name": "Coffee", "cost": 100}])
    anna = Member(prog)
    assert anna.visit(berlin(2026, 3, 2, 9), "12").feedback.rewards_ready == ("pastry", "coffee")
    assert anna.redeem(berlin(2026, 3, 2, 9, 1), "coffee").feedback.balance == 20
    assert anna.redeem(berlin(2026, 3, 2, 9, 2)).feedback.outcome is Outcome.NOTHING_TO_REDEEM


def test_balance_expires_after_months_of_inactivity():
    anna = Member(points(expiry={"inactive_months": 6}))
    anna.visit(berlin(2026, 1, 31, 9), "20")
    kept = anna.visit(berlin(2026, 7, 30, 9), "1")
    assert kept.feedback.balance == 210
    expired = anna.visit(berlin(2027, 1, 30, 9), "1")
    assert rules(expired)[0] == ("inactivity-expiry", -210) and expired.feedback.balance == 10


def test_a_balance_above_one_entrys_bound_expires_in_entries_the_wire_accepts():
    """A balance grown past MAX_DELTA (years of big purchases) expires in parts, each of which
    the wire and the hub accept: one entry of -2,999,970 would stall the kiosk's outbox."""
    from kiosk.protocol.event_schema import DELTA_MAX

    anna = Member(points(expiry={"inactive_months": 6}))
    for day in (1, 2, 3):
        anna.visit(berlin(2026, 1, day, 9), "99999")
    assert anna.state.balance == 2_999_970
    expired = anna.visit(berlin(2026, 8, 1, 9), "1")
    parts = [delta for rule, delta in rules(expired) if rule == "inactivity-expiry"]
    assert parts == [-1_000_000, -1_000_000, -999_970] and all(abs(p) <= DELTA_MAX for p in parts)
    assert expired.feedback.balance == 10


def test_unused_reward_expires_after_its_days():
    prog = stamps(limits={"cooldown_minutes": 0},
                  rewards=[{"id": "free-coffee", "name": "Free coffee", "cost": 2, "expires_after_days": 30}])
    anna = Member(prog)
    anna.visit(berlin(2026, 3, 1, 9)), anna.visit(berlin(2026, 3, 2, 9))
    assert anna.state.balance == 2
    later = anna.visit(berlin(2026, 4, 2, 9))
    assert rules(later)[0] == ("reward-expiry:free-coffee", -2) and later.feedback.balance == 1


def test_redelivering_an_event_changes_nothing():
    from kiosk.rules import Visit, evaluate

    anna = Member(stamps())
    anna.visit(berlin(2026, 3, 2, 9))
    again = evaluate(anna.state, Visit("v1", "anna"), berlin(2026, 3, 9, 9), anna.program)
    assert (again.feedback.outcome, again.entries) == (Outcome.DUPLICATE, ())


def test_every_entry_names_its_rule():
    anna = Member(load_program("examples/cafe.toml"))
    for i in range(12):
        anna.visit(berlin(2026, 3, 2, 9) + timedelta(days=i))
    anna.redeem(berlin(2026, 3, 13, 9, 1))
    assert all(e.rule and e.cause for e in anna.entries)
    assert {e.rule for e in anna.entries} >= {"visit", "base-rate", "signup-bonus", "campaign:double-stamp-tuesday",
                                             "reward:free-coffee"}
