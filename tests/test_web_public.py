"""The join page and the member's card, through Flask's test client: consents kept apart,
the merchant's language, referrals, bad input refused with the field named, the card's
balance and explanations from the rules engine, installable and revocable."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hubdb import hub_url, pg_database  # noqa: F401
from webapp import BASE, NOW, _quick_password_hashes, broker, web  # noqa: F401

from cloud.link.documents import prepare
from cloud.members import get_member
from cloud.programs import parse_draft
from kiosk.protocol.ids import new_event_id
from kiosk.protocol import topics
from kiosk.protocol.messages import EventBatch, WireEvent

GERMAN = """name = "Bäckerei Öztürk"
language = "de"

[earning]
type = "stamps"
per_visit = 1

[bonuses]
signup = 2

[[rewards]]
id = "simit"
name = "Simit gratis"
cost = 6
"""


def member_of(card: str) -> str:
    return card.split(".")[3].lower()


def utc(moment: datetime | None) -> datetime | None:
    """SQLite hands times back naive (UTC); PostgreSQL aware."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def test_joining_keeps_the_two_consents_apart(web):
    plain = get_member(web.hub.engine, "cafe", member_of(web.join(name="Anna")))
    assert utc(plain.consent_program_at) == NOW and plain.consent_marketing_at is None and plain.language == "en"
    keen = get_member(web.hub.engine, "cafe", member_of(web.join(name="Ben", marketing="yes",
                                                                  email="ben@example.com", birthday="1990-02-28")))
    assert utc(keen.consent_marketing_at) == NOW and keen.email == "ben@example.com"
    assert keen.birthday.isoformat() == "1990-02-28"


@pytest.mark.parametrize("form, message", [
    ({"name": "Anna"}, "accept the programme"),                                 # no programme consent
    ({"name": "", "program": "yes"}, "first name"),
    ({"name": "Anna", "program": "yes", "email": "not-an-address"}, "e-mail address"),
    ({"name": "Anna", "program": "yes", "birthday": "1990-13-40"}, "birthday as a date"),
    ({"name": "Anna", "program": "yes", "birthday": "2990-01-01"}, "birthday as a date"),
    ({"name": "Anna\x00", "program": "yes"}, "control character"),
])
def test_a_bad_join_form_is_refused_with_the_reason_and_nothing_is_made(web, form, message):
    client = web.client()
    answer = web.post(client, "/j/cafe", **form)
    assert answer.status_code == 400 and message in answer.get_data(as_text=True)
    assert "No members found" in web.login().get("/owner/members/").get_data(as_text=True)


def test_the_page_speaks_the_merchants_language(web):
    prepare(web.hub.engine, web.hub.data_dir, "bakery", parse_draft(GERMAN), source=GERMAN)
    page = web.client().get("/j/bakery").get_data(as_text=True)
    assert 'lang="de"' in page and "Vorname" in page and "Bedingungen" in page and "Stempel" in page
    card = web.client().get(web.join(name="Ayşe", code="bakery")).get_data(as_text=True)
    assert "0 von 2 Stempel" not in card and "von 6 Stempel" in card and "Zeig diesen Code an der Kasse" in card


def test_a_referral_link_fills_in_the_referrer_and_a_bogus_one_is_ignored(web):
    anna = member_of(web.join(name="Anna"))
    page = web.client().get(f"/j/cafe?ref={anna}").get_data(as_text=True)
    assert f'name="ref" value="{anna}"' in page
    ben = member_of(web.join(name="Ben", ref=anna))
    assert get_member(web.hub.engine, "cafe", ben).referred_by == anna
    for bogus in ("nobody", "UPPER", "x" * 40, "m<script>"):
        assert 'name="ref"' not in web.client().get(f"/j/cafe?ref={bogus}").get_data(as_text=True)
    cleo = member_of(web.join(name="Cleo", ref="nobody"))
    assert get_member(web.hub.engine, "cafe", cleo).referred_by is None


def test_a_kiosk_join_code_records_where_the_member_joined(web):
    card = web.join(name="Anna", code="cafe.counter-1")
    assert get_member(web.hub.engine, "cafe", member_of(card)).joined_via == "counter-1"


def test_the_card_shows_the_engines_balance_and_why(web):
    prepare(web.hub.engine, web.hub.data_dir, "bakery", parse_draft(GERMAN), source=GERMAN)
    card = web.join(name="Ayşe", code="bakery")
    member = member_of(card)
    at = datetime(2026, 11, 19, 9, 30, tzinfo=timezone.utc)
    events = [WireEvent(event_id=new_event_id(), kiosk_seq=seq, occurred_at=at, mono_ns=seq, boot_id="b",
                        kind=kind, member=member, delta=delta, rule=rule)
              for seq, (kind, delta, rule) in enumerate([("visit", 0, "visit"), ("earn", 1, "base-rate"),
                                                         ("bonus", 2, "signup-bonus")], start=1)]
    web.hub.events().ingest(topics.events("bakery", "k1"),
                            EventBatch(ledger_id="b" * 32, events=events).model_dump_json(by_alias=True).encode())
    page = web.client().get(card).get_data(as_text=True)
    assert "3 von 6 Stempel" in page and "Noch 3 Stempel bis Simit gratis" in page
    assert "pro Besuch, Willkommensbonus" in page and "19.11.2026" in page


def test_the_card_is_an_installable_app_with_its_own_scope(web):
    card = web.join(name="Anna")
    client = web.client()
    page = client.get(card).get_data(as_text=True)
    assert 'rel="manifest"' in page and "card.js" in page and "<svg" in page and "viewBox" in page
    manifest = json.loads(client.get(card + "/manifest.webmanifest").get_data(as_text=True))
    assert manifest["start_url"] == card and manifest["display"] == "standalone"
    with client.get("/sw.js") as worker:
        assert worker.status_code == 200 and worker.headers["Service-Worker-Allowed"] == "/"
        assert "caches.match" in worker.get_data(as_text=True)


def test_the_qr_on_the_card_is_the_pass_itself(web):
    """The card draws exactly the URL the pass was issued with, whatever case the browser used."""
    from kiosk.protocol import qr

    card = web.join(name="Anna")
    page = web.client().get(card).get_data(as_text=True)
    expected = qr.make_qr(BASE.upper() + card).svg_inline(scale=8, border=4, dark="#000", light="#fff",
                                                            omitsize=True)
    assert expected in page


def test_a_revoked_pass_says_so_and_a_reissued_one_has_its_own_card(web):
    card = web.join(name="Anna")
    member = member_of(card)
    owner = web.login()
    web.post(owner, f"/owner/members/{member}", f"/owner/members/{member}/revoke")
    old = web.client().get(card)
    assert old.status_code == 410 and "revoked" in old.get_data(as_text=True)
    done = web.post(owner, f"/owner/members/{member}", f"/owner/members/{member}/reissue")
    page = owner.get(done.headers["Location"]).get_data(as_text=True)
    new_card = page.split("New pass: <a href=\"")[1].split('"')[0].removeprefix(BASE)
    assert new_card != card and web.client().get(new_card).status_code == 200


def test_leaving_erases_the_member_and_stops_the_card(web):
    card = web.join(name="Anna", email="anna@example.com")
    client = web.client()
    data = json.loads(client.get(card + "/data.json").get_data(as_text=True))
    assert data["member"]["email"] == "anna@example.com" and data["passes"][0]["revoked_at"] is None
    left = web.post(client, card, card + "/leave")
    assert left.status_code == 200 and "personal data is deleted" in left.get_data(as_text=True)
    row = get_member(web.hub.engine, "cafe", member_of(card))
    assert row.email is None and row.name == "(erased)" and row.erased_at is not None
    assert client.get(card).status_code == 410


BIRTHDAY_AND_REFERRAL = """name = "Cafe Rosa"
language = "en"

[earning]
type = "stamps"
per_visit = 1

[bonuses.birthday]
amount = 3
window_days = 3

[bonuses.referral]
referrer = 2
referee = 1

[[rewards]]
id = "free-coffee"
name = "Free coffee"
cost = 10
"""


def test_the_birthday_and_referrer_reach_the_engine_through_the_ledger(web):
    """What the join form learns travels as a ``profile`` entry on the ledger stream; the engine
    folds it, so the first visit at any kiosk grants the referral and birthday bonuses; erasure
    empties it again (and scrubs the hub's copies)."""
    from cloud.cards import card as card_of
    from kiosk.protocol.messages import LedgerEntry
    from kiosk.rules import Visit, evaluate

    prepare(web.hub.engine, web.hub.data_dir, "cafe", parse_draft(BIRTHDAY_AND_REFERRAL), source="")
    anna = member_of(web.join(name="Anna"))
    ben = member_of(web.join(name="Ben", birthday="1990-11-21", ref=anna))
    entries, _ = web.hub.events().ledger_after("cafe", 0)
    profile = [LedgerEntry.model_validate(e.model_dump()) for e in entries if e.kind == "profile"]
    assert [(p.member, p.kiosk, p.detail) for p in profile] == [(ben, "hub", {"birthday": "11-21",
                                                                                "referred_by": anna})]
    member = get_member(web.hub.engine, "cafe", ben)
    view = card_of(web.hub.engine, member, NOW)
    assert view.state.birthday == (11, 21) and view.state.referred_by == anna
    first = evaluate(view.state, Visit("v1", ben), NOW, view.program)  # what a kiosk decides at the counter
    assert {(e.member, e.rule, e.delta) for e in first.entries} >= {
        (ben, "birthday-bonus", 3), (ben, "referral-bonus:referee", 1), (anna, "referral-bonus:referrer", 2)}

    owner = web.login()
    web.post(owner, f"/owner/members/{ben}", f"/owner/members/{ben}/erase", confirm=ben)
    entries, _ = web.hub.events().ledger_after("cafe", 0)
    assert [e.detail for e in entries if e.kind == "profile"] == [{}, {}]  # scrubbed, then emptied
    gone = card_of(web.hub.engine, get_member(web.hub.engine, "cafe", ben), NOW)
    assert gone.state.birthday is None and gone.state.referred_by is None
