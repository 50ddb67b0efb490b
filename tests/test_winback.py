"""The win-back's bonus and its control group (issue 11, items 1 and 6): the engine grants an
offer from the hub's ledger once, before its expiry; the hub holds a deterministic share out
(``control`` rows, never messaged, no offer); the lift compares the two in SQL (SQLite and
PostgreSQL) and the owner's Messages page says it in a sentence."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from smtpsink import smtp_sink  # noqa: F401  (fixture)
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.accounts import add_user
from cloud.app import create_hub
from cloud.automations import winback
from cloud.automations.mailer import SmtpChannel
from cloud.automations.triggers import WINBACK, Due, Rules
from cloud.automations.worker import Worker
from cloud.config import AutomationsSection, SmtpSection, load_hub_config
from cloud.events import EventStore
from cloud.metrics.lift import Arm, Lift, winback_lift
from cloud.metrics.queries import snapshot
from cloud.models import HubEvent, Member, Message
from cloud.passes import enrol, init_merchant
from cloud.web import create_app
from cloud.web.secret import secret_key
from kiosk.protocol import topics
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import EventBatch, LedgerEntry, WireEvent
from kiosk.rules import Entry, Program, Visit, evaluate, fold
from kiosk.rules.state import OFFER, WINBACK_RULE, Offer

UTC = timezone.utc
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # 11:00 in Berlin
SHOP, BASE, PASSWORD = "cafe", "https://hub.example", "correct horse battery"
PROGRAM = Program()


# -- the engine: an offer on the ledger, granted at the next credited visit --------------------
def offered(bonus: int = 3, expires: str = "2026-12-31", offer: str = "winback:2026-10-01") -> Entry:
    return Entry(OFFER, "anna", 0, "winback-offer", "", detail={"bonus": bonus, "expires": expires, "offer": offer})


def scan(state, visit_id: str, at: datetime):
    decision = evaluate(state, Visit(visit_id, "anna"), at, PROGRAM)
    return decision, [e for e in decision.entries if e.rule == WINBACK_RULE]


def test_an_offer_is_granted_once_at_the_next_credited_visit():
    state = fold("anna", [(offered(), NOW)], PROGRAM)
    assert state.offer == Offer("winback:2026-10-01", 3, date(2026, 12, 31))
    first, granted = scan(state, "v1", NOW + timedelta(days=3))
    assert [(e.kind, e.delta, dict(e.detail)) for e in granted] == [("bonus", 3, {"offer": "winback:2026-10-01"})]
    assert first.feedback.balance == 1 + 3 and first.feedback.earned == 4
    assert first.state.offer is None
    too_soon, none = scan(first.state, "v2", NOW + timedelta(days=3, minutes=5))
    assert too_soon.feedback.outcome == "already_stamped" and none == []  # no credit, no bonus
    later, none = scan(first.state, "v3", NOW + timedelta(days=4))
    assert none == [] and later.feedback.balance == 5
    # the fold of the written ledger closes the offer the same way (what every other kiosk sees)
    refolded = fold("anna", [(offered(), NOW)] + [(e, NOW + timedelta(days=3)) for e in first.entries], PROGRAM)
    assert refolded.offer is None and refolded.balance == 4


@pytest.mark.parametrize("visit_at, expected", [
    (datetime(2026, 12, 31, 22, 59, tzinfo=UTC), 1),  # 23:59 in Berlin on the last day
    (datetime(2026, 12, 31, 23, 0, tzinfo=UTC), 0),   # 00:00 on 1 January: expired
])
def test_an_offer_expires_after_its_last_local_day(visit_at, expected):
    _, granted = scan(fold("anna", [(offered(), NOW)], PROGRAM), "v1", visit_at)
    assert len(granted) == expected


def test_a_newer_offer_stays_open_when_the_older_one_is_granted():
    old, new = offered(offer="winback:2026-09-01"), offered(bonus=5, offer="winback:2026-11-01")
    grant_of_old = Entry("bonus", "anna", 3, WINBACK_RULE, "v1", detail={"offer": "winback:2026-09-01"})
    state = fold("anna", [(old, NOW), (new, NOW + timedelta(hours=1)), (grant_of_old, NOW + timedelta(hours=2))],
                 PROGRAM)
    assert state.offer is not None and (state.offer.id, state.offer.bonus) == ("winback:2026-11-01", 5)


def ledger_entry(**changes) -> LedgerEntry:
    doc = dict(event_id=new_event_id(), kiosk_seq=1, occurred_at=NOW, mono_ns=0, boot_id="hub", kind=OFFER,
               member="anna", rule="winback-offer", detail={"bonus": 3, "expires": "2026-12-31", "offer": "winback:x"},
               kiosk="hub", hub_seq=1)
    return LedgerEntry(**{**doc, **changes})


@pytest.mark.parametrize("detail", [{"bonus": 0, "expires": "2026-12-31", "offer": "x"},
                                    {"bonus": 3, "expires": "31.12.2026", "offer": "x"},
                                    {"bonus": 3, "expires": "2026-12-31"},
                                    {"bonus": "3", "expires": "2026-12-31", "offer": "x"},
                                    {"bonus": 3, "expires": "2026-12-31", "offer": "x", "email": "a@b.c"}])
def test_an_offer_that_is_not_what_the_engine_reads_is_refused(detail):
    ledger_entry()  # the well-formed one passes
    with pytest.raises(ValueError):
        ledger_entry(detail=detail)


def test_a_winback_bonus_names_its_offer():
    WireEvent(event_id=new_event_id(), kiosk_seq=1, occurred_at=NOW, mono_ns=0, boot_id="b", kind="bonus",
              member="anna", delta=3, rule=WINBACK_RULE, detail={"offer": "winback:x", "cause": "v1"})
    with pytest.raises(ValueError, match="names its offer"):
        WireEvent(event_id=new_event_id(), kiosk_seq=1, occurred_at=NOW, mono_ns=0, boot_id="b", kind="bonus",
                  member="anna", delta=3, rule=WINBACK_RULE, detail={"cause": "v1"})


# -- the control group: deterministic, about the configured share ----------------------------
def test_the_control_group_is_deterministic_and_about_its_share():
    ids = [f"m{i:05d}" for i in range(4000)]
    held = [m for m in ids if winback.held_out(m, WINBACK, "2026-10-01", 0.1)]
    assert held == [m for m in ids if winback.held_out(m, WINBACK, "2026-10-01", 0.1)]
    assert 0.08 < len(held) / len(ids) < 0.12
    assert not any(winback.held_out(m, WINBACK, "2026-10-01", 0.0) for m in ids)
    other_lapse = {m for m in ids if winback.held_out(m, WINBACK, "2026-11-05", 0.1)}
    assert other_lapse != set(held)  # held out of one lapse says nothing about the next
    dues = [Due(m, WINBACK, "2026-10-01", NOW) for m in ids[:50]] + [Due("x", "welcome", "join", NOW)]
    send, out = winback.split(dues, 0.5)
    assert all(d.trigger == WINBACK for d in out) and Due("x", "welcome", "join", NOW) in send


# -- the lift's words ---------------------------------------------------------------------------
@pytest.mark.parametrize("lift, words", [
    (Lift(Arm(0, 0), Arm(0, 0), 3), "No win-back has had its 14 days yet (3 still within their 14 days)"),
    (Lift(Arm(10, 4), Arm(0, 0)), "Of 10 members sent a win-back, 4 came back within 14 days (40 %). No one was "
                                  "held out"),
    (Lift(Arm(40, 12), Arm(5, 1)), "Of 40 members sent a win-back, 12 came back within 14 days (30 %); of 5 members "
                                   "held out without a message, 1 came back (20 %): 10 percentage points more came "
                                   "back with the message."),
    (Lift(Arm(4, 1), Arm(4, 1)), "the message made no difference."),
])
def test_the_lift_in_a_plain_sentence(lift, words):
    assert words in lift.sentence()


# -- the hub: offers on the ledger, control rows, the lift in SQL -------------------------------
class Shop:
    """A hub with one merchant (SQLite or PostgreSQL), members, visits through ingest, a clock."""

    def __init__(self, tmp_path, url: str, sink) -> None:
        config = load_hub_config(None, env={}, hub__data_dir=tmp_path / "hub", hub__db_url=url,
                                 web__secure_cookies=False)
        self.hub = create_hub(config)
        init_merchant(self.hub.engine, self.hub.keys, SHOP, "Cafe Rosa", BASE)
        self.clock = [NOW]
        self.smtp = SmtpSection(host=sink.host, port=sink.port, starttls=False, sender="Stempel <s@hub.example>")
        self.sink = sink

    def now(self) -> datetime:
        return self.clock[0]

    def member(self, name: str, email: str | None = None) -> str:
        joined = NOW - timedelta(days=400)
        issued = enrol(self.hub.engine, self.hub.keys, SHOP, name, {
            "email": email or f"{name.lower()}@example.org", "created_at": joined, "consent_program_at": joined,
            "consent_marketing_at": joined})
        return issued.member

    def visits(self, member: str, times: list[datetime]) -> None:
        events = [WireEvent(event_id=new_event_id(), kiosk_seq=i + 1, occurred_at=t, mono_ns=i, boot_id="b",
                            kind="visit", member=member, rule="visit") for i, t in enumerate(times)]
        store = EventStore(self.hub.engine, clock=lambda: max(times) + timedelta(minutes=1))
        batch = EventBatch(ledger_id=uuid.uuid4().hex, events=events).model_dump_json(by_alias=True).encode()
        assert store.ingest(topics.events(SHOP, "k1"), batch).new == len(times)

    def settings(self, **changes) -> AutomationsSection:
        return AutomationsSection(**{"triggers": ["winback"], "winback_bonus": 3, "control_share": 0.5, **changes})

    def sweep(self, **settings):
        worker = Worker(self.hub.engine, self.hub.keys, secret_key(self.hub.data_dir), self.settings(**settings),
                        SmtpChannel.from_config(self.smtp), self.smtp.sender, clock=self.now, worker_id="w1")
        return worker.sweep()

    def rows(self) -> list[Message]:
        with Session(self.hub.engine) as session:
            return list(session.scalars(select(Message).order_by(Message.id)))

    def offers(self) -> list[HubEvent]:
        with Session(self.hub.engine) as session:
            return list(session.scalars(select(HubEvent).where(HubEvent.kind == OFFER).order_by(HubEvent.hub_seq)))

    def lift(self) -> Lift:
        with snapshot(self.hub.engine) as conn:
            return winback_lift(conn, SHOP, self.now())


@pytest.fixture
def shop(tmp_path, hub_url, smtp_sink, monkeypatch):
    ids = iter(f"member-{i:04d}" for i in range(1000))  # fixed ids: the control group's hash is then fixed too
    monkeypatch.setattr("cloud.passes.new_member_id", lambda: next(ids))
    s = Shop(tmp_path, hub_url, smtp_sink)
    yield s
    s.hub.close()


def lapsed(shop: Shop, n: int) -> list[str]:
    """*n* weekly regulars whose last visit was 25 days ago (lapsed after 21)."""
    last = NOW - timedelta(days=25)
    members = [shop.member(f"M{i}") for i in range(n)]
    for m in members:
        shop.visits(m, [last - timedelta(days=7 * k) for k in range(4)])
    return members


def test_held_out_members_get_a_durable_control_row_and_neither_message_nor_offer(shop):
    members = lapsed(shop, 8)
    lapse = (NOW - timedelta(days=25)).date().isoformat()
    control = {m for m in members if winback.held_out(m, WINBACK, lapse, 0.5)}
    assert 0 < len(control) < len(members)  # the hash splits these eight

    done = shop.sweep()
    messaged = set(members) - control
    assert done["sent"] == len(messaged)
    statuses = {(m.member_id, m.status) for m in shop.rows()}
    assert statuses == {(m, "control") for m in control} | {(m, "sent") for m in messaged}
    assert {e.member_id for e in shop.offers()} == messaged
    received = {m["To"] for m in shop.sink.messages()}
    assert len(received) == len(messaged)
    with Session(shop.hub.engine) as session:
        emails = {session.get(Member, m).email for m in control}
    assert not emails & received

    for days in (1, 20, 40):  # later sweeps: the decision stands, the control rows are never claimed or retired
        shop.clock[0] = NOW + timedelta(days=days)
        again = shop.sweep()
        assert (again["planned"], again["sent"]) == (0, 0)
    assert {(m.member_id, m.status) for m in shop.rows()} == statuses
    assert len(shop.offers()) == len(messaged) and len(shop.sink.messages()) == len(messaged)


def test_the_email_names_the_bonus_and_the_offer_is_on_the_ledger_once(shop):
    [anna] = lapsed(shop, 1)
    lapse = (NOW - timedelta(days=25)).date().isoformat()
    due = Due(anna, WINBACK, lapse, NOW + timedelta(days=14))
    rules = Rules(winback_bonus=3, winback_bonus_days=30)
    # a worker that stored the offer and died before recording the message: the next sweep stores it again
    winback.put_offers(shop.hub.engine, SHOP, [due], NOW, rules, Program().zone)

    shop.sweep(control_share=0.0)

    [offer] = shop.offers()
    assert (offer.kiosk_id, offer.rule, offer.delta) == ("hub", "winback-offer", 0)
    assert offer.detail == {"bonus": 3, "expires": "2026-12-31", "offer": f"winback:{lapse}"}
    [mail] = shop.sink.messages()
    text = mail.get_body(("plain",)).get_content()
    assert "Come back by 31 Dec 2026 and get 3 extra stamps at your next visit." in text
    assert [m.status for m in shop.rows()] == ["sent"]


def test_no_offer_without_a_bonus_and_the_plain_message_then(shop):
    [anna] = lapsed(shop, 1)
    shop.sweep(winback_bonus=0, control_share=0.0)
    assert shop.offers() == []
    text = shop.sink.messages()[0].get_body(("plain",)).get_content()
    assert "We would love to see you again." in text and "extra" not in text


def test_the_lift_counts_returns_within_14_days_against_the_control_group(shop):
    members = lapsed(shop, 10)
    shop.sweep()
    rows = shop.rows()
    sent = sorted(m.member_id for m in rows if m.status == "sent")
    held = sorted(m.member_id for m in rows if m.status == "control")
    assert len(sent) >= 2 and len(held) >= 2, (sent, held)  # as the hash splits these ten ids

    assert shop.lift() == Lift(Arm(0, 0), Arm(0, 0), open=len(members))  # nobody has had 14 days yet
    shop.visits(sent[0], [NOW + timedelta(days=3)])                 # back within 14 days
    shop.visits(sent[1], [NOW + timedelta(days=20)])                # back, but too late to count
    shop.visits(held[0], [NOW + timedelta(days=13, hours=23)])       # the control group comes back too
    shop.visits(held[1], [NOW - timedelta(hours=1)])                # a visit before the decision is no return
    shop.clock[0] = NOW + timedelta(days=14, minutes=1)

    lift = shop.lift()
    assert lift == Lift(Arm(len(sent), 1), Arm(len(held), 1), open=0)
    assert lift.difference == pytest.approx(1 / len(sent) - 1 / len(held))

    with shop.hub.engine.begin() as conn:  # a bounce reported later: still a member the shop messaged
        conn.execute(update(Message).where(Message.member_id == sent[1], Message.trigger == "winback")
                     .values(status="bounced"))
    assert shop.lift() == lift


def test_the_messages_page_shows_the_lift(shop):
    lapsed(shop, 6)
    shop.sweep()
    add_user(shop.hub.engine, SHOP, "owner@cafe", "owner", PASSWORD)
    shop.clock[0] = NOW + timedelta(days=15)
    app = create_app(shop.hub, clock=shop.now, publisher=object())
    client = app.test_client()
    form = client.get("/owner/login").get_data(as_text=True)
    token = form.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post("/owner/login", data={"csrf_token": token, "login": "owner@cafe",
                                             "password": PASSWORD}).status_code == 302
    page = client.get("/owner/messages").get_data(as_text=True)
    lift = shop.lift()
    assert lift.messaged.members + lift.control.members == 6
    assert lift.sentence().replace("'", "&#39;") in page
    assert 'id="lift"' in page and "Held out (control)" in page
