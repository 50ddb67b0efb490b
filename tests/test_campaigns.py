"""Campaign announcements: planned per segment with consent respected, previewed with a member's
real card, a test sent to the owner through a real SMTP server (aiosmtpd), sent to the segment and
delivered by the worker; the owner pages' isolation and CSRF; the previous release's campaign
files imported into the table once (renamed and kept; a malformed or misplaced one left and
reported), by several workers at once too. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from smtpsink import smtp_sink  # noqa: F401  (fixture)
from sqlalchemy import select
from sqlalchemy.orm import Session
from webapp import NOW, make_site, _quick_password_hashes  # noqa: F401  (fixture)

from cloud.automations import campaigns
from cloud.automations.campaigns import CampaignStore, Imported, import_files, new_campaign, plan
from cloud.automations.mailer import SmtpChannel
from cloud.automations.templates import Text
from cloud.automations.worker import Worker
from cloud.config import AutomationsSection
from cloud.db import make_engine, open_store
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
    ({"en": ("Hi", "Hello $frist_name")}, "uses $frist_name, which campaign messages do not have"),
    ({"en": ("Hi", "Only $5 today")}, "write $$ for a dollar sign"),
    ({"de": ("Hallo", "")}, "the German words need both a subject and a message; or leave both empty"),
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
                    clock=lambda: NOW, worker_id="w1", campaigns=CampaignStore(site.hub.engine))
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
    assert CampaignStore(site.hub.engine).get("cafe", campaign).sent_at is None


def test_a_form_without_the_csrf_token_is_refused(site, shop):
    owner = site.login()
    campaign = _create(site, owner)
    assert owner.post(f"/owner/campaigns/{campaign}/send").status_code == 400
    assert owner.post("/owner/campaigns/", data={"segment": "all", "subject_en": "x", "body_en": "y"}).status_code == 400
    assert shop.rows() == {}
    assert campaigns.CampaignStore(site.hub.engine).get("cafe", campaign).sent_at is None


# --- the previous release's campaign files, imported once into the table -------------------------


def _old_file(data_dir: Path, merchant: str, campaign_id: str, folder: str | None = None, name: str | None = None,
              **fields) -> Path:
    """A campaign as the previous release saved it: ``<data_dir>/campaigns/<merchant>/<id>.json``
    (its CampaignStore.save: the whole document, indented, non-ASCII kept)."""
    doc = {"id": campaign_id, "merchant": merchant, "segment": "all", "tier": None,
           "texts": {"en": {"subject": "News at $shop", "body": "Hello $first_name"}},
           "created_at": "2026-11-01T08:00:00+00:00", "created_by": "owner@cafe", "sent_at": None, "planned": 0,
           "sent_by": None, **fields}
    path = data_dir / "campaigns" / (folder or merchant) / (name or f"{campaign_id}.json")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1))
    return path


def _done(path: Path) -> Path:
    return path.with_name(path.name + ".imported")


@pytest.fixture
def legacy(tmp_path, hub_url):
    """A hub database at the current schema and the data dir the previous release wrote into."""
    engine = open_store(hub_url)
    yield engine, tmp_path / "hub"
    engine.dispose()


def test_the_previous_releases_files_are_imported_once_and_kept_renamed(legacy):
    engine, data = legacy
    sent = _old_file(data, "cafe", "c20261101080000-0a1b", planned=42, sent_by="owner@cafe",
                     sent_at="2026-11-02T09:30:00+00:00",
                     texts={"en": {"subject": "Autumn menu at $shop", "body": "Hello $first_name"},
                            "de": {"subject": "Herbstkarte bei $shop", "body": "Grüße, $first_name!"}})
    draft = _old_file(data, "cafe", "c20261110120000-ffff", segment="tier", tier="Gold",
                      created_at="2026-11-10T12:00:00+00:00")
    bakery = _old_file(data, "bakery", "c20261105070000-1234")

    store = CampaignStore(engine, data)
    assert sorted(store.imported.imported) == ["c20261101080000-0a1b", "c20261105070000-1234",
                                               "c20261110120000-ffff"]
    assert (store.imported.present, store.imported.refused) == ([], {})
    for path in (sent, draft, bakery):
        assert not path.exists() and json.loads(_done(path).read_text())["id"] == path.stem  # kept, renamed
    newest, older = store.list("cafe")
    assert (newest.id, newest.segment, newest.tier, newest.sent_at) == (draft.stem, "tier", "Gold", None)
    assert older.sent_at == datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc) and older.planned == 42
    assert older.text("de") == Text("Herbstkarte bei $shop", "Grüße, $first_name!")
    assert older.text("fr") == Text("Autumn menu at $shop", "Hello $first_name")
    assert [c.id for c in store.list("bakery")] == [bakery.stem]
    assert store.get("bakery", older.id) is None and store.get("cafe", bakery.stem) is None

    assert CampaignStore(engine, data).imported == Imported()  # a second start: nothing left to import
    _done(sent).rename(sent)  # a crash between the insert and the rename: the row is there already
    again = import_files(engine, data)
    assert (again.imported, again.present, again.refused) == ([], [sent.stem], {})
    assert not sent.exists() and _done(sent).is_file()
    assert len(store.list("cafe")) == 2


@pytest.mark.parametrize("folder, name, fields, reason", [
    ("cafe", "c20261101080000-beef.json", {"id": "c20261101080000-cafe"}, "is not its file name's"),
    ("cafe", "campaign-1.json", {"id": "campaign-1"}, "is no campaign id"),
    ("Cafe Rosa", None, {}, "is no merchant id"),
    ("cafe", None, {"segment": "everyone"}, "unknown segment 'everyone'"),
    ("cafe", None, {"texts": {"en": {"subject": "Hi", "body": "Hello $frist_name"}}}, "which campaign messages do not have"),
    ("cafe", None, {"texts": {"fr": {"subject": "Salut", "body": "Bonjour"}}}, "give one or both of de, en"),
    ("cafe", None, {"texts": {"en": "Hello"}}, "a field is missing or of the wrong type"),
    ("cafe", None, {"created_at": "yesterday"}, "a field is missing or of the wrong type"),
    ("cafe", None, {"planned": "many"}, "planned must be a whole number"),
])
def test_a_malformed_file_is_kept_and_reported_and_the_others_are_imported(legacy, caplog, folder, name, fields,
                                                                           reason):
    engine, data = legacy
    good = _old_file(data, "cafe", "c20261101080000-0001")
    bad = _old_file(data, folder, "c20261101080000-0002", name=name, **fields)
    caplog.set_level(logging.WARNING, logger="cloud.automations.campaigns")
    store = CampaignStore(engine, data)
    assert store.imported.imported == [good.stem] and not good.exists()
    [(path, why)] = store.imported.refused.items()
    assert path == bad and reason in why
    assert bad.is_file() and not _done(bad).exists()  # left where it was, untouched
    [warning] = [r for r in caplog.records if r.getMessage() == "automations.campaign_file_refused"]
    assert (warning.levelname, warning.file, warning.reason) == ("WARNING", str(bad), why)
    assert [c.id for c in store.list("cafe")] == [good.stem]


def test_a_file_that_is_not_json_is_kept_and_reported(legacy, caplog):
    engine, data = legacy
    good = _old_file(data, "cafe", "c20261101080000-0001")
    bad = good.with_name("c20261101080000-0002.json")
    bad.write_text('{"id": "c20261101080000-0002", "merch')  # cut short
    caplog.set_level(logging.WARNING, logger="cloud.automations.campaigns")
    assert CampaignStore(engine, data).imported.imported == [good.stem]
    assert "not JSON" in import_files(engine, data).refused[bad] and bad.is_file()
    assert [r.file for r in caplog.records if r.getMessage() == "automations.campaign_file_refused"] == [str(bad)] * 2


def test_another_merchants_campaign_in_the_wrong_folder_is_refused(legacy, caplog):
    """A bakery campaign put in the cafe's folder (or a cafe file claiming an id the bakery has):
    never shown to the cafe, never imported under the wrong merchant."""
    engine, data = legacy
    caplog.set_level(logging.WARNING, logger="cloud.automations.campaigns")
    stray = _old_file(data, "bakery", "c20261101080000-0bad", folder="cafe")
    taken = _old_file(data, "bakery", "c20261101080000-0a0a")
    CampaignStore(engine, data)
    clash = _old_file(data, "cafe", "c20261101080000-0a0a")  # the cafe's file, the bakery's id
    caplog.clear()
    store = CampaignStore(engine, data)
    assert store.imported.imported == [] and set(store.imported.refused) == {stray, clash}
    assert "merchant 'bakery''s campaign, in merchant 'cafe''s folder" in store.imported.refused[stray]
    assert "already merchant bakery's" in store.imported.refused[clash]
    assert stray.is_file() and clash.is_file() and _done(taken).is_file()
    assert store.list("cafe") == [] and store.get("cafe", "c20261101080000-0a0a") is None
    assert [c.id for c in store.list("bakery")] == [taken.stem]
    with pytest.raises(ConfigError, match="another merchant's"):  # nor can the cafe's page overwrite it
        store.save(replace(store.get("bakery", taken.stem), merchant="cafe", sent_by="owner@cafe"))
    assert store.get("bakery", taken.stem).sent_by is None
    assert sorted(r.file for r in caplog.records if r.getMessage() == "automations.campaign_file_refused") == \
        sorted([str(stray), str(clash)])


def test_workers_importing_at_the_same_moment_import_each_campaign_once(legacy, hub_url):
    engine, data = legacy
    ids = [f"c202611010800{k:02d}-{k:04x}" for k in range(12)]
    for k, campaign_id in enumerate(ids):
        _old_file(data, ("cafe", "bakery")[k % 2], campaign_id)
    second = make_engine(hub_url)  # another process's engine
    start, results = threading.Barrier(2), {}

    def worker(name, engine_) -> None:
        start.wait()
        results[name] = import_files(engine_, data)

    threads = [threading.Thread(target=worker, args=(n, e)) for n, e in (("a", engine), ("b", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    second.dispose()
    assert set(results) == {"a", "b"}
    inserted = results["a"].imported + results["b"].imported
    assert sorted(inserted) == ids  # each once
    assert results["a"].refused == results["b"].refused == {}
    assert sorted(p.name for p in data.glob("campaigns/*/*")) == sorted(f"{i}.json.imported" for i in ids)
    store = CampaignStore(engine)
    assert len(store.list("cafe")) == len(store.list("bakery")) == 6


def test_the_owners_page_shows_a_campaign_of_the_previous_release(site, shop):
    """The web makes its store on first use: the file is imported then, and the owner can preview
    and send the campaign as if it was written today."""
    old = _old_file(site.hub.data_dir, "cafe", "c20261101080000-0a1b",
                    texts={"en": {"subject": "Autumn menu at $shop", "body": "Hello $first_name"}})
    regula = shop.member("Regula", visits=(1,))
    owner = site.login()
    assert old.stem in owner.get("/owner/campaigns/").get_data(as_text=True)
    assert _done(old).is_file() and not old.exists()
    page = owner.get(f"/owner/campaigns/{old.stem}?member={regula}").get_data(as_text=True)
    assert "Hello Regula" in page
    done = site.post(owner, f"/owner/campaigns/{old.stem}", f"/owner/campaigns/{old.stem}/send")
    assert done.status_code == 302 and shop.rows() == {regula: old.stem}
    assert CampaignStore(site.hub.engine).get("cafe", old.stem).sent_by == "owner@cafe"
    assert site.login("owner@bakery").get(f"/owner/campaigns/{old.stem}").status_code == 404
