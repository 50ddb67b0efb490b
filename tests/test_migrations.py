"""The hub's schema through Alembic: a database made by release 0.1.0 upgrades and loses nothing.

``tests/fixtures/hub-0.1.0.sqlite.sql`` was made by release 0.1.0's own code (a shop, two
members, two kiosks' events, a dead letter); on PostgreSQL the same rows are loaded into the
schema that release created there. After ``stempel-hub db upgrade`` every row is still there,
and the kiosks carry on: a kiosk still running 0.1.0 (no ``ledger_id``) continues its numbering,
and a new ledger of the same kiosk is kept apart from it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from sqlalchemy import MetaData, create_engine, func, insert, select, text

from cloud import schema
from cloud.events import EventStore
from kiosk.protocol import topics
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import EventBatch, WireEvent, encode

FIXTURES = Path(__file__).parent / "fixtures"
HUB = str(Path(sys.executable).parent / "stempel-hub")
ROWS = {"merchants": 1, "members": 2, "signing_keys": 1, "hub_events": 5, "kiosk_progress": 2,
        "ledger_streams": 1, "ledger_outbox": 5, "dead_letters": 1}


def previous_release(url: str, tmp_path: Path) -> None:
    """Fill the empty database at *url* with what release 0.1.0 left behind."""
    made = tmp_path / "old.sqlite3"
    with sqlite3.connect(made) as db:
        db.executescript((FIXTURES / "hub-0.1.0.sqlite.sql").read_text())
    if url.startswith("sqlite"):
        made.replace(url.removeprefix("sqlite:///"))
        return
    engine, old = create_engine(url), create_engine(f"sqlite:///{made}")
    with engine.begin() as conn:
        conn.exec_driver_sql((FIXTURES / "hub-0.1.0.postgresql-schema.sql").read_text())
        source = MetaData()
        source.reflect(old)
        for table in source.sorted_tables:
            with old.connect() as src:
                rows = [dict(r._mapping) for r in src.execute(select(table))]
            if rows:
                conn.execute(insert(table), rows)
        for seq in ("hub_events_id_seq", "ledger_outbox_id_seq", "dead_letters_id_seq"):
            table = seq.removesuffix("_id_seq")
            conn.execute(text(f"SELECT setval('{seq}', (SELECT MAX(id) FROM {table}))"))
    engine.dispose()
    old.dispose()


def counts(url: str) -> dict[str, int]:
    return counts_of(url, list(ROWS))


def wire(seqs: list[int]) -> list[WireEvent]:
    at = datetime(2026, 3, 3, 9, 0, tzinfo=timezone.utc)
    return [WireEvent(event_id=new_event_id(), kiosk_seq=s, occurred_at=at + timedelta(minutes=s), mono_ns=s,
                      boot_id="boot-2", kind="earn", member="m1", delta=1, rule="visit", detail={"cause": "visit"})
            for s in seqs]


@pytest.mark.slow
def test_a_database_of_the_previous_release_upgrades_and_loses_nothing(hub_url, tmp_path):
    previous_release(hub_url, tmp_path)
    assert counts(hub_url) == ROWS
    done = subprocess.run([HUB, "--data-dir", str(tmp_path / "hub"), "--db-url", hub_url, "db", "upgrade"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "0.1.0" in done.stdout and schema.head_revision() in done.stdout
    assert counts(hub_url) == ROWS

    engine = create_engine(hub_url)
    with engine.connect() as conn:  # the upgraded schema is exactly the models' (no drift either way)
        assert compare_metadata(MigrationContext.configure(conn), schema.target_metadata()) == []
    engine.dispose()

    store = EventStore.open(hub_url, clock=lambda: datetime(2026, 3, 4, tzinfo=timezone.utc))
    try:
        legacy = store.ingest(topics.events("cafe-rosa", "counter-1"), encode(EventBatch(events=wire([4]))))
        assert (legacy.new, legacy.acked_through_seq, legacy.ledger_id) == (1, 4, "")  # numbering continues
        fresh = store.ingest(topics.events("cafe-rosa", "counter-1"),
                             encode(EventBatch(ledger_id="c" * 32, events=wire([1]))))
        assert (fresh.new, fresh.acked_through_seq) == (1, 1)  # a reinstalled counter-1, kept apart
        assert [e.hub_seq for e in store.events("cafe-rosa")] == [1, 2, 3, 4, 5, 6, 7]
    finally:
        store.close()


def test_a_new_database_is_made_at_the_head_and_upgrading_again_does_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    engine = create_engine(url)
    assert schema.upgrade(engine) == "new"
    assert schema.current_revision(engine) == schema.head_revision()
    assert schema.upgrade(engine) == schema.head_revision()
    engine.dispose()


LANDED = "0003_kiosk_ledgers"  # the schema of the last landed build (before the web, issue 9)


def test_a_database_of_the_last_landed_build_upgrades_and_the_web_serves_its_members(hub_url, tmp_path):
    """Members, events, conflicts and programmes made before the web keep every row; the new
    profile columns start empty; the old member's card and the owner's pages work at once."""
    from alembic import command

    from cloud.accounts import add_user
    from cloud.app import create_hub
    from cloud.config import load_hub_config
    from cloud.passes import init_merchant, reissue_url
    from cloud.web import create_app

    engine = create_engine(hub_url)
    with engine.begin() as conn:
        command.upgrade(schema.alembic_config(conn), LANDED)
    hub = create_hub(load_hub_config(None, env={}, hub__data_dir=tmp_path / "hub", hub__db_url=hub_url,
                                     web__secure_cookies=False))
    init_merchant(engine, hub.keys, "cafe-rosa", "Cafe Rosa", "https://hub.example")  # unchanged tables
    at = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO members (id, merchant_id, name, revoked, created_at) "
                          "VALUES ('m-old', 'cafe-rosa', 'Olga', false, :at)"), {"at": at})
        conn.execute(text("INSERT INTO conflicts (merchant_id, member_id, balance, first_event_id, event_ids, kiosks,"
                          " detected_at) VALUES ('cafe-rosa', 'm-old', -1, 'e1', '[]', '[]', :at)"), {"at": at})
    engine.dispose()
    store = EventStore(create_engine(hub_url), clock=lambda: at + timedelta(days=10))  # no upgrade yet
    events = [WireEvent(event_id=new_event_id(), kiosk_seq=s, occurred_at=at + timedelta(days=s), mono_ns=s,
                        boot_id="b", kind=k, member="m-old", delta=d, rule=r)
              for s, (k, d, r) in enumerate([("visit", 0, "visit"), ("earn", 1, "base-rate")], start=1)]
    assert store.ingest(topics.events("cafe-rosa", "k1"), encode(EventBatch(events=events))).new == 2
    store.close()
    before = {t: n for t, n in counts_of(hub_url, ["members", "hub_events", "conflicts", "merchants"]).items()}

    upgrading = create_engine(hub_url)
    assert schema.upgrade(upgrading) == LANDED
    upgrading.dispose()
    assert counts_of(hub_url, list(before)) == before
    old = create_engine(hub_url)
    with old.connect() as conn:
        row = conn.execute(text("SELECT name, email, consent_program_at, erased_at FROM members")).one()
        assert tuple(row) == ("Olga", None, None, None)
    old.dispose()

    add_user(hub.engine, "cafe-rosa", "owner@cafe", "owner", "correct horse battery")
    card = reissue_url(hub.engine, hub.keys, "cafe-rosa", "m-old").url.removeprefix("HTTPS://HUB.EXAMPLE")
    app = create_app(hub, clock=lambda: at + timedelta(days=3))
    page = app.test_client().get(card).get_data(as_text=True)
    assert "Olga" in page and "1 of 10" in page
    hub.close()


RELEASED = "0007_nps"  # the last landed release: campaigns were JSON files, no message was "opened"
OLD_CAMPAIGN = "c20261101080000-0a1b"


def test_a_database_of_the_last_release_keeps_its_messages_and_its_campaign_files_move_into_the_table(
        hub_url, tmp_path):
    """Members, messages (sent and pending) and NPS answers made by release 0007 keep every row and
    no message counts as opened; the campaign its owner wrote, a JSON file in the data dir, is
    imported into the ``campaigns`` table, and its messages still render with the owner's words."""
    from alembic import command
    from sqlalchemy.orm import Session

    from cloud.app import create_hub
    from cloud.automations import compose, templates
    from cloud.automations.campaigns import CAMPAIGN, CampaignStore
    from cloud.automations.outbox import occasion_of
    from cloud.config import load_hub_config
    from cloud.models import Member
    from cloud.passes import init_merchant
    from cloud.web.secret import secret_key

    engine = create_engine(hub_url)
    with engine.begin() as conn:
        command.upgrade(schema.alembic_config(conn), RELEASED)
    data = tmp_path / "hub"
    hub = create_hub(load_hub_config(None, env={}, hub__data_dir=data, hub__db_url=hub_url))
    init_merchant(engine, hub.keys, "cafe", "Cafe Rosa", "https://hub.example")  # unchanged tables
    at = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
    hour = timedelta(hours=1)
    messages = [("welcome", "welcome", "email", "sent", at), ("campaign", OLD_CAMPAIGN, "email", "sent", at + hour),
                ("campaign", f"{OLD_CAMPAIGN}@inbox", "inbox", "sent", at + hour),
                ("campaign", f"{OLD_CAMPAIGN}@webhook", "webhook", "pending", None),
                ("winback", "2026-11", "email", "pending", None)]
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO members (id, merchant_id, name, revoked, created_at, email, language,"
                          " consent_program_at, consent_marketing_at) VALUES ('m-old', 'cafe', 'Olga', false, :at,"
                          " 'olga@example.org', 'de', :at, :at)"), {"at": at - timedelta(days=200)})
        for trigger, occasion, channel, status, sent_at in messages:
            conn.execute(text("INSERT INTO messages (merchant_id, member_id, trigger, occasion, channel, status,"
                              " attempts, created_at, not_before, expires_at, sent_at) VALUES ('cafe', 'm-old',"
                              " :trigger, :occasion, :channel, :status, :attempts, :at, :at, :until, :sent_at)"),
                         {"trigger": trigger, "occasion": occasion, "channel": channel, "status": status,
                          "attempts": int(sent_at is not None), "at": at, "until": at + timedelta(days=7),
                          "sent_at": sent_at})
        for score, comment, quarter, days in ((9, "Guter Kaffee", "2026-Q3", 60), (7, None, "2026-Q4", 1)):
            conn.execute(text("INSERT INTO nps_answers (merchant_id, member_id, score, comment, quarter, answered_at)"
                              " VALUES ('cafe', 'm-old', :score, :comment, :quarter, :at)"),
                         {"score": score, "comment": comment, "quarter": quarter, "at": at - timedelta(days=days)})
    engine.dispose()
    folder = data / "campaigns" / "cafe"  # what release 0007 wrote: campaigns.py CampaignStore.save
    folder.mkdir(parents=True, mode=0o700)
    (folder / f"{OLD_CAMPAIGN}.json").write_text(json.dumps({
        "id": OLD_CAMPAIGN, "merchant": "cafe", "segment": "all", "tier": None,
        "texts": {"en": {"subject": "Autumn menu at $shop", "body": "Hello $first_name,\n\nyou have $balance $unit."},
                  "de": {"subject": "Herbstkarte bei $shop", "body": "Hallo $first_name,\n\ndu hast $balance $unit."}},
        "created_at": "2026-11-01T08:00:00+00:00", "created_by": "owner@cafe", "sent_at": "2026-11-02T09:00:00+00:00",
        "planned": 3, "sent_by": "owner@cafe"}, ensure_ascii=False, indent=1))
    kept = ["members", "messages", "nps_answers", "merchants", "signing_keys"]
    before = counts_of(hub_url, kept)
    assert before == {"members": 1, "messages": 5, "nps_answers": 2, "merchants": 1, "signing_keys": 1}

    upgrading = create_engine(hub_url)
    assert schema.upgrade(upgrading) == RELEASED
    upgrading.dispose()
    assert counts_of(hub_url, kept) == before
    try:
        with hub.engine.connect() as conn:
            rows = conn.execute(text("SELECT trigger, occasion, channel, status, opened_at FROM messages"
                                     " ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [(t, o, c, s, None) for t, o, c, s, _ in messages]
            answers = conn.execute(text("SELECT score, comment, quarter FROM nps_answers ORDER BY quarter")).all()
            assert [tuple(a) for a in answers] == [(9, "Guter Kaffee", "2026-Q3"), (7, None, "2026-Q4")]

        store = CampaignStore(hub.engine, data)  # as the web and the automations worker make it
        assert store.imported.imported == [OLD_CAMPAIGN] and store.imported.refused == {}
        assert not (folder / f"{OLD_CAMPAIGN}.json").exists()
        assert (folder / f"{OLD_CAMPAIGN}.json.imported").is_file()  # kept, renamed
        [campaign] = store.list("cafe")
        assert (campaign.id, campaign.segment, campaign.planned, campaign.sent_by) == (OLD_CAMPAIGN, "all", 3,
                                                                                      "owner@cafe")
        assert campaign.sent_at == at

        with Session(hub.engine) as session:
            olga = session.get(Member, "m-old")
        filled, language = compose.values(hub.engine, hub.keys, secret_key(data), olga, at + timedelta(days=1))
        for trigger, occasion, *_ in messages:
            if trigger == CAMPAIGN:  # any worker, the web's card too, finds the words in the database
                done = templates.render(CAMPAIGN, language, filled, store.text("cafe", occasion_of(occasion), language))
                assert done.subject == "Herbstkarte bei Cafe Rosa" and "Hallo Olga," in done.text
        assert CampaignStore(hub.engine, data).imported.imported == []  # once
    finally:
        hub.close()


def counts_of(url: str, tables: list[str]) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {t: conn.scalar(select(func.count()).select_from(text(t))) for t in tables}
    finally:
        engine.dispose()
