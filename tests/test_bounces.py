"""Bounces that come back later (issue 11): a delivery status notification (RFC 3464) of an e-mail
the worker really sent, dropped into the bounce Maildir as the hub's mail server would, marks that
message bounced on the next sweep; anything else in the Maildir changes nothing and is set aside.

The e-mails go through a real SMTP server process (aiosmtpd); the reports are built with the
``email`` package in the shape Postfix and Exim send them; the hub's database is SQLite and
PostgreSQL; the clock is injected.
"""

from __future__ import annotations

import logging
import mailbox
import re
from datetime import date, timedelta
from email.message import EmailMessage
from email.message import Message as Fields
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime
from pathlib import Path

import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from smtpsink import smtp_sink  # noqa: F401  (fixture)
from sqlalchemy import update
from test_automations import BASE, NOW, SHOP, Shop
from webapp import PASSWORD, _quick_password_hashes  # noqa: F401  (fixture)

from cloud.accounts import add_user
from cloud.automations import bounces, outbox
from cloud.config import SmtpSection, load_hub_config
from cloud.models import Message
from cloud.passes import enrol, init_merchant
from cloud.web import create_app
from kiosk.common.errors import ConfigError

RETURN_PATH = "bounces@hub.example"
UNKNOWN_USER = "smtp; 550 5.1.1 <{to}>: Recipient address rejected: User unknown in local recipient table"
MAILBOX_FULL = "smtp; 552 5.2.2 <{to}>: mailbox full"


class Bouncing(Shop):
    """The automations' shop with a return path, its bounce Maildir and the owner's pages."""

    def __init__(self, tmp_path: Path, url: str, sink) -> None:
        super().__init__(tmp_path, url, sink)
        self.maildir = tmp_path / "bounces"
        self.box = mailbox.Maildir(self.maildir, factory=None, create=True)
        self.smtp = self.smtp.model_copy(update={"return_path": RETURN_PATH, "bounce_maildir": self.maildir})
        self.hub.config.smtp = self.smtp  # what the owner's page reads

    def sent_to(self, address: str) -> EmailMessage:
        [mail] = self.sink.to(address)
        return mail

    def deliver(self, data: bytes) -> str:
        """*data* into the Maildir's ``new``, as the mail server delivers it; its key."""
        return self.box.add(data)

    def folders(self) -> dict[str, list[str]]:
        """Where the Maildir's mails are: ``new``, or ``cur`` with their flags."""
        out: dict[str, list[str]] = {"new": [], "cur": []}
        for key in self.box.keys():
            message = self.box.get_message(key)
            out[message.get_subdir()].append(message.get_flags())
        return out

    def row(self, address: str) -> Message:
        [row] = [r for r in self.rows() if r.trigger == "welcome" and self.sent_to(address)["Message-ID"]
                 == f"<stempel-{r.id}.welcome@hub.example>"]
        return row

    def owner(self):
        """A client signed in as the shop's owner."""
        add_user(self.hub.engine, SHOP, "owner@cafe", "owner", PASSWORD)
        client = create_app(self.hub, clock=self.now, publisher=object()).test_client()
        form = client.get("/owner/login").get_data(as_text=True)
        token = form.split('name="csrf_token" value="')[1].split('"')[0]
        assert client.post("/owner/login", data={"csrf_token": token, "login": "owner@cafe",
                                                 "password": PASSWORD}).status_code == 302
        return client


@pytest.fixture
def shop(tmp_path, hub_url, smtp_sink):
    s = Bouncing(tmp_path, hub_url, smtp_sink)
    yield s
    s.hub.close()


def headers_of(original: EmailMessage) -> str:
    """The original's header block, as a report's ``text/rfc822-headers`` carries it."""
    return original.as_bytes().decode().split("\n\n", 1)[0] + "\n"


def dsn(original: EmailMessage, *, mta: str = "postfix", action: str = "failed", status: str = "5.1.1",
        diagnostic: str = UNKNOWN_USER, recipient: str | None = None, padding: int = 0) -> bytes:
    """The delivery status notification *mta* sends back for *original*: Postfix with the
    original's headers (``text/rfc822-headers``), Exim with the whole message (``message/rfc822``).
    *padding* bytes of text make it larger."""
    to = recipient or str(original["To"])
    diagnostic = diagnostic.format(to=to)
    report = MIMEMultipart("report", report_type="delivery-status")
    report["Date"] = format_datetime(NOW)
    report["To"] = RETURN_PATH
    report["Auto-Submitted"] = "auto-replied"
    if mta == "postfix":
        report["From"] = "MAILER-DAEMON@mx.example.org (Mail Delivery System)"
        report["Subject"] = "Undelivered Mail Returned to Sender" if action == "failed" else \
            "Delayed Mail (still being retried)"
        notice = (f"This is the mail system at host mx.example.org.\n\nI'm sorry to have to inform you that your "
                  f"message could not be delivered to one or more recipients.\n\n<{to}>: {diagnostic}\n")
    else:
        report["From"] = "Mail Delivery System <Mailer-Daemon@mx.example.org>"
        report["Subject"] = "Mail delivery failed: returning message to sender"
        report["X-Failed-Recipients"] = to
        notice = f"This message was created automatically by mail delivery software.\n\n  {to}\n    {diagnostic}\n"
    report.attach(MIMEText(notice + "x" * padding))
    per_message, per_recipient = Fields(), Fields()
    per_message["Reporting-MTA"] = "dns; mx.example.org"
    per_message["Arrival-Date"] = format_datetime(NOW)
    if mta == "postfix":
        per_message["X-Postfix-Queue-ID"] = "4FbQ2N1xyz"
        per_message["X-Postfix-Sender"] = f"rfc822; {RETURN_PATH}"
        per_recipient["Original-Recipient"] = f"rfc822;{to}"
    per_recipient["Final-Recipient"] = f"rfc822; {to}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    per_recipient["Remote-MTA"] = "dns; mx.example.org"
    per_recipient["Diagnostic-Code"] = diagnostic
    delivery = Fields()
    delivery["Content-Type"] = "message/delivery-status"
    delivery.set_payload([per_message, per_recipient])
    report.attach(delivery)
    if mta == "postfix":
        headers = MIMEText(headers_of(original), "rfc822-headers")
        headers["Content-Description"] = "Undelivered Message Headers"
        report.attach(headers)
    else:
        report.attach(MIMEMessage(original))
    return report.as_bytes()


@pytest.mark.parametrize("mta, status, diagnostic", [("postfix", "5.1.1", UNKNOWN_USER),
                                                     ("exim", "5.2.2", MAILBOX_FULL)], ids=["postfix", "exim"])
def test_a_bounce_marks_the_message_it_reports_bounced_with_the_reason(shop, mta, status, diagnostic):
    shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1))
    assert shop.worker().sweep()["sent"] == 1
    mail = shop.sent_to("anna@example.org")
    assert mail["X-MailFrom"] == RETURN_PATH  # the envelope sender: where the bounce goes
    assert mail["From"] == "Cafe Rosa <stempel@hub.example>"  # what the member sees is unchanged

    shop.deliver(dsn(mail, mta=mta, status=status, diagnostic=diagnostic))
    shop.advance(hours=2)
    done = shop.worker().sweep()

    row = shop.row("anna@example.org")
    assert done["bounced"] == 1
    assert row.status == outbox.BOUNCED
    assert row.last_error == f"bounced: {status} {diagnostic.format(to='anna@example.org').partition('; ')[2]}"
    assert shop.folders() == {"new": [], "cur": ["S"]}


def test_a_delayed_report_changes_nothing(shop):
    shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1))
    shop.worker().sweep()
    shop.deliver(dsn(shop.sent_to("anna@example.org"), action="delayed", status="4.4.1",
                     diagnostic="X-Postfix; connect to mx.example.org[192.0.2.1]:25: Connection timed out"))

    done = shop.worker().sweep()

    assert (done["bounce_delayed"], done["bounced"]) == (1, 0)
    row = shop.row("anna@example.org")
    assert (row.status, row.last_error) == (outbox.SENT, None)
    assert shop.folders() == {"new": [], "cur": ["S"]}


def test_mail_that_is_no_bounce_of_ours_changes_nothing_is_set_aside_once_and_the_sweep_goes_on(shop, caplog):
    init_merchant(shop.hub.engine, shop.hub.keys, "bakery", "Bäckerei Öztürk", BASE)
    enrol(shop.hub.engine, shop.hub.keys, "bakery", "Bert", {
        "email": "bert@bakery.example", "created_at": NOW - timedelta(days=1),
        "consent_program_at": NOW - timedelta(days=1), "consent_marketing_at": NOW - timedelta(days=1)})
    shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1))
    shop.member("Bernd", "bernd@example.org", joined=NOW - timedelta(days=1))
    assert shop.worker().sweep()["sent"] == 3
    anna, bernd = shop.sent_to("anna@example.org"), shop.sent_to("bernd@example.org")
    anna_id, bakery = shop.row("anna@example.org").id, shop.row("bert@bakery.example").id

    spam = EmailMessage()
    spam["From"], spam["To"], spam["Subject"] = "deals@spam.example", RETURN_PATH, "Cheap watches"
    spam.set_content("Buy now!")
    renamed = EmailMessage()
    for name, value in anna.items():
        renamed[name] = value
    del renamed["Message-ID"]
    renamed["Message-ID"] = f"<stempel-{anna_id}.birthday@hub.example>"  # her row, not that message
    foreign, unknown, elsewhere = (EmailMessage(), EmailMessage(), EmailMessage())
    for fake, message_id in ((foreign, f"<stempel-{bakery}.welcome@hub.example>"),  # the bakery's message
                             (unknown, f"<stempel-{anna_id + 1000}.welcome@hub.example>"),
                             (elsewhere, f"<stempel-{anna_id}.welcome@other.example>")):
        fake["To"], fake["Message-ID"] = "anna@example.org", message_id
    crashing = dsn(anna).replace(str(anna["Message-ID"]).encode(), b'<@]">),b]("')  # the parser raises
    truncated = dsn(anna).split(b"Content-Type: message/delivery-status")[0]
    bad = {"foreign": dsn(foreign), "unknown": dsn(unknown), "elsewhere": dsn(elsewhere), "renamed": dsn(renamed),
           "spam": spam.as_bytes(), "crashing": crashing, "truncated": truncated,
           "oversized": dsn(anna, padding=bounces.MAX_BYTES)}
    keys = {shop.deliver(data): what for what, data in bad.items()}
    shop.deliver(dsn(bernd))
    shop.member("Carla", "carla@example.org", joined=NOW - timedelta(hours=1))

    with caplog.at_level(logging.WARNING, logger="cloud.automations.bounces"):
        done = shop.worker().sweep()

    assert (done["bounced"], done["bounce_set_aside"], done["sent"]) == (1, len(bad), 1)  # Carla's welcome
    assert shop.row("anna@example.org").status == outbox.SENT
    assert shop.row("bernd@example.org").status == outbox.BOUNCED
    assert sorted(shop.folders()["cur"]) == ["F"] * len(bad) + ["S"] and shop.folders()["new"] == []
    warned = {r.file.rpartition("/")[2].split(":")[0]: r.why for r in caplog.records
              if r.msg == "automations.bounce_set_aside"}
    assert {keys[k]: why for k, why in warned.items()} == {
        "foreign": f"it names another recipient than message {bakery} went to",
        "unknown": f"no e-mail of ours has the Message-ID of message {anna_id + 1000}",
        "elsewhere": f"the original's Message-ID '<stempel-{anna_id}.welcome@other.example>' is not one of ours",
        "renamed": f"no e-mail of ours has the Message-ID of message {anna_id}",
        "spam": "not a delivery status notification (text/plain)",
        "crashing": "cannot be parsed (IndexError: list index out of range)",
        "truncated": "no message/delivery-status part",
        "oversized": f"larger than {bounces.MAX_BYTES} bytes: no bounce is"}

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cloud.automations.bounces"):
        shop.worker().sweep()
    assert [r for r in caplog.records if r.name == "cloud.automations.bounces"] == []  # logged once


@pytest.mark.parametrize("before, after", [(outbox.SENT, outbox.BOUNCED), (outbox.UNKNOWN, outbox.BOUNCED),
                                           (outbox.FAILED, outbox.FAILED), (outbox.SUPPRESSED, outbox.SUPPRESSED)])
def test_only_a_sent_or_unknown_message_becomes_bounced_and_only_once(shop, before, after):
    shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1))
    shop.worker().sweep()
    mail, row = shop.sent_to("anna@example.org"), shop.row("anna@example.org")
    with shop.hub.engine.begin() as conn:
        conn.execute(update(Message).where(Message.id == row.id).values(status=before, last_error=None))
    report = dsn(mail)

    shop.deliver(report)
    first = shop.worker().sweep()
    shop.deliver(report)  # the same report again (the mail server sent it twice)
    second = shop.worker().sweep()
    third = shop.worker().sweep()  # and nothing new

    row = shop.row("anna@example.org")
    assert row.status == after
    assert (row.last_error or "").startswith("bounced: 5.1.1 550 5.1.1") == (after == outbox.BOUNCED)
    assert (first["bounced"], second["bounced"], second["bounce_again"]) == (int(after == outbox.BOUNCED), 0, 1)
    assert not any(k.startswith("bounce") for k in third.done)
    assert shop.folders() == {"new": [], "cur": ["S", "S"]}


def test_the_messages_page_counts_the_bounce_and_shows_its_reason(shop):
    anna = shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1))
    shop.member("Bernd", "bernd@example.org", joined=NOW - timedelta(days=1))
    owner = shop.owner()
    assert "No e-mail has bounced." in owner.get("/owner/messages").get_data(as_text=True)
    shop.worker().sweep()
    shop.deliver(dsn(shop.sent_to("anna@example.org")))
    shop.worker().sweep()

    page = owner.get("/owner/messages").get_data(as_text=True)

    by_trigger = page.split('id="by-trigger"')[1].split("</table>")[0]
    assert '<th class="num">bounced</th><th class="num">sent</th>' in by_trigger
    assert '<td>welcome</td><td class="num">1</td><td class="num">1</td>' in by_trigger
    table = page.split('id="bounces"')[1].split("</table>")[0]
    assert f">{anna}</a></td><td>welcome</td>" in table
    assert "bounced: 5.1.1 550 5.1.1 &lt;anna@example.org&gt;: Recipient address rejected" in table
    assert "bernd" not in table.lower() and 'id="opened"' in page  # the opens' table stays


def test_a_bounced_address_gets_no_more_email_but_a_full_mailbox_does(shop):
    anna = shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1), birthday=date(1990, 12, 5))
    bernd = shop.member("Bernd", "bernd@example.org", joined=NOW - timedelta(days=1), birthday=date(1990, 12, 5))
    shop.worker().sweep()
    shop.deliver(dsn(shop.sent_to("anna@example.org")))  # no such user
    shop.deliver(dsn(shop.sent_to("bernd@example.org"), mta="exim", status="5.2.2", diagnostic=MAILBOX_FULL))

    shop.advance(days=4)  # their birthdays
    done = shop.worker().sweep()

    assert (done["bounced"], done["sent"], done["suppressed"]) == (2, 1, 1)
    assert [m["Subject"] for m in shop.sink.to("bernd@example.org")][-1] == "Happy birthday, Bernd!"
    assert len(shop.sink.to("anna@example.org")) == 1
    assert shop.statuses() == {(anna, "welcome"): "bounced", (anna, "birthday"): "suppressed",
                               (bernd, "welcome"): "bounced", (bernd, "birthday"): "sent"}
    [why] = [r.last_error for r in shop.rows() if r.member_id == anna and r.trigger == "birthday"]
    assert why.startswith("the address bounced for good (bounced: 5.1.1 550 5.1.1")


def test_a_maildir_gone_since_the_start_is_logged_and_the_messages_still_go_out(shop, caplog):
    shop.member("Anna", "anna@example.org", joined=NOW - timedelta(days=1))
    for sub in ("cur", "new", "tmp"):
        (shop.maildir / sub).rmdir()
    with caplog.at_level(logging.WARNING, logger="cloud.automations.bounces"):
        assert shop.worker().sweep()["sent"] == 1
    [warning] = [r for r in caplog.records if r.msg == "automations.bounces_unreadable"]
    assert "[smtp] bounce_maildir" in warning.error and "no Maildir (no cur, new, tmp in it)" in warning.error


def test_bounce_maildir_and_return_path_are_checked_when_the_config_is_read(tmp_path):
    config = tmp_path / "hub.toml"
    mailbox.Maildir(tmp_path / "bounces", create=True)
    config.write_text('[smtp]\nreturn_path = "bounces@hub.example"\nbounce_maildir = "bounces"\n')
    loaded = load_hub_config(config, env={})
    assert loaded.smtp.bounce_maildir == tmp_path / "bounces"  # relative to the file

    (tmp_path / "plain").mkdir()
    for where, message in (('"missing"', "missing: no directory"), ('"plain"', "no Maildir (no cur, new, tmp in it)")):
        config.write_text(f"[smtp]\nbounce_maildir = {where}\n")
        with pytest.raises(ConfigError, match=r"\[smtp\] bounce_maildir .*" + re.escape(message)):
            load_hub_config(config, env={})
    config.write_text('[smtp]\nreturn_path = "Stempel <bounces@hub.example>"\n')
    with pytest.raises(ConfigError, match=r"\[smtp.return_path\] give a bare address"):
        load_hub_config(config, env={})
    with pytest.raises(ConfigError, match="bounce_maildir is not set"):
        SmtpSection().maildir()
