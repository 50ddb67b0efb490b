"""What a customer touches: the join page (``/j/<code>``) and their card (``/P/<token>``).

The card lives at the URL inside the pass QR, so a phone camera opens it and the kiosk reads
the same code. The token is the credential: it is verified with the merchant's public keys
(as a kiosk does) and the page shows that member only. A revoked pass shows that it is
revoked. The card is an installable web app; its service worker keeps the last copy so the
QR shows without a connection. Opened from a message's link (``?m=<message id>``), the card
marks that message opened (cloud/automations/opens.py); the page is the same either way.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import date, timedelta

from flask import Blueprint, Response, abort, current_app, jsonify, redirect, render_template, request, url_for
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session


from cloud import cards, members
from cloud.automations import inbox, opens
from cloud.models import Member
from cloud.passes import enrol, export_keys
from cloud.store import get_merchant
from cloud.web import context
from cloud.web.campaigns import store as campaign_store
from cloud.web.i18n import texts, unit
from cloud.web.secret import secret_key
from kiosk.common.errors import BusError, ConfigError, PassError
from kiosk.protocol import qr
from kiosk.protocol.ids import ID_PATTERN
from kiosk.protocol.passes import KeyRing, PassClaims, PassRejected, PassVerifier, Reason, parse_token, pass_url

bp = Blueprint("public", __name__)
log = logging.getLogger(__name__)

JOIN_IP_WINDOW, JOIN_SHOP_WINDOW = 600, 3600  # seconds; the counts are [web] joins_per_ip / joins_per_shop
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}\.[A-Za-z]{2,24}")
_CODE = re.compile(r"(?P<merchant>[a-z0-9-]{1,32})(?:\.(?P<kiosk>[a-z0-9-]{1,32}))?")
_TOKEN = re.compile(r"[0-9A-Za-z.-]{10,300}")


def _shop(code: str):
    """(merchant row, kiosk id or None) for a join code ``merchant`` or ``merchant.kiosk``; 404 otherwise."""
    match = _CODE.fullmatch(code)
    if match is None:
        abort(404)
    with Session(context.hub().engine) as session:
        shop = get_merchant(session, match["merchant"])
    if shop is None:
        abort(404)
    return shop, match["kiosk"]


@bp.route("/j/<code>", methods=["GET", "POST"])
def join(code: str):
    shop, kiosk = _shop(code)
    program = cards.program_of(context.hub().engine, shop.id)
    lang = program.language
    t = texts(lang)
    ref = request.values.get("ref", "")
    referrer = members.get_member(context.hub().engine, shop.id, ref) if ID_PATTERN.fullmatch(ref or "") else None
    ref = referrer.id if referrer is not None and referrer.erased_at is None else ""
    form = {"name": "", "email": "", "birthday": "", "marketing": False}
    errors: list[str] = []
    if request.method == "POST":
        form = {"name": request.form.get("name", "").strip(), "email": request.form.get("email", "").strip(),
                "birthday": request.form.get("birthday", "").strip(), "marketing": bool(request.form.get("marketing"))}
        limits, web = context.limiter(), context.hub().config.web
        if not (limits.hit(f"join-ip:{context.client_ip()}", web.joins_per_ip, JOIN_IP_WINDOW)
                and limits.hit(f"join-shop:{shop.id}", web.joins_per_shop, JOIN_SHOP_WINDOW)):
            return render_template("join.html", shop=shop, t=t, lang=lang, unit=unit(lang, program.unit), form=form,
                                   ref=ref, errors=[t["slow_down"]]), 429
        profile, errors = _profile(form, request.form.get("program") == "yes", t, kiosk, ref, lang)
        if not errors:
            try:
                issued = enrol(context.hub().engine, context.hub().keys, shop.id, form["name"], profile, context.now())
            except ConfigError as exc:
                errors = [str(exc)]
            else:
                if profile["birthday"] or profile["referred_by"]:  # the kiosks need them for the bonuses
                    member = members.get_member(context.hub().engine, shop.id, issued.member)
                    members.send_profile(context.hub().events(), member, context.now())
                return redirect(issued.url, code=303)
    return render_template("join.html", shop=shop, t=t, lang=lang, unit=unit(lang, program.unit), form=form,
                           ref=ref, errors=errors), 400 if errors else 200


def _profile(form: dict, consented: bool, t: dict, kiosk: str | None, ref: str, lang: str):
    errors = []
    if not form["name"] or len(form["name"]) > 80:
        errors.append(t["need_name"])
    if not consented:
        errors.append(t["need_consent"])
    if form["email"] and (len(form["email"]) > 254 or not EMAIL.fullmatch(form["email"])):
        errors.append(t["bad_email"])
    birthday = None
    if form["birthday"]:
        try:
            birthday = date.fromisoformat(form["birthday"])
        except ValueError:
            errors.append(t["bad_birthday"])
        else:
            today = context.now().date()
            if not today - timedelta(days=120 * 366) <= birthday <= today:
                errors.append(t["bad_birthday"])
    at = context.now()
    profile = {"email": form["email"] or None, "birthday": birthday, "referred_by": ref or None,
               "joined_via": kiosk, "language": lang, "consent_program_at": at, "created_at": at,
               "consent_marketing_at": at if form["marketing"] else None}
    return profile, errors


def _verify(token: str) -> tuple[Member, PassClaims, bool]:
    """The member a card URL's token names, and whether the pass is revoked; 404 for anything
    that is not a valid pass of a merchant this hub keeps."""
    if not _TOKEN.fullmatch(token):
        abort(404)
    try:
        claims, _ = parse_token(token)
        ring = replace(KeyRing.from_document(export_keys(context.hub().engine, claims.merchant)), base_url=None)
        PassVerifier(claims.merchant, ring).verify(f"https://hub/P/{token}")
        revoked = False
    except PassRejected as exc:
        if exc.reason != Reason.REVOKED:
            abort(404)
        revoked = True
    except (PassError, ConfigError):
        abort(404)
    member = members.get_member(context.hub().engine, claims.merchant, claims.member)
    if member is None:
        abort(404)
    return member, claims, revoked or member.erased_at is not None


@bp.route("/P/<token>")
def card(token: str):
    member, claims, revoked = _verify(token)
    hub = context.hub()
    view = cards.card(hub.engine, member, context.now())
    lang = member.language or view.program.language
    t = texts(lang)
    with Session(hub.engine) as session:
        shop = get_merchant(session, member.merchant_id)
    if revoked:
        return render_template("card_revoked.html", shop=shop, t=t, lang=lang, left=member.erased_at is not None), 410
    _opened(member)
    # the very text the pass was issued with (a browser lowercases the host it shows)
    svg = qr.make_qr(pass_url(shop.base_url, token.upper())).svg_inline(scale=8, border=4, dark="#000", light="#fff", omitsize=True)
    referral = url_for(".join", code=shop.id, ref=member.id, _external=True)
    messages = inbox.entries(hub.engine, hub.keys, secret_key(hub.data_dir), member, context.now(),
                             view.program.zone, campaign_store())
    return render_template("card.html", shop=shop, t=t, lang=lang, unit=unit(lang, view.program.unit), view=view,
                           qr_svg=svg, token=token, referral=referral, inbox=messages, inbox_t=inbox.texts(lang))


def _opened(member: Member) -> None:
    """Mark the message whose link opened this card (``?m=<id>``) as opened, if it is one of
    *member*'s sent messages (opens.record). Any other ``m`` is ignored without a word, so the
    page tells nobody whether an id exists; a HEAD or a browser's prefetch is no open. The card
    matters more than the count: a database error here is logged and the card still shows."""
    message = opens.message_id(request.args.get(opens.PARAM))
    prefetch = request.headers.get("Sec-Purpose", request.headers.get("Purpose", "")).startswith("prefetch")
    if message is None or request.method != "GET" or prefetch:
        return
    try:
        opens.record(context.hub().engine, member, message, context.now())
    except SQLAlchemyError as exc:
        log.warning("card.open_not_recorded", extra={"merchant": member.merchant_id, "message_id": message,
                                                      "error": str(exc)[:300]})


@bp.route("/P/<token>/data.json")
def card_data(token: str):
    member, _, revoked = _verify(token)
    if revoked:
        abort(410)
    body = members.export_json(context.hub().engine, member)
    return Response(body, mimetype="application/json",
                    headers={"Content-Disposition": f"attachment; filename=stempel-{member.id}.json"})


@bp.route("/P/<token>/leave", methods=["POST"])
def leave(token: str):
    member, _, revoked = _verify(token)
    hub = context.hub()
    t = texts(member.language or "en")
    if not revoked:
        members.erase(hub.events(), member.merchant_id, member.id, context.now())
        try:
            context.publisher().keys(member.merchant_id)
        except (BusError, ConfigError):
            pass  # recorded: the next keys publish carries the revocation (the owner's fleet page says so)
    with Session(hub.engine) as session:
        shop = get_merchant(session, member.merchant_id)
    return render_template("card_revoked.html", shop=shop, t=t, lang=member.language or "en", left=True)


@bp.route("/P/<token>/manifest.webmanifest")
def manifest(token: str):
    member, _, _ = _verify(token)
    with Session(context.hub().engine) as session:
        shop = get_merchant(session, member.merchant_id)
    return jsonify({"name": f"{shop.name}", "short_name": shop.name[:12], "start_url": f"/P/{token}",
                    "scope": f"/P/{token}", "display": "standalone", "background_color": "#ffffff",
                    "theme_color": "#2f4858",
                    "icons": [{"src": url_for("static", filename="icon.svg"), "sizes": "any",
                               "type": "image/svg+xml"}]}), 200, {"Content-Type": "application/manifest+json"}


@bp.route("/sw.js")
def service_worker():
    """Served from the root so its scope covers every card (``/P/...``)."""
    response = current_app.send_static_file("sw.js")
    response.headers["Content-Type"] = "text/javascript"
    response.headers["Service-Worker-Allowed"] = "/"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.route("/healthz")
def health():
    return {"ok": context.hub().events().healthy()}
