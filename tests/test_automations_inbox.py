"""The card's inbox (issue 11, item 2's third channel), the member's data export with their NPS
answers and messages, and ``stempel-hub automations run`` under systemd (READY, STATUS and
WATCHDOG heard on a real NOTIFY_SOCKET). The hub's database is SQLite and PostgreSQL; the clock
is injected."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from notifysock import NotifySocket, pings
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from test_automations import NOW, SHOP, Shop

from cloud import members, nps
from cloud.automations import outbox
from cloud.automations.campaigns import CAMPAIGN, CampaignStore, new_campaign
from cloud.automations.inbox import INBOX
from cloud.automations.worker import Worker, serve
from cloud.config import AutomationsSection
from cloud.db import make_engine
from cloud.models import Message
from cloud.passes import enrol, init_merchant
from cloud.programs import program_of
from cloud.web import create_app
from cloud.web.secret import secret_key
from kiosk.common.sdnotify import Notifier

BERLIN = ZoneInfo("Europe/Berlin")
HUB = str(Path(sys.executable).parent / "stempel-hub")
WATCHDOG_USEC = 200_000  # a ping every 0.1 s
MESSAGE_ID = re.compile(r'id="message-(\d+)"')


class Cards(Shop):
    """The automations' shop with the card pages on top (Flask's test client) and the inbox channel."""

    def __init__(self, tmp_path, url: str) -> None:
        super().__init__(tmp_path, url, None)
        self.app = create_app(self.hub, clock=self.now)
        self.cards: dict[str, str] = {}

    def member(self, name: str, email: str | None = None, consent: bool = True, joined=None, merchant=SHOP,
               **profile) -> str:
        joined = joined or NOW - timedelta(days=400)
        issued = enrol(self.hub.engine, self.hub.keys, merchant, name, {
            "email": email, "created_at": joined, "consent_program_at": joined,
            "consent_marketing_at": joined if consent else None, **profile})
        self.cards[issued.member] = "/P/" + issued.url.split("/P/")[1]
        return issued.member

    def inbox_worker(self, channels=(INBOX,), **settings) -> Worker:
        return Worker(self.hub.engine, self.hub.keys, secret_key(self.hub.data_dir),
                      AutomationsSection(channels=list(channels), **settings), None, "", clock=self.now,
                      worker_id="w1")

    def card(self, member: str) -> str:
        page = self.app.test_client().get(self.cards[member])
        assert page.status_code == 200, page.get_data(as_text=True)[:500]
        return page.get_data(as_text=True)

    def add(self, member: str, trigger: str, occasion: str, status: str = outbox.SENT, channel: str = INBOX,
            sent_hours_ago: float = 1, merchant: str = SHOP) -> int:
        """A message row as the worker leaves it (for the cases a sweep does not make quickly)."""
        sent_at = NOW - timedelta(hours=sent_hours_ago)
        with Session(self.hub.engine) as session, session.begin():
            row = Message(merchant_id=merchant, member_id=member, trigger=trigger,
                          occasion=outbox.occasion_key(occasion, channel), channel=channel, status=status,
                          attempts=1, created_at=sent_at, not_before=sent_at, expires_at=NOW + timedelta(days=1),
                          sent_at=sent_at if status == outbox.SENT else None)
            session.add(row)
            session.flush()
            return row.id


@pytest.fixture
def shop(tmp_path, hub_url):
    s = Cards(tmp_path, hub_url)
    init_merchant(s.hub.engine, s.hub.keys, "bakery", "Bäckerei Öztürk", "https://hub.example")
    yield s
    s.hub.close()


@pytest.fixture
def systemd(tmp_path):
    sock = NotifySocket(tmp_path)
    yield sock
    sock.close()


def heard(systemd: NotifySocket, key: str, value: str, within: float = 20.0) -> dict[str, str]:
    """``wait_for`` with a deadline for the whole wait: pings arrive every 0.1 s, so a status that
    never comes would otherwise be waited for forever."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        message = systemd.next(timeout=max(deadline - time.monotonic(), 0.01))
        if message is not None and message.get(key) == value:
            return message
    raise AssertionError(f"no {key}={value} within {within}s; heard: {systemd.seen}")


def shown(page: str) -> list[int]:
    return [int(i) for i in MESSAGE_ID.findall(page)]


# --- the inbox channel and the card ------------------------------------------------------------


def test_the_inbox_channel_marks_rows_sent_and_each_card_shows_only_its_own(shop):
    anna = shop.member("<b>Anna</b> Berg", joined=NOW - timedelta(days=2))  # no e-mail: the inbox reaches her
    bernd = shop.member("Bernd", joined=NOW - timedelta(days=1), language="de")
    carla = shop.member("Carla", consent=False, joined=NOW - timedelta(days=1))
    assert 'id="inbox"' not in shop.card(anna)  # nothing sent yet: no inbox at all

    done = shop.inbox_worker().sweep()

    assert (done["planned"], done["sent"]) == (2, 2)
    rows = {r.member_id: r for r in shop.rows()}
    assert set(rows) == {anna, bernd}  # no consent, no message
    for row in rows.values():
        assert (row.channel, row.status, row.trigger, row.occasion.endswith("@inbox")) == (INBOX, "sent", "welcome",
                                                                                           True)
        assert row.sent_at is not None and row.last_error is None
    assert shop.inbox_worker().sweep()["planned"] == 0  # decided once

    page = shop.card(anna)
    assert shown(page) == [rows[anna].id]
    assert "Welcome to Cafe Rosa, &lt;b&gt;Anna&lt;/b&gt;!" in page and "<b>Anna</b>" not in page
    assert "<h2>Messages</h2>" in page and "01.12.2026 11:00" in page  # sent at 10:00 UTC: Berlin time
    german = shop.card(bernd)
    assert shown(german) == [rows[bernd].id]
    assert "<h2>Nachrichten</h2>" in german and "Willkommen bei Cafe Rosa, Bernd!" in german
    assert 'id="inbox"' not in shop.card(carla)


def test_the_inbox_is_the_members_newest_ten_and_nobody_elses(shop):
    anna = shop.member("Anna")
    bernd = shop.member("Bernd")
    triggers = ("welcome", "birthday", "winback", "almost_there")
    mine = [shop.add(anna, triggers[k % 4], f"o{k}", sent_hours_ago=k + 1) for k in range(12)]  # newest first
    others = [shop.add(bernd, "winback", "b1", sent_hours_ago=0.5),  # newer than all of Anna's
              shop.add(anna, "winback", "p1", status=outbox.PENDING),  # not sent yet
              shop.add(anna, "winback", "f1", status=outbox.FAILED),
              shop.add(anna, "winback", "e1", channel="email", sent_hours_ago=0.2),  # another channel's
              shop.add(anna, "winback", "x1", merchant="bakery", sent_hours_ago=0.1)]  # another shop's row
    page = shop.card(anna)
    assert shown(page) == mine[:10]
    assert not set(others) & set(shown(page))
    assert shown(shop.card(bernd)) == [others[0]]


def test_a_campaign_shows_the_owners_words_escaped(shop):
    anna = shop.member("Anna", language="de")
    campaign = new_campaign(SHOP, "all", None, {"en": ("Sale!", "Hi $first_name"),
                                                "de": ("<i>Aktion</i> bei $shop", "Hallo $first_name, bis Sonntag.")},
                            program_of(shop.hub.engine, SHOP), "owner@cafe", NOW)
    CampaignStore(shop.hub.engine).save(campaign)
    row = shop.add(anna, CAMPAIGN, campaign.id)
    page = shop.card(anna)
    assert shown(page) == [row]
    assert "&lt;i&gt;Aktion&lt;/i&gt; bei Cafe Rosa" in page and "<p>Hallo Anna, bis Sonntag.</p>" in page


def test_a_message_without_words_is_left_out_not_the_card(shop):
    anna = shop.member("Anna")
    known = shop.add(anna, "winback", "w1")
    shop.add(anna, "no_such_trigger", "x1", sent_hours_ago=0.5)  # a kind of message with no template
    shop.add(anna, CAMPAIGN, "c20260101000000-dead", sent_hours_ago=0.2)  # its campaign is not in the database
    assert shown(shop.card(anna)) == [known]


def test_links_in_the_inbox_are_links_and_nothing_else_is_markup(shop):
    anna = shop.member("<script>alert(1)</script> Anna")  # the first name is the script
    shop.add(anna, "winback", "w1")
    page = shop.card(anna)
    inbox = page[page.index('id="inbox"'):]
    assert "<script>alert" not in page and "Hello &lt;script&gt;alert(1)&lt;/script&gt;," in inbox
    assert re.search(r'<a href="HTTPS://HUB\.EXAMPLE/P/[^"]+" rel="nofollow', inbox)  # the card link
    assert re.search(r'<a href="https://hub\.example/u/[^"]+" rel="nofollow', inbox)  # the unsubscribe link


# --- the data export ---------------------------------------------------------------------------


def test_the_export_holds_the_members_nps_answers_and_messages_and_no_one_elses(shop):
    anna = shop.member("Anna", joined=NOW - timedelta(days=2))
    bernd = shop.member("Bernd", joined=NOW - timedelta(days=2))
    shop.inbox_worker().sweep()
    failed = shop.add(anna, "birthday", "2026", status=outbox.FAILED, channel="email")
    nps.record(shop.hub.engine, SHOP, anna, 9, "Great <coffee>", NOW - timedelta(days=100), BERLIN)
    nps.record(shop.hub.engine, SHOP, anna, 10, None, NOW, BERLIN)
    nps.record(shop.hub.engine, SHOP, bernd, 2, "Bernd's complaint", NOW, BERLIN)
    member = members.get_member(shop.hub.engine, SHOP, anna)

    data = members.export(shop.hub.engine, member)

    assert data["nps"] == [
        {"score": 9, "comment": "Great <coffee>", "quarter": "2026-Q3", "answered_at": "2026-08-23T10:00:00+00:00"},
        {"score": 10, "comment": None, "quarter": "2026-Q4", "answered_at": "2026-12-01T10:00:00+00:00"}]
    birthday, welcome = data["messages"]  # in the order they were decided
    assert welcome == {"trigger": "welcome", "occasion": welcome["occasion"], "channel": INBOX, "status": "sent",
                       "decided_at": "2026-12-01T10:00:00+00:00", "sent_at": "2026-12-01T10:00:00+00:00"}
    assert "@" not in welcome["occasion"]
    assert birthday == {"trigger": "birthday", "occasion": "2026", "channel": "email", "status": "failed",
                        "decided_at": "2026-12-01T09:00:00+00:00", "sent_at": None}
    assert failed and "complaint" not in members.export_json(shop.hub.engine, member)
    download = shop.app.test_client().get(f"{shop.cards[anna]}/data.json")
    assert download.status_code == 200 and download.get_json()["nps"][0]["score"] == 9


# --- under systemd -----------------------------------------------------------------------------


def test_the_automations_loop_tells_systemd_ready_status_and_lives(shop, systemd):
    shop.member("Anna", joined=NOW - timedelta(days=2))
    worker = shop.inbox_worker()
    stop = threading.Event()
    with Notifier.from_environ(systemd.env(watchdog_usec=WATCHDOG_USEC)) as notifier:
        loop = threading.Thread(target=serve, args=(worker, stop, notifier, 0.3), daemon=True)
        loop.start()
        try:
            ready = systemd.wait_for("READY", "1")
            assert ready["STATUS"] == "database reachable; first sweep running"
            heard(systemd, "STATUS", "last sweep: 1 planned, 1 sent")
            heard(systemd, "STATUS", "last sweep: nothing due")  # the next sweep: decided once
            before = len(systemd.seen)
            systemd.wait_for("WATCHDOG", "1")  # between sweeps
            assert pings(systemd.seen[before:]) == 1
        finally:
            stop.set()
            loop.join(30)
        assert not loop.is_alive()
    stopping = heard(systemd, "STOPPING", "1")
    assert re.fullmatch(r"stopping after \d+ sweep\(s\)", stopping["STATUS"])


def test_no_ready_while_the_database_does_not_answer(tmp_path, systemd):
    engine = make_engine(f"sqlite:///{tmp_path / 'no such folder' / 'hub.db'}")
    worker = Worker(engine, None, b"x" * 32, AutomationsSection(channels=[INBOX]), None, "")
    with Notifier.from_environ(systemd.env(watchdog_usec=WATCHDOG_USEC)) as notifier:
        with pytest.raises(OperationalError, match="unable to open database file"):
            serve(worker, threading.Event(), notifier, 0.3)
    assert systemd.drain() == []  # systemd counts it as failed to start, and Restart= tries again


@pytest.mark.slow  # spawns the worker
def test_stempel_hub_automations_run_under_a_notify_socket(tmp_path, systemd):
    config = tmp_path / "hub.toml"
    config.write_text('[automations]\nchannels = ["inbox"]\ninterval_seconds = 5\n')
    env = {**os.environ, **systemd.env(watchdog_usec=1_000_000)}
    with (tmp_path / "automations.log").open("w") as log:
        proc = subprocess.Popen([HUB, "--config", str(config), "--data-dir", str(tmp_path / "hub"),
                                 "automations", "run"], stdout=log, stderr=log, env=env)
    try:
        systemd.wait_for("READY", "1", timeout=60)
        heard(systemd, "STATUS", "last sweep: nothing due")
        systemd.wait_for("WATCHDOG", "1")
        proc.send_signal(signal.SIGTERM)
        assert heard(systemd, "STOPPING", "1")["STATUS"] == "stopping after 1 sweep(s)"
        assert proc.wait(30) == 0, (tmp_path / "automations.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
