"""The one-click unsubscribe link in every message (RFC 8058) and what following it does.

The link is ``<hub>/u/<token>`` where the token is the member id and an HMAC-SHA256 of it
under a key derived from the web's secret (cloud/web/secret.py): the hub can check a token
without storing one, nobody can make one for another member, and the link keeps working for
as long as the secret does. Mail providers POST ``List-Unsubscribe=One-Click`` to it
(``List-Unsubscribe-Post``); a person who opens it sees a page with one button
(cloud/web/unsubscribe.py). Either way the marketing consent is withdrawn and the member's
pending messages are suppressed at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.engine import Engine

from cloud.automations.outbox import PENDING, SUPPRESSED
from cloud.models import Member, Message
from kiosk.protocol.ids import ID_PATTERN

log = logging.getLogger(__name__)
_PURPOSE = b"stempel unsubscribe v1\0"


def _mac(secret: bytes, member: str) -> str:
    key = hmac.new(secret, _PURPOSE, hashlib.sha256).digest()  # never the session key itself
    digest = hmac.new(key, member.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token(secret: bytes, member: str) -> str:
    return f"{member}.{_mac(secret, member)}"


def member_of(secret: bytes, value: str) -> str | None:
    """The member id *value* was made for, or None if it is not a token of this hub."""
    member, _, mac = value.partition(".")
    if not ID_PATTERN.fullmatch(member) or not mac:
        return None
    return member if hmac.compare_digest(mac, _mac(secret, member)) else None


def url(base_url: str, secret: bytes, member: str) -> str:
    return f"{base_url.rstrip('/')}/u/{token(secret, member)}"


def unsubscribe(engine: Engine, member: str, now: datetime) -> bool:
    """Withdraw *member*'s marketing consent and suppress their pending messages; False if there
    was no consent to withdraw (a second click changes nothing)."""
    with engine.begin() as conn:
        done = conn.execute(update(Member).where(Member.id == member, Member.consent_marketing_at.is_not(None))
                            .values(consent_marketing_at=None))
        conn.execute(update(Message).where(Message.member_id == member, Message.status == PENDING)
                     .values(status=SUPPRESSED, last_error="the member unsubscribed"))
    if done.rowcount:
        log.info("automations.unsubscribed", extra={"member": member, "at": now.isoformat()})
    return bool(done.rowcount)
