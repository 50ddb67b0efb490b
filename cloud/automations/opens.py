"""Whether a message was opened, where that can be measured: the member's card page visited
from the message's own link (issue 11, item 6).

The card link of an e-mail or a webhook message carries the message's id (``?m=<id>``, written
by compose.values); the card page (cloud/web/public.py) hands it to ``record``. No tracking
pixel: an open is a member who came to their card from the message. So a member who reads the
message and never clicks, or who opens the card from their home screen, is not counted, and a
mail system that follows every link to scan it may count one that nobody read.

An open counts once: ``record`` is one ``UPDATE ... WHERE opened_at IS NULL``, so two tabs or two
web workers set the first time only. The id alone proves nothing, so the row must also be the
card's member's, of the card's merchant, and sent (or ``unknown``: the send may have gone out).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import Engine

from cloud.automations.outbox import EMAIL, SENT, UNKNOWN
from cloud.db import READ_ONLY
from cloud.models import Member, Message

M = Message
PARAM = "m"  # the card link's query parameter: /P/<token>?m=<message id>
LINKED = (EMAIL, "webhook")  # the channels whose message carries the card link (the inbox lives on the card)
_ID = re.compile(r"[1-9][0-9]{0,17}")  # at most 18 digits: below 2**63, whatever the backend's integer


def message_id(raw: str | None) -> int | None:
    """The message id in a card link's ``m``, or None for anything but a plain positive decimal
    (``abc``, ``1e9``, ``-1``, 200 digits): such a value is ignored, never an error."""
    if raw is None or len(raw) > 18 or not _ID.fullmatch(raw):
        return None
    return int(raw)


def record(engine: Engine, member: Member, message: int, now: datetime) -> bool:
    """Mark *message* opened at *now* if it is a sent (or unknown) e-mail or webhook message to
    *member* that is not marked yet; True if this call marked it. Raises SQLAlchemyError."""
    with engine.begin() as conn:
        done = conn.execute(update(M).where(M.id == message, M.merchant_id == member.merchant_id,
                                            M.member_id == member.id, M.channel.in_(LINKED),
                                            M.status.in_((SENT, UNKNOWN)), M.opened_at.is_(None))
                            .values(opened_at=now))
        return done.rowcount == 1


@dataclass(frozen=True)
class Opens:
    """One trigger's messages with a card link that arrived, and how many of them were opened."""

    sent: int
    opened: int

    @property
    def rate(self) -> float | None:
        return self.opened / self.sent if self.sent else None


def by_trigger(engine: Engine, merchant: str) -> dict[str, Opens]:
    """*merchant*'s e-mail and webhook messages per trigger: those sent (an ``unknown`` one counts
    once it was opened, proof it arrived), and the opened ones; what the owner's Messages page shows."""
    arrived = or_(M.status == SENT, and_(M.status == UNKNOWN, M.opened_at.is_not(None)))
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        rows = conn.execute(select(M.trigger, func.count(), func.count(M.opened_at))
                            .where(M.merchant_id == merchant, M.channel.in_(LINKED), arrived)
                            .group_by(M.trigger).order_by(M.trigger))
        return {trigger: Opens(sent, opened) for trigger, sent, opened in rows}
