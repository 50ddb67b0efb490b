"""Tier reached, tier about to be lost, reward about to expire: the pure triggers on fixed ledgers
with an injected clock, then planned from a hub database (SQLite and PostgreSQL) and delivered to a
real SMTP server (aiosmtpd), with and without the transactional switch."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from smtpsink import smtp_sink  # noqa: F401  (fixture)
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.app import create_hub
from cloud.automations import planner, planner_more
from cloud.automations.campaigns import CampaignStore
from cloud.automations.mailer import SmtpChannel
from cloud.automations.triggers_more import (REWARD_EXPIRY, TIER_LOSS, TIER_REACHED, MoreRules, TierChange, Window,
                                             loss_at, reward_expiry, reward_key, tier_loss, tier_reached, window_of)
from cloud.automations.worker import Worker
from cloud.config import AutomationsSection, SmtpSection, load_hub_config
from cloud.link import documents
from cloud.models import HubEvent, Message
from cloud.passes import enrol, init_merchant
from cloud.web.secret import secret_key
from kiosk.rules.program import parse_program

UTC, BERLIN = timezone.utc, ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)
PROGRAM = parse_program({
    "name": "Cafe Rosa", "timezone": "Europe/Berlin", "language": "en",
    "tiers": {"basis": "visits", "window_days": 30,
              "levels": [{"name": "Bronze", "threshold": 0}, {"name": "Silver", "threshold": 3},
                         {"name": "Gold", "threshold": 6}]},
    "rewards": [{"id": "free-coffee", "name": "Free coffee", "cost": 5, "expires_after_days": 10}]}, "test")
TIERS = PROGRAM.tiers
RULES = MoreRules()


# -- pure --------------------------------------------------------------------------------------
@pytest.mark.parametrize("before, after, at, due", [
    ("Bronze", "Silver", NOW - DAY, "silver-2026-11-30"),
    ("Silver", "Gold", NOW - timedelta(hours=47), "gold-2026-11-29"),
    ("Silver", "Gold", NOW - timedelta(hours=49), None),  # older than tier_reached_valid (2 days)
    (None, "Bronze", NOW - DAY, None),                    # every member's first tier is not "reached"
    ("Gold", "Silver", NOW - DAY, None),                  # a step down is no news to celebrate
    ("Bronze", "Silver", NOW + DAY, None),                # a change in the future (a kiosk's clock)
])
def test_tier_reached(before, after, at, due):
    found = tier_reached("m1", TierChange(at, before, after), NOW, TIERS, RULES, BERLIN)
    assert (found.occasion if found else None) == due
    if found:
        assert (found.trigger, found.expires_at) == (TIER_REACHED, at + 2 * DAY)


def _window(*days_ago: float) -> Window:
    return window_of([(NOW - timedelta(days=d), Decimal(0)) for d in sorted(days_ago, reverse=True)], NOW, TIERS, 7)


@pytest.mark.parametrize("days_ago, lost_in_days", [
    ((27, 25, 5), 3),        # Silver on 3 visits: the visit 27 days ago leaves in 3 days
    ((27, 25, 5, 4), 5),     # 4 visits: one may leave; the second (25 days ago) takes Silver in 5 days
    ((22, 20, 5), None),     # the first leaves in 8 days: beyond the 7 days' warning
    ((27, 25), None),        # Bronze: nothing to lose
    ((29, 28, 27, 26, 25, 24), 1),  # Gold on 6 visits: lost when the first leaves, tomorrow
])
def test_tier_loss_warns_within_the_days_before(days_ago, lost_in_days):
    found = tier_loss("m1", _window(*days_ago), NOW, TIERS, RULES, BERLIN)
    if lost_in_days is None:
        assert found is None
        return
    moment = NOW + timedelta(days=lost_in_days)
    assert (found.trigger, found.expires_at) == (TIER_LOSS, moment)
    assert found.occasion.endswith(moment.astimezone(BERLIN).date().isoformat())


def test_a_visit_moves_the_loss_and_so_the_occasion():
    before = tier_loss("m1", _window(27, 25, 5), NOW, TIERS, RULES, BERLIN)
    after = tier_loss("m1", _window(27, 25, 5, 0.5), NOW, TIERS, RULES, BERLIN)
    assert before.occasion == "silver-2026-12-04" and after.occasion == "silver-2026-12-06"


def test_tier_loss_on_spend_counts_the_amounts_leaving():
    spend = PROGRAM.tiers.model_copy(update={"basis": "spend"})
    recent = [(NOW - timedelta(days=27), Decimal("50")), (NOW - timedelta(days=26), Decimal("1")),
              (NOW - DAY, Decimal("2"))]  # 53 spent: Gold (from 6); 3 once the 50 leaves in 3 days
    current, moment = loss_at(window_of(recent, NOW, spend, 7), spend)
    assert (current, moment) == (2, NOW + timedelta(days=3))


@pytest.mark.parametrize("since_days_ago, balance, due", [
    (8, 5, True),     # expires in 2 days: warned (3 days before)
    (7, 5, True),     # in exactly 3 days
    (6, 5, False),    # in 4 days
    (8, 4, False),    # no longer affordable: nothing expires
    (11, 5, False),   # past its day: the kiosk takes it at the next scan, no warning after the fact
])
def test_reward_expiry(since_days_ago, balance, due):
    since = NOW - timedelta(days=since_days_ago)
    found = reward_expiry("m1", [("free-coffee", since)], balance, NOW, PROGRAM.rewards, RULES)
    assert bool(found) == due
    if due:
        [d] = found
        assert (d.trigger, d.occasion, d.expires_at) == (REWARD_EXPIRY, reward_key("free-coffee", since),
                                                         since + timedelta(days=10))
        assert len(d.occasion + "@webhook") <= 32


# -- from the hub's ledger ---------------------------------------------------------------------
class Ledger:
    def __init__(self, tmp_path, url: str, sink) -> None:
        config = load_hub_config(None, env={}, hub__data_dir=tmp_path / "hub", hub__db_url=url,
                                 web__secure_cookies=False)
        self.hub, self.sink, self.seq = create_hub(config), sink, 0
        init_merchant(self.hub.engine, self.hub.keys, "cafe", "Cafe Rosa", "https://hub.example")
        documents.prepare(self.hub.engine, self.hub.data_dir, "cafe", PROGRAM)
        self.smtp = SmtpSection(host=sink.host, port=sink.port, starttls=False, sender="Stempel <s@hub.example>")

    def member(self, name: str, consent: bool = True) -> str:
        joined = NOW - timedelta(days=100)
        return enrol(self.hub.engine, self.hub.keys, "cafe", name, {
            "email": f"{name.lower()}@example.org", "created_at": joined, "consent_program_at": joined,
            "consent_marketing_at": joined if consent else None}).member

    def event(self, member: str, at: datetime, kind: str, delta: int = 0, rule: str | None = None,
              detail: dict | None = None) -> None:
        self.seq += 1
        with Session(self.hub.engine) as session, session.begin():
            session.add(HubEvent(event_id=str(uuid.uuid4()), merchant_id="cafe", kiosk_id="k1", ledger_id="",
                                 kiosk_seq=self.seq, hub_seq=self.seq, kind=kind, member_id=member, delta=delta,
                                 rule=rule or kind, detail=detail or {}, occurred_at=at, mono_ns=self.seq,
                                 boot_id="b", received_at=at))

    def worker(self, **settings) -> Worker:
        return Worker(self.hub.engine, self.hub.keys, secret_key(self.hub.data_dir), AutomationsSection(**settings),
                      SmtpChannel.from_config(self.smtp), self.smtp.sender, clock=lambda: NOW, worker_id="w1",
                      campaigns=CampaignStore(self.hub.engine))

    def rows(self) -> set[tuple[str, str, str]]:
        with Session(self.hub.engine) as session:
            return {(m.member_id, m.trigger, m.occasion) for m in session.scalars(select(Message))}


@pytest.fixture
def ledger(tmp_path, hub_url, smtp_sink):
    made = Ledger(tmp_path, hub_url, smtp_sink)
    yield made
    made.hub.close()


def _story(ledger: Ledger) -> dict[str, str]:
    bob, carla, dora, emil = (ledger.member(n, consent=(n != "Dora")) for n in ("Bob", "Carla", "Dora", "Emil"))
    for days in (27, 25, 5):
        ledger.event(bob, NOW - timedelta(days=days), "visit", detail={"amount": "4.50"})
    for days in (9, 4, 1):
        ledger.event(carla, NOW - timedelta(days=days), "visit", detail={"amount": "3.00"})
    ledger.event(carla, NOW - DAY, "tier_change", rule="tier:silver",
                 detail={"from": "Bronze", "to": "Silver", "reason": "3 visits in the last 30 days"})
    ledger.event(dora, NOW - timedelta(days=8), "earn", 5)      # affordable 8 days: expires in 2
    ledger.event(emil, NOW - timedelta(days=12), "earn", 5)
    ledger.event(emil, NOW - timedelta(days=11), "expire", -5, "reward-expiry:free-coffee")
    ledger.event(emil, NOW - timedelta(days=1), "earn", 5)      # affordable again since yesterday: 9 days left
    return {"bob": bob, "carla": carla, "dora": dora, "emil": emil}


def test_the_planner_finds_tier_and_expiry_messages_in_the_ledger(ledger):
    who = _story(ledger)
    rules = planner.rules_of(AutomationsSection(triggers=["tier_reached", "tier_loss", "reward_expiry"]))
    more = planner_more.rules_of(AutomationsSection())
    assert planner.plan(ledger.hub.engine, "cafe", NOW, rules, more=more) == 2
    assert ledger.rows() == {(who["bob"], TIER_LOSS, "silver-2026-12-04"),
                             (who["carla"], TIER_REACHED, "silver-2026-11-30")}
    # Dora gave no marketing consent: her reward's expiry is a service message, sent only where allowed
    service = planner_more.rules_of(AutomationsSection(transactional_without_consent=True))
    assert planner.plan(ledger.hub.engine, "cafe", NOW, rules, more=service) == 1
    assert (who["dora"], REWARD_EXPIRY, reward_key("free-coffee", NOW - timedelta(days=8))) in ledger.rows()
    assert planner.plan(ledger.hub.engine, "cafe", NOW + timedelta(hours=1), rules, more=service) == 0  # once


def test_the_messages_arrive_with_the_dates_from_the_members_card(ledger):
    who = _story(ledger)
    done = ledger.worker(transactional_without_consent=True).sweep()
    assert (done["planned"], done["sent"]) == (3, 3), done.done
    [loss] = ledger.sink.to("bob@example.org")
    assert loss["Subject"] == "Keep your Silver status, Bob"
    assert "runs out on 04 Dec 2026" in loss.get_body(("plain",)).get_content()
    [reached] = ledger.sink.to("carla@example.org")
    assert reached["Subject"] == "Welcome to Silver, Carla!"
    [expiry] = ledger.sink.to("dora@example.org")
    assert expiry["Subject"] == "Your Free coffee expires on 03 Dec 2026"
    text = expiry.get_body(("plain",)).get_content()
    assert "A service message about your card at Cafe Rosa" in text  # not "because you agreed to news"
    assert expiry["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert ledger.sink.to("emil@example.org") == []
    assert who["dora"]


def test_without_the_switch_a_member_without_consent_gets_no_expiry_warning(ledger):
    _story(ledger)
    done = ledger.worker().sweep()
    assert done["sent"] == 2 and ledger.sink.to("dora@example.org") == []
