"""The triggers and quiet hours as pure functions: dates in the shop's zone, injected moments."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from cloud.automations import templates
from cloud.automations.policy import quiet
from cloud.automations.triggers import BIRTHDAY, WELCOME, WINBACK, Candidate, Rules, birthday_due, due, lapse_after

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc


def at(y, mo, d, h=12, mi=0, zone=BERLIN) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=zone)


@pytest.mark.parametrize("birthday, today, before, expected", [
    (date(1990, 5, 17), date(2026, 5, 17), 0, date(2026, 5, 17)),   # on the day
    (date(1990, 5, 17), date(2026, 5, 16), 0, None),                # not the day before without days_before
    (date(1990, 5, 17), date(2026, 5, 14), 3, date(2026, 5, 17)),   # three days ahead
    (date(1990, 5, 17), date(2026, 5, 13), 3, None),
    (date(1990, 5, 17), date(2026, 5, 18), 3, None),                # past: next year's is far
    (date(1990, 1, 2), date(2026, 12, 30), 3, date(2027, 1, 2)),    # across New Year: next year's birthday
    (date(1990, 1, 2), date(2027, 1, 2), 3, date(2027, 1, 2)),
    (date(1990, 12, 31), date(2027, 1, 1), 3, None),                # the day after is not the day
    (date(2000, 2, 29), date(2027, 2, 28), 0, date(2027, 2, 28)),   # 29 February → 28 February
    (date(2000, 2, 29), date(2027, 3, 1), 0, None),
    (date(2000, 2, 29), date(2028, 2, 28), 0, None),                # leap year: the real day
    (date(2000, 2, 29), date(2028, 2, 29), 0, date(2028, 2, 29)),
    (date(2000, 2, 29), date(2027, 2, 26), 2, date(2027, 2, 28)),
])
def test_birthday_due(birthday, today, before, expected):
    assert birthday_due(birthday, today, before) == expected


def test_a_birthday_begins_at_local_midnight_and_its_occasion_is_the_year_greeted():
    member = Candidate("m1", at(2020, 1, 1), date(1990, 1, 1))
    rules = Rules(triggers=frozenset({BIRTHDAY}))
    eve = datetime(2026, 12, 31, 22, 30, tzinfo=UTC)  # 23:30 in Berlin: still the 31st
    assert due(member, eve, BERLIN, rules) == []
    midnight = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)  # 00:30 on 1 January in Berlin
    [d] = due(member, midnight, BERLIN, rules)
    assert (d.trigger, d.occasion) == (BIRTHDAY, "2027")
    assert d.expires_at == datetime(2027, 1, 2, 0, 0, tzinfo=BERLIN)
    early = Rules(triggers=frozenset({BIRTHDAY}), birthday_days_before=3)
    [d] = due(member, at(2026, 12, 29), BERLIN, early)
    assert d.occasion == "2027"


def _regular(visits: int, every: timedelta, last: datetime) -> Candidate:
    return Candidate("m1", last - every * visits, None, visits, last - every * (visits - 1), last)


@pytest.mark.parametrize("visits, every, expected", [
    (10, timedelta(days=7), timedelta(days=21)),    # weekly: lapsed after 3 weeks
    (5, timedelta(days=30), timedelta(days=90)),    # monthly: after 3 months
    (10, timedelta(days=1), timedelta(days=14)),    # daily: never sooner than winback_min
    (2, timedelta(days=7), timedelta(days=45)),     # too few visits: the fallback
    (1, timedelta(days=7), timedelta(days=45)),
])
def test_the_lapse_is_the_members_own_interval_times_the_factor(visits, every, expected):
    assert lapse_after(_regular(visits, every, at(2026, 6, 1)), Rules()) == expected


def test_winback_per_member_interval_and_one_occasion_per_lapse():
    rules = Rules(triggers=frozenset({WINBACK}))
    last = at(2026, 6, 1, 18, 0)
    weekly, monthly = _regular(10, timedelta(days=7), last), _regular(5, timedelta(days=30), last)
    day_25 = last + timedelta(days=25)
    assert [d.member_id for d in due(weekly, day_25, BERLIN, rules)] == ["m1"]
    assert due(monthly, day_25, BERLIN, rules) == []
    assert [d.occasion for d in due(monthly, last + timedelta(days=91), BERLIN, rules)] == ["2026-06-01"]
    # the same lapse a week later: the same occasion, so the unique key makes it one message
    assert [d.occasion for d in due(weekly, day_25 + timedelta(days=7), BERLIN, rules)] == ["2026-06-01"]


def test_welcome_only_within_the_window_after_joining():
    rules = Rules(triggers=frozenset({WELCOME}))
    member = Candidate("m1", at(2026, 6, 1), None)
    [d] = due(member, at(2026, 6, 2), BERLIN, rules)
    assert (d.trigger, d.occasion, d.expires_at) == (WELCOME, "join", at(2026, 6, 8))
    assert due(member, at(2026, 6, 9), BERLIN, rules) == []


@pytest.mark.parametrize("moment, expected", [
    (at(2026, 6, 1, 20, 59), False),
    (at(2026, 6, 1, 21, 0), True),
    (at(2026, 6, 2, 0, 30), True),
    (at(2026, 6, 2, 7, 59), True),
    (at(2026, 6, 2, 8, 0), False),
    # DST: 06:30 UTC is 07:30 in winter (quiet) and 08:30 in summer (not); the day the clocks go forward
    (datetime(2026, 3, 28, 6, 30, tzinfo=UTC), True),
    (datetime(2026, 3, 29, 6, 30, tzinfo=UTC), False),
    (datetime(2026, 10, 25, 6, 30, tzinfo=UTC), True),   # back to winter time
    (datetime(2026, 10, 24, 19, 30, tzinfo=UTC), True),  # 21:30 summer time
    (datetime(2026, 10, 25, 19, 30, tzinfo=UTC), False),  # 20:30 winter time
])
def test_quiet_hours_follow_the_shops_clock(moment, expected):
    assert quiet(moment, BERLIN, time(21), time(8)) is expected


def test_quiet_hours_within_a_day_and_none():
    assert quiet(at(2026, 6, 1, 13), BERLIN, time(12), time(14))
    assert not quiet(at(2026, 6, 1, 15), BERLIN, time(12), time(14))
    assert not quiet(at(2026, 6, 1, 3), BERLIN, time(0), time(0))


@pytest.mark.parametrize("trigger, language", sorted(templates.TEXTS))
def test_every_template_fills_every_placeholder(trigger, language):
    values = {"first_name": "Anna <b>", "shop": "Café & Co", "balance": "7", "unit": "stamps", "reward": "Coffee",
              "remaining": "3", "card_url": "https://hub.example/P/X", "unsubscribe_url": "https://hub.example/u/t",
              "tier": "Gold", "tier_until": "04 Dec 2026", "expiring": "Coffee", "expires": "03 Dec 2026"}  # card_extras
    out = templates.render(trigger, language, values)
    assert "$" not in out.subject + out.text + out.html
    assert "https://hub.example/u/t" in out.text and '<a href="https://hub.example/u/t">' in out.html
    assert "Anna &lt;b&gt;" in out.html and "<b>" not in out.html.replace("<body>", "")
