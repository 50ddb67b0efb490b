"""Automated messages end to end: the hub's database (SQLite and PostgreSQL), a real SMTP server
process (aiosmtpd), an injected clock. Who commits what when is in cloud/automations/outbox.py;
these tests hold it to "never twice": two workers at once, and a crash after the SMTP server
took a message but before it was marked sent."""

from __future__ import annotations

import threading
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from smtpsink import smtp_sink  # noqa: F401  (fixture)
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.app import create_hub
from cloud.automations import outbox
from cloud.automations.mailer import SmtpChannel
from cloud.automations.worker import Worker
from cloud.config import AutomationsSection, SmtpSection, load_hub_config
from cloud.db import make_engine
from cloud.devbroker import free_port
from cloud.events import EventStore
from cloud.models import Member, Message
from cloud.passes import enrol, init_merchant
from cloud.web import create_app
from cloud.web.secret import secret_key
from kiosk.protocol import topics
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import EventBatch, WireEvent

UTC = timezone.utc
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # 11:00 in Berlin, the default programme's zone
SHOP, BASE = "cafe", "https://hub.example"


class Crash(BaseException):
    """The worker process dies (not an error anything in it may catch)."""


class Shop:
    """A hub with one merchant, members made through the join path, visits through ingest."""

    def __init__(self, tmp_path, url: str, sink) -> None:
        config = load_hub_config(None, env={}, hub__data_dir=tmp_path / "hub", hub__db_url=url,
                                 web__secure_cookies=False)
        self.hub = create_hub(config)
        self.url, self.sink = url, sink
        init_merchant(self.hub.engine, self.hub.keys, SHOP, "Cafe Rosa", BASE)
        self.clock = [NOW]
        self.smtp = SmtpSection(host=sink.host if sink else "127.0.0.1", port=sink.port if sink else free_port(),
                                starttls=False, sender="Stempel <stempel@hub.example>")

    def now(self) -> datetime:
        return self.clock[0]

    def advance(self, **delta) -> None:
        self.clock[0] += timedelta(**delta)

    def member(self, name: str, email: str | None = None, consent: bool = True, joined: datetime | None = None,
               **profile) -> str:
        joined = joined or NOW - timedelta(days=400)
        issued = enrol(self.hub.engine, self.hub.keys, SHOP, name, {
            "email": email, "created_at": joined, "consent_program_at": joined,
            "consent_marketing_at": joined if consent else None, **profile})
        return issued.member

    def visits(self, member: str, times: list[datetime]) -> None:
        events = [WireEvent(event_id=new_event_id(), kiosk_seq=i + 1, occurred_at=t, mono_ns=i, boot_id="b",
                            kind="visit", member=member, rule="visit") for i, t in enumerate(times)]
        store = EventStore(self.hub.engine, clock=lambda: max(times) + timedelta(minutes=1))
        stored = store.ingest(topics.events(SHOP, "k1"),
                              EventBatch(ledger_id=uuid.uuid4().hex, events=events).model_dump_json(by_alias=True)
                              .encode())
        assert stored.new == len(times), stored

    def worker(self, worker_id: str = "w1", channel=None, engine=None, batch: int = 100, **settings) -> Worker:
        return Worker(engine or self.hub.engine, self.hub.keys, secret_key(self.hub.data_dir),
                      AutomationsSection(**settings), channel or SmtpChannel.from_config(self.smtp),
                      self.smtp.sender, clock=self.now, worker_id=worker_id, batch=batch)

    def rows(self) -> list[Message]:
        with Session(self.hub.engine) as session:
            return list(session.scalars(select(Message).order_by(Message.id)))

    def statuses(self) -> dict[tuple[str, str], str]:
        return {(m.member_id, m.trigger): m.status for m in self.rows()}


@pytest.fixture
def shop(tmp_path, hub_url, smtp_sink):
    s = Shop(tmp_path, hub_url, smtp_sink)
    yield s
    s.hub.close()


def test_messages_arrive_in_the_members_language_with_one_click_unsubscribe(shop):
    anna = shop.member("Anna Berg", "anna@example.org", joined=NOW - timedelta(days=2))
    bernd = shop.member("Bernd", "bernd@example.org", language="de", birthday=date(1980, 12, 1))
    shop.member("Carla", "carla@example.org", consent=False, birthday=date(1980, 12, 1),
                joined=NOW - timedelta(days=1))
    shop.member("Emil", None, birthday=date(1980, 12, 1))  # consent but no address
    shop.visits(bernd, [NOW - timedelta(days=3, hours=h) for h in (0, 1, 2)])

    done = shop.worker().sweep()

    assert (done["planned"], done["sent"]) == (2, 2)
    assert len(shop.sink.messages()) == 2
    [welcome], [birthday] = shop.sink.to("anna@example.org"), shop.sink.to("bernd@example.org")
    assert welcome["Subject"] == "Welcome to Cafe Rosa, Anna!"
    assert welcome["From"] == "Cafe Rosa <stempel@hub.example>"
    assert birthday["Subject"] == "Alles Gute zum Geburtstag, Bernd!"
    assert birthday["Content-Language"] == "de"
    text = birthday.get_body(("plain",)).get_content()
    assert "Du hast 0 Stempel; noch 10 bis Free coffee." in text
    assert f"{BASE.upper()}/P/" in text  # the card link: the member's pass URL
    html = birthday.get_body(("html",)).get_content()
    assert "<p>Hallo Bernd,</p>" in html
    for message, member in ((welcome, anna), (birthday, bernd)):
        assert message["List-Unsubscribe"].startswith(f"<{BASE}/u/{member}.")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Unsubscribe"][1:-1] in message.get_body(("plain",)).get_content()
    assert set(shop.statuses().values()) == {"sent"}

    shop.advance(hours=1)
    again = shop.worker().sweep()
    assert (again["planned"], again["sent"]) == (0, 0) and len(shop.sink.messages()) == 2


def test_an_unsubscribe_click_stops_the_next_message(shop):
    anna = shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1), birthday=date(1990, 12, 5))
    shop.worker().sweep()
    [welcome] = shop.sink.messages()
    link = welcome["List-Unsubscribe"][1:-1].removeprefix(BASE)

    app = create_app(shop.hub, clock=shop.now, publisher=object())
    client = app.test_client()
    page = client.get(link)
    assert page.status_code == 200 and b"Unsubscribe</button>" in page.data
    assert client.get(link[:-2] + "xx").status_code == 404  # a forged token
    with Session(shop.hub.engine) as session:
        assert session.get(Member, anna).consent_marketing_at is not None  # looking is not unsubscribing
    done = client.post(link, data={"List-Unsubscribe": "One-Click"})  # what a mail provider sends (RFC 8058)
    assert done.status_code == 200
    with Session(shop.hub.engine) as session:
        assert session.get(Member, anna).consent_marketing_at is None

    shop.advance(days=4)  # her birthday
    assert shop.worker().sweep()["sent"] == 0
    assert len(shop.sink.messages()) == 1


def test_a_member_who_unsubscribes_after_the_plan_is_not_sent_the_planned_message(shop):
    anna = shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1))
    shop.clock[0] = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)  # 22:30 in Berlin: planned, held till morning
    assert (shop.worker().sweep()["planned"], len(shop.sink.messages())) == (1, 0)
    with shop.hub.engine.begin() as conn:  # consent withdrawn elsewhere (the owner's page), not by the link
        conn.execute(Member.__table__.update().where(Member.id == anna).values(consent_marketing_at=None))
    shop.advance(hours=10)
    assert shop.worker().sweep()["suppressed"] == 1
    assert shop.sink.messages() == [] and shop.statuses() == {(anna, "welcome"): "suppressed"}


def test_the_weekly_cap_holds_messages_back_until_a_slot_frees(shop):
    last_visit = NOW - timedelta(days=60)
    anna = shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1), birthday=date(1990, 12, 1))
    shop.visits(anna, [last_visit])  # one visit 60 days ago: lapsed by the 45-day fallback

    shop.worker(weekly_cap=2).sweep()
    assert [m["Subject"] for m in shop.sink.messages()] == ["Welcome to Cafe Rosa, Anna!", "Happy birthday, Anna!"]
    assert shop.statuses()[(anna, "winback")] == "pending"
    shop.advance(days=6, hours=23)
    assert shop.worker(weekly_cap=2).sweep()["sent"] == 0
    shop.advance(hours=1, minutes=1)  # a week after the first two
    assert shop.worker(weekly_cap=2).sweep()["sent"] == 1
    assert shop.sink.messages()[-1]["Subject"] == "We miss you at Cafe Rosa"
    assert set(shop.statuses().values()) == {"sent"}


def test_quiet_hours_hold_messages_until_the_morning_across_the_dst_change(shop):
    shop.member("Anna", "anna@example.org", joined=datetime(2026, 3, 27, 12, tzinfo=UTC))
    shop.clock[0] = datetime(2026, 3, 28, 20, 30, tzinfo=UTC)  # 21:30 CET, the night the clocks go forward
    assert shop.worker().sweep()["planned"] == 1
    shop.clock[0] = datetime(2026, 3, 29, 5, 59, tzinfo=UTC)  # 07:59 CEST: quiet still
    assert shop.worker().sweep()["sent"] == 0
    shop.clock[0] = datetime(2026, 3, 29, 6, 0, tzinfo=UTC)  # 08:00 CEST (it would be 07:00 in winter)
    assert shop.worker().sweep()["sent"] == 1


def test_winback_follows_each_members_own_rhythm_once_per_lapse(shop):
    weekly = shop.member("Wanda", "wanda@example.org")
    monthly = shop.member("Moritz", "moritz@example.org")
    rare = shop.member("Rita", "rita@example.org")
    last = NOW - timedelta(days=25)
    shop.visits(weekly, [last - timedelta(days=7 * k) for k in range(10)])
    shop.visits(monthly, [last - timedelta(days=30 * k) for k in range(5)])
    shop.visits(rare, [last, last - timedelta(days=7)])  # two visits: the fixed 45 days

    shop.worker().sweep()
    assert [m["To"] for m in shop.sink.messages()] == ["wanda@example.org"]
    shop.advance(days=21)  # 46 days since the last visits; Moritz' 90 are not up
    shop.worker().sweep()
    assert [m["To"] for m in shop.sink.messages()] == ["wanda@example.org", "rita@example.org"]

    shop.visits(weekly, [shop.now() - timedelta(days=1)])  # Wanda comes back ...
    shop.advance(days=40)  # ... and drifts away again (her usual interval, the lapse included, is ~11 days)
    shop.worker().sweep()
    wanda = [m.occasion for m in shop.rows() if m.member_id == weekly]
    assert len(wanda) == 2 and wanda[0] != wanda[1]
    assert [m["To"] for m in shop.sink.messages()].count("wanda@example.org") == 2
    assert "moritz@example.org" not in [m["To"] for m in shop.sink.messages()]


def test_two_workers_at_once_send_each_message_once(shop):
    members = [shop.member(f"M{i}", f"m{i}@example.org", joined=NOW - timedelta(days=1)) for i in range(12)]
    secret_key(shop.hub.data_dir)  # made once up front: secret.py's first write races a concurrent reader
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    both_hold_claims = threading.Barrier(2)  # each worker's first send waits for the other's: truly at once

    def run(name: str) -> None:
        engine = make_engine(shop.url)
        try:
            start.wait(30)
            channel = WaitAtFirstSend(SmtpChannel.from_config(shop.smtp), both_hold_claims)
            shop.worker(name, engine=engine, batch=2, channel=channel).sweep()
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run, args=(f"w{i}",)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    received = sorted(m["To"] for m in shop.sink.messages())
    assert received == sorted(f"m{i}@example.org" for i in range(12))
    assert len({m["Message-ID"] for m in shop.sink.messages()}) == 12
    assert {m.status for m in shop.rows()} == {"sent"} and len(shop.rows()) == len(members)
    assert {m.claimed_by for m in shop.rows()} == {"w1", "w2"}


class WaitAtFirstSend:
    """The real SMTP channel; the first send waits at *barrier* (each worker holds its claims then)."""

    def __init__(self, real: SmtpChannel, barrier: threading.Barrier) -> None:
        self.real, self.barrier, self.waited = real, barrier, False

    def connect(self) -> None:
        self.real.connect()

    def send(self, message) -> None:
        if not self.waited:
            self.waited = True
            self.barrier.wait(30)
        self.real.send(message)

    def close(self) -> None:
        self.real.close()


class CrashAfterSend:
    """The real SMTP channel, and the worker dies once right after the server took a message."""

    def __init__(self, real: SmtpChannel) -> None:
        self.real, self.crashed = real, False

    def connect(self) -> None:
        self.real.connect()

    def send(self, message) -> None:
        self.real.send(message)
        if not self.crashed:
            self.crashed = True
            raise Crash()

    def close(self) -> None:
        self.real.close()


def test_a_crash_between_sending_and_marking_never_sends_twice(shop):
    addresses = [f"{name}@example.org" for name in ("anna", "bert")]
    members = {shop.member(a.split("@")[0].title(), a, joined=NOW - timedelta(days=1)): a for a in addresses}
    with pytest.raises(Crash):
        shop.worker("w1", channel=CrashAfterSend(SmtpChannel.from_config(shop.smtp))).sweep()
    # the server has the first message; its row says sending, the other is claimed by the dead worker
    [first] = [m["To"] for m in shop.sink.messages()]
    crashed = next(m for m, address in members.items() if address == first)
    other = next(m for m in members if m != crashed)
    assert shop.statuses() == {(crashed, "welcome"): "sending", (other, "welcome"): "claimed"}

    shop.advance(minutes=1)  # restarted within the lease: nothing of w1's is touched
    assert shop.worker("w2").sweep()["sent"] == 0
    shop.advance(minutes=5)  # the lease (300 s) has run out
    done = shop.worker("w2").sweep()
    assert done["sent"] == 1
    assert [m["To"] for m in shop.sink.messages()] == [first, members[other]]
    assert shop.statuses() == {(crashed, "welcome"): "unknown", (other, "welcome"): "sent"}
    [unknown] = [m for m in shop.rows() if m.status == "unknown"]
    assert "not sent again" in unknown.last_error and unknown.attempts == 1
    shop.advance(days=1)
    shop.worker("w3").sweep()
    assert len(shop.sink.messages()) == 2


def test_an_unreachable_smtp_server_leaves_the_messages_pending(tmp_path, hub_url):
    shop = Shop(tmp_path, hub_url, None)  # nothing listens on the port
    try:
        anna = shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1))
        done = shop.worker().sweep()
        assert (done["planned"], done["deferred"]) == (1, 1)
        [row] = shop.rows()
        assert (row.member_id, row.status, row.attempts, row.claimed_by) == (anna, "pending", 0, None)
        assert outbox.counts(shop.hub.engine, SHOP) == {("welcome", "pending"): 1}
    finally:
        shop.hub.close()


def test_the_cli_runs_one_sweep(tmp_path, smtp_sink):
    from click.testing import CliRunner

    from cloud.cli.automations import automations
    from cloud.cli.context import HubContext

    config = tmp_path / "hub.toml"
    config.write_text(f"""[hub]\ndata_dir = "hub"\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_sink.port}\n"""
                      """starttls = false\nsender = "stempel@hub.example"\n"""
                      # the CLI runs on the real clock: no quiet hours here
                      """[automations]\nquiet_start = "00:00"\nquiet_end = "00:00"\n""")
    shop = Shop(tmp_path, f"sqlite:///{tmp_path / 'hub' / 'hub.sqlite3'}", smtp_sink)
    try:
        shop.member("Anna", "anna@example.org", joined=datetime.now(UTC) - timedelta(days=1))
    finally:
        shop.hub.close()
    done = CliRunner().invoke(automations, ["run", "--once"], obj=HubContext(str(config), None, None))
    assert done.exit_code == 0, done.output
    assert "1 planned" in done.output and "1 sent" in done.output
    assert [m["To"] for m in smtp_sink.messages()] == ["anna@example.org"]


def test_the_cli_names_the_missing_smtp_setting(tmp_path):
    from click.testing import CliRunner

    from cloud.cli.automations import automations
    from cloud.cli.context import HubContext

    config = tmp_path / "hub.toml"
    config.write_text('[hub]\ndata_dir = "hub"\n')
    done = CliRunner().invoke(automations, ["run", "--once"], obj=HubContext(str(config), None, None))
    assert done.exit_code == 2 and "set [smtp] host" in done.output
