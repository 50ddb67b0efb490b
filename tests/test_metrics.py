"""The owner dashboard's figures (cloud/metrics/), on ledgers small enough to count by hand.

Every expected value below is worked out in the comment beside it from the ledger the test
writes; the ledgers are written straight into ``hub_events`` and ``members`` with a fixed clock.
The database tests run on SQLite and PostgreSQL (``hub_url``).
"""

from __future__ import annotations

import csv
import io
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from sqlalchemy import create_engine, insert

from cloud.db import open_store
from cloud.metrics import cohorts, formulas, lists, queries
from cloud.metrics.activity import MemberActivity, Period
from cloud.metrics.dashboard import CSV_PARTS, dashboard, to_csv
from cloud.metrics.formulas import Amounts, RewardCounts, Tally
from cloud.models import HubEvent, Member, Merchant
from kiosk.common.errors import ConfigError
from kiosk.rules.program import Program, parse_program

M = "cafe-rosa"
END = datetime(2026, 6, 1, tzinfo=timezone.utc)
START = END - timedelta(days=30)          # 2026-05-02 00:00 UTC
DAY = timedelta(days=1)
STAMPS = Program()                         # a stamp card: "free-coffee" costs 10 stamps
POINTS = parse_program({"earning": {"type": "points", "rate": 10},
                        "rewards": [{"id": "voucher-5", "name": "5 EUR voucher", "cost": 500},
                                    {"id": "voucher-15", "name": "15 EUR voucher", "cost": 1000}]})


# -- a ledger written straight into the hub's tables --------------------------------------------
@dataclass
class Ledger:
    """hub_events and members rows; every event gets its own event_id, kiosk_seq and hub_seq."""

    events: list[dict] = field(default_factory=list)
    members: list[dict] = field(default_factory=list)

    def member(self, member_id: str, name: str | None = None, erased: bool = False) -> str:
        self.members.append({"id": member_id, "merchant_id": M, "name": "" if erased else (name or member_id.title()),
                             "created_at": START - 400 * DAY, "erased_at": END - 2 * DAY if erased else None})
        return member_id

    def add(self, kind: str, member: str | None, at: datetime, delta: int = 0, *, reward: str | None = None,
            detail: dict | None = None, merchant: str = M) -> None:
        n = len(self.events) + 1
        self.events.append({"event_id": str(uuid.UUID(int=n)), "merchant_id": merchant, "kiosk_id": "k1",
                            "ledger_id": "", "kiosk_seq": n, "hub_seq": n, "kind": kind, "member_id": member,
                            "delta": delta, "rule": kind, "reward": reward, "reason": None,
                            "detail": detail or {}, "occurred_at": at, "mono_ns": n, "boot_id": "boot-1",
                            "received_at": at})

    def visit(self, member: str, at: datetime, amount: str | None = None, merchant: str = M) -> None:
        self.add("visit", member, at, detail={"amount": amount} if amount is not None else {}, merchant=merchant)

    def write(self, engine) -> None:
        with engine.begin() as conn:
            conn.execute(insert(Merchant), [{"id": m, "name": m, "base_url": "https://stempel.example"}
                                            for m in sorted({e["merchant_id"] for e in self.events} | {M})])
            if self.members:
                conn.execute(insert(Member), self.members)
            if self.events:
                conn.execute(insert(HubEvent), self.events)


@pytest.fixture
def engine(hub_url):
    e = open_store(hub_url)
    yield e
    e.dispose()


# -- the classic worked example: S = 200, N = 50, E = 180 ----------------------------------------
def test_the_retention_formula_on_the_classic_example():
    crr = formulas.retention_rate(at_start=200, at_end=180, new=50)
    assert crr.value == 65.0  # (180 − 50) / 200 = 130 / 200 = 0.65
    assert crr.formula.startswith("CRR = (E − N) / S") and crr.unit == "%"
    assert crr.inputs == {"S": 200, "E": 180, "N": 50}


def classic_ledger() -> Ledger:
    """250 members whose counts are S = 200, N = 50, E = 180 (window 90 days, period START..END).

    * 130 kept (k000–k129): first visit START−120d, again START−10d (inside the window before the
      start: in S), and END−5d (in the period, and within 90 days of the end: in E). k000–k059 come
      once more, END−3d, paying 4.50.
    * 70 lost (l000–l069): visits START−200d and START−75d: START−75d is within 90 days of the start
      (in S) but END−105d, older than 90 days at the end (not in E). Lifespan 125 days each.
    * 50 new (n000–n049): first visit START+2d paying 10.00; n000–n009 again START+4d, no amount.
    """
    book = Ledger()
    kept = [book.member(f"k{i:03d}") for i in range(130)]
    lost = [book.member(f"l{i:03d}") for i in range(70)]
    new = [book.member(f"n{i:03d}") for i in range(50)]
    for i, m in enumerate(kept):
        book.visit(m, START - 120 * DAY)
        book.visit(m, START - 10 * DAY, amount="0")  # a stamp card's "no amount"
        book.visit(m, END - 5 * DAY)
        if i < 60:
            book.visit(m, END - 3 * DAY, amount="4.50")
    for m in lost:
        book.visit(m, START - 200 * DAY)
        book.visit(m, START - 75 * DAY)
    for i, m in enumerate(new):
        book.visit(m, START + 2 * DAY, amount="10.00")
        if i < 10:
            book.visit(m, START + 4 * DAY)
    # Rewards and balances: 12 redeemed, 3 expired unused, 10 outstanding.
    for m in kept[:5]:      # 35 − 10 = 25 stamps: 2 coffees each, 10 outstanding
        book.add("earn", m, START - 10 * DAY, 35)
        book.add("redeem", m, END - 5 * DAY, -10, reward="free-coffee")
    for m in kept[5:12]:    # 10 − 10 = 0
        book.add("earn", m, START - 10 * DAY, 10)
        book.add("redeem", m, END - 5 * DAY, -10, reward="free-coffee")
    for m in lost[:3]:      # a coffee left unused until it expired
        book.add("earn", m, START - 75 * DAY, 10)
        book.add("expire", m, START - 20 * DAY, -10, reward="free-coffee")
    book.add("earn", lost[3], START - 75 * DAY, 2)
    book.add("expire", lost[3], START - 20 * DAY, -2)  # a dormant balance expiring: not a reward
    book.add("adjust", kept[12], START - 5 * DAY, -3)  # below zero (an offline double redemption): owes nothing
    for m, stamps in zip(new[10:16], (9, 9, 9, 8, 8, 7)):
        book.add("earn", m, START + 2 * DAY, stamps)
    # Noise that must change nothing:
    book.add("scan_rejected", None, START + DAY, detail={"reason": "forged"})
    book.add("tier_change", kept[0], START + DAY, detail={"from": "bronze", "to": "silver"})
    book.visit("k000", START + DAY, merchant="other-shop")                    # another merchant
    book.visit(lost[0], END)                                                 # at the end: outside [start, end)
    book.visit(lost[1], END + DAY)                                           # after the period
    book.add("redeem", kept[13], END + DAY, -10, reward="free-coffee")       # after the period
    return book


def test_the_classic_ledger_gives_the_hand_counted_figures(engine):
    classic_ledger().write(engine)
    board = dashboard(engine, M, START, END, program=STAMPS)
    value = {f.key: f.value for f in board.figures}

    assert value["customers_at_start"] == 200     # 130 kept + 70 lost
    assert value["new_customers"] == 50
    assert value["customers"] == 180              # 130 kept + 50 new
    assert value["lost_customers"] == 70
    assert value["retention_rate"] == 65.0        # (180 − 50) / 200
    assert value["churn_rate"] == 35.0            # 70 / 200
    # active in the period: 130 kept + 50 new = 180; with 2+ visits: 60 kept + 10 new = 70
    assert value["repeat_rate"] == pytest.approx(100 * 70 / 180)            # 38.89 %
    # visits in the period: 130 + 60 (kept) + 50 + 10 (new) = 250, over 180 active
    assert value["purchase_frequency"] == pytest.approx(250 / 180)          # 1.39 visits
    # amounts: 60 × 4.50 + 50 × 10.00 = 270 + 500 = 770, over the 110 visits with an amount
    # (the "0" of a stamp card and the visits without an amount are left out)
    assert value["average_order_value"] == Decimal("7.00")
    # CLV = 7.00 × (250/180 per 30 days, in visits per month) × (125 days in months):
    # the month length cancels: 7 × 250/180 × 125/30 = 40.509… → 40.51
    assert value["lifetime_value"] == Decimal("40.51")
    # rewards: 12 redeemed, 3 expired (the dormant-balance expiry is no reward), 5 × floor(25/10) = 10
    # outstanding (the −3 balance owes nothing): 12 / (12 + 3 + 10) = 48 %
    assert value["outstanding_rewards"] == 10
    assert value["redemption_rate"] == 48.0
    assert value["nps"] is None and board.figure("nps").note == "no scores collected yet"
    assert board.figure("redemption_rate").inputs == {"redeemed": 12, "expired": 3, "outstanding": 10}
    assert board.figure("average_order_value").inputs["currency"] == "EUR"
    assert all(f.formula for f in board.figures)


def test_clv_needs_ten_lost_members(engine):
    book = Ledger()
    for i in range(9):  # 9 lost: in S (START−75d), not in E
        book.visit(book.member(f"l{i}"), START - 75 * DAY)
    book.visit(book.member("n0"), START + DAY, amount="5.00")
    book.write(engine)
    clv = dashboard(engine, M, START, END).figure("lifetime_value")
    assert clv.value is None
    assert clv.note == "too little data: 9 lost members, need 10"


# -- a small ledger for the grid, the lists and the series ---------------------------------------
def at(month: int, day: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=timezone.utc)


def small_ledger() -> Ledger:
    """Period 2026-05-02 .. 2026-06-01; a cohort grid of March, April and May 2026."""
    book = Ledger()
    for m, visits in {
        "ana": [at(3, 5), at(3, 20), at(4, 10), at(5, 15)],
        "ben": [at(3, 10), at(5, 3)],
        "cem": [at(4, 1, 0), at(4, 30, 23, 59, 59)],       # the first instant of April, the last second of it
        "dan": [at(5, 20)],
        "eva": [at(1, 10), at(5, 10)],                      # joined before the grid
        "fay": [at(5, 1), at(5, 3), at(5, 5)],              # every 2 days, then gone for 27
        "gus": [at(5, 4), at(5, 11), at(5, 18), at(5, 25)],  # weekly, last a week ago: fine
        "hal": [at(1, 1), at(1, 3)],                        # overdue, but lost (no visit in 90 days)
        "ida": [at(5, 6), at(5, 7), at(5, 8)],              # daily, then gone for 24 days; erased
        "kai": [START, END],                                # at the start (in), at the end (out)
    }.items():
        book.member(m, f"{m.title()} Example", erased=(m == "ida"))
        for t in visits:
            book.visit(m, t)
    for m, stamps in {"ana": 9, "ben": 8, "dan": 10, "eva": 7, "hal": 9, "ida": 9}.items():
        book.add("earn", m, at(1, 2), stamps)
    return book


def test_cohort_grid(engine):
    small_ledger().write(engine)
    board = dashboard(engine, M, START, END, program=STAMPS, cohort_months=3)
    # March: ana, ben. April: ana (50 %). May: ana (05-15) and ben (05-03): 100 %.
    # April: cem, whose second visit is 04-30 23:59:59, still April: nobody in May.
    # May: dan, fay, gus, ida, kai (05-02 00:00); eva and hal joined before March.
    assert board.cohorts.as_rows() == [("2026-03", 2, [100.0, 50.0, 100.0]),
                                       ("2026-04", 1, [100.0, 0.0, None]),
                                       ("2026-05", 5, [100.0, None, None])]


def test_member_lists(engine):
    small_ledger().write(engine)
    board = dashboard(engine, M, START, END, program=STAMPS)
    # fay: interval (05-05 − 05-01) / 2 = 2 days, 27 days since; ida: 1 day, 24 days since.
    # Both have 3 visits, so the longer overdue first. hal is overdue too, but already lost.
    assert [(r.member_id, r.name) for r in board.at_risk] == [("fay", "Fay Example"), ("ida", "ida")]
    fay = board.at_risk[0]
    assert (fay.visits, fay.usual_interval_days) == (3, 2.0)
    assert fay.days_since_last_visit == pytest.approx(26.5)  # 05-05 12:00 → 06-01 00:00
    # In the period: gus 4, ida 3, fay 2 (05-01 is before it); then 1 each, by visits overall:
    # ana (4), ben and eva (2, by id), dan and kai (1, by id). kai's visit at END does not count.
    assert [(r.member_id, r.visits_in_period) for r in board.top_members] == [
        ("gus", 4), ("ida", 3), ("fay", 2), ("ana", 1), ("ben", 1), ("eva", 1), ("dan", 1), ("kai", 1)]
    # A coffee costs 10: 1 stamp to go for ana, ida, hal (most recent visit first), 2 for ben;
    # dan can already afford it, eva is 3 short.
    assert [(r.member_id, r.name, r.remaining) for r in board.close_to_reward] == [
        ("ana", "Ana Example", 1), ("ida", "ida", 1), ("hal", "Hal Example", 1), ("ben", "Ben Example", 2)]
    assert dashboard(engine, M, START, END, program=STAMPS, limit=3).top_members[2].member_id == "fay"
    assert dashboard(engine, M, START, END).close_to_reward == []  # no programme: costs unknown


def test_daily_series(engine):
    small_ledger().write(engine)
    board = dashboard(engine, M, START, END)
    visits = dict(board.series_named("visits").points)
    assert len(visits) == 30 and min(visits) == START.date() and max(visits) == (END - DAY).date()
    assert {d.isoformat(): n for d, n in visits.items() if n} == {
        "2026-05-02": 1, "2026-05-03": 2, "2026-05-04": 1, "2026-05-05": 1, "2026-05-06": 1, "2026-05-07": 1,
        "2026-05-08": 1, "2026-05-10": 1, "2026-05-11": 1, "2026-05-15": 1, "2026-05-18": 1, "2026-05-20": 1,
        "2026-05-25": 1}
    # new = a member's first visit ever: kai 05-02, gus 05-04, ida 05-06, dan 05-20 (fay's was 05-01)
    new = {d.isoformat(): n for d, n, _ in board.new_and_returning() if n}
    assert new == {"2026-05-02": 1, "2026-05-04": 1, "2026-05-06": 1, "2026-05-20": 1}
    back = dict(board.series_named("returning_visits").points)
    assert sum(back.values()) == 14 - 4 and back[at(5, 3).date()] == 2  # ben and fay


def test_days_and_months_are_utc_whatever_the_servers_time_zone(hub_url):
    book = Ledger()
    book.visit(book.member("late"), at(5, 10, 23, 30))     # 05-11 in Kiritimati (UTC+14)
    book.visit(book.member("early"), at(4, 1, 0, 0, 1))   # 03-31 in Los Angeles: still an April cohort
    engine = open_store(hub_url)
    book.write(engine)
    engine.dispose()
    for zone in ("Pacific/Kiritimati", "America/Los_Angeles"):
        options = {"options": f"-c timezone={zone}"} if hub_url.startswith("postgresql") else {}
        far = create_engine(hub_url, connect_args=options)
        try:
            board = dashboard(far, M, START, END, cohort_months=2)
        finally:
            far.dispose()
        assert [d for d, n in board.series_named("visits").points if n] == [at(5, 10).date()]
        assert board.cohorts.as_rows() == [("2026-04", 1, [100.0, 0.0]), ("2026-05", 1, [100.0, None])]


# -- the SQL against a fold in Python --------------------------------------------------------------
def test_member_activity_matches_a_fold_in_python(engine):
    rng = random.Random(20261127)
    book = Ledger()
    visits: dict[str, list[datetime]] = {}
    for i in range(40):
        m = book.member(f"m{i:02d}")
        times = sorted(END - timedelta(seconds=rng.randrange(400 * 86400)) for _ in range(rng.randrange(0, 12)))
        times += [END + timedelta(hours=rng.randrange(1, 100))] * rng.randrange(2)  # after the end
        for t in times:
            book.visit(m, t)
            book.add("earn", m, t, rng.choice((1, 2)))
        visits[m] = [t for t in times if t < END]
    period = Period(START, END)
    starts = cohorts.month_starts(cohorts.grid_start(END, 12), 12)
    edges = [starts[0] - timedelta(microseconds=1), starts[0], starts[5], START - period.window, START,
             END - timedelta(microseconds=1)]  # every bound, exactly, and a hair before the first and last
    visits[book.member("edges")] = edges
    for t in edges:
        book.visit("edges", t)
    book.write(engine)
    with queries.snapshot(engine) as conn:
        got = sorted(queries.member_activity(conn, M, period, starts))
    bounds = starts + [END]
    expected = sorted(
        MemberActivity(m, ts[0], ts[-1], len(ts), sum(t >= START for t in ts),
                       sum(START - period.window <= t < START for t in ts),
                       sum({1 << k for t in ts for k in range(12) if bounds[k] <= t < bounds[k + 1]}))
        for m, ts in visits.items() if ts)
    assert got == expected


# -- nothing to divide by -------------------------------------------------------------------------
def test_every_figure_of_an_empty_ledger_is_none_with_a_reason(engine):
    Ledger().write(engine)
    board = dashboard(engine, M, START, END, program=STAMPS)
    value = {f.key: f.value for f in board.figures}
    assert value["customers"] == value["new_customers"] == value["outstanding_rewards"] == 0
    for key in ("retention_rate", "churn_rate", "repeat_rate", "purchase_frequency", "average_order_value",
                "lifetime_value", "redemption_rate", "nps"):
        assert value[key] is None and board.figure(key).note, key
    assert board.cohorts.rows == [] and board.at_risk == board.top_members == board.close_to_reward == []
    assert all(n == 0 for _, n in board.series_named("visits").points)


def test_division_by_zero_gives_none_and_a_note():
    period = Period(START, END)
    found = {f.key: f for f in formulas.figures(Tally(), Amounts(), RewardCounts(), period)}
    assert found["retention_rate"].note == "no customers at the start of the period"
    assert found["purchase_frequency"].note == "no visits in the period"
    assert found["average_order_value"].note == "no purchase amounts recorded in the period"
    assert found["redemption_rate"].note.startswith("reward costs unknown")
    assert formulas.redemption_rate(RewardCounts(0, 0, 0)).note == "no rewards earned yet"


def test_outstanding_rewards_and_points_close_to_a_reward():
    assert formulas.outstanding_rewards([25, 9, 10, -3, 0, 100], 10) == 2 + 1 + 10
    # points: the cheapest voucher costs 500, "close" is at most 10 % of it (50 points) to go
    close = lists.close_to_reward({"a": 450, "b": 449, "c": 499, "d": 500, "e": 30}, {}, POINTS)
    assert [(r.member_id, r.remaining, r.reward) for r in close] == [("c", 1, "voucher-5"), ("a", 50, "voucher-5")]


def test_a_period_must_be_aware_and_forward():
    with pytest.raises(ConfigError, match="aware"):
        Period(datetime(2026, 5, 1), END)
    with pytest.raises(ConfigError, match="earlier start"):
        Period(END, START)


# -- CSV ------------------------------------------------------------------------------------------
def test_every_part_downloads_as_csv(engine):
    small_ledger().write(engine)
    board = dashboard(engine, M, START, END, program=STAMPS, cohort_months=3)
    tables = {part: list(csv.reader(io.StringIO(to_csv(board, part)))) for part in CSV_PARTS}
    assert tables["figures"][0] == ["key", "label", "value", "unit", "formula", "inputs", "note"]
    crr = next(row for row in tables["figures"] if row[0] == "retention_rate")
    assert crr[4].startswith("CRR = (E − N) / S")
    assert tables["series"][0] == ["date", "visits", "new_visits", "returning_visits"]
    assert tables["series"][2] == ["2026-05-03", "2", "0", "2"] and len(tables["series"]) == 31
    assert tables["visits"][0] == ["date", "visits"]
    assert tables["cohorts"][0] == ["first_visit_month", "customers", "month_0", "month_1", "month_2"]
    assert tables["cohorts"][2] == ["2026-04", "1", "100.0", "0.0", ""]
    assert tables["top_members"][1][:3] == ["gus", "Gus Example", "4"]
    assert tables["at_risk"][2][:2] == ["ida", "ida"]  # erased: the id, never a name
    assert tables["close_to_reward"][0] == ["member_id", "name", "balance", "remaining", "reward", "cost",
                                            "last_visit"]
    with pytest.raises(KeyError):
        to_csv(board, "passwords")
