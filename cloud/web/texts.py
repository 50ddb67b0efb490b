"""The owner's words for the automated messages: every trigger in German and English, built-in or
the owner's own (cloud/automations/texts.py), plus the template keys the programme's message A/B
tests name. Each is edited per language with its placeholders, previewed with a chosen member's
real card, sent as a test to the owner's own address through the hub's SMTP server (as a
campaign's test is, cloud/web/campaigns.py), and can go back to the built-in words.

Owners only (staff cannot change what every customer reads); a member of another merchant is
not found; every form carries the CSRF token. Register in ``cloud/web/__init__.py``.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from cloud.automations import compose, templates, texts
from cloud.models import Member, Message
from cloud.programs import program_of
from cloud.web import context, testsend
from cloud.web.context import login_required
from cloud.web.secret import secret_key
from kiosk.common.errors import ConfigError
from kiosk.rules.program import Program

bp = Blueprint("texts", __name__, url_prefix="/owner/messages/texts")
OWNER = ("owner",)


def _program() -> Program:
    return program_of(context.hub().engine, context.account().merchant)


def _key(key: str, program: Program) -> str:
    """*key* if this merchant has a page for it: a trigger, a variant key of the programme, or a
    key the owner wrote words for earlier; else 404."""
    if key in texts.TRIGGERS or key in texts.variants(program):
        return key
    if any(k == key for k, _ in texts.owned(context.hub().engine, context.account().merchant)):
        return key
    abort(404)


def _language(language: str) -> str:
    if language not in templates.LANGUAGES:
        abort(404)
    return language


@bp.route("/")
@login_required(OWNER)
def index():
    hub, merchant = context.hub(), context.account().merchant
    program = _program()
    owned = texts.owned(hub.engine, merchant)
    found = texts.variants(program)
    unused = sorted({k for k, _ in owned} - set(texts.TRIGGERS) - set(found))
    return render_template("texts.html", triggers=texts.TRIGGERS, labels=texts.LABELS, variants=found,
                           unused=unused, owned=owned, languages=templates.LANGUAGES,
                           names=templates.LANGUAGE_NAMES, switched_on=set(hub.config.automations.triggers))


def _written(key: str, member: Member, program: Program) -> tuple[str, templates.Text, dict[str, str], str]:
    """(trigger, words, values, language) of a message with *key*'s words to *member* now: their
    card's values, their language. Raises ConfigError (no words, or the card cannot be written)."""
    hub = context.hub()
    filled, language = compose.values(hub.engine, hub.keys, secret_key(hub.data_dir), member, context.now())
    trigger, text = texts.effective(hub.engine, program, member.merchant_id, key, language)
    if text is None:
        raise ConfigError(f"{key!r} has no {templates.LANGUAGE_NAMES[language]} words yet: write them above")
    return trigger or key, text, filled, language


def _page(key: str, program: Program, form: dict[str, str] | None = None):
    hub, who = context.hub(), context.account()
    owned = texts.owned(hub.engine, who.merchant)
    current = {}
    for language in templates.LANGUAGES:
        _, text = texts.effective(hub.engine, program, who.merchant, key, language)
        current[language] = text
    member = context.preview_member(who.merchant)
    preview = None
    if member is not None:
        try:
            trigger, text, filled, language = _written(key, member, program)
            preview = templates.render(trigger, language, filled, text)
        except ConfigError as exc:
            flash(f"Cannot write the preview: {exc}", "error")
    variant = texts.variants(program).get(key)
    return render_template("text.html", key=key, label=texts.LABELS.get(key), variant=variant,
                           triggers=texts.triggers_of(key, program), labels=texts.LABELS,
                           placeholders=sorted(texts.placeholders(key, program)), owned=owned, current=current,
                           form=form or {}, languages=templates.LANGUAGES, names=templates.LANGUAGE_NAMES,
                           member=member, preview=preview, login=who.login)


@bp.route("/<key>")
@login_required(OWNER)
def show(key: str):
    program = _program()
    return _page(_key(key, program), program)


@bp.route("/<key>/<language>", methods=["POST"])
@login_required(OWNER)
def save(key: str, language: str):
    program, who = _program(), context.account()
    key, language = _key(key, program), _language(language)
    subject, body = request.form.get("subject", "")[:1000], request.form.get("body", "")[:10000]
    try:
        texts.save(context.hub().engine, who.merchant, key, language, subject, body, program, who.login,
                   context.now())
    except ConfigError as exc:
        flash(str(exc), "error")
        return _page(key, program, {"language": language, "subject": subject, "body": body})
    flash(f"Saved: the next {texts.LABELS.get(key, key)} message in {templates.LANGUAGE_NAMES[language]} "
          "uses your words.", "ok")
    return redirect(url_for(".show", key=key, member=request.form.get("member") or None))


@bp.route("/<key>/<language>/reset", methods=["POST"])
@login_required(OWNER)
def reset(key: str, language: str):
    program, who = _program(), context.account()
    key, language = _key(key, program), _language(language)
    if texts.reset(context.hub().engine, who.merchant, key, language):
        flash(f"The {templates.LANGUAGE_NAMES[language]} words are the built-in ones again.", "ok")
    return redirect(url_for(".show", key=key, member=request.form.get("member") or None))


@bp.route("/<key>/test", methods=["POST"])
@login_required(OWNER)
def test(key: str):
    """Send the preview for the chosen member to the signed-in owner's own address."""
    program, who = _program(), context.account()
    key = _key(key, program)
    member = context.preview_member(who.merchant)

    def write(sender: str, now: datetime) -> EmailMessage:
        trigger, text, filled, language = _written(key, member, program)
        return compose.email(Message(id=0, trigger=trigger, occasion="test"), member, sender, filled, language,
                             now, text)
    testsend.to_owner(member, write)
    return redirect(url_for(".show", key=key, member=member.id if member else None))
