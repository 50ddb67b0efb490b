"""One message's e-mail: the words (templates.py) filled with the member's card, and the headers.

Values come from the member's card as the engine folds it (cloud/cards.py), at the moment of
sending, so a balance is current. The card link is the member's newest pass URL, signed again
with the merchant's key (Ed25519 signatures are deterministic: the same URL the pass carries),
plus ``?m=<message id>`` so that opening the card from the message counts as opened (opens.py).
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

from cloud import cards, nps
from cloud.automations import card_extras, opens, templates, unsubscribe, winback
from cloud.keys import KeyStore
from cloud.models import Member, Merchant, Message, PassRecord
from cloud.store import active_keys
from cloud.web.i18n import unit
from kiosk.protocol.passes import PassSigner


def card_url(session: Session, keys: KeyStore, shop: Merchant, member: Member, message_id: int | None = None) -> str:
    """The URL of *member*'s newest valid pass, or the hub's address if they have none; with
    *message_id*, the pass URL carries ``?m=<message_id>`` so the card page can tell that message
    was opened (opens.py). Only a link that leaves the QR: ``?`` and ``=`` are outside its
    alphanumeric mode, and the pass itself stays the plain URL."""
    serial = session.scalar(select(PassRecord.serial).where(PassRecord.member_id == member.id,
                                                           PassRecord.revoked_at.is_(None),
                                                           PassRecord.serial.is_not(None))
                            .order_by(PassRecord.id.desc()).limit(1))
    if serial is None:
        return shop.base_url
    signer = PassSigner(shop.id, keys.load(shop.id, active_keys(session, shop.id)[0].kid))
    url = signer.url(shop.base_url, member.id, serial)
    return url if message_id is None else f"{url}?{opens.PARAM}={int(message_id)}"


def values(engine: Engine, keys: KeyStore, secret: bytes, member: Member, now: datetime, *,
           message_id: int | None = None, nps_after_visits: int | None = None) -> tuple[dict[str, str], str]:
    """The placeholders' values for *member* at *now*, and the message's language; *message_id*
    goes into the card link (card_url) of the message it is written for; with *nps_after_visits*
    (``[automations] nps_after_visits``), ``nps_url`` when the card would ask the NPS question
    (nps_values)."""
    view = cards.card(engine, member, now)
    program = view.program
    language = templates.language_of(member.language, program.language)
    goal = view.goal
    reward = next((r.name for r in sorted(program.rewards, key=lambda r: r.cost) if r.cost == goal),
                  program.rewards[0].name)
    with Session(engine) as session:
        shop = session.get(Merchant, member.merchant_id)
        link = card_url(session, keys, shop, member, message_id)
    return {"first_name": (member.name.split() or [""])[0], "shop": shop.name, "balance": str(view.state.balance),
            "unit": unit(language, program.unit), "reward": reward, "remaining": str(view.remaining),
            "card_url": link, "unsubscribe_url": unsubscribe.url(shop.base_url, secret, member.id),
            **card_extras.extras(view.state, view.tier, program, now, language),
            **winback.offer_values(view.state, program, now, language),
            **nps_values(engine, member, view, link, shop.base_url, nps_after_visits, now)}, language


NPS_ANCHOR = "nps"  # the id of the card's NPS section (templates/nps_card.html)


def nps_values(engine: Engine, member: Member, view: cards.CardView, link: str, base_url: str,
               after_visits: int | None, now: datetime) -> dict[str, str]:
    """``$nps_url``, the card's NPS form (*link* with the section's anchor), when the card page
    would ask *member* now (nps.prompt says ``ask``: from the *after_visits*-th visit, not
    answered this quarter); else nothing, and templates.render adds no question. A link to
    the form rather than a score in the URL: a GET never records an answer (mail scanners open
    links), and the form's POST carries its CSRF token. Nothing without a card (*link* is the
    hub's address then) or without *after_visits*."""
    if after_visits is None or link == base_url:
        return {}
    asked = nps.prompt(engine, member.merchant_id, member.id, view.state.visits, after_visits, now, view.program.zone)
    return {"nps_url": f"{link}#{NPS_ANCHOR}"} if asked == "ask" else {}


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
