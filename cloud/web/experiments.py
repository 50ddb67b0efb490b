"""The owner's A/B tests: each experiment of the programme in force with its per-arm figures
and verdict (cloud/experiments.py), and "end and keep the winner", which publishes the next
programme version (signed and pushed as the programme editor does) with ``ended`` and
``winner`` set, so every kiosk gives the winner to everyone.

Register in ``cloud/web/__init__.py``: add ``experiments`` to the blueprint tuple.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from cloud import experiments, programs
from cloud.link import documents
from cloud.web import context
from cloud.web.context import login_required
from kiosk.common.errors import BusError, ConfigError
from kiosk.rules.program import Experiment

bp = Blueprint("experiments", __name__, url_prefix="/owner/experiments")

# What each ``varies``/``target`` means, in the owner's words (the page says it under each test).
BONUS_TARGETS = {"signup": "signup bonus: the bonus at a member's first visit",
                 "per_visit": "stamps per visit: what every visit earns",
                 "winback": "win-back offer: the bonus offered with the win-back message; a variant of 0 "
                            "sends the message without an offer ([automations] triggers must include winback)"}


@bp.app_template_filter("experiment_target")
def _target(experiment: Experiment) -> str:
    """What *experiment* varies, in a sentence."""
    if experiment.varies == "bonus":
        return BONUS_TARGETS.get(experiment.target, experiment.target)
    if experiment.varies == "reward":
        return f"reward cost: the {experiment.target!r} reward's price in stamps or points"
    return f"message text: the words of the {experiment.target!r} message"


def _days() -> int:
    """The return window from ``?days=`` (default RETURN_DAYS), kept within its bounds."""
    days = request.args.get("days", type=int) or experiments.RETURN_DAYS
    return min(max(days, 1), experiments.MAX_RETURN_DAYS)


def _results(only: str | None = None):
    hub, merchant = context.hub(), context.account().merchant
    program = programs.program_of(hub.engine, merchant)
    found = experiments.results(hub.engine, merchant, program, context.now(), _days())
    return [r for r in found if only is None or r.experiment.id == only]


@bp.route("/")
@login_required(("owner",))
def index():
    return render_template("experiments.html", results=_results(), days=_days(), single=False,
                           targets=BONUS_TARGETS)


@bp.route("/<experiment_id>")
@login_required(("owner",))
def show(experiment_id: str):
    found = _results(experiment_id)
    if not found:  # not in this merchant's programme in force (another merchant's, or none)
        abort(404)
    return render_template("experiments.html", results=found, days=_days(), single=True, targets=BONUS_TARGETS)


@bp.route("/<experiment_id>/end", methods=["POST"])
@login_required(("owner",))
def end(experiment_id: str):
    hub, who = context.hub(), context.account()
    current = programs.current(hub.engine, who.merchant)
    if current is None or all(e.id != experiment_id for e in current.program.experiments):
        abort(404)
    today = context.now().astimezone(current.program.zone).date()
    try:
        program = experiments.keep_winner(current.program, experiment_id, request.form.get("winner", ""), today)
    except ConfigError as exc:
        flash(str(exc), "error")
        return redirect(url_for(".show", experiment_id=experiment_id))
    doc = documents.prepare(hub.engine, hub.data_dir, who.merchant, program, source=programs.to_toml(program),
                            by=who.login)
    try:
        context.publisher().program(doc)
        flash(f"Experiment {experiment_id} ended keeping {request.form['winner']}: version {doc['version']} "
              "published to the kiosks.", "ok")
    except (BusError, ConfigError) as exc:
        flash(f"Version {doc['version']} is saved but did not reach the broker ({exc}); publish it again from "
              "the programme history when it is back.", "error")
    return redirect(url_for(".show", experiment_id=experiment_id))
