"""The owner's fleet and admin pages: kiosks with presence and versions, offline-redemption
conflicts to settle (who and why are recorded), and the merchant's API tokens."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud import accounts
from cloud.automations import bounces, opens, outbox
from cloud.link import documents
from cloud.link.state import KioskRow
from cloud.members import HUB_KIOSK
from cloud.metrics.lift import winback_lift
from cloud.metrics.queries import snapshot
from cloud.models import Conflict, HubEvent
from cloud.web import context
from cloud.web.context import login_required
from kiosk.common.errors import BusError, ConfigError

bp = Blueprint("fleet", __name__, url_prefix="/owner")


@bp.route("/fleet")
@login_required()
def index():
    hub, merchant = context.hub(), context.account().merchant
    latest = documents.latest_version(hub.engine, merchant)
    try:
        rows, broker_error = context.publisher().kiosk_states(merchant), None
    except (BusError, ConfigError) as exc:
        rows, broker_error = {}, str(exc)
    conflicts = hub.events().conflicts(merchant)
    seen = last_events(hub.engine, merchant)
    for kiosk in seen:  # a kiosk the hub has events from but no retained state of (yet)
        rows.setdefault(kiosk, KioskRow(kiosk))
    rows.pop(HUB_KIOSK, None)
    return render_template("fleet.html", rows=rows, latest=latest, broker_error=broker_error,
                           conflicts=conflicts, seen=seen)


def last_events(engine, merchant: str) -> dict:
    """When the hub last received an event from each kiosk of *merchant* ("last seen")."""
    with Session(engine) as session:
        rows = session.execute(select(HubEvent.kiosk_id, func.max(HubEvent.received_at))
                               .where(HubEvent.merchant_id == merchant).group_by(HubEvent.kiosk_id))
        return {kiosk: at for kiosk, at in rows}


@bp.route("/conflicts/<int:conflict_id>/settle", methods=["POST"])
@login_required(("owner",))
def settle(conflict_id: int):
    note = request.form.get("note", "").strip()[:500]
    with Session(context.hub().engine) as session, session.begin():
        row = session.get(Conflict, conflict_id)
        if row is None or row.merchant_id != context.account().merchant:
            abort(404)
        if not note:
            flash("Say how it was settled (e.g. 'customer paid for the second coffee').", "error")
        elif row.resolved_at is None:
            row.resolved_at, row.resolved_by, row.resolution = context.now(), context.account().login, note
            flash("Conflict marked settled.", "ok")
    return redirect(url_for(".index"))


@bp.route("/tokens", methods=["GET", "POST"])
@login_required(("owner",))
def tokens():
    engine, who = context.hub().engine, context.account()
    created = None
    if request.method == "POST":
        try:
            created = accounts.create_token(engine, who.merchant, request.form.get("name", ""), who.login)
        except ConfigError as exc:
            flash(str(exc), "error")
    return render_template("tokens.html", tokens=accounts.tokens(engine, who.merchant), created=created)


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required(("owner",))
def revoke_token(token_id: int):
    if not accounts.revoke_token(context.hub().engine, context.account().merchant, token_id):
        abort(404)
    flash("Token revoked.", "ok")
    return redirect(url_for(".tokens"))


@bp.route("/messages")
@login_required()
def messages():
    """What the automations did: messages per trigger and status, how many of those with a card
    link were opened from it (cloud/automations/opens.py), per channel, the ones that did not
    arrive with the reason (cloud/automations/outbox.py), the e-mails that bounced later with the
    report's reason (cloud/automations/bounces.py), and the win-backs' lift against the
    held-out control group (cloud/metrics/lift.py)."""
    engine, merchant = context.hub().engine, context.account().merchant
    with snapshot(engine) as conn:
        lift = winback_lift(conn, merchant, context.now())
    by_trigger = outbox.counts(engine, merchant)
    triggers = sorted({t for t, _ in by_trigger})
    statuses = sorted({s for _, s in by_trigger} | {s for _, s in outbox.channel_counts(engine, merchant)})
    return render_template("messages.html", by_trigger=by_trigger, triggers=triggers, statuses=statuses,
                           opened=opens.by_trigger(engine, merchant), by_channel=outbox.channel_counts(engine, merchant),
                           failures=outbox.failures(engine, merchant), lift=lift,
                           bounces=bounces.recent(engine, merchant),
                           bounces_read=context.hub().config.smtp.bounce_maildir is not None)
