"""One message's e-mail: the words (templates.py) filled with the member's card, and the headers.

Values come from the member's card as the engine folds it (cloud/cards.py), at the moment of
sending, so a balance is current. The card link is the member's newest pass URL, signed again
with the merchant's key (Ed25519 signatures are deterministic: the same URL the pass carries).
Every message carries ``List-Unsubscribe`` and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
(RFC 8058; the provider's DKIM signature must cover them) and a Message-ID made from the row id,
the same on any attempt, so a receiver can drop a copy.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cloud import cards
from cloud.automations import card_extras, templates, unsubscribe, winback
from cloud.keys import KeyStore
from cloud.models import Member, Merchant, Message, PassRecord
from cloud.store import active_keys
from cloud.web.i18n import unit
from kiosk.protocol.passes import PassSigner


def card_url(session: Session, keys: KeyStore, shop: Merchant, member: Member) -> str:
    """The URL of *member*'s newest valid pass, or the hub's address if they have none."""
    serial = session.scalar(select(PassRecord.serial).where(PassRecord.member_id == member.id,
                                                           PassRecord.revoked_at.is_(None),
                                                           PassRecord.serial.is_not(None))
                            .order_by(PassRecord.id.desc()).limit(1))
    if serial is None:
        return shop.base_url
    signer = PassSigner(shop.id, keys.load(shop.id, active_keys(session, shop.id)[0].kid))
    return signer.url(shop.base_url, member.id, serial)


def values(engine: Engine, keys: KeyStore, secret: bytes, member: Member, now: datetime) -> tuple[dict[str, str], str]:
    """The placeholders' values for *member* at *now*, and the message's language."""
    view = cards.card(engine, member, now)
    program = view.program
    language = templates.language_of(member.language, program.language)
    goal = view.goal
    reward = next((r.name for r in sorted(program.rewards, key=lambda r: r.cost) if r.cost == goal),
                  program.rewards[0].name)
    with Session(engine) as session:
        shop = session.get(Merchant, member.merchant_id)
        link = card_url(session, keys, shop, member)
    return {"first_name": (member.name.split() or [""])[0], "shop": shop.name, "balance": str(view.state.balance),
            "unit": unit(language, program.unit), "reward": reward, "remaining": str(view.remaining),
            "card_url": link, "unsubscribe_url": unsubscribe.url(shop.base_url, secret, member.id),
            **card_extras.extras(view.state, view.tier, program, now, language),
            **winback.offer_values(view.state, program, now, language)}, language


def email(message: Message, member: Member, sender: str, filled: dict[str, str], language: str,
          now: datetime, text: templates.Text | None = None) -> EmailMessage:
    """The e-mail of *message* to *member*, from *sender* in the shop's name; *text* instead of the
    trigger's words (a campaign's, cloud/automations/campaigns.py)."""
    rendered = templates.render(message.trigger, language, filled, text)
    address = parseaddr(sender)[1]
    out = EmailMessage()
    out["From"] = formataddr((filled["shop"], address))
    out["To"] = member.email
    out["Subject"] = rendered.subject
    out["Date"] = format_datetime(now)
    out["Message-ID"] = f"<stempel-{message.id}.{message.trigger}@{address.partition('@')[2] or 'stempel'}>"
    out["List-Unsubscribe"] = f"<{filled['unsubscribe_url']}>"
    out["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    out["Auto-Submitted"] = "auto-generated"
    out.set_content(rendered.text)
    out.add_alternative(rendered.html, subtype="html")
    out["Content-Language"] = language  # after the parts: set_content clears every Content-* header
    return out
