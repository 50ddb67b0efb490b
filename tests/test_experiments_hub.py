"""A/B tests at the hub: the interval and verdict against sums done by hand, the per-arm figures
from a real ledger on SQLite and PostgreSQL, and the owner's page (login, CSRF, one merchant
never sees another's experiment, "end and keep the winner" publishes a new version)."""

from __future__ import annotations

import json
import math
import tomllib
from datetime import date, datetime, timezone

import pytest
from hubdb import hub_url, pg_database  # noqa: F401
from webapp import NOW, _quick_password_hashes, broker, web  # noqa: F401

from cloud import programs
from cloud.experiments import Exposure, arms, exposures, keep_winner, results
from cloud.metrics.abtest import Arm, Interval, compare, newcombe, wilson
from cloud.metrics.queries import snapshot
from kiosk.common.errors import ConfigError
from kiosk.protocol import topics
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import EventBatch, WireEvent
from kiosk.rules import parse_program
from kiosk.rules.experiments import assign

UTC = timezone.utc


# -- the arithmetic, by hand ---------------------------------------------------------------------------
def bounds(ci: Interval) -> tuple[float, float]:
    return ci.low, ci.high


def test_wilson_and_newcombe_match_the_sums_done_by_hand():
    # z = 1.959964, z² = 3.841459; n = 100: z²/n = 0.0384146, z²/2n = 0.0192073, z²/4n² = 0.0000960
    # 1 + z²/n = 1.0384146; z / (1 + z²/n) = 1.959964 / 1.0384146 = 1.8874581
    # A: 30 of 100 came back, p = 0.30
    #   centre = (0.30 + 0.0192073) / 1.0384146 = 0.3192073 / 1.0384146 = 0.3073987
    #   half   = 1.8874581 · √(0.3·0.7/100 + 0.0000960) = 1.8874581 · √0.0021960 = 1.8874581 · 0.0468619 = 0.0884498
    #   Wilson = 0.3073987 ∓ 0.0884498 = [0.2189489, 0.3958485]
    assert bounds(wilson(30, 100)) == pytest.approx((0.2189489, 0.3958485), abs=1e-6)
    # B: 45 of 100, p = 0.45
    #   centre = (0.45 + 0.0192073) / 1.0384146 = 0.4692073 / 1.0384146 = 0.4518497
    #   half   = 1.8874581 · √(0.45·0.55/100 + 0.0000960) = 1.8874581 · √0.0025710 = 1.8874581 · 0.0507054 = 0.0957043
    #   Wilson = [0.3561454, 0.5475540]
    assert bounds(wilson(45, 100)) == pytest.approx((0.3561454, 0.5475540), abs=1e-6)
    # Newcombe, d = 0.45 − 0.30 = 0.15
    #   low  = 0.15 − √((0.45 − 0.3561454)² + (0.3958485 − 0.30)²) = 0.15 − √(0.0088087 + 0.0091869)
    #        = 0.15 − √0.0179956 = 0.15 − 0.1341478 = 0.0158522
    #   high = 0.15 + √((0.5475540 − 0.45)² + (0.30 − 0.2189489)²) = 0.15 + √(0.0095168 + 0.0065693)
    #        = 0.15 + √0.0160861 = 0.15 + 0.1268309 = 0.2768309
    assert bounds(newcombe(30, 100, 45, 100)) == pytest.approx((0.0158522, 0.2768309), abs=1e-6)
    # the same sums in code, from the formulas alone
    z = 1.959963984540054
    lo1 = ((0.3 + z * z / 200) - z * math.sqrt(0.21 / 100 + z * z / 40000)) / (1 + z * z / 100)
    assert wilson(30, 100).low == pytest.approx(lo1, rel=1e-12)


def test_wilson_stays_inside_zero_and_one_where_the_normal_interval_would_not():
    assert wilson(0, 12).low == pytest.approx(0, abs=1e-12) and wilson(0, 12).high == pytest.approx(0.2425, abs=1e-4)
    # 0 of 12 came back: still "up to 24 %", where the normal interval says 0 to 0
    assert wilson(12, 12).high == pytest.approx(1.0) and wilson(12, 12).low > 0.74
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson(3, 0)


def arm(variant, measured, returned, members=None, visits=0, redeemed=0) -> Arm:
    return Arm(variant, members or measured, measured, returned, visits, redeemed)


@pytest.mark.parametrize("a, b, outcome, verdict", [
    (arm("a", 100, 30), arm("b", 100, 45), "better",
     "b brings 15 % more members back within 30 days than a (45 % vs 30 %), 95 % CI 2–28 %: likely better."),
    (arm("a", 100, 45), arm("b", 100, 30), "worse",
     "b brings 15 % fewer members back within 30 days than a (30 % vs 45 %), 95 % CI −28 to −2 %: likely worse."),
    (arm("a", 100, 30), arm("b", 100, 33), "unclear",
     "No clear difference yet: b brings 3 % more members back within 30 days than a (33 % vs 30 %), "
     "95 % CI −10 to 16 %."),
    (arm("a", 9, 3, members=12), arm("b", 100, 30), "too_early",
     "Too early to tell: 9 and 100 members have had 30 days to come back; wait for at least 10 in each arm."),
])
def test_the_verdict_in_plain_words(a, b, outcome, verdict):
    result = compare(a, b, 30)
    assert (result.outcome, result.verdict) == (outcome, verdict)


def test_arm_rates():
    a = Arm("a", members=40, measured=20, returned=5, visits=100, redeemed=10)
    assert (a.return_rate, a.visits_per_member, a.redemption_rate) == (0.25, 2.5, 0.25)
    assert Arm("b", 0, 0, 0, 0, 0).return_rate is None


# -- the figures from a real ledger ----------------------------------------------------------------------
PROGRAMME = """name = "Cafe Rosa"

[earning]
type = "stamps"
per_visit = 1

[bonuses]
signup = 1

[[rewards]]
id = "free-coffee"
name = "Free coffee"
cost = 10

[[experiments]]
id = "signup-size"
name = "Signup bonus 2 or 5"
varies = "bonus"
target = "signup"
started = 2026-10-01

[[experiments.variants]]
id = "a"
value = 2

[[experiments.variants]]
id = "b"
value = 5
"""
PROG = parse_program(tomllib.loads(PROGRAMME))
EXP = PROG.experiments[0]
A_IDS = [m for m in (f"m{i:03d}" for i in range(200)) if assign(EXP, m) == "a"][:4]
B_IDS = [m for m in (f"m{i:03d}" for i in range(200)) if assign(EXP, m) == "b"][:3]


def oct_(day: int, month: int = 10) -> datetime:
    return datetime(2026, month, day, 12, tzinfo=UTC)


# Return window 14 days, observed up to NOW (20 November, 15:00 UTC); the test starts at the
# local midnight of 1 October (30 September, 22:00 UTC).
LEDGER = [
    # arm a
    (A_IDS[0], "visit", oct_(5)), (A_IDS[0], "visit", oct_(10)), (A_IDS[0], "redeem", oct_(10)),  # back in 5 days
    (A_IDS[1], "visit", oct_(5)), (A_IDS[1], "visit", oct_(30)),  # back after 25 days: not within 14
    (A_IDS[2], "visit", oct_(6)),  # never back
    (A_IDS[3], "visit", oct_(15, 11)),  # first exposure 15 Nov: not 14 days yet, not measured
    # arm b
    (B_IDS[0], "visit", oct_(2)), (B_IDS[0], "visit", oct_(3)), (B_IDS[0], "visit", oct_(20)),
    (B_IDS[1], "visit", oct_(8)), (B_IDS[1], "visit", oct_(22)),  # exactly 14 days: counts
    (B_IDS[2], "visit", datetime(2026, 9, 20, 12, tzinfo=UTC)),  # before the test: not counted
    (B_IDS[2], "visit", oct_(25)), (B_IDS[2], "visit", oct_(1, 11)),  # exposed 25 Oct, back 1 Nov
    (B_IDS[2], "visit", datetime(2026, 9, 30, 21, 59, tzinfo=UTC)),  # 23:59 local on 30 Sep: before
]


def ingest(store, merchant: str, rows) -> None:
    events = []
    for seq, (member, kind, at) in enumerate(rows, 1):
        extra = {"delta": -10, "rule": "reward:free-coffee", "reward": "free-coffee"} if kind == "redeem" \
            else {"rule": "visit"}
        events.append(WireEvent(event_id=new_event_id(), kiosk_seq=seq, occurred_at=at, mono_ns=seq, boot_id="b",
                                kind=kind, member=member, **extra))
    payload = EventBatch(ledger_id="a" * 32, events=events).model_dump_json(by_alias=True).encode()
    assert store.ingest(topics.events(merchant, "k1"), payload).new == len(events)


def test_per_arm_figures_from_the_ledger(web):
    store = web.hub.events()
    ingest(store, "cafe", LEDGER)
    ingest(store, "bakery", [(A_IDS[2], "visit", oct_(7))])  # another shop's visit by the same id: not ours
    (result,) = results(web.hub.engine, "cafe", PROG, NOW, days=14)
    assert result.start == datetime(2026, 9, 30, 22, tzinfo=UTC) and result.end == NOW
    a, b = result.arms
    # a: 4 members; 3 measured, 1 back within 14 days; visits 2 + 2 + 1 + 1; 1 redeemed
    assert a == Arm("a", members=4, measured=3, returned=1, visits=6, redeemed=1)
    # b: 3 members, all measured and back; visits 3 + 2 + 2 (the September ones left out)
    assert b == Arm("b", members=3, measured=3, returned=3, visits=7, redeemed=0)
    assert result.status == "running" and result.not_enrolled == 0
    assert result.comparisons[0].outcome == "too_early"
    with snapshot(web.hub.engine) as conn:  # the query itself: first, second, count
        rows = {e.member: e for e in exposures(conn, "cafe", result.start, result.end)}
    assert rows[B_IDS[2]] == Exposure(B_IDS[2], oct_(25), oct_(1, 11), 2)
    assert rows[A_IDS[2]] == Exposure(A_IDS[2], oct_(6), None, 1)


def test_an_ended_test_counts_up_to_its_end_and_members_outside_the_share_apart():
    exp = PROG.experiments[0].model_copy(update={"share": 0.5})
    members = [f"m{i:03d}" for i in range(40)]
    seen = [Exposure(m, oct_(2), oct_(4), 2) for m in members]
    per_arm, outside = arms(exp, seen, {members[0]}, oct_(20), 14)
    assert outside == sum(assign(exp, m) is None for m in members) and 0 < outside < 40
    assert sum(a.members for a in per_arm) == 40 - outside
    assert all(a.returned == a.measured == a.members for a in per_arm)


def test_keeping_a_winner_sets_ended_and_winner_and_refuses_what_makes_no_sense():
    kept = keep_winner(PROG, "signup-size", "b", date(2026, 11, 20))
    (exp,) = kept.experiments
    assert (exp.ended, exp.winner) == (date(2026, 11, 20), "b")
    for args, message in [(("nope", "b"), "no experiment 'nope'"), (("signup-size", "c"), "no variant 'c'")]:
        with pytest.raises(ConfigError, match=message):
            keep_winner(PROG, *args, date(2026, 11, 20))
    with pytest.raises(ConfigError, match="already ended"):
        keep_winner(kept, "signup-size", "a", date(2026, 11, 21))
    with pytest.raises(ConfigError, match="ended is before started"):
        keep_winner(PROG, "signup-size", "a", date(2026, 9, 1))


# -- the owner's page ------------------------------------------------------------------------------------
@pytest.fixture
def site(web):
    assert "experiments" in web.app.blueprints  # registered by create_app
    return web


def publish(site, login="owner@cafe", source=PROGRAMME):
    owner = site.login(login)
    assert site.post(owner, "/owner/programme/", source=source, action="publish").status_code == 302
    return owner


def test_the_page_shows_each_arm_and_the_verdict(site):
    ingest(site.hub.events(), "cafe", LEDGER)
    owner = publish(site)
    page = owner.get("/owner/experiments/?days=14").get_data(as_text=True)
    assert "Signup bonus 2 or 5" in page and "(signup-size: bonus signup, running)" in page
    assert "33 % (1 of 3)" in page and "100 % (3 of 3)" in page  # a and b came back
    assert "Too early to tell: 3 and 3 members" in page
    single = owner.get("/owner/experiments/signup-size?days=14")
    assert single.status_code == 200 and "End and keep the winner" in single.get_data(as_text=True)


def test_the_page_needs_an_owner_login_and_a_csrf_token(site):
    publish(site)
    anonymous = site.client().get("/owner/experiments/")
    assert anonymous.status_code == 302 and "/owner/login" in anonymous.headers["Location"]
    staff = site.login("staff@cafe")
    assert staff.get("/owner/experiments/").status_code == 403
    owner = site.login()
    assert owner.post("/owner/experiments/signup-size/end", data={"winner": "b"}).status_code == 400  # no token
    assert programs.current(site.hub.engine, "cafe").program.experiments[0].ended is None


def test_another_merchants_experiment_is_not_found(site):
    publish(site)  # the cafe's test
    bakery = site.login("owner@bakery")
    assert bakery.get("/owner/experiments/signup-size").status_code == 404
    assert "No A/B tests" in bakery.get("/owner/experiments/").get_data(as_text=True)
    done = site.post(bakery, "/owner/experiments/", "/owner/experiments/signup-size/end", winner="b")
    assert done.status_code == 404
    assert programs.current(site.hub.engine, "bakery") is None
    assert programs.current(site.hub.engine, "cafe").version == 1


def test_end_and_keep_the_winner_publishes_the_next_version(site, broker):
    owner = publish(site)
    page = "/owner/experiments/signup-size"
    done = site.post(owner, page, f"{page}/end", winner="b")
    assert done.status_code == 302
    shown = owner.get(page).get_data(as_text=True)
    assert "ended keeping b: version 2 published" in shown and "kept b" in shown
    assert "End and keep the winner" not in shown
    current = programs.current(site.hub.engine, "cafe")
    assert current.version == 2 and current.created_by == "owner@cafe"
    (exp,) = current.program.experiments
    assert (exp.ended, exp.winner) == (date(2026, 11, 20), "b")  # NOW is 20 November, 16:00 in Berlin
    assert programs.parse_draft(current.source) == current.program  # the editor opens it as TOML
    retained = json.loads(broker.broker.retained(topics.config_desired("cafe")))
    assert retained["version"] == 2 and retained["program"]["experiments"][0]["winner"] == "b"
    assert parse_program(retained["program"]).experiments[0] == exp  # what a kiosk will run
    again = site.post(owner, page, f"{page}/end", winner="a")
    assert again.status_code == 302 and "already ended" in owner.get(page).get_data(as_text=True)
    assert programs.current(site.hub.engine, "cafe").version == 2


def test_the_card_shows_the_members_own_reward_cost(web):
    """A member in the arm where the coffee costs 3 reads "of 3" on their card, and the card's
    programme is theirs (the reward list the page shows); the other arm still reads "of 10"."""
    from sqlalchemy.orm import Session

    from cloud import cards
    from cloud.models import Member as MemberRow
    cost = PROGRAMME.replace('id = "signup-size"\nname = "Signup bonus 2 or 5"\nvaries = "bonus"\ntarget = "signup"',
                             'id = "cost"\nname = "Coffee for 3"\nvaries = "reward"\ntarget = "free-coffee"') \
        .replace("value = 2", "value = 10").replace("value = 5", "value = 3")
    prog = parse_program(tomllib.loads(cost))
    exp = prog.experiments[0]
    ids = {v: next(m for m in (f"m{i:03d}" for i in range(200)) if assign(exp, m) == v) for v in ("a", "b")}
    with Session(web.hub.engine) as session:
        session.add_all([MemberRow(id=m, merchant_id="cafe", name="Anna") for m in ids.values()])
        session.commit()
        rows = {v: session.get(MemberRow, m) for v, m in ids.items()}
        session.expunge_all()
    b, a = (cards.card(web.hub.engine, rows[v], NOW, prog) for v in ("b", "a"))
    assert (b.goal, b.remaining, [r.cost for r in b.program.rewards]) == (3, 3, [3])
    assert (a.goal, a.remaining, [r.cost for r in a.program.rewards]) == (10, 10, [10])
