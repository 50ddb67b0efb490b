"""Opened messages (issue 11, item 6): the card link of an e-mail or webhook message carries the
message's id, the card page marks that message opened the first time, and the owner's Messages
page shows sent, opened and the open rate per trigger.

The hub's database is SQLite and PostgreSQL; the e-mails go through a real SMTP server process
(aiosmtpd), the webhook to a real HTTP receiver; the clock is injected. The service worker's
offline copy is checked in a real (headless) Chromium.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

import pytest
from browser import phone, serve  # noqa: F401  (fixture)
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from smtpsink import smtp_sink  # noqa: F401  (fixture)
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from test_automations import BASE, NOW, SHOP, Shop
from test_automations_webhook import SECRET, Receiver, hook_for
from test_automations_webhook import worker as webhook_worker
from webapp import PASSWORD, _quick_password_hashes  # noqa: F401  (fixture)

from cloud.accounts import add_user
from cloud.automations import compose, outbox
from cloud.automations.inbox import INBOX
from cloud.metrics.activity import utc
from cloud.models import Member, Message, PassRecord
from cloud.passes import init_merchant
from cloud.web import create_app
from cloud.web.secret import secret_key

LINK = re.compile(r"HTTPS://HUB\.EXAMPLE/P/[0-9A-Z.-]+\?m=[0-9]+")


class Opening(Shop):
    """The automations' shop with the card pages and the owner's pages on top (Flask's test client)."""

    def __init__(self, tmp_path, url: str, sink) -> None:
        super().__init__(tmp_path, url, sink)
        self.app = create_app(self.hub, clock=self.now, publisher=object())

    def open(self, link: str, method: str = "GET", **headers) -> int:
        """Follow *link* (the e-mail's upper-case URL, or a path) as a phone does; the status."""
        path = link.removeprefix(BASE.upper())
        page = self.app.test_client().open(path, method=method, headers=headers)
        if method == "GET" and page.status_code == 200:
            assert 'id="pass-qr"' in page.get_data(as_text=True)  # the card itself, whatever ``m`` was
        return page.status_code

    def opened(self) -> dict[int, datetime | None]:
        with Session(self.hub.engine) as session:
            return {i: at and utc(at) for i, at in session.execute(select(Message.id, Message.opened_at))}

    def mail_link(self, to: str) -> str:
        [mail] = self.sink.to(to)
        [link] = LINK.findall(mail.get_body(("plain",)).get_content())
        return link

    def card_link(self, member: str, message_id: int | None = None) -> str:
        """The card link a message to *member* carries (compose.values, as the worker calls it)."""
        with Session(self.hub.engine) as session:
            row = session.get(Member, member)
            session.expunge(row)
        filled, _ = compose.values(self.hub.engine, self.hub.keys, secret_key(self.hub.data_dir), row, self.now(),
                                   message_id=message_id)
        return filled["card_url"]

    def add(self, member: str, trigger: str, occasion: str, status: str, channel: str = outbox.EMAIL,
            merchant: str = SHOP, opened_at: datetime | None = None) -> int:
        """A message row as the worker (or a held-out control) leaves it."""
        at = NOW - timedelta(hours=1)
        with Session(self.hub.engine) as session, session.begin():
            row = Message(merchant_id=merchant, member_id=member, trigger=trigger,
                          occasion=outbox.occasion_key(occasion, channel), channel=channel, status=status,
                          attempts=1, created_at=at, not_before=at, expires_at=NOW + timedelta(days=1),
                          sent_at=at if status in (outbox.SENT, outbox.UNKNOWN) else None, opened_at=opened_at)
            session.add(row)
            session.flush()
            return row.id

    def owner(self):
        """A client signed in as the shop's owner."""
        add_user(self.hub.engine, SHOP, "owner@cafe", "owner", PASSWORD)
        client = self.app.test_client()
        form = client.get("/owner/login").get_data(as_text=True)
        token = form.split('name="csrf_token" value="')[1].split('"')[0]
        signed_in = client.post("/owner/login", data={"csrf_token": token, "login": "owner@cafe",
                                                      "password": PASSWORD})
        assert signed_in.status_code == 302
        return client


@pytest.fixture
def shop(tmp_path, hub_url, smtp_sink):
    s = Opening(tmp_path, hub_url, smtp_sink)
    init_merchant(s.hub.engine, s.hub.keys, "bakery", "Bäckerei Öztürk", BASE)
    yield s
    s.hub.close()


def test_the_card_link_in_both_parts_carries_the_message_id_and_the_first_open_counts(shop):
    shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1))
    assert shop.worker().sweep()["sent"] == 1
    [row] = shop.rows()
    [mail] = shop.sink.messages()
    link = shop.mail_link("anna@example.org")
    assert link.startswith(f"{BASE.upper()}/P/") and link.endswith(f"?m={row.id}")
    assert f'<a href="{link}">{link}</a>' in mail.get_body(("html",)).get_content()
    assert shop.opened() == {row.id: None}

    shop.advance(hours=3)
    first = shop.now()
    assert shop.open(link) == 200
    assert shop.opened() == {row.id: first}
    shop.advance(days=2)  # a second open, later (another tab, the same mail again): the first time stays
    assert shop.open(link) == 200
    assert shop.opened() == {row.id: first}


def test_the_webhooks_card_link_carries_its_message_id_and_opens_count(shop):
    receiver = Receiver(SECRET, shop.now, [200])
    try:
        shop.member("Bert", None, joined=NOW - timedelta(days=1))
        assert webhook_worker(shop, hook_for(shop, receiver)).sweep()["sent"] == 1
        [row] = shop.rows()
        [body] = [r.json for r in receiver.accepted()]
    finally:
        receiver.stop()
    assert LINK.fullmatch(body["card_url"]) and body["card_url"].endswith(f"?m={row.id}")
    shop.advance(minutes=5)
    assert shop.open(body["card_url"]) == 200
    assert shop.opened() == {row.id: shop.now()}


def test_without_a_message_id_or_a_pass_the_link_has_no_query(shop):
    anna = shop.member("Anna", "anna@example.org")
    plain = shop.card_link(anna)  # what the card's inbox and the campaign preview show
    assert LINK.fullmatch(plain + "?m=42") and shop.card_link(anna, 42) == plain + "?m=42"
    with shop.hub.engine.begin() as conn:  # her pass revoked, none newer: the link is the hub's address
        conn.execute(PassRecord.__table__.update().where(PassRecord.member_id == anna).values(revoked_at=NOW))
    assert shop.card_link(anna, 42) == BASE


NOT_AN_ID = ["abc", "1e9", "9" * 200, "-1", "0", "+7", " 7", "7 ", "0x7", "", "9" * 19]


def test_only_the_members_own_sent_message_is_marked_and_anything_else_is_ignored_silently(shop):
    anna = shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1))
    bernd = shop.member("Bernd", "bernd@example.org", joined=NOW - timedelta(days=1))
    assert shop.worker().sweep()["sent"] == 2
    own = {m.member_id: m.id for m in shop.rows()}
    anna_link, bernd_link = shop.mail_link("anna@example.org"), shop.mail_link("bernd@example.org")
    card = anna_link.partition("?")[0]
    not_hers = [own[bernd],  # Bernd's message, on Anna's card
                shop.add(anna, "birthday", "2026", outbox.PENDING),
                shop.add(anna, "winback", "2026-11-01", outbox.CONTROL),  # held out: never sent
                shop.add(anna, "winback", "2026-10-01", outbox.FAILED),
                shop.add(anna, "winback", "2026-09-01", outbox.SUPPRESSED),
                shop.add(anna, "almost", "cycle-0", outbox.SENT, channel=INBOX),  # no link: it is on the card
                shop.add(anna, "welcome", "join", outbox.SENT, merchant="bakery"),  # her id at another shop
                own[anna] + 1000]  # no such message
    shop.advance(hours=1)

    for wanted in not_hers:
        assert shop.open(f"{card}?m={wanted}") == 200, wanted
    for garbage in NOT_AN_ID:
        assert shop.open(f"{card}?m={garbage}") == 200, garbage
    assert shop.open(f"{card}?m=abc&m={own[anna]}") == 200  # the first ``m`` is the one read
    assert shop.open(anna_link, method="HEAD") == 200  # a link checker's HEAD is no open
    assert shop.open(anna_link, **{"Sec-Purpose": "prefetch"}) == 200  # nor a browser's prefetch
    assert set(shop.opened().values()) == {None}

    assert shop.open(bernd_link.partition("?")[0] + f"?m={own[anna]}") == 200  # Anna's id on Bernd's card
    assert set(shop.opened().values()) == {None}
    assert shop.open(anna_link) == 200  # her own, from her own mail
    assert {i for i, at in shop.opened().items() if at} == {own[anna]}


def test_an_open_of_an_unknown_message_counts_it(shop):
    anna = shop.member("Anna", "anna@example.org")
    unknown = shop.add(anna, "welcome", "join", outbox.UNKNOWN)  # the worker stopped between sending and marking
    assert shop.open(shop.card_link(anna, unknown)) == 200
    assert shop.opened() == {unknown: NOW}


def test_a_database_error_while_recording_leaves_the_card_page_whole(shop, caplog):
    shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1))
    shop.worker().sweep()
    [row] = shop.rows()
    link = shop.mail_link("anna@example.org")

    def locked(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE MESSAGES"):
            raise OperationalError(statement, parameters, Exception("database is locked"))

    event.listen(shop.hub.engine, "before_cursor_execute", locked)
    try:
        assert shop.open(link) == 200
    finally:
        event.remove(shop.hub.engine, "before_cursor_execute", locked)
    assert shop.opened() == {row.id: None}
    [warning] = [r for r in caplog.records if r.msg == "card.open_not_recorded"]
    assert warning.message_id == row.id and "database is locked" in warning.error
    shop.advance(minutes=1)
    assert shop.open(link) == 200  # the next open, with the database back, counts
    assert shop.opened() == {row.id: shop.now()}


def test_the_messages_page_shows_sent_opened_and_the_open_rate_per_trigger(shop):
    for name in ("Anna", "Bernd", "Carla", "Dora"):
        shop.member(name, f"{name.lower()}@example.org", joined=NOW - timedelta(days=1))
    assert shop.worker().sweep()["sent"] == 4
    shop.advance(hours=1)
    assert shop.open(shop.mail_link("carla@example.org")) == 200
    # what does not count: not sent, the inbox (no link), an unknown nobody opened, another shop's
    shop.add("m-failed", "welcome", "join", outbox.FAILED)
    shop.add("m-pending", "welcome", "join", outbox.PENDING)
    shop.add("m-inbox", "welcome", "join", outbox.SENT, channel=INBOX)
    shop.add("m-unknown", "welcome", "join", outbox.UNKNOWN)
    shop.add("m-bakery", "welcome", "join", outbox.SENT, merchant="bakery", opened_at=NOW)
    shop.add("m-birthday", "birthday", "2026", outbox.UNKNOWN, opened_at=NOW)  # opened: it did arrive

    page = shop.owner().get("/owner/messages").get_data(as_text=True)
    table = page.split('<table id="opened">')[1].split("</table>")[0]
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", r) for r in table.split("<tr>")[2:]]
    assert rows == [["birthday", "1", "1", "100 %"], ["welcome", "4", "1", "25 %"]]
    assert "opens their card from the link" in page.split('id="opened-note">')[1]
    for kept in ('id="by-trigger"', 'id="lift"', 'id="by-channel"', 'id="failures"'):
        assert kept in page  # the page's other tables are still there


def test_an_empty_messages_page_says_so(shop):
    page = shop.owner().get("/owner/messages").get_data(as_text=True)
    assert "No e-mail or webhook message sent yet." in page.split('<table id="opened">')[1]


# --- the service worker's offline copy (a real browser; SQLite: the browser is the point) -------


def test_a_card_opened_from_a_message_is_kept_for_offline_under_its_plain_url(tmp_path, phone):
    shop = Opening(tmp_path, f"sqlite:///{tmp_path / 'hub.sqlite3'}", None)
    try:
        anna = shop.member("Anna", "anna@example.org")
        message = shop.add(anna, "welcome", "join", outbox.SENT)
        path = shop.card_link(anna, message).removeprefix(BASE.upper())
        plain = path.partition("?")[0]
        with serve(shop.app) as base:
            phone.get(base + plain)
            _wait(phone, "return !!(navigator.serviceWorker && navigator.serviceWorker.controller)",
                  "the service worker to control the card", reload=True)
            phone.execute_async_script("const done = arguments[arguments.length - 1];"
                                       "caches.keys().then((ks) => Promise.all(ks.map((k) => caches.delete(k))))"
                                       ".then(() => done(true));")  # only what the message's link leaves
            phone.get(base + path)
            assert shop.opened() == {message: NOW}
            assert phone.current_url == base + plain  # the id left the address bar (card.js)
            _wait(phone, f"return caches.match({base + plain!r}).then((hit) => hit !== undefined)",
                  "the card in the cache")
            phone.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
            try:
                for offline in (plain, path, plain + "?m=12345"):  # the home screen, the mail again, another
                    phone.get(base + offline)
                    assert phone.find_element("css selector", "#pass-qr svg").is_displayed(), offline
                    assert "Anna" in phone.page_source
            finally:
                phone.delete_network_conditions()
    finally:
        shop.hub.close()


def _wait(driver, script: str, what: str, reload: bool = False, timeout: float = 10.0) -> None:
    """Until *script* returns true (WebDriver awaits a promise it returns), reloading if asked."""
    deadline = time.monotonic() + timeout
    while not driver.execute_script(script):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if reload:
            driver.refresh()
        time.sleep(0.1)
