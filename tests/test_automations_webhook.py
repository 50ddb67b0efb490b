"""The signed webhook channel and the "almost there" trigger (issue 11, items 1–2).

The webhook tests talk to a real HTTP receiver (``http.server`` in a thread on a free port) that
checks every request exactly as cloud/automations/webhook.py tells a receiver to: the raw body,
the timestamp no more than 5 minutes from its clock, the HMAC in constant time. The hub's clock
and the receiver's are the same injected clock, so backoffs are crossed without sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from smtpsink import smtp_sink  # noqa: F401  (fixture)
from test_automations import NOW, SHOP, Shop

from cloud.automations import outbox
from cloud.automations.mailer import SmtpChannel
from cloud.automations.triggers import ALMOST, Candidate, Goal, Rules, almost_there, due
from cloud.automations.webhook import SCHEMA, WebhookChannel
from cloud.automations.worker import Worker
from cloud.config import AutomationsSection, WebhookSection, load_hub_config
from cloud.events import EventStore
from cloud.metrics.activity import utc
from cloud.web.secret import secret_key
from kiosk.common.errors import ConfigError
from kiosk.protocol import topics
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import EventBatch, WireEvent

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
SECRET = "4f1c0b5e9a7d3c2b8e6f1a0d9c8b7a6e5f4d3c2b1a0f9e8d"  # shared by the hub and the receiver


@dataclass
class Received:
    status: int
    headers: dict[str, str]
    body: bytes
    rejected: str | None  # why the receiver refused it, None if the signature held

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """A shop's CRM: verifies each request as the webhook module's docstring says, then answers
    the next status of *answers* (the last one repeats)."""

    def __init__(self, secret: str, clock, answers: list[int]) -> None:
        self.secret, self.clock, self.answers = secret.encode(), clock, list(answers)
        self.received: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                why = receiver.verify(self.headers.get("X-Stempel-Timestamp", ""),
                                      self.headers.get("X-Stempel-Signature", ""), body)
                status = 401 if why else (receiver.answers.pop(0) if len(receiver.answers) > 1
                                          else receiver.answers[0])
                receiver.received.append(Received(status, dict(self.headers), body, why))
                answer = (why or {200: "ok", 400: "unknown member", 500: "database down"}.get(status, "")).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass  # no stderr noise in the test output

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/stempel"

    def verify(self, timestamp: str, signature: str, raw_body: bytes) -> str | None:
        """The receiver's check, step by step as the docstring tells it; why it fails, or None."""
        if not timestamp.isdigit() or abs(self.clock().timestamp() - int(timestamp)) > 300:
            return "stale or missing timestamp"
        mac = hmac.new(self.secret, timestamp.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest("sha256=" + mac, signature):
            return "bad signature"
        return None

    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.rejected is None]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class Ledger:
    """Visits that earn a stamp each, and redemptions, ingested as a kiosk sends them."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    def _ingest(self, events: list[WireEvent]) -> None:
        last = max(e.occurred_at for e in events)
        stored = EventStore(self.shop.hub.engine, clock=lambda: last + timedelta(minutes=1)).ingest(
            topics.events(SHOP, "k1"),
            EventBatch(ledger_id=uuid.uuid4().hex, events=events).model_dump_json(by_alias=True).encode())
        assert stored.new == len(events), stored

    def visits(self, member: str, times: list[datetime]) -> None:
        events = []
        for t in times:
            for kind, delta in (("visit", 0), ("earn", 1)):
                events.append(WireEvent(event_id=new_event_id(), kiosk_seq=len(events) + 1, occurred_at=t,
                                        mono_ns=len(events), boot_id="b", kind=kind, member=member, delta=delta,
                                        rule="visit"))
        self._ingest(events)

    def redeem(self, member: str, at: datetime, cost: int = 10) -> None:
        self._ingest([WireEvent(event_id=new_event_id(), kiosk_seq=1, occurred_at=at, mono_ns=0, boot_id="b",
                                kind="redeem", member=member, delta=-cost, reward="free-coffee")])


@pytest.fixture
def shop(tmp_path, hub_url):
    s = Shop(tmp_path, hub_url, None)
    yield s
    s.hub.close()


@pytest.fixture
def receiver(shop):
    r = Receiver(SECRET, shop.now, [200])
    yield r
    r.stop()


def hook_for(shop: Shop, receiver: Receiver, secret: str = SECRET) -> WebhookChannel:
    secret_file = shop.hub.data_dir / "webhook-secret"
    secret_file.write_text(secret + "\n")
    return WebhookChannel.from_config(WebhookSection(url=receiver.url, secret_file=secret_file, timeout=10),
                                      clock=shop.now)


def worker(shop: Shop, hook: WebhookChannel | None, channels=("webhook",), **settings) -> Worker:
    email = SmtpChannel.from_config(shop.smtp) if "email" in channels else None
    return Worker(shop.hub.engine, shop.hub.keys, secret_key(shop.hub.data_dir),
                  AutomationsSection(channels=list(channels), **settings), email, shop.smtp.sender,
                  clock=shop.now, worker_id="w1", webhook=hook)


def the_row(shop: Shop):
    [row] = shop.rows()
    return row


# --- the webhook ------------------------------------------------------------------------------


def test_a_signed_message_is_retried_with_backoff_after_two_500s(shop, receiver):
    receiver.answers = [500, 500, 200]
    anna = shop.member("Anna Berg", None, language="de", joined=NOW - timedelta(days=1))  # no e-mail needed
    hook = hook_for(shop, receiver)

    first = worker(shop, hook).sweep()
    assert (first["planned"], first["retry"]) == (1, 1)
    row = the_row(shop)
    assert (row.status, row.attempts, row.channel, row.occasion) == ("pending", 1, "webhook", "join@webhook")
    assert "500" in row.last_error and "database down" in row.last_error
    assert utc(row.not_before) == NOW + timedelta(minutes=10)

    shop.advance(minutes=9)  # the backoff has not run out: nothing is sent
    assert worker(shop, hook).sweep()["retry"] == 0 and len(receiver.received) == 1
    shop.advance(minutes=1)
    assert worker(shop, hook).sweep()["retry"] == 1  # 500 again: the wait doubles
    assert utc(the_row(shop).not_before) == NOW + timedelta(minutes=30)
    shop.advance(minutes=19)
    assert worker(shop, hook).sweep()["sent"] == 0
    shop.advance(minutes=1)
    assert worker(shop, hook).sweep()["sent"] == 1

    row = the_row(shop)
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)
    assert [r.status for r in receiver.received] == [500, 500, 200]
    assert all(r.rejected is None for r in receiver.received)  # every attempt verified
    assert len({r.headers["X-Stempel-Timestamp"] for r in receiver.received}) == 3  # signed anew each time
    body = receiver.received[-1].json
    assert {r.json["id"] for r in receiver.received} == {body["id"]}  # the receiver can drop a repeat
    assert body["schema"] == SCHEMA and body["merchant"] == SHOP and body["shop"] == "Cafe Rosa"
    assert (body["member_id"], body["first_name"], body["language"]) == (anna, "Anna", "de")
    assert (body["trigger"], body["occasion"]) == ("welcome", "join")
    assert body["subject"] == "Willkommen bei Cafe Rosa, Anna!"
    assert body["unsubscribe_url"].startswith(f"https://hub.example/u/{anna}.")
    assert body["unsubscribe_url"] in body["text"]
    assert body["card_url"].startswith("HTTPS://HUB.EXAMPLE/P/")  # the member's pass URL

    shop.advance(days=1)
    assert worker(shop, hook).sweep()["planned"] == 0 and len(receiver.received) == 3


def test_a_400_fails_at_once_with_the_status_and_reason_and_is_counted(shop, receiver):
    receiver.answers = [400]
    anna = shop.member("Anna", None, joined=NOW - timedelta(days=1))
    hook = hook_for(shop, receiver)

    assert worker(shop, hook).sweep()["failed"] == 1
    row = the_row(shop)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error == "the webhook answered 400 Bad Request: unknown member"
    assert outbox.counts(shop.hub.engine, SHOP) == {("welcome", "failed"): 1}
    assert outbox.channel_counts(shop.hub.engine, SHOP) == {("webhook", "failed"): 1}
    [failure] = outbox.failures(shop.hub.engine, SHOP)
    assert (failure.member_id, failure.channel, failure.occasion, failure.reason) == (
        anna, "webhook", "join", row.last_error)
    shop.advance(hours=3)
    worker(shop, hook).sweep()
    assert len(receiver.received) == 1  # never tried again


def test_5xx_and_429_give_up_after_the_last_attempt(shop, receiver):
    receiver.answers = [429, 503]
    shop.member("Anna", None, joined=NOW - timedelta(days=1))
    hook = hook_for(shop, receiver)
    for _ in range(outbox.MAX_ATTEMPTS):
        worker(shop, hook).sweep()
        shop.advance(minutes=90)  # past any backoff (10, 20, 40, 80 minutes), before the quiet hours
    row = the_row(shop)
    assert [r.status for r in receiver.received] == [429] + [503] * (outbox.MAX_ATTEMPTS - 1)
    assert (row.status, row.attempts) == ("failed", outbox.MAX_ATTEMPTS)
    assert row.last_error.startswith(f"gave up after {outbox.MAX_ATTEMPTS} attempts: the webhook answered 503")
    worker(shop, hook).sweep()
    assert len(receiver.received) == outbox.MAX_ATTEMPTS


def test_an_unreachable_receiver_is_retried(shop, receiver):
    shop.member("Anna", None, joined=NOW - timedelta(days=1))
    hook = hook_for(shop, receiver)
    receiver.stop()  # nothing listens on the port any more
    assert worker(shop, hook).sweep()["retry"] == 1
    row = the_row(shop)
    assert (row.status, row.attempts) == ("pending", 1) and "cannot reach the webhook at 127.0.0.1" in row.last_error


def test_the_receiver_refuses_a_wrong_secret_and_a_replay(shop, receiver):
    shop.member("Anna", None, joined=NOW - timedelta(days=1))
    wrong = hook_for(shop, receiver, secret="x" * 48)
    assert worker(shop, wrong).sweep()["failed"] == 1
    assert [r.rejected for r in receiver.received] == ["bad signature"]
    assert the_row(shop).last_error.startswith("the webhook answered 401")

    shop.member("Bert", None, joined=NOW - timedelta(days=1))
    assert worker(shop, hook_for(shop, receiver)).sweep()["sent"] == 1
    genuine = receiver.received[-1]
    assert genuine.rejected is None
    shop.advance(minutes=5, seconds=1)  # the same request, recorded and replayed later
    replay = urllib.request.Request(receiver.url, data=genuine.body, method="POST", headers={
        k: genuine.headers[k] for k in ("Content-Type", "X-Stempel-Timestamp", "X-Stempel-Signature")})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(replay, timeout=10)
    refused.value.close()
    assert refused.value.code == 401 and receiver.received[-1].rejected == "stale or missing timestamp"


def test_each_channel_gets_its_own_row_and_consent_holds_for_both(tmp_path, hub_url, smtp_sink):
    shop = Shop(tmp_path, hub_url, smtp_sink)
    receiver = Receiver(SECRET, shop.now, [200])
    try:
        anna = shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1))
        bert = shop.member("Bert", None, joined=NOW - timedelta(days=1))
        shop.member("Carla", "carla@example.org", consent=False, joined=NOW - timedelta(days=1))
        run = worker(shop, hook_for(shop, receiver), channels=("email", "webhook"))
        done = run.sweep()
        assert (done["planned"], done["sent"]) == (3, 3)
        assert sorted((m.member_id, m.occasion, m.channel, m.status) for m in shop.rows()) == sorted([
            (anna, "join", "email", "sent"), (anna, "join@webhook", "webhook", "sent"),
            (bert, "join@webhook", "webhook", "sent")])
        assert [m["To"] for m in smtp_sink.messages()] == ["anna@example.org"]
        assert sorted(r.json["member_id"] for r in receiver.accepted()) == sorted([anna, bert])
        assert outbox.channel_counts(shop.hub.engine, SHOP) == {("email", "sent"): 1, ("webhook", "sent"): 2}
        shop.advance(hours=1)
        assert worker(shop, hook_for(shop, receiver), channels=("email", "webhook")).sweep()["planned"] == 0
    finally:
        receiver.stop()
        shop.hub.close()


def test_the_weekly_cap_holds_for_the_webhook_too(shop, receiver):
    shop.member("Anna", None, joined=NOW - timedelta(days=1), birthday=date(1990, 12, 1))
    done = worker(shop, hook_for(shop, receiver), weekly_cap=1).sweep()
    assert (done["planned"], done["sent"]) == (2, 1)
    assert sorted(shop.statuses().values()) == ["pending", "sent"] and len(receiver.accepted()) == 1


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("url, ok", [
    ("https://crm.example.net/hook", True),
    ("http://127.0.0.1:8000/hook", True),
    ("http://crm.example.net/hook", False),   # members' names in clear text
    ("http://localhost:8000/hook", False),
    ("ftp://crm.example.net/", False),
])
def test_the_webhook_url_must_be_https(tmp_path, url, ok):
    config = tmp_path / "hub.toml"
    config.write_text(f'[webhook]\nurl = "{url}"\nsecret_file = "secret"\n')
    if ok:
        loaded = load_hub_config(config, env={})
        assert loaded.webhook.url == url and loaded.webhook.secret_file == tmp_path / "secret"
    else:
        with pytest.raises(ConfigError, match="https://"):
            load_hub_config(config, env={})


def test_the_webhook_secret_names_the_fix(tmp_path):
    url = "https://crm.example.net/hook"
    with pytest.raises(ConfigError, match="set \\[webhook\\] secret_file"):
        WebhookChannel.from_config(WebhookSection(url=url))
    with pytest.raises(ConfigError, match="No such file"):
        WebhookChannel.from_config(WebhookSection(url=url, secret_file=tmp_path / "missing"))
    short = tmp_path / "short"
    short.write_text("hunter2\n")
    with pytest.raises(ConfigError, match="at least 32"):
        WebhookChannel.from_config(WebhookSection(url=url, secret_file=short))


def test_a_channel_listed_but_not_set_up_is_a_config_error(shop):
    with pytest.raises(ConfigError, match="channels lists webhook"):
        worker(shop, None, channels=("webhook",))


def test_the_cli_shows_failures_with_their_reason(tmp_path, receiver, shop):
    from click.testing import CliRunner

    from cloud.cli.automations import automations
    from cloud.cli.context import HubContext

    receiver.answers = [400]
    shop.member("Anna", None, joined=NOW - timedelta(days=1))
    worker(shop, hook_for(shop, receiver)).sweep()
    config = tmp_path / "hub.toml"
    config.write_text(f'[hub]\ndata_dir = "{shop.hub.data_dir}"\ndb_url = "{shop.url}"\n')
    ctx = HubContext(str(config), None, None)
    try:
        done = CliRunner().invoke(automations, ["status", SHOP], obj=ctx)
    finally:
        if ctx.hub is not None:
            ctx.hub.close()  # its engine: no connection left for the garbage collector
    assert done.exit_code == 0, done.output
    assert "webhook  failed     1" in done.output
    assert "webhook welcome" in done.output and "400 Bad Request: unknown member" in done.output


# --- "almost there" ---------------------------------------------------------------------------

VISIT = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)
STAMPS, POINTS = Goal(10, "stamps"), Goal(200, "points")


@pytest.mark.parametrize("goal, balance, after, expected", [
    (STAMPS, 8, timedelta(hours=1), "cycle-3"),   # 2 to go
    (STAMPS, 9, timedelta(hours=1), "cycle-3"),
    (STAMPS, 7, timedelta(hours=1), None),        # 3 to go: not yet
    (STAMPS, 10, timedelta(hours=1), None),       # can afford it: the kiosk offers it
    (STAMPS, 12, timedelta(hours=1), None),
    (STAMPS, 8, timedelta(days=2), None),         # too long after the visit
    (POINTS, 180, timedelta(hours=1), "cycle-3"),  # 10 % of 200
    (POINTS, 179, timedelta(hours=1), None),
    (Goal(5, "points"), 4, timedelta(hours=1), "cycle-3"),  # 10 % of 5 rounds to 0: at least 1 point
])
def test_almost_there_within_x_of_the_cheapest_reward_after_a_visit(goal, balance, after, expected):
    member = Candidate("m1", VISIT - timedelta(days=90), None, 12, VISIT - timedelta(days=80), VISIT, balance, 3)
    found = almost_there(member, VISIT + after, Rules(), goal)
    assert (found.occasion if found else None) == expected
    if found:
        assert (found.trigger, found.expires_at) == (ALMOST, VISIT + timedelta(days=2))


def test_almost_there_needs_a_visit_and_the_trigger_on():
    never = Candidate("m1", VISIT - timedelta(days=1), None, balance=8)  # a bonus, no visit
    assert almost_there(never, VISIT, Rules(), STAMPS) is None
    member = Candidate("m1", VISIT - timedelta(days=90), None, 5, VISIT - timedelta(days=80), VISIT, 8, 0)
    assert [d.trigger for d in due(member, VISIT, BERLIN, Rules(), STAMPS)] == [ALMOST]
    assert due(member, VISIT, BERLIN, Rules(triggers=frozenset({"welcome"})), STAMPS) == []
    assert due(member, VISIT, BERLIN, Rules()) == []  # no programme goal: not asked


def test_almost_there_once_per_reward_cycle_and_only_with_consent(shop, receiver):
    ledger = Ledger(shop)
    anna = shop.member("Anna Berg", None)
    carla = shop.member("Carla", None, consent=False)
    hook = hook_for(shop, receiver)
    only = {"triggers": [ALMOST]}  # her old visits would make her a win-back too
    start = NOW - timedelta(days=30)
    ledger.visits(anna, [start + timedelta(days=k) for k in range(7)])  # 7 stamps: 3 to go
    ledger.visits(carla, [start + timedelta(days=k) for k in range(8)])
    assert worker(shop, hook, **only).sweep()["planned"] == 0

    ledger.visits(anna, [NOW - timedelta(hours=2)])  # the 8th stamp: 2 to go
    ledger.visits(carla, [NOW - timedelta(hours=2)])  # 9 stamps, but no consent to marketing
    assert worker(shop, hook, **only).sweep()["sent"] == 1
    [first] = receiver.accepted()
    assert (first.json["member_id"], first.json["trigger"], first.json["occasion"]) == (anna, ALMOST, "cycle-0")
    assert first.json["subject"] == "Only 2 more to Free coffee, Anna!"
    assert "You have 8 stamps now: only 2 more and Free coffee is yours." in first.json["text"]

    shop.advance(days=1)
    ledger.visits(anna, [shop.now() - timedelta(hours=1)])  # 9 stamps: still close, the same cycle
    assert worker(shop, hook, **only).sweep()["planned"] == 0

    shop.advance(days=1)
    ledger.visits(anna, [shop.now() - timedelta(hours=3)])  # 10: the reward is ready
    ledger.redeem(anna, shop.now() - timedelta(hours=2))  # redeemed: a new cycle from 0
    assert worker(shop, hook, **only).sweep()["planned"] == 0
    shop.advance(days=20)
    ledger.visits(anna, [shop.now() - timedelta(days=k, hours=1) for k in range(7, -1, -1)])  # 8 again
    assert worker(shop, hook, **only).sweep()["sent"] == 1
    assert [r.json["occasion"] for r in receiver.accepted()] == ["cycle-0", "cycle-1"]
    assert {m.member_id for m in shop.rows() if m.trigger == ALMOST} == {anna}


def test_almost_there_by_email_in_german(tmp_path, hub_url, smtp_sink):
    shop = Shop(tmp_path, hub_url, smtp_sink)
    try:
        bernd = shop.member("Bernd", "bernd@example.org", language="de")
        Ledger(shop).visits(bernd, [NOW - timedelta(days=9 - k) for k in range(9)])  # 9 stamps, the last yesterday
        done = worker(shop, None, channels=("email",)).sweep()
        assert done["sent"] == 1
        [mail] = smtp_sink.to("bernd@example.org")
        assert mail["Subject"] == "Nur noch 1 bis Free coffee, Bernd!"
        assert "Du hast jetzt 9 Stempel: nur noch 1, dann gehört Free coffee dir." in \
            mail.get_body(("plain",)).get_content()
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    finally:
        shop.hub.close()


class BouncingHandler:
    """An SMTP server that has no mailbox for bounce@example.org (550 at RCPT) and takes the rest."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's)
        if address == "bounce@example.org":
            return "550 5.1.1 <bounce@example.org>: no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's)
        return "250 OK"


def test_a_bounced_email_is_failed_with_the_servers_reply_and_counted(shop):
    from aiosmtpd.controller import Controller

    from cloud.devbroker import free_port

    port = free_port()
    server = Controller(BouncingHandler(), hostname="127.0.0.1", port=port)
    server.start()
    try:
        shop.smtp = shop.smtp.model_copy(update={"host": "127.0.0.1", "port": port})
        shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1))
        bounce = shop.member("Bo", "bounce@example.org", joined=NOW - timedelta(days=1))
        done = worker(shop, None, channels=("email",)).sweep()
    finally:
        server.stop()
    assert (done["sent"], done["failed"]) == (1, 1)
    [failure] = outbox.failures(shop.hub.engine, SHOP)
    assert (failure.member_id, failure.channel, failure.status) == (bounce, "email", "failed")
    assert "550" in failure.reason and "no such mailbox" in failure.reason
    assert outbox.counts(shop.hub.engine, SHOP) == {("welcome", "sent"): 1, ("welcome", "failed"): 1}
