"""The inbox channel: messages a member reads on their card page (``/P/<token>``), no address needed.

A shop without e-mail (or a member who gave none) still reaches the member: the planner
records an ``inbox`` row like any other channel's (outbox.py, occasion ``<occasion>@inbox``),
the worker claims it under the same weekly cap and quiet hours, and "sending" hands the
message nowhere — the worker then marks the row ``sent``, and from then on the card shows it.

The messages table keeps no body (no schema change for this channel): the card writes each
message's words at reading time with compose.py and templates.py, the same text an e-mail of
that trigger carries, filled with the member's card as it is now. Only the member's own rows
are read (merchant and member both in the WHERE), newest first, at most ``LIMIT``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape
from sqlalchemy import select
from sqlalchemy.engine import Engine

from cloud.automations import compose, templates
from cloud.automations.campaigns import CAMPAIGN, CampaignStore
from cloud.automations.outbox import SENT, occasion_of
from cloud.automations.templates import Text
from cloud.automations.texts import words_for
from cloud.db import READ_ONLY
from cloud.keys import KeyStore
from cloud.metrics.activity import utc
from cloud.models import Member, Message
from cloud.programs import program_of
from kiosk.common.errors import ConfigError
from kiosk.rules.program import Program

log = logging.getLogger(__name__)

INBOX = "inbox"
LIMIT = 10  # the card shows the newest ten; the data export has them all

TEXTS = {
    "en": {"inbox": "Messages"},
    "de": {"inbox": "Nachrichten"},
}


class InboxChannel:
    """The worker's channel for ``inbox`` rows: nothing to connect to and nothing to hand over;
    the row marked ``sent`` is the delivery (the card reads it)."""

    def connect(self) -> None:
        """Always there: the card page is the mailbox."""

    def send(self, message: Message) -> None:
        """Nothing leaves the hub; the worker marks *message* sent after this returns."""

    def close(self) -> None:
        """Nothing was opened."""


@dataclass(frozen=True)
class Entry:
    """One message as the card shows it: the local time it was sent and its words."""

    id: int
    trigger: str
    sent_at: datetime  # in the shop's time zone
    subject: str
    paragraphs: tuple[Markup, ...]  # escaped, with the card and unsubscribe links


def sent_rows(engine: Engine, member: Member, limit: int = LIMIT) -> list[Message]:
    """*member*'s sent inbox messages, newest first, at most *limit*; never another member's."""
    M = Message
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        rows = conn.execute(select(M.id, M.trigger, M.occasion, M.sent_at)
                            .where(M.merchant_id == member.merchant_id, M.member_id == member.id,
                                   M.channel == INBOX, M.status == SENT)
                            .order_by(M.sent_at.desc(), M.id.desc()).limit(limit)).all()
    return [Message(id=i, trigger=trigger, occasion=occasion, sent_at=sent_at)
            for i, trigger, occasion, sent_at in rows]


def entries(engine: Engine, keys: KeyStore, secret: bytes, member: Member, now: datetime, zone: ZoneInfo,
            campaigns: CampaignStore | None = None, limit: int = LIMIT) -> list[Entry]:
    """The card's inbox for *member* at *now*: each sent inbox message in words, newest first;
    a campaign's words come from *campaigns* (the owner's, campaigns.py), a trigger's are those the
    worker would send (texts.words_for: the member's A/B variant on the day it was sent, the
    owner's words, or the built-in ones).

    A message whose words cannot be found (a trigger without a text in templates.py, a campaign
    whose file is gone) is left out and logged, rather than failing the member's card."""
    rows = sent_rows(engine, member, limit)
    if not rows:
        return []
    filled, language = compose.values(engine, keys, secret, member, now)
    program = program_of(engine, member.merchant_id)
    out = []
    for row in rows:
        try:
            rendered = templates.render(row.trigger, language, filled,
                                        _words(engine, program, row, member, language, campaigns))
        except (KeyError, ConfigError) as exc:
            log.warning("inbox.no_text", extra={"message_id": row.id, "trigger": row.trigger, "missing": str(exc)})
            continue
        paragraphs = rendered.text.rstrip("\n").split("\n\n")
        links = (filled["card_url"], filled["unsubscribe_url"])
        out.append(Entry(row.id, row.trigger, utc(row.sent_at).astimezone(zone), rendered.subject,
                         tuple(linked(p, links) for p in paragraphs if p != "--")))
    return out


def _words(engine: Engine, program: Program, row: Message, member: Member, language: str,
           campaigns: CampaignStore | None) -> Text | None:
    """The owner's words of *row* (a campaign's, or a trigger's as texts.words_for finds them on the
    day it was sent), None for the built-in ones; raises ConfigError."""
    if row.trigger != CAMPAIGN:
        return words_for(engine, program, member.merchant_id, member.id, row.trigger, language, utc(row.sent_at))
    if campaigns is None:
        raise ConfigError("no campaign texts given")
    return campaigns.text(member.merchant_id, occasion_of(row.occasion), language)


def linked(paragraph: str, links: tuple[str, ...]) -> Markup:
    """*paragraph* escaped, each of *links* (ours: the card, the unsubscribe page) made a link.

    Not Jinja's ``urlize``: the card's URL is upper case (the QR code's alphanumeric mode), and
    urlize takes ``HTTPS://`` for a bare host and links ``https://HTTPS://...``."""
    out = escape(paragraph)
    for url in links:
        safe = escape(url)
        out = out.replace(safe, Markup(f'<a href="{safe}" rel="nofollow noopener">{safe}</a>'))
    return Markup(out)


def texts(language: str) -> dict[str, str]:
    return TEXTS.get(language, TEXTS["en"])
