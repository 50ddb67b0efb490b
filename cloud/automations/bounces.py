"""Bounces that come back after the SMTP server took the message (issue 11: "bounces recorded").

A refusal while sending is recorded by the worker (``failed``, mailer.py). Later failures reach
the envelope sender (``[smtp] return_path``, else the From address) as a delivery status
notification (DSN, RFC 3464): ``multipart/report; report-type=delivery-status`` with a
``message/delivery-status`` part (per recipient: Action, Status, Diagnostic-Code) and the
original message or its headers (``message/rfc822``, ``text/rfc822-headers``). The hub's mail
server delivers that address's mail into a Maildir (``[smtp] bounce_maildir``); each sweep
(worker.py) reads what is new there:

* a DSN of one of our e-mails — the original's Message-ID is the one compose.py wrote
  (``<stempel-<row id>.<trigger>@<sender's domain>>``), that row is an e-mail of that trigger,
  and the report names the member's address (anybody can mail the bounce address, and row ids
  are easy to guess: the address is what a forger does not know) — with ``Action: failed``
  turns the row ``sent`` or ``unknown`` into ``bounced``, ``last_error`` = ``bounced: <status>
  <diagnostic>``; one UPDATE naming the statuses it expects, so reading the same DSN twice
  changes nothing more. ``delayed`` (the MTA still tries) changes nothing. The mail then moves to
  ``cur`` flagged seen (``S``).
* anything else (spam, a DSN of another sender, a broken or oversized mail) changes nothing,
  is moved to ``cur`` flagged (``F``) for a person to look at, and is logged once. Mail is never
  deleted, and one bad mail never stops the sweep.

A mail is moved after its transaction committed: a crash in between reads it again, harmlessly.
The files are read from ``new`` directly (a rename to ``cur`` marks them read, as a mail reader
does): the stdlib's ``mailbox.Maildir`` would list ``cur`` too on every sweep, and it keeps every
bounce ever processed.

A hard bounce of the address itself (status 5.1.x: no such mailbox, bad address) also stops
further e-mail to the member (``undeliverable``): their newest e-mail that went out bounced so.
Members cannot change their address today; if they ever can, that check must look at when.
"""

from __future__ import annotations

import email
import email.policy
import logging
import mailbox
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from cloud.automations.mailer import Channel, SmtpChannel
from cloud.automations.outbox import BOUNCED, EMAIL, SENT, UNKNOWN
from cloud.db import READ_ONLY
from cloud.metrics.activity import utc
from cloud.models import Member, Message
from kiosk.common.errors import ConfigError, StempelError

log = logging.getLogger(__name__)

M = Message
MAX_BYTES = 1 << 20  # a DSN is a few kB (the original's headers, or the message we wrote): more is not one
MAX_PER_SWEEP = 500  # the rest waits for the next sweep: a flood must not hold the messages up
SEEN, FLAGGED = "S", "F"  # Maildir flags: processed; set aside for a person
HARD = "bounced: 5.1."  # the start of last_error for a bounce of the address itself (RFC 3463: 5.1.x)
ACTIONS = {"failed", "delayed", "delivered", "relayed", "expanded"}  # RFC 3464 2.3.3
REPORTS = ("message/delivery-status", "message/global-delivery-status")
ORIGINALS = ("text/rfc822-headers", "message/rfc822", "message/global-headers", "message/global")
_MESSAGE_ID = re.compile(r"<stempel-([1-9][0-9]{0,17})\.([a-z0-9_]{1,24})@([A-Za-z0-9.-]{1,253})>")
_STATUS = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
_ADDRESS = re.compile(r"[^\s<>@]{1,64}@[^\s<>@]{1,253}")


class SetAside(StempelError, ValueError):
    """A mail in the bounce Maildir that is not a DSN of one of our messages; says why."""


@dataclass(frozen=True)
class Report:
    """One recipient's part of a DSN: what the reporting server did and why."""

    recipients: frozenset[str]  # Final- and Original-Recipient, lower case
    action: str
    status: str
    diagnostic: str


@dataclass(frozen=True)
class Dsn:
    """A delivery status notification of one of our e-mails (by its Message-ID)."""

    message_id: int
    trigger: str
    to: str  # the original's To address, lower case ("" if not one)
    reports: tuple[Report, ...]


def domain_of(sender: str) -> str:
    """The domain compose.py writes into Message-IDs for *sender* (``stempel`` without one)."""
    return parseaddr(sender)[1].partition("@")[2] or "stempel"


def parse(data: bytes, domain: str) -> Dsn:
    """The DSN in *data* of a message whose Message-ID is one of ours on *domain*; raises SetAside
    naming why it is not."""
    try:
        return _parse(data, domain)
    except SetAside:
        raise
    except Exception as exc:  # the email package raises many kinds on hostile input; the mail is set aside
        raise SetAside(f"cannot be parsed ({type(exc).__name__}: {exc})") from None


def _parse(data: bytes, domain: str) -> Dsn:
    mail = email.message_from_bytes(data, policy=email.policy.default)
    if mail.get_content_type() != "multipart/report" or \
            (mail.get_param("report-type") or "").lower() not in ("delivery-status", "global-delivery-status"):
        raise SetAside(f"not a delivery status notification ({mail.get_content_type()})")
    parts = list(mail.iter_parts())
    status = next((p for p in parts if p.get_content_type() in REPORTS), None)
    original = next((p for p in parts if p.get_content_type() in ORIGINALS), None)
    if status is None:
        raise SetAside("no message/delivery-status part")
    if original is None:
        raise SetAside("the original message (or its headers) is not in it")
    headers = _headers(original)
    raw_id = " ".join(str(headers.get("Message-ID", "")).split())
    found = _MESSAGE_ID.fullmatch(raw_id) if len(raw_id) <= 300 else None
    if found is None or found.group(3).lower() != domain.lower():
        raise SetAside(f"the original's Message-ID {raw_id[:100]!r} is not one of ours")
    to = [address for _, address in getaddresses([str(headers.get("To", ""))]) if address]
    reports = tuple(r for r in map(_report, _blocks(status)[1:]) if r is not None)
    if not reports:
        raise SetAside("no valid per-recipient report (Action, Status) in it")
    return Dsn(int(found.group(1)), found.group(2), to[0].lower() if len(to) == 1 else "", reports)


def _headers(part: EmailMessage) -> EmailMessage:
    """The original's headers: the attached message's, or the text of the headers parsed."""
    if part.get_content_type() in ("message/rfc822", "message/global"):
        return part.get_payload(0)
    return HeaderParser(policy=email.policy.default).parsestr(part.get_content())


def _blocks(part: EmailMessage) -> list[EmailMessage]:
    """The header blocks of a delivery-status part: per message, then one per recipient. The
    parser splits ``message/delivery-status`` itself; the UTF-8 form comes as text."""
    if part.is_multipart():
        return list(part.get_payload())
    text = part.get_content()
    return [HeaderParser(policy=email.policy.default).parsestr(block)
            for block in re.split(r"\r?\n[ \t]*\r?\n", text.strip()) if block.strip()]


def _report(block: EmailMessage) -> Report | None:
    """One recipient's fields, or None if its Action or Status is not valid."""
    action = str(block.get("Action", "")).strip().lower()
    status = (str(block.get("Status", "")).split() or [""])[0]  # some servers add a comment after it
    if action not in ACTIONS or not _STATUS.fullmatch(status):
        return None
    recipients = frozenset(a for a in (_recipient(block.get("Final-Recipient")),
                                       _recipient(block.get("Original-Recipient"))) if a)
    kind, _, diagnostic = str(block.get("Diagnostic-Code", "")).partition(";")  # "smtp; 550 5.1.1 ..."
    return Report(recipients, action, status, _printable(diagnostic or kind))


def _recipient(value: object) -> str:
    """``rfc822; anna@example.org`` → ``anna@example.org``; "" for anything else."""
    address = str(value or "").partition(";")[2].strip().strip("<>").lower()
    return address if _ADDRESS.fullmatch(address) else ""


def _printable(text: str) -> str:
    """*text* on one line of printable characters (it is shown on the owner's page), 400 at most."""
    return " ".join("".join(c if c.isprintable() else " " for c in text[:2000]).split())[:400]


class Reader:
    """Reads the bounce Maildir *folder* into the messages of *engine*; see the module docstring."""

    def __init__(self, engine: Engine, folder: Path, domain: str) -> None:
        self.engine, self.folder, self.domain = engine, folder, domain

    def sweep(self, progress: Callable[[], object] = lambda: None) -> Counter:
        """Process up to MAX_PER_SWEEP new mails, oldest name first; the count of each outcome
        (``bounced``, ``bounce_delayed``, ``bounce_set_aside``, ...). Raises SQLAlchemyError
        (the mail then stays new and is read again) and OSError if ``new`` cannot be listed."""
        done: Counter = Counter()
        with os.scandir(self.folder / "new") as entries:
            names = sorted(e.name for e in entries if not e.name.startswith("."))
        for name in names[:MAX_PER_SWEEP]:
            done[self.one(name)] += 1
            progress()
        return done

    def one(self, name: str) -> str:
        """Process the new mail *name*; its outcome."""
        path = self.folder / "new" / name
        try:
            outcome = self.record(parse(_read(path), self.domain))
        except SetAside as exc:
            log.warning("automations.bounce_set_aside", extra={"file": str(path), "why": str(exc)})
            self._move(path, FLAGGED)
            return "bounce_set_aside"
        self._move(path, SEEN)
        return outcome

    def record(self, dsn: Dsn) -> str:
        """Mark the row *dsn* reports failed as bounced; the outcome. Raises SetAside if the row is
        not the e-mail the DSN is about."""
        with self.engine.begin() as conn:
            row = conn.execute(select(M.id, M.trigger, M.channel, Member.email)
                               .join(Member, (Member.id == M.member_id) & (Member.merchant_id == M.merchant_id))
                               .where(M.id == dsn.message_id)).first()
            if row is None or row.trigger != dsn.trigger or row.channel != EMAIL:
                raise SetAside(f"no e-mail of ours has the Message-ID of message {dsn.message_id}")
            address = (row.email or "").lower()
            mine = [r for r in dsn.reports if address and address in r.recipients]
            if not mine and len(dsn.reports) == 1 and address and dsn.to == address:
                mine = list(dsn.reports)  # forwarded: the final recipient is another address
            if not mine:
                raise SetAside(f"it names another recipient than message {dsn.message_id} went to")
            failed = next((r for r in mine if r.action == "failed"), None)
            if failed is None:
                outcome = "bounce_delayed" if any(r.action == "delayed" for r in mine) else "bounce_not_failed"
                log.info("automations.bounce_not_failed", extra={"message_id": row.id,
                                                                 "action": mine[0].action})
                return outcome
            why = f"bounced: {failed.status} {failed.diagnostic}".strip()[:500]
            done = conn.execute(update(M).where(M.id == row.id, M.status.in_((SENT, UNKNOWN)))
                                .values(status=BOUNCED, last_error=why))
        if done.rowcount != 1:
            return "bounce_again"  # bounced already (the same DSN twice), or not sent
        log.info("automations.bounced", extra={"message_id": row.id, "status": failed.status})
        return BOUNCED

    def _move(self, path: Path, flag: str) -> None:
        """Into ``cur`` with *flag*, as a mail reader marks mail; never deleted."""
        base = path.name.split(mailbox.Maildir.colon)[0]
        try:
            os.rename(path, self.folder / "cur" / f"{base}{mailbox.Maildir.colon}2,{flag}")
        except OSError as exc:
            log.warning("automations.bounce_not_moved", extra={
                "file": str(path), "error": f"{exc.strerror}; the hub's user needs write access to "
                                            f"{self.folder}/cur and /new (it is read again next sweep)"})


def _read(path: Path) -> bytes:
    """The mail at *path*, at most MAX_BYTES; raises SetAside if it is larger or cannot be read."""
    try:
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_BYTES:
                raise SetAside(f"larger than {MAX_BYTES} bytes: no bounce is")
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SetAside(f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise SetAside(f"larger than {MAX_BYTES} bytes: no bounce is")
    return data


def collect(engine: Engine, channel: Channel | None, sender: str,
            progress: Callable[[], object] = lambda: None) -> Counter:
    """One sweep's bounces, if *channel* is the SMTP channel and ``[smtp] bounce_maildir`` is set
    (else nothing); *sender* is the From the worker writes (its domain is in our Message-IDs).
    A Maildir gone since the start is logged, and the sweep goes on."""
    settings = channel.settings if isinstance(channel, SmtpChannel) else None
    if settings is None or settings.bounce_maildir is None:
        return Counter()
    try:
        return Reader(engine, settings.maildir(), domain_of(sender)).sweep(progress)
    except (ConfigError, OSError) as exc:
        log.warning("automations.bounces_unreadable", extra={"error": str(exc)})
        return Counter()


def undeliverable(conn: Connection, member_id: str) -> str | None:
    """Why e-mail to *member_id* would only bounce again, or None: their newest e-mail that went
    out bounced for good with a 5.1.x status (no such mailbox, a bad address)."""
    newest = conn.execute(select(M.status, M.last_error)
                          .where(M.member_id == member_id, M.channel == EMAIL, M.status.in_((SENT, UNKNOWN, BOUNCED)))
                          .order_by(M.sent_at.desc(), M.id.desc()).limit(1)).first()
    if newest is None or newest.status != BOUNCED or not (newest.last_error or "").startswith(HARD):
        return None
    return f"the address bounced for good ({newest.last_error}); no more e-mail to it"[:500]


@dataclass(frozen=True)
class Bounce:
    """A message that bounced after it was sent, and the report's reason."""

    id: int
    member_id: str
    trigger: str
    sent_at: datetime | None
    reason: str


def recent(engine: Engine, merchant: str, limit: int = 20) -> list[Bounce]:
    """*merchant*'s newest bounced messages with their reasons, for the owner's Messages page."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        rows = conn.execute(select(M.id, M.member_id, M.trigger, M.sent_at, M.last_error)
                            .where(M.merchant_id == merchant, M.status == BOUNCED)
                            .order_by(M.id.desc()).limit(limit))
        return [Bounce(i, member, trigger, sent and utc(sent), why or "") for i, member, trigger, sent, why in rows]
