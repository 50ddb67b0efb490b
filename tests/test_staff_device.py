"""The hardware on the staff screen, with the kiosk's real scan loop on a thread: the self-test,
the simulated camera and button that let a demo be driven from the browser, and the server
the kiosk process runs the screen on."""

from __future__ import annotations

import io
import re
import time
import urllib.request
from decimal import Decimal

import numpy as np
import pytest
from PIL import Image
from staffsite import Loop, staff  # noqa: F401

from kiosk.common.errors import ConfigError
from kiosk.display import screens
from kiosk.hardware import scenes
from kiosk.web.selftest import TEST_CARD, pattern, run_selftest
from kiosk.web.serve import serve_staff


def flashes(page) -> list[str]:
    return re.findall(r'<div class="flash \w+" role="status">([^<]*)</div>', page.get_data(as_text=True))


def test_selftest_blinks_beeps_reads_a_frame_and_shows_a_pattern(staff):
    panel, display = staff.kiosk.panel, staff.kiosk.display
    staff.kiosk.show_idle()
    before = display.shown[-1]
    shown_during = []

    def sleep(seconds: float) -> None:  # what the screen shows while the self-test waits
        shown_during.append(display.image.tobytes())
        time.sleep(seconds)

    with Loop(staff.kiosk):
        checks = run_selftest(staff.kiosk, camera_wait=10.0, pattern_seconds=0.0, sleep=sleep)
    assert [(c.part, c.ok) for c in checks] == [("LED", True), ("buzzer", True), ("button", True), ("display", True),
                                                ("camera", True)]
    assert checks[4].detail == f"frame 640×480 from virtual ({TEST_CARD})"
    assert any(s.state for s in panel.led.pin.states) and any(s.state for s in panel.buzzer.pin.states)
    assert pattern().tobytes() in shown_during  # the pattern was up while the camera check waited
    assert display.image.tobytes() == screens.render(before).tobytes()  # and the screen before it is back
    assert list(panel.history) == []  # no customer signal was played


def test_selftest_says_what_failed(staff, monkeypatch):
    monkeypatch.setattr(staff.kiosk, "camera", None)
    checks = {c.part: c for c in run_selftest(staff.kiosk, pattern_seconds=0.0)}
    assert (checks["camera"].ok, checks["camera"].detail) == (False, "no camera in this process")


def test_selftest_without_the_scan_loop_reports_no_frame(staff):
    checks = {c.part: c for c in run_selftest(staff.kiosk, camera_wait=0.1, pattern_seconds=0.0)}
    assert not checks["camera"].ok and "scan loop running" in checks["camera"].detail


def test_selftest_button_on_the_page(staff):
    client = staff.login()
    with Loop(staff.kiosk):
        page = client.get("/")
        assert 'id="selftest"' in page.get_data(as_text=True)
        staff.post(client, "/device/selftest")
        messages = flashes(client.get("/"))
    assert [m.split(" — ")[0] for m in messages] == ["LED: OK", "buzzer: OK", "button: OK", "display: OK", "camera: OK"]
    frame = client.get("/device/frame.png")
    assert frame.mimetype == "image/png" and Image.open(io.BytesIO(frame.data)).size == (320, 240)


def test_the_demo_is_driven_from_the_browser_controls(staff):
    """A pass shown to the virtual camera is scanned by the loop; the virtual button redeems."""
    client = staff.login()
    anna = staff.member("Anna")
    page = client.get("/").get_data(as_text=True)
    assert 'id="present-form"' in page and 'id="press-button"' in page
    with Loop(staff.kiosk) as loop:
        staff.post(client, "/amount", amount="55")
        staff.post(client, "/device/present", pass_text=anna.url)
        scanned = loop.wait_for(1)[0]
        assert (scanned.outcome, scanned.member, scanned.earned) == ("reward_ready", anna.member, 570)
        staff.post(client, "/device/button")
        pressed = loop.wait_for(2)[1]
    assert (pressed.image, pressed.outcome, pressed.balance) == ("button", "redeemed", 70)


def test_a_picture_can_be_shown_to_the_camera(staff):
    client = staff.login()
    picture = io.BytesIO()
    Image.new("L", (64, 48), 200).save(picture, format="PNG")
    client.post("/device/present", data={"csrf_token": staff.csrf(client), "image": (io.BytesIO(picture.getvalue()),
                                                                                        "counter.png")},
                content_type="multipart/form-data")
    assert flashes(client.get("/")) == ["The camera sees counter.png."]
    assert staff.kiosk.camera.frames_shown[-1].source == "upload:counter.png"
    client.post("/device/present", data={"csrf_token": staff.csrf(client),
                                         "image": (io.BytesIO(b"not a picture"), "x.png")},
                content_type="multipart/form-data")
    assert flashes(client.get("/"))[0].startswith("Not shown: not a picture")


class _RealCamera:
    name = "picamera2"


class _RealPanel:
    """A panel whose button sits on a pin that is not gpiozero's MockPin."""

    history = ()

    class button:  # noqa: N801 - the attribute name a FrontPanel has
        pin = object()
        is_pressed = False


def test_no_simulated_controls_on_real_hardware(staff, monkeypatch):
    client = staff.login()
    monkeypatch.setattr(staff.kiosk, "camera", _RealCamera())
    monkeypatch.setattr(staff.kiosk, "panel", _RealPanel())
    page = client.get("/").get_data(as_text=True)
    assert "Simulated hardware" not in page
    assert staff.post(client, "/device/button").status_code == 404
    assert staff.post(client, "/device/present", pass_text="x").status_code == 404


def test_serve_staff_runs_in_a_thread_and_stops(staff):
    server = serve_staff(staff.kiosk, staff.config, host="127.0.0.1", port=0)
    try:
        with urllib.request.urlopen(server.url + "login", timeout=5) as page:
            assert page.status == 200 and b"Staff PIN" in page.read()
        with pytest.raises(ConfigError, match=r"set another \[staff\] port"):
            serve_staff(staff.kiosk, staff.config, host="127.0.0.1", port=server.port)
    finally:
        server.stop()
    server.stop()  # twice is fine
    assert not server.thread.is_alive()


def test_the_purchase_amount_reaches_a_scan_made_by_the_loop(staff):
    """A till's amount and a scan by the live loop meet in one counter session."""
    anna = staff.member("Anna")
    with Loop(staff.kiosk) as loop:
        staff.kiosk.purchase(Decimal("23.50"), "R-1")
        staff.kiosk.camera.present(scenes.render(anna.url, np.random.default_rng(1), scenes.Look()))
        assert loop.wait_for(1)[0].earned == 230
