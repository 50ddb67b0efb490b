"""The owner's member pages: search, a member's ledger with the rule behind each entry,
corrections, passes (revoke, re-issue), GDPR export and erasure. A member of another
merchant is a 404, the same as one that does not exist."""

from __future__ import annotations

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for

from cloud import cards, members
from cloud.passes import reissue_url, revoke_member
from cloud.web import context
from cloud.web.context import login_required
from kiosk.common.errors import BusError, ConfigError

bp = Blueprint("members", __name__, url_prefix="/owner/members")


def _member(member_id: str):
    row = members.get_member(context.hub().engine, context.account().merchant, member_id)
    if row is None:
        abort(404)
    return row


@bp.route("/")
@login_required()
def index():
    query = request.args.get("q", "")[:100]
    try:
        found = members.search(context.hub().engine, context.account().merchant, query)
        error = None
    except ConfigError as exc:
        found, error = [], str(exc)
    return render_template("members.html", members=found, query=query, error=error)


@bp.route("/<member_id>")
@login_required()
def show(member_id: str):
    row = _member(member_id)
    view = cards.card(context.hub().engine, row, context.now())
    return render_template("member.html", member=row, view=view, new_pass=request.args.get("new_pass"))


@bp.route("/<member_id>/adjust", methods=["POST"])
@login_required()
def adjust(member_id: str):
    row = _member(member_id)
    hub = context.hub()
    view = cards.card(hub.engine, row, context.now())
    try:
        delta = int(request.form.get("delta", ""))
    except ValueError:
        delta = 0
    try:
        members.adjust(hub.events(), row.merchant_id, row.id, delta, request.form.get("reason", ""),
                       context.account().login, view.state.balance, context.now())
        flash(f"Recorded a correction of {delta:+d} {view.program.unit}.", "ok")
    except ConfigError as exc:
        flash(str(exc), "error")
    return redirect(url_for(".show", member_id=row.id))


@bp.route("/<member_id>/revoke", methods=["POST"])
@login_required(("owner",))
def revoke(member_id: str):
    row = _member(member_id)
    done = revoke_member(context.hub().engine, row.merchant_id, row.id)
    flash(f"Revoked {', '.join(done.names())}." if done else "Every pass of this member was revoked already.", "ok")
    _publish_keys(row.merchant_id)
    return redirect(url_for(".show", member_id=row.id))


@bp.route("/<member_id>/reissue", methods=["POST"])
@login_required(("owner",))
def reissue(member_id: str):
    row = _member(member_id)
    try:
        issued = reissue_url(context.hub().engine, context.hub().keys, row.merchant_id, row.id)
    except ConfigError as exc:
        flash(str(exc), "error")
        return redirect(url_for(".show", member_id=row.id))
    flash(f"New pass {issued.serial} issued; its card: {issued.url}", "ok")
    return redirect(url_for(".show", member_id=row.id, new_pass=issued.url))


@bp.route("/<member_id>/export.json")
@login_required(("owner",))
def export(member_id: str):
    row = _member(member_id)
    return Response(members.export_json(context.hub().engine, row), mimetype="application/json",
                    headers={"Content-Disposition": f"attachment; filename=stempel-{row.id}.json"})


@bp.route("/<member_id>/erase", methods=["POST"])
@login_required(("owner",))
def erase(member_id: str):
    row = _member(member_id)
    if request.form.get("confirm") != row.id:
        flash("Type the member id to confirm the erasure.", "error")
        return redirect(url_for(".show", member_id=row.id))
    members.erase(context.hub().events(), row.merchant_id, row.id, context.now())
    flash(f"Member {row.id} erased: personal data deleted, passes revoked; the ledger keeps the anonymous id.", "ok")
    _publish_keys(row.merchant_id)
    return redirect(url_for(".index"))


def _publish_keys(merchant: str) -> None:
    try:
        doc = context.publisher().keys(merchant)
        flash(f"Kiosks told (keys version {doc['version']}).", "ok")
    except (BusError, ConfigError) as exc:
        flash(f"Saved at the hub, but the kiosks could not be told yet ({exc}). "
              "Run `stempel-hub keys publish` once the broker is back.", "error")
