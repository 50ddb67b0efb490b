"""Campaign announcements: planned per segment with consent respected, previewed with a member's
real card, a test sent to the owner through a real SMTP server (aiosmtpd), sent to the segment and
delivered by the worker; the owner pages' isolation and CSRF. SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from smtpsink import smtp_sink  # noqa: F401  (fixture)
from sqlalchemy import select
from sqlalchemy.orm import Session
from webapp import NOW, make_site, _quick_password_hashes  # noqa: F401  (fixture)

from cloud.automations import campaigns
from cloud.automations.campaigns import CampaignStore, new_campaign, plan
from cloud.automations.mailer import SmtpChannel
from cloud.automations.worker import Worker
from cloud.config import AutomationsSection
from cloud.link import documents
from cloud.models import HubEvent, Message
from cloud.passes import enrol
from cloud.programs import program_of
from cloud.web.secret import secret_key
from kiosk.common.errors import ConfigError
from kiosk.rules.program import parse_program

DAY = timedelta(days=1)
PROGRAM = parse_program({
    "name": "Cafe Rosa", "timezone": "Europe/Berlin", "language": "en",
    "tiers": {"basis": "visits", "window_days": 365,
              "levels": [{"name": "Bronze", "threshold": 0}, {"name": "Gold", "threshold": 10}]},
    "rewards": [{"id": "free-coffee", "name": "Free coffee", "cost": 10}]}, "test")


class Shop:
    """Cafe Rosa's members: visits and stamps written into the hub's ledger."""

    def __init__(self, site) -> None:
        self.site, self.engine, self.seq = site, site.hub.engine, 0
        documents.prepare(self.engine, site.hub.data_dir, "cafe", PROGRAM)

    def member(self, name: str, consent: bool = True, visits: tuple[float, ...] = (), stamps: int = 0,
               merchant: str = "cafe", language: str | None = None) -> str:
        joined = NOW - timedelta(days=400)
        member = enrol(self.engine, self.site.hub.keys, merchant, name, {
            "email": f"{name.lower()}@example.org", "created_at": joined, "consent_program_at": joined,
            "consent_marketing_at": joined if consent else None, "language": language}).member
        for days in visits:
            self.event(member, NOW - timedelta(days=days), "visit", merchant=merchant)
        if stamps:
            self.event(member, NOW - timedelta(days=min(visits, default=1)), "earn", stamps, merchant=merchant)
        return member

    def event(self, member: str, at: datetime, kind: str, delta: int = 0, merchant: str = "cafe") -> None:
        self.seq += 1
        with Session(self.engine) as session, session.begin():
            session.add(HubEvent(event_id=str(uuid.uuid4()), merchant_id=merchant, kiosk_id="k1", ledger_id="",
                                 kiosk_seq=self.seq, hub_seq=self.seq, kind=kind, member_id=member, delta=delta,
                                 rule=kind, detail={}, occurred_at=at, mono_ns=self.seq, boot_id="b",
                                 received_at=at))

    def rows(self) -> dict[str, str]:
        with Session(self.engine) as session:
            return {m.member_id: m.occasion for m in session.scalars(select(Message).where(Message.trigger == "campaign"))}


@pytest.fixture
def site(tmp_path, hub_url, smtp_sink):
    made = make_site(tmp_path, hub_url, smtp__host=smtp_sink.host, smtp__port=smtp_sink.port, smtp__starttls=False,
                     smtp__sender="Stempel <stempel@hub.example>")
    made.sink = smtp_sink
    assert "campaigns" in made.app.blueprints  # registered by create_app
    yield made
    made.hub.close()


@pytest.fixture
def shop(site):
    return Shop(site)


def _people(shop: Shop) -> dict[str, str]:
    weekly = tuple(7 * k + 1 for k in range(12))  # 12 visits: Gold, the most visits
    return {
        "regular": shop.member("Regula", visits=weekly, stamps=9),                 # close to a reward, VIP
        "drifting": shop.member("Dieter", visits=(60, 50, 40, 30)),                # at risk: 30 days > 2 × 10
        "new": shop.member("Nina", visits=(2,)),                                   # active
        "gone": shop.member("Gustav", visits=(200, 190)),                          # not active
        "never": shop.member("Vera"),                                              # no visit at all
        "no_consent": shop.member("Otto", consent=False, visits=(1, 8), stamps=9),  # close too, never sent
    }


@pytest.mark.parametrize("segment, tier, expected", [
    ("all", None, {"regular", "drifting", "new", "gone", "never"}),
    ("active", None, {"regular", "drifting", "new"}),
    ("at_risk", None, {"drifting"}),
    ("vip", None, {"regular"}),
    ("close", None, {"regular"}),
    ("tier", "Gold", {"regular"}),
    ("tier", "Bronze", {"drifting", "new", "gone", "never"}),
])
def test_a_campaign_is_planned_for_its_segment_and_only_members_with_consent(shop, segment, tier, expected):
    who = _people(shop)
    shop.member("Bakery customer", merchant="bakery", visits=(1,))
    made = new_campaign("cafe", segment, tier, {"en": ("News", "Hello $first_name")}, PROGRAM, "owner@cafe", NOW)
    done = plan(shop.engine, made, program_of(shop.engine, "cafe"), NOW)
    assert set(shop.rows()) == {who[k] for k in expected}
    assert set(shop.rows().values()) == {made.id}
    assert done.recorded == {"email": len(expected)}
    assert plan(shop.engine, made, PROGRAM, NOW + DAY).recorded == {"email": 0}  # a second send: nothing new


@pytest.mark.parametrize("words, error", [
    ({"en": ("Hi", "Hello $frist_name")}, "unknown placeholder(s) frist_name"),
    ({"en": ("Hi", "Only $5 today")}, "write $$ for a dollar sign"),
    ({"de": ("Hallo", "")}, "needs both a subject and a message"),
    ({"en": ("", ""), "de": ("", "")}, "write a subject and a message"),
])
def test_an_owners_text_is_checked_when_saved(words, error):
    with pytest.raises(ConfigError, match=re.escape(error)):
        new_campaign("cafe", "all", None, words, PROGRAM, "owner@cafe", NOW)


def test_an_unknown_tier_is_refused_naming_the_tiers():
    with pytest.raises(ConfigError, match="choose one of Bronze, Gold"):
        new_campaign("cafe", "tier", "Platinum", {"en": ("Hi", "Hello")}, PROGRAM, "owner@cafe", NOW)


def _create(site, client, **form) -> str:
    words = {"segment": "all", "subject_en": "Autumn menu at $shop",
             "body_en": "Hello $first_name,\n\nyou have $balance $unit.\n\nYour card: $card_url",
             "subject_de": "Herbstkarte bei $shop", "body_de": "Hallo $first_name,\n\ndu hast $balance $unit."}
    done = site.post(client, "/owner/campaigns/", **{**words, **form})
    assert done.status_code == 302, done.get_data(as_text=True)[:2000]
    return done.headers["Location"].rsplit("/", 1)[1]


def test_preview_test_send_and_send_to_the_segment(site, shop):
    who = _people(shop)
    german = shop.member("Greta", visits=(3,), stamps=4, language="de")
    owner = site.login()
    campaign = _create(site, owner)

    page = owner.get(f"/owner/campaigns/{campaign}?member={who['regular']}").get_data(as_text=True)
    assert "Hello Regula," in page and "you have 9 stamps." in page  # her real card
    assert "HTTPS://HUB.EXAMPLE/P/" in page and "https://hub.example/u/" in page  # her card, unsubscribe
    page = owner.get(f"/owner/campaigns/{campaign}?member={german}").get_data(as_text=True)
    assert "Hallo Greta," in page and "du hast 4 Stempel." in page
    assert "No member" in owner.get(f"/owner/campaigns/{campaign}?member=nobody").get_data(as_text=True)

    done = site.post(owner, f"/owner/campaigns/{campaign}?member={who['regular']}",
                     f"/owner/campaigns/{campaign}/test", member=who["regular"])
    assert done.status_code == 302
    [test] = site.sink.to("owner@cafe")
    assert test["Subject"] == "[Test] Autumn menu at Cafe Rosa"
    assert "you have 9 stamps." in test.get_body(("plain",)).get_content()
    assert site.sink.to("regula@example.org") == []  # a test reaches the owner only

    done = site.post(owner, f"/owner/campaigns/{campaign}", f"/owner/campaigns/{campaign}/send")
    assert done.status_code == 302
    assert set(shop.rows()) == {who[k] for k in ("regular", "drifting", "new", "gone", "never")} | {german}
    shown = owner.get(f"/owner/campaigns/{campaign}").get_data(as_text=True)
    assert "6 message(s) queued" in shown and "Send to" not in shown

    worker = Worker(site.hub.engine, site.hub.keys, secret_key(site.hub.data_dir), AutomationsSection(triggers=[]),
                    SmtpChannel.from_config(site.hub.config.smtp), "Stempel <stempel@hub.example>",
                    clock=lambda: NOW, worker_id="w1", campaigns=CampaignStore(site.hub.data_dir))
    assert worker.sweep()["sent"] == 6
    [mail] = site.sink.to("greta@example.org")
    assert mail["Subject"] == "Herbstkarte bei Cafe Rosa" and mail["Content-Language"] == "de"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert site.sink.to("otto@example.org") == []  # no consent


def test_another_merchants_campaign_is_a_404_and_staff_may_not_send(site, shop):
    campaign = _create(site, site.login())
    bakery = site.login("owner@bakery")
    assert bakery.get(f"/owner/campaigns/{campaign}").status_code == 404
    token = site.csrf(bakery, "/owner/campaigns/")
    assert bakery.post(f"/owner/campaigns/{campaign}/send", data={"csrf_token": token}).status_code == 404
    assert campaign not in bakery.get("/owner/campaigns/").get_data(as_text=True)
    assert site.login("staff@cafe").get("/owner/campaigns/").status_code == 403
    assert site.client().get("/owner/campaigns/").status_code == 302  # to the login page
    assert CampaignStore(site.hub.data_dir).get("cafe", campaign).sent_at is None


def test_a_form_without_the_csrf_token_is_refused(site, shop):
    owner = site.login()
    campaign = _create(site, owner)
    assert owner.post(f"/owner/campaigns/{campaign}/send").status_code == 400
    assert owner.post("/owner/campaigns/", data={"segment": "all", "subject_en": "x", "body_en": "y"}).status_code == 400
    assert shop.rows() == {}
    assert campaigns.CampaignStore(site.hub.data_dir).get("cafe", campaign).sent_at is None
