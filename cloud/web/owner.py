"""The owner's sign-in and dashboard. Every page here but the login needs a signed-in user,
and shows only that user's merchant."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

from flask import Blueprint, Response, abort, redirect, render_template, request, session, url_for
from sqlalchemy.orm import Session

from cloud.accounts import authenticate
from cloud.metrics.dashboard import dashboard as compute
from cloud.metrics.dashboard import to_csv
from cloud.programs import program_of
from cloud.store import get_merchant
from cloud.web import charts, context
from cloud.web.context import login_required
from kiosk.protocol import qr

bp = Blueprint("owner", __name__, url_prefix="/owner")

LOGIN_PER_IP = (10, 300)     # attempts per address per 5 minutes
LOGIN_PER_USER = (5, 300)    # attempts per login name per 5 minutes
PERIODS = {"7": 7, "30": 30, "90": 90}


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    status = 200
    if request.method == "POST":
        name = request.form.get("login", "")[:254]
        limits = context.limiter()
        if not (limits.hit(f"login-ip:{context.client_ip()}", *LOGIN_PER_IP)
                and limits.hit(f"login-user:{name.strip().lower()}", *LOGIN_PER_USER)):
            error, status = "Too many attempts. Wait five minutes and try again.", 429
        else:
            who = authenticate(context.hub().engine, name, request.form.get("password", ""))
            if who is None:
                error, status = "That login and password do not match.", 401
            else:
                session.clear()
                session["user_id"] = who.id
                session.permanent = True
                target = request.args.get("next", "")
                return redirect(target if re.fullmatch(r"/owner/[\w/.-]*", target) else url_for(".dashboard"))
    return render_template("login.html", error=error), status


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    return redirect(url_for(".login"))


def period() -> tuple[datetime, datetime, str]:
    """The period the dashboard shows: ``?days=7|30|90`` or ``?start=&end=`` (dates, inclusive)."""
    now = context.now()
    start_arg, end_arg = request.args.get("start", ""), request.args.get("end", "")
    if start_arg and end_arg:
        try:
            start_day, end_day = date.fromisoformat(start_arg), date.fromisoformat(end_arg)
        except ValueError:
            abort(400)
        if not (date(2000, 1, 1) <= start_day <= end_day <= now.date() + timedelta(days=1)):
            abort(400)
        start = datetime.combine(start_day, time(), timezone.utc)
        return start, datetime.combine(end_day + timedelta(days=1), time(), timezone.utc), "custom"
    days = PERIODS.get(request.args.get("days", "30"), 30)
    return now - timedelta(days=days), now, str(days)


@bp.route("/")
@login_required()
def dashboard():
    who = context.account()
    start, end, chosen = period()
    engine = context.hub().engine
    program = program_of(engine, who.merchant)
    board = compute(engine, who.merchant, start, end, program=program)
    last = end - timedelta(microseconds=1)  # the period's last day (end is exclusive)
    args = {"days": chosen} if chosen != "custom" else {"start": start.date().isoformat(),
                                                         "end": last.date().isoformat()}
    rewards = {r.id: r.name for r in program.rewards}
    return render_template("dashboard.html", board=board, charts=charts, chosen=chosen, start=start, last=last,
                           who=who, cohort_rows=board.cohorts.as_rows(), period_args=args, rewards=rewards)


@bp.route("/table-card")
@login_required()
def table_card():
    """A printable card for the counter or a table: the shop's join QR (``/j/<merchant>`` or,
    with ``?kiosk=``, ``/j/<merchant>.<kiosk>`` so sign-ups show where they came from)."""
    who = context.account()
    kiosk = request.args.get("kiosk", "")
    if kiosk and not re.fullmatch(r"[a-z0-9-]{1,32}", kiosk):
        abort(404)
    url = url_for("public.join", code=f"{who.merchant}.{kiosk}" if kiosk else who.merchant, _external=True)
    with Session(context.hub().engine) as session:
        shop = get_merchant(session, who.merchant)
    svg = qr.make_qr(url, warn=False).svg_inline(scale=10, border=4, omitsize=True)
    return render_template("table_card.html", shop=shop, url=url, qr_svg=svg, who=who)


@bp.route("/export/<name>.csv")
@login_required()
def export_csv(name: str):
    who = context.account()
    start, end, _ = period()
    engine = context.hub().engine
    board = compute(engine, who.merchant, start, end, program=program_of(engine, who.merchant))
    try:
        body = to_csv(board, name)
    except KeyError:
        abort(404)
    return Response(body, mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename={who.merchant}-{name}.csv"})
