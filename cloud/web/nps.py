"""The NPS question on the member's card: ``nps_prompt(view)`` for card.html's include, and
``POST /P/<token>/nps`` for the answer.

The token is the credential, verified exactly as the card page does (public._verify); the form
carries Flask-WTF's CSRF token like every form of the hub. Anything but a plain score 0–10 and
a short printable comment is refused with 400 and the reason, in the member's language.
"""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from sqlalchemy.orm import Session

from cloud import cards, nps
from cloud.models import Member
from cloud.store import get_merchant
from cloud.web import context
from cloud.web.public import _verify

bp = Blueprint("nps", __name__)

TEXTS = {
    "en": {"nps_question": "How likely are you to recommend us?", "nps_scale": "0 = not at all, 10 = very likely",
           "nps_comment": "Anything you would like to tell us? (optional)", "nps_send": "Send",
           "nps_thanks": "Thank you for your answer!", "nps_back": "Back to my card",
           "nps_score": "Please choose a score from 0 to 10.",
           "nps_bad_comment": "The comment can have at most 500 characters of plain text.",
           "nps_answered": "You have already answered this quarter. Thank you!",
           "nps_not_asked": "Your card does not ask this yet.", "nps_left": "This card is no longer active.",
           "nps_title": "Your answer"},
    "de": {"nps_question": "Wie wahrscheinlich ist es, dass du uns weiterempfiehlst?",
           "nps_scale": "0 = gar nicht, 10 = sehr wahrscheinlich",
           "nps_comment": "Möchtest du uns noch etwas sagen? (freiwillig)", "nps_send": "Senden",
           "nps_thanks": "Danke für deine Antwort!", "nps_back": "Zurück zu meiner Karte",
           "nps_score": "Bitte wähle eine Zahl von 0 bis 10.",
           "nps_bad_comment": "Der Kommentar darf höchstens 500 Zeichen einfachen Text haben.",
           "nps_answered": "Du hast in diesem Quartal schon geantwortet. Danke!",
           "nps_not_asked": "Deine Karte fragt das noch nicht.", "nps_left": "Diese Karte ist nicht mehr aktiv.",
           "nps_title": "Deine Antwort"},
}
# why each refusal is refused: (HTTP status, the text shown)
REFUSALS = {"score": (400, "nps_score"), "comment": (400, "nps_bad_comment"), "answered": (409, "nps_answered"),
            "not_asked": (403, "nps_not_asked"), "left": (410, "nps_left")}


def nps_texts(language: str) -> dict[str, str]:
    return TEXTS.get(language, TEXTS["en"])


def _after_visits() -> int:
    return context.hub().config.automations.nps_after_visits


@bp.app_context_processor
def _card_helpers() -> dict:
    """card.html asks ``nps_prompt(view)`` only when this blueprint is registered."""

    def nps_prompt(view: cards.CardView) -> dict | None:
        state = nps.prompt(context.hub().engine, view.member.merchant_id, view.member.id, view.state.visits,
                           _after_visits(), context.now(), view.program.zone)
        if state is None:
            return None
        return {"state": state, "t": nps_texts(view.member.language or view.program.language)}

    return {"nps_prompt": nps_prompt}


@bp.route("/P/<token>/nps", methods=["POST"])
def answer(token: str):
    member, _, revoked = _verify(token)
    hub = context.hub()
    view = cards.card(hub.engine, member, context.now())
    lang = member.language or view.program.language
    try:
        if revoked:
            raise nps.NpsRefused("left", f"member {member.id} has left or the pass is revoked")
        if view.state.visits < _after_visits():
            raise nps.NpsRefused("not_asked", f"member {member.id} has {view.state.visits} visits")
        score, comment = nps.parse_answer(request.form.get("score"), request.form.get("comment"))
        nps.record(hub.engine, member.merchant_id, member.id, score, comment, context.now(), view.program.zone)
    except nps.NpsRefused as exc:
        return _refused(member, token, lang, exc)
    return redirect(url_for("public.card", token=token), code=303)


def _refused(member: Member, token: str, lang: str, exc: nps.NpsRefused):
    status, key = REFUSALS[exc.reason]
    t = nps_texts(lang)
    with Session(context.hub().engine) as session:
        shop = get_merchant(session, member.merchant_id)
    back = url_for("public.card", token=token) if exc.reason != "left" else None
    return render_template("nps_refused.html", shop=shop, lang=lang, t=t, message=t[key], back=back), status
