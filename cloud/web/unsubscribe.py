"""The unsubscribe link of every automated message (cloud/automations/unsubscribe.py).

``POST /u/<token>`` withdraws the marketing consent: mail providers send it for their
one-click button (RFC 8058, no cookies, no CSRF token — the signed token in the path is the
credential, and all it can do is unsubscribe its own member). ``GET`` only shows a page with
one button, because link scanners and previews fetch links and must not unsubscribe anyone.
"""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from sqlalchemy.orm import Session

from cloud.automations import unsubscribe as unsub
from cloud.automations.templates import language_of
from cloud.models import Member
from cloud.programs import program_of
from cloud.store import get_merchant
from cloud.web import context, csrf
from cloud.web.secret import secret_key

bp = Blueprint("unsubscribe", __name__)
csrf.exempt(bp)

TEXTS = {
    "en": {"ask": "Stop the news and offers by e-mail? Your card and your stamps stay as they are.",
           "button": "Unsubscribe", "done": "Done: you will get no more news by e-mail. Your card stays as it is."},
    "de": {"ask": "Keine Neuigkeiten und Angebote mehr per E-Mail? Deine Karte und deine Stempel bleiben.",
           "button": "Abmelden", "done": "Erledigt: du bekommst keine Neuigkeiten mehr per E-Mail. "
                                        "Deine Karte bleibt, wie sie ist."},
}


@bp.route("/u/<token>", methods=["GET", "POST"])
def unsubscribe(token: str):
    engine = context.hub().engine
    member_id = unsub.member_of(secret_key(context.hub().data_dir), token[:100])
    if member_id is None:
        abort(404)
    with Session(engine) as session:
        member = session.get(Member, member_id)
        shop = get_merchant(session, member.merchant_id) if member is not None else None
    if member is None or shop is None:
        abort(404)
    done = request.method == "POST"
    if done:
        unsub.unsubscribe(engine, member.id, context.now())
    lang = language_of(member.language, program_of(engine, shop.id).language)
    return render_template("unsubscribe.html", shop=shop.name, t=TEXTS[lang], done=done, lang=lang)
