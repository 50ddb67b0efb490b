"""The hardware on the staff screen: the self-test, the camera's last frame, and — on simulated
hardware only — a virtual camera to show a pass or an image to, and a virtual button to press,
so a demo can be driven from the browser.

The simulated controls are offered by what the devices are, not by a flag: a camera with
``present`` (``VirtualCamera``) and a button on a gpiozero ``MockPin``. A real camera or a
real pin can never be driven from here.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from flask import Blueprint, Response, abort, flash, redirect, request, url_for
from PIL import Image, UnidentifiedImageError

from kiosk.web import context, live
from kiosk.web.auth import pin_required

log = logging.getLogger(__name__)

bp = Blueprint("device", __name__, url_prefix="/device")

MAX_PIXELS = 4_000_000  # an uploaded picture larger than a 12 MP photo's quarter is refused before decoding
PASS_TEXT_MAX = 512


@dataclass(frozen=True)
class SimControls:
    camera: bool  # a virtual camera: show it a pass or an image
    button: bool  # a button on a mock pin: press it


def sim_controls(kiosk) -> SimControls | None:
    """What the simulated hardware offers here; None on real hardware."""
    camera = hasattr(kiosk.camera, "present")
    button = _mock_pin(kiosk) is not None
    return SimControls(camera, button) if camera or button else None


def _mock_pin(kiosk):
    pin = getattr(getattr(kiosk.panel, "button", None), "pin", None)
    if pin is None:
        return None
    from gpiozero.pins.mock import MockPin

    return pin if isinstance(pin, MockPin) else None


@bp.route("/selftest", methods=["POST"])
@pin_required
def selftest():
    staff = context.staff()
    for check in staff.selftest(staff.kiosk):
        flash(f"{check.part}: {'OK' if check.ok else 'FAILED'} — {check.detail}", "ok" if check.ok else "error")
    return redirect(url_for("counter.index"))


@bp.route("/frame.png")
@pin_required
def frame_png():
    """The camera's latest frame, scaled to at most 320 px wide (what the self-test saw)."""
    frame = context.kiosk().last_frame
    if frame is None:
        abort(404)
    image = Image.fromarray(frame.pixels)
    if image.width > 320:
        image = image.resize((320, round(image.height * 320 / image.width)))
    return Response(live.png(image), mimetype="image/png")


@bp.route("/present", methods=["POST"])
@pin_required
def present():
    """Show the virtual camera a pass (its text, drawn on a phone) or an uploaded picture."""
    kiosk = context.kiosk()
    controls = sim_controls(kiosk)
    if controls is None or not controls.camera:
        abort(404)
    text = request.form.get("pass_text", "").strip()
    upload = request.files.get("image")
    if upload is not None and upload.filename:
        try:
            frame = _picture(upload.read())
        except ValueError as exc:
            flash(f"Not shown: {exc}.", "error")
            return redirect(url_for("counter.index"))
        kiosk.camera.present(frame, source=f"upload:{upload.filename[:40]}")
        flash(f"The camera sees {upload.filename[:40]}.", "ok")
    elif text:
        from kiosk.hardware import scenes

        if len(text) > PASS_TEXT_MAX:
            flash(f"Not shown: a pass is at most {PASS_TEXT_MAX} characters.", "error")
            return redirect(url_for("counter.index"))
        kiosk.camera.present(scenes.render(text, np.random.default_rng(len(kiosk.recent)), scenes.Look()),
                             source="pass")
        flash("The camera sees the pass on a phone.", "ok")
    else:
        flash("Not shown: paste a pass's text or choose a picture.", "error")
    return redirect(url_for("counter.index"))


def _picture(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_PIXELS:
            raise ValueError(f"the picture has {image.width}×{image.height} pixels; at most {MAX_PIXELS:,}")
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"not a picture ({type(exc).__name__})") from None
    return image


@bp.route("/button", methods=["POST"])
@pin_required
def button():
    """Press and release the virtual staff button (the scan loop hears it, as a real press)."""
    pin = _mock_pin(context.kiosk())
    if pin is None:
        abort(404)
    pin.drive_low()
    pin.drive_high()
    flash("The kiosk's button was pressed.", "ok")
    return redirect(url_for("counter.index"))
