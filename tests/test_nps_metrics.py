"""The NPS on the dashboard (issue 11, item 4), on answers few enough to count by hand.

The answers are written straight into ``nps_answers`` with fixed times; the expected values are
worked out beside them. The database tests run on SQLite and PostgreSQL (``hub_url``).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from sqlalchemy import insert

from cloud.db import open_store
from cloud.metrics import formulas, queries
from cloud.metrics.activity import Period
from cloud.metrics.dashboard import CSV_PARTS, dashboard, to_csv
from cloud.metrics.formulas import Scores
from cloud.models import Member, Merchant, NpsAnswer

M, OTHER = "cafe-rosa", "bakery"
END = datetime(2026, 6, 1, tzinfo=timezone.utc)
START = END - timedelta(days=30)          # 2026-05-02 00:00 UTC
DAY = timedelta(days=1)


@pytest.fixture
def engine(hub_url):
    e = open_store(hub_url)
    yield e
    e.dispose()


def answer(member: str, score: int, at: datetime, comment: str | None = None, merchant: str = M) -> dict:
    return {"merchant_id": merchant, "member_id": member, "score": score, "comment": comment,
            "quarter": f"{at.year}-Q{(at.month - 1) // 3 + 1}", "answered_at": at}


def write(engine, answers: list[dict], erased: frozenset[str] = frozenset()) -> None:
    members = sorted({(a["merchant_id"], a["member_id"]) for a in answers})
    with engine.begin() as conn:
        conn.execute(insert(Merchant), [{"id": m, "name": m, "base_url": "https://stempel.example"}
                                        for m in (M, OTHER)])
        conn.execute(insert(Member), [{"id": m, "merchant_id": merchant, "created_at": START - 400 * DAY,
                                       "name": "(erased)" if m in erased else m.title(),
                                       "erased_at": END - DAY if m in erased else None}
                                      for merchant, m in members])
        conn.execute(insert(NpsAnswer), answers)


def sample() -> list[dict]:
    """In the period (May): 10 answers, 5 promoters (10, 9, 9, 10, 9), 3 passives (8, 7, 7) and
    2 detractors (6, 0): 50 % − 20 % = 30. In April: 4 answers, 1 promoter and 3 detractors:
    25 % − 75 % = −50. Left out: one at the period's end (exclusive) and another shop's."""
    may = [answer(f"a{i}", s, START + (i + 1) * DAY) for i, s in enumerate([10, 9, 9, 10, 9, 8, 7, 7, 6, 0])]
    may[0]["comment"] = "Lovely <b>coffee</b>"           # 3 May
    may[5]["comment"] = "ok"                              # 8 May
    may[9]["comment"] = "Too slow, ask for Anna Example"  # 12 May, a member since erased
    april = [answer(f"b{i}", s, datetime(2026, 4, 10 + i, tzinfo=timezone.utc)) for i, s in enumerate([10, 3, 2, 1])]
    late = [answer("c0", 0, END, "after the end")]
    elsewhere = [answer("d0", 0, START + DAY, "other shop", merchant=OTHER)]
    return may + april + late + elsewhere


@pytest.mark.parametrize("scores, nps", [
    (Scores(5, 3, 2), 30.0),      # 50 % − 20 %
    (Scores(1, 0, 3), -50.0),     # 25 % − 75 %
    (Scores(4, 0, 0), 100.0),
    (Scores(0, 7, 0), 0.0),       # only passives
    (Scores(0, 0, 2), -100.0),
    (Scores(1, 1, 1), 0.0),
    (Scores(2, 0, 1), 100 / 3),   # 66.7 % − 33.3 %
])
def test_the_nps_formula_by_hand(scores, nps):
    figure = formulas.net_promoter_score(scores)
    assert figure.value == pytest.approx(nps) and figure.note == ""
    assert figure.inputs == {"promoters": scores.promoters, "passives": scores.passives,
                             "detractors": scores.detractors, "answers": scores.answers}
    assert "% promoters (score 9–10) − % detractors (score 0–6)" in figure.formula


def test_no_answers_is_no_score_with_a_reason():
    figure = formulas.net_promoter_score(Scores())
    assert figure.value is None and figure.note == "no scores collected yet"


def test_the_dashboard_counts_the_periods_answers_by_hand(engine):
    write(engine, sample(), erased=frozenset({"a9"}))
    board = dashboard(engine, M, START, END)
    nps = board.figure("nps")
    assert nps.value == 30.0
    assert nps.inputs == {"promoters": 5, "passives": 3, "detractors": 2, "answers": 10}
    trend = {m.month: (m.answers, m.promoters, m.passives, m.detractors, m.nps) for m in board.nps_trend}
    assert list(trend) == ["2025-12", "2026-01", "2026-02", "2026-03", "2026-04", "2026-05"]
    assert trend["2026-05"] == (10, 5, 3, 2, 30.0)
    assert trend["2026-04"] == (4, 1, 0, 3, -50.0)
    assert trend["2026-03"] == (0, 0, 0, 0, None)
    comments = [(c.member_id, c.name, c.score, c.comment) for c in board.nps_comments]
    assert comments == [("a9", None, 0, "Too slow, ask for Anna Example"),  # newest first; erased: no name
                        ("a5", "A5", 8, "ok"), ("a0", "A0", 10, "Lovely <b>coffee</b>")]


def test_the_comments_are_bounded_newest_first(engine):
    write(engine, [answer(f"m{i:02d}", i % 11, START + i * timedelta(hours=5), f"note {i}") for i in range(30)])
    with queries.snapshot(engine) as conn:
        got = queries.nps_comments(conn, M, Period(START, END), limit=3)
    assert [c.comment for c in got] == ["note 29", "note 28", "note 27"]
    assert dashboard(engine, M, START, END).nps_comments[-1].comment == "note 10"  # 20 shown


def test_nps_downloads_as_csv(engine):
    write(engine, sample(), erased=frozenset({"a9"}))
    board = dashboard(engine, M, START, END)
    assert {"nps", "nps_comments"} <= set(CSV_PARTS)
    trend = list(csv.reader(io.StringIO(to_csv(board, "nps"))))
    assert trend[0] == ["month", "answers", "promoters", "passives", "detractors", "nps"]
    assert trend[5] == ["2026-04", "4", "1", "0", "3", "-50.0"] and trend[6][-1] == "30.0" and trend[1][-1] == ""
    comments = list(csv.reader(io.StringIO(to_csv(board, "nps_comments"))))
    assert comments[0] == ["member_id", "name", "score", "comment", "answered_at"]
    assert comments[1][:4] == ["a9", "", "0", "Too slow, ask for Anna Example"]
    figures = list(csv.reader(io.StringIO(to_csv(board, "figures"))))
    assert next(r for r in figures if r[0] == "nps")[2] == "30.0"
