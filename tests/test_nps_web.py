"""The NPS question on the member's card (issue 11, item 4), through Flask's test client: asked
from the Nth visit on, one answer per member per quarter of the shop's time zone (injected
clock), strict input, CSRF, no answers from a card that has left, comments gone on erasure, and
the owner's dashboard showing the score and the comments escaped."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hubdb import hub_url, pg_database  # noqa: F401
from sqlalchemy import select
from sqlalchemy.orm import Session
from webapp import NOW, _quick_password_hashes, broker, make_site, web  # noqa: F401

from cloud import nps
from cloud.link.documents import prepare
from cloud.models import NpsAnswer
from cloud.programs import parse_draft
from kiosk.protocol import topics
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import EventBatch, WireEvent

BERLIN = ZoneInfo("Europe/Berlin")
GERMAN = """name = "Bäckerei Öztürk"
language = "de"

[earning]
type = "stamps"
per_visit = 1

[[rewards]]
id = "simit"
name = "Simit gratis"
cost = 6
"""


@pytest.fixture
def site(web):
    """The hub's site (its NPS blueprint is registered by ``create_app``)."""
    assert "nps" in web.app.blueprints
    return web


def member_of(card: str) -> str:
    return card.split(".")[3].lower()


_seq = iter(range(1, 10_000))


def visit(site, card: str, times: int = 1, merchant: str = "cafe") -> None:
    """*times* visits of the card's member, a day apart, ending the day before the clock."""
    events = [WireEvent(event_id=new_event_id(), kiosk_seq=next(_seq), mono_ns=k, boot_id="b", kind="visit",
                        occurred_at=site.clock[0] - timedelta(days=k + 1), member=member_of(card), delta=0,
                        rule="visit")
              for k in range(times)]
    batch = EventBatch(ledger_id="c" * 32, events=events).model_dump_json(by_alias=True).encode()
    stored = site.hub.events().ingest(topics.events(merchant, "k1"), batch)
    assert stored.new == times, stored


def answer(site, client, card: str, **form):
    return site.post(client, card, f"{card}/nps", **form)


def answers(site) -> list[tuple[int, str | None, str]]:
    with Session(site.hub.engine) as session:
        return [(a.score, a.comment, a.quarter) for a in session.scalars(select(NpsAnswer).order_by(NpsAnswer.id))]


@pytest.mark.parametrize("moment, quarter", [
    (datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc), "2026-Q4"),
    (datetime(2026, 12, 31, 22, 59, tzinfo=timezone.utc), "2026-Q4"),   # 23:59 in Berlin
    (datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc), "2027-Q1"),   # 00:30 on New Year's Day in Berlin
    (datetime(2026, 3, 31, 22, 30, tzinfo=timezone.utc), "2026-Q2"),    # 00:30 on 1 April (summer time)
    (datetime(2026, 7, 1, 0, 0, tzinfo=timezone.utc), "2026-Q3"),
])
def test_the_quarter_is_the_shops(moment, quarter):
    assert nps.quarter_of(moment, BERLIN) == quarter


@pytest.mark.parametrize("score, comment, reason", [
    ("11", "", "score"), ("-1", "", "score"), ("7.5", "", "score"), ("", "", "score"), (None, "", "score"),
    ("abc", "", "score"), (" 7", "", "score"), ("07", "", "score"), ("٣", "", "score"),  # an Arabic-Indic 3
    ("7", "x" * 501, "comment"), ("7", "fine\x00", "comment"), ("7", "bell\x07", "comment"),
    ("7", "rtl\u202eoverride", "comment"),
])
def test_anything_but_a_plain_score_and_short_text_is_refused(score, comment, reason):
    with pytest.raises(nps.NpsRefused) as refused:
        nps.parse_answer(score, comment)
    assert refused.value.reason == reason


def test_a_good_answer_is_parsed():
    assert nps.parse_answer("0", None) == (0, None)
    assert nps.parse_answer("10", "  Great\r\ncoffee, Grüße  ") == (10, "Great\ncoffee, Grüße")
    assert nps.parse_answer("9", "x" * 500) == (9, "x" * 500)


def test_the_card_asks_from_the_third_visit_and_says_thanks_once_answered(site):
    card = site.join(name="Anna")
    client = site.client()
    visit(site, card, 2)
    assert 'id="nps"' not in client.get(card).get_data(as_text=True)
    assert answer(site, client, card, score="9").status_code == 403  # not asked yet
    visit(site, card, 1)
    page = client.get(card).get_data(as_text=True)
    assert "How likely are you to recommend us? 0–10" in page and 'name="score" value="10"' in page
    done = answer(site, client, card, score="9", comment="Great coffee")
    assert done.status_code == 303 and done.headers["Location"].endswith(card)
    page = client.get(card).get_data(as_text=True)
    assert "Thank you for your answer!" in page and 'name="score"' not in page
    assert answers(site) == [(9, "Great coffee", "2026-Q4")]


def test_one_answer_per_quarter_and_the_next_quarter_asks_again(site):
    card = site.join(name="Anna")
    client = site.client()
    visit(site, card, 3)
    assert answer(site, client, card, score="6").status_code == 303
    assert 'name="score"' not in client.get(card).get_data(as_text=True)  # the thanks has no form
    again = client.post(f"{card}/nps", data={"csrf_token": site.csrf(client, card), "score": "10"})
    assert again.status_code == 409 and "already answered this quarter" in again.get_data(as_text=True)
    site.clock[0] = datetime(2026, 12, 31, 22, 30, tzinfo=timezone.utc)   # 23:30 in Berlin: still Q4
    assert "Thank you" in client.get(card).get_data(as_text=True)
    site.clock[0] = datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc)   # 00:30 on 1 January in Berlin
    assert 'name="score"' in client.get(card).get_data(as_text=True)
    assert answer(site, client, card, score="10").status_code == 303
    assert answers(site) == [(6, None, "2026-Q4"), (10, None, "2027-Q1")]


@pytest.mark.parametrize("form, message", [
    ({"score": "11"}, "from 0 to 10"), ({"score": "-3"}, "from 0 to 10"), ({"score": "nine"}, "from 0 to 10"),
    ({}, "from 0 to 10"), ({"score": "8", "comment": "y" * 501}, "at most 500 characters"),
    ({"score": "8", "comment": "a\x1bb"}, "at most 500 characters"),
])
def test_a_bad_answer_is_refused_with_400_and_the_reason(site, form, message):
    card = site.join(name="Anna")
    visit(site, card, 3)
    refused = answer(site, site.client(), card, **form)
    assert refused.status_code == 400 and message in refused.get_data(as_text=True)
    assert answers(site) == []


def test_an_answer_without_the_csrf_token_is_refused(site):
    card = site.join(name="Anna")
    visit(site, card, 3)
    client = site.client()
    client.get(card)
    assert client.post(f"{card}/nps", data={"score": "10"}).status_code == 400
    assert client.post(f"{card}/nps", data={"score": "10", "csrf_token": "forged"}).status_code == 400
    assert answers(site) == []


def test_a_card_that_left_cannot_answer_and_erasure_drops_the_comment_not_the_score(site):
    card = site.join(name="Anna")
    other = site.join(name="Ben")
    visit(site, card, 3)
    visit(site, other, 3)
    client = site.client()
    assert answer(site, client, card, score="3", comment="Anna here: too slow").status_code == 303
    token = site.csrf(client, other)
    assert client.post(f"{other}/leave", data={"csrf_token": token}).status_code == 200
    refused = client.post(f"{other}/nps", data={"csrf_token": token, "score": "10"})
    assert refused.status_code == 410 and "no longer active" in refused.get_data(as_text=True)
    assert client.post(f"{card}/leave", data={"csrf_token": token}).status_code == 200
    assert answers(site) == [(3, None, "2026-Q4")]
    site.advance(minutes=5)  # the dashboard's period ends now, exclusive
    page = site.login().get("/owner/?days=30").get_data(as_text=True)
    assert "too slow" not in page and "<strong>-100</strong> from 1 answer" in page


def test_the_question_speaks_the_shops_language_and_n_is_configurable(tmp_path, hub_url):
    site = make_site(tmp_path, hub_url, automations__nps_after_visits=1)
    try:
        prepare(site.hub.engine, site.hub.data_dir, "bakery", parse_draft(GERMAN), source=GERMAN)
        card = site.join(name="Ayşe", code="bakery")
        client = site.client()
        assert 'id="nps"' not in client.get(card).get_data(as_text=True)
        visit(site, card, 1, merchant="bakery")
        page = client.get(card).get_data(as_text=True)
        assert "Wie wahrscheinlich ist es, dass du uns weiterempfiehlst? 0–10" in page
        refused = answer(site, client, card, score="zehn")
        assert refused.status_code == 400 and "Zahl von 0 bis 10" in refused.get_data(as_text=True)
        assert answer(site, client, card, score="10").status_code == 303
        assert "Danke für deine Antwort!" in client.get(card).get_data(as_text=True)
    finally:
        site.hub.close()


def test_the_dashboard_shows_the_score_the_trend_and_the_comments_escaped(site):
    client = site.client()
    for name, score, comment in [("Anna", "10", "<script>alert(1)</script> lovely"), ("Ben", "9", ""),
                                 ("Cleo", "7", ""), ("Dora", "2", "cold")]:
        card = site.join(name=name)
        visit(site, card, 3)
        assert answer(site, client, card, score=score, comment=comment).status_code == 303
    site.advance(minutes=5)  # the dashboard's period ends now, exclusive
    owner = site.login()
    page = owner.get("/owner/?days=30").get_data(as_text=True)
    # 2 promoters, 1 passive, 1 detractor of 4: 50 % − 25 % = 25
    assert "<strong>25</strong> from 4 answers" in page and "NPS = % promoters (score 9–10)" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; lovely" in page and "<script>alert" not in page
    assert '<td>2026-11</td><td class="num">4</td>' in page
    assert ">Dora</a>" in page
    trend = owner.get("/owner/export/nps.csv?days=30").get_data(as_text=True)
    assert "2026-11,4,2,1,1,25.0" in trend
