"""The NPS question in the next message (issue 11, item 4): a member the card would ask gets a
paragraph with a link to the card's NPS form before the footer, in English and German, in the
plain and the HTML part, the webhook's payload and a campaign; not before the Nth visit, not
once they answered this quarter. The link opens the form through the web app (a GET records
nothing; the answer is the form's POST)."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from smtpsink import smtp_sink  # noqa: F401  (fixture)
from sqlalchemy import select
from sqlalchemy.orm import Session
from webapp import BASE, _quick_password_hashes, broker, web  # noqa: F401  (fixtures)
from test_nps_web import GERMAN

from cloud.automations import compose, templates
from cloud.automations.campaigns import CAMPAIGN
from cloud.automations.mailer import SmtpChannel
from cloud.automations.webhook import payload
from cloud.automations.worker import Worker
from cloud.config import AutomationsSection, SmtpSection
from cloud.link.documents import prepare
from cloud.models import Member, Message, NpsAnswer
from cloud.programs import parse_draft
from cloud.web.secret import secret_key
from kiosk.protocol import topics
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import EventBatch, WireEvent

EN = "How likely are you to recommend Cafe Rosa to a friend? Tell us on your card (0–10, takes ten seconds): "
DE = "Wie wahrscheinlich ist es, dass du Bäckerei Öztürk Freunden weiterempfiehlst? Sag es uns auf deiner Karte (0–10, dauert zehn Sekunden): "


@pytest.fixture
def site(web):
    prepare(web.hub.engine, web.hub.data_dir, "bakery", parse_draft(GERMAN))  # the bakery writes German
    return web


_seq = iter(range(1, 100_000))


def joined(site, name: str, visits: int, code: str = "cafe") -> str:
    """A member who joined through the page with marketing consent and *visits* visits, a day
    apart, before the clock; their card's path."""
    card = site.join(name=name, code=code, email=f"{name.lower()}@example.org", marketing="yes")
    member = card.split(".")[3].lower()
    with Session(site.hub.engine) as session, session.begin():  # joined on the clock's day, not the wall clock's
        session.get(Member, member).created_at = site.clock[0] - timedelta(hours=1)
    events = [WireEvent(event_id=new_event_id(), kiosk_seq=next(_seq), mono_ns=k, boot_id="b", kind="visit",
                        occurred_at=site.clock[0] - timedelta(days=k + 1), member=member, rule="visit")
              for k in range(visits)]
    if events:
        batch = EventBatch(ledger_id="c" * 32, events=events).model_dump_json(by_alias=True).encode()
        assert site.hub.events().ingest(topics.events(code, "k1"), batch).new == visits
    return card


def sweep(site, sink) -> dict[str, object]:
    """One worker sweep (welcome messages, the question from the 3rd visit); the mails by recipient."""
    smtp = SmtpSection(host=sink.host, port=sink.port, starttls=False, sender="Stempel <s@hub.example>")
    settings = AutomationsSection(triggers=["welcome"], nps_after_visits=3)
    worker = Worker(site.hub.engine, site.hub.keys, secret_key(site.hub.data_dir), settings,
                    SmtpChannel.from_config(smtp), smtp.sender, clock=lambda: site.clock[0], worker_id="w1")
    worker.sweep()
    return {m["To"]: m for m in sink.messages()}


def parts(mail) -> tuple[str, str]:
    return mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()


def test_a_member_due_the_question_gets_it_in_both_parts_and_languages(site, smtp_sink):
    anna = joined(site, "Anna", 3)
    ece = joined(site, "Ece", 4, code="bakery")
    mails = sweep(site, smtp_sink)

    for card, mail, words in [(anna, mails["anna@example.org"], EN), (ece, mails["ece@example.org"], DE)]:
        text, page = parts(mail)
        [line] = [p for p in text.split("\n\n") if p.startswith(words)]
        url = line.removeprefix(words)
        assert url.upper().startswith((BASE + card).upper()) and url.endswith("#nps")  # the pass URL is upper case
        assert text.index(line) < text.index("\n--\n")  # before the footer
        assert f'{words}<a href="{url}">{url}</a></p><hr>' in page  # the last paragraph, the link a link
        # the card link of the greeting is still a link of its own (a prefix of the NPS link)
        assert page.count(f'<a href="{url}">') == 1 and page.count(f'<a href="{url.removesuffix("#nps")}">') >= 1


def test_not_before_the_nth_visit_and_not_once_answered_this_quarter(site, smtp_sink):
    joined(site, "Ben", 2)  # the card does not ask yet
    cleo = joined(site, "Cleo", 5)
    client = site.client()
    done = site.post(client, cleo, f"{cleo}/nps", score="8")  # answered on the card this quarter
    assert done.status_code == 303
    mails = sweep(site, smtp_sink)
    assert set(mails) == {"ben@example.org", "cleo@example.org"}
    for mail in mails.values():
        text, page = parts(mail)
        assert "recommend" not in text and "#nps" not in text and "#nps" not in page
        assert "You receive this because" in text  # the footer is still there


def test_the_link_opens_the_cards_nps_form_and_a_get_records_nothing(site, smtp_sink):
    joined(site, "Anna", 3)
    text, _ = parts(sweep(site, smtp_sink)["anna@example.org"])
    url = next(p for p in text.split("\n\n") if p.startswith(EN)).removeprefix(EN)
    link = urlsplit(url)
    assert link.fragment == "nps"
    client = site.client()
    page = client.get(f"{link.path}?{link.query}" if link.query else link.path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f'id="{link.fragment}"' in html and "How likely are you to recommend us? 0–10" in html
    card = link.path
    assert f'action="{card}/nps"' in html and 'name="score" value="10"' in html
    with Session(site.hub.engine) as session:
        assert session.scalars(select(NpsAnswer)).all() == []  # opening the link answered nothing
    assert site.post(client, card, f"{card}/nps", score="10").status_code == 303
    with Session(site.hub.engine) as session:
        assert [a.score for a in session.scalars(select(NpsAnswer))] == [10]


def test_the_webhook_and_a_campaign_carry_the_question(site):
    anna = joined(site, "Anna", 3)
    ben = joined(site, "Ben", 1)
    found = {}
    with Session(site.hub.engine) as session:
        for card in (anna, ben):
            found[card] = session.get(Member, card.split(".")[3].lower())
    secret = secret_key(site.hub.data_dir)

    filled, language = compose.values(site.hub.engine, site.hub.keys, secret, found[anna], site.clock[0],
                                      nps_after_visits=3)
    assert filled["nps_url"] == f"{filled['card_url']}#nps"
    message = Message(id=7, merchant_id="cafe", member_id=found[anna].id, trigger="welcome", occasion="join",
                      channel="webhook", attempts=0)
    body = json.loads(payload(message, "cafe", filled, language))
    assert body["nps_url"] == filled["nps_url"] and EN + filled["nps_url"] in body["text"]
    campaign = templates.render(CAMPAIGN, language, filled, templates.Text("News from $shop", "Hello $first_name!"))
    assert campaign.text.split("\n\n")[1] == EN + filled["nps_url"]
    assert f'<a href="{filled["nps_url"]}">' in campaign.html

    unasked, _ = compose.values(site.hub.engine, site.hub.keys, secret, found[ben], site.clock[0],
                                nps_after_visits=3)
    assert "nps_url" not in unasked
    assert "nps_url" not in json.loads(payload(message, "cafe", unasked, language))
    without, _ = compose.values(site.hub.engine, site.hub.keys, secret, found[anna], site.clock[0])
    assert "nps_url" not in without  # a caller that does not pass the setting (the card's inbox) asks nothing
