"""The counter page: the amount keypad, redeem, undo, and the live view polled by the page."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from kiosk import app as outcomes
from kiosk.app import ScanResult
from kiosk.rules import Outcome, Program
from kiosk.web import context, device, live
from kiosk.web.auth import pin_required

bp = Blueprint("counter", __name__)

AMOUNT = re.compile(r"[0-9]{1,9}(\.[0-9]{1,3})?")


def parse_amount(text: str) -> Decimal:
    """A purchase amount as typed ("23.50" or "23,50"); ValueError naming the form otherwise."""
    text = (text or "").strip().replace(",", ".")
    if not AMOUNT.fullmatch(text):
        raise ValueError("type the amount as digits with up to three decimals, e.g. 23.50")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError("type the amount as digits, e.g. 23.50") from None


@bp.route("/")
@pin_required
def index():
    staff = context.staff()
    kiosk = staff.kiosk
    return render_template("counter.html", shop=kiosk.shop_name, kiosk_id=staff.kiosk_id,
                           sim=device.sim_controls(kiosk), **_live())


@bp.route("/live")
@pin_required
def live_part():
    """The part of the page that changes by itself, polled by staff.js."""
    return render_template("_live.html", **_live())


def _live() -> dict:
    staff = context.staff()
    kiosk = staff.kiosk
    image = live.display_image(kiosk)
    with kiosk.lock:  # the scan loop appends to it
        recent = list(kiosk.recent)
    return {"counter": live.counter_view(kiosk, staff.names, staff.settings.undo_seconds),
            "scans": live.scan_lines(recent, staff.names, kiosk.program),
            "panel": live.panel_view(kiosk), "status": live.status_view(kiosk, staff.link),
            "display_tag": live.image_tag(image), "program": kiosk.program}


@bp.route("/display.png")
@pin_required
def display_png():
    """What the OLED shows now, pixel for pixel (the page scales it up)."""
    image = live.display_image(context.kiosk())
    if image is None:
        return Response(status=404)
    return Response(live.png(image.convert("L")), mimetype="image/png")


@bp.route("/amount", methods=["POST"])
@pin_required
def amount():
    kiosk = context.kiosk()
    try:
        value = parse_amount(request.form.get("amount", ""))
        result = kiosk.enter_amount(value)
    except ValueError as exc:
        flash(f"Amount not taken: {exc}.", "error")
        return redirect(url_for(".index"))
    _flash(result)
    return redirect(url_for(".index"))


@bp.route("/amount/cancel", methods=["POST"])
@pin_required
def cancel_amount():
    context.kiosk().cancel_amount()
    flash("The held amount is cleared.", "ok")
    return redirect(url_for(".index"))


@bp.route("/redeem", methods=["POST"])
@pin_required
def redeem():
    _flash(context.kiosk().press_button())  # the same path as the staff button on the kiosk
    return redirect(url_for(".index"))


@bp.route("/undo", methods=["POST"])
@pin_required
def undo():
    _flash(context.kiosk().undo(context.settings().undo_seconds))
    return redirect(url_for(".index"))


def _flash(result: ScanResult) -> None:
    staff = context.staff()
    text, good = describe(result, staff.names, staff.kiosk.program)
    flash(text, "ok" if good else "error")


def describe(r: ScanResult, names, program: Program) -> tuple[str, bool]:
    """A result in words for the person at the till, and whether it went as asked."""
    who = live.label(r.member, names)
    unit = r.unit or ""
    reward = program.reward(r.reward) if r.reward else None
    match r.outcome:
        case Outcome.STAMPED | Outcome.REWARD_READY:
            text = f"{who}: {r.earned:+d} {unit}, now {r.balance}/{r.goal}."
            if r.outcome == Outcome.REWARD_READY:
                text += " A reward is ready."
            return text, True
        case Outcome.ALREADY_STAMPED | Outcome.DUPLICATE:
            return f"{who} was credited a moment ago: nothing more now.", False
        case Outcome.REDEEMED:
            return f"{who} redeemed {reward.name if reward else r.reward}; {r.balance} {unit} left.", True
        case Outcome.NOTHING_TO_REDEEM:
            return ("Nothing to redeem: nobody is at the counter." if r.reason == "no_customer"
                    else f"Nothing to redeem for {who}: no reward is ready."), False
        case outcomes.AMOUNT_PENDING:
            return f"{r.amount} held: the customer's next scan takes it ({r.reason}).", True
        case outcomes.AMOUNT_REQUIRED:
            return f"{who} needs the purchase amount: type it in.", False
        case outcomes.UNDONE:
            return f"Undone for {who}: {r.earned:+d} {unit}, balance now {r.balance}.", True
        case outcomes.NOTHING_TO_UNDO:
            return f"Nothing undone: {r.reason}.", False
        case outcomes.REPEATED_RECEIPT:
            return f"Ignored: {r.reason}.", False
        case outcomes.OUT_OF_ORDER:
            return f"The kiosk is out of order: {r.reason}", False
    return f"{r.outcome}: {r.reason or ''}", False
