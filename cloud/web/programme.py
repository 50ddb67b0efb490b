"""The owner's programme editor: TOML checked by the kiosk's own schema (errors at the field),
a preview on the shop's real visits, publishing (signed and pushed like ``stempel-hub config
push``), the version history with diffs, and a rollback that publishes an old version anew."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from cloud import programs
from cloud.link import documents
from cloud.web import context
from cloud.web.context import login_required
from kiosk.common.errors import BusError, ConfigError
from kiosk.rules.program import Program

bp = Blueprint("programme", __name__, url_prefix="/owner/programme")


def _errors(exc: ConfigError) -> list[tuple[str, str]]:
    """``draft: [field] message`` lines as (field, message) pairs for the editor."""
    out = []
    for line in str(exc).splitlines():
        field, _, message = line.removeprefix("draft: ").partition("] ")
        out.append((field.lstrip("["), message) if message else ("", line))
    return out


@bp.route("/", methods=["GET", "POST"])
@login_required(("owner",))
def edit():
    hub, merchant = context.hub(), context.account().merchant
    current = programs.current(hub.engine, merchant)
    source = request.form.get("source") if request.method == "POST" else None
    if source is None:
        source = current.source if current else programs.to_toml(Program())
    errors, result = [], None
    if request.method == "POST":
        try:
            draft = programs.parse_draft(source)
        except ConfigError as exc:
            errors = _errors(exc)
        else:
            if request.form.get("action") == "publish":
                return _publish(draft, source)
            result = programs.preview(hub.engine, merchant, draft, context.now())
    return render_template("programme.html", source=source, errors=errors, preview=result, current=current), \
        400 if errors else 200


def _publish(program: Program, source: str, note: str = ""):
    hub, who = context.hub(), context.account()
    doc = documents.prepare(hub.engine, hub.data_dir, who.merchant, program, source=source, by=who.login)
    try:
        context.publisher().program(doc)
        flash(f"Version {doc['version']} published to the kiosks{note}.", "ok")
    except (BusError, ConfigError) as exc:
        flash(f"Version {doc['version']} is saved but did not reach the broker ({exc}); publish again "
              "when it is back.", "error")
    return redirect(url_for(".history"))


@bp.route("/history")
@login_required(("owner",))
def history():
    revisions = programs.history(context.hub().engine, context.account().merchant)
    return render_template("programme_history.html", revisions=revisions)


@bp.route("/<int:version>/diff")
@login_required(("owner",))
def diff(version: int):
    engine, merchant = context.hub().engine, context.account().merchant
    try:
        new = programs.revision(engine, merchant, version)
        old = programs.revision(engine, merchant, version - 1) if version > 1 else None
    except ConfigError:
        return render_template("error.html", title="Not found", message="No such version."), 404
    text = programs.diff(old, new) if old else new.source
    return render_template("programme_diff.html", version=version, text=text)


@bp.route("/<int:version>/rollback", methods=["POST"])
@login_required(("owner",))
def rollback(version: int):
    try:
        old = programs.revision(context.hub().engine, context.account().merchant, version)
    except ConfigError:
        return render_template("error.html", title="Not found", message="No such version."), 404
    return _publish(old.program, old.source, note=f" (a copy of version {version})")
