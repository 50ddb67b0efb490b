"""The hardware self-test behind the staff screen's button: LED, buzzer, button, camera, display.

It uses the devices the running kiosk holds, without taking them from the scan loop: the LED
blinks and the buzzer beeps in gpiozero's background threads, the camera check waits for
the loop to see a new frame (a simulated camera is shown a blank test card for it), and the
display shows a test pattern for a moment, then the screen it showed before. Each part says
in words what it did and what a person should check (a blinking LED cannot report that it lit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from kiosk.display.device import HEIGHT, WIDTH

if TYPE_CHECKING:
    from kiosk.app import Kiosk

log = logging.getLogger(__name__)

TEST_CARD = "self-test"  # the source name of the blank frame shown to a simulated camera


@dataclass(frozen=True)
class Check:
    part: str
    ok: bool
    detail: str


def run_selftest(kiosk: Kiosk, *, camera_wait: float = 2.0, pattern_seconds: float = 1.5,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> list[Check]:
    """Run every check; never raises for a device that fails (it is reported as failed)."""
    checks = [*_panel(kiosk), _display(kiosk), _camera(kiosk, camera_wait, sleep, monotonic)]
    if pattern_seconds > 0:
        sleep(pattern_seconds)  # the pattern stays up while the camera check waits, at least this long
    _restore(kiosk)
    log.info("selftest.done", extra={"failed": [c.part for c in checks if not c.ok]})
    return checks


def _panel(kiosk: Kiosk) -> list[Check]:
    panel = kiosk.panel
    if panel is None or not hasattr(panel, "led"):
        return [Check(part, False, "no front panel in this process") for part in ("LED", "buzzer", "button")]
    out = []
    for part, play, what in (("LED", lambda: panel.led.blink(on_time=0.15, off_time=0.15, n=3, background=True),
                              "blinked 3 times: check that it lit"),
                             ("buzzer", lambda: panel.buzzer.beep(on_time=0.1, off_time=0.1, n=2, background=True),
                              "beeped twice: check that you heard it")):
        try:
            play()
            out.append(Check(part, True, what))
        except Exception as exc:  # noqa: BLE001 - gpiozero raises many kinds; the test reports, never crashes
            out.append(Check(part, False, f"{type(exc).__name__}: {exc}"))
    try:
        pressed = panel.button.is_pressed
        out.append(Check("button", True, ("pressed now" if pressed else "not pressed now")
                         + " — a press redeems for the customer at the counter"))
    except Exception as exc:  # noqa: BLE001
        out.append(Check("button", False, f"{type(exc).__name__}: {exc}"))
    return out


def _camera(kiosk: Kiosk, wait: float, sleep, monotonic) -> Check:
    camera = kiosk.camera
    if camera is None:
        return Check("camera", False, "no camera in this process")
    before = kiosk.last_frame
    present = getattr(camera, "present", None)
    if present is not None:  # a simulated camera delivers frames only when shown one
        present(blank_card(), source=TEST_CARD)
    deadline = monotonic() + wait
    while kiosk.last_frame is before and monotonic() < deadline:
        sleep(0.05)
    frame = kiosk.last_frame
    if frame is before or frame is None:
        return Check("camera", False, f"no new frame within {wait:g} s: is the camera connected "
                                      "and the scan loop running?")
    height, width = frame.pixels.shape[:2]
    return Check("camera", True, f"frame {width}×{height} from {camera.name} ({frame.source})")


def _display(kiosk: Kiosk) -> Check:
    display = kiosk.display
    device = getattr(display, "device", None)
    if device is None:
        return Check("display", False, "no display in this process")
    try:
        with kiosk.lock:
            device.display(pattern().convert(device.mode))
    except Exception as exc:  # noqa: BLE001 - an I2C error must reach the person, not the log only
        return Check("display", False, f"{type(exc).__name__}: {exc}")
    return Check("display", True, "test pattern shown (a frame and a chequered band): check every edge")


def _restore(kiosk: Kiosk) -> None:
    """Put the screen shown before the pattern (or anything shown since) back."""
    display = kiosk.display
    device = getattr(display, "device", None)
    if device is None or not display.shown:
        return
    from kiosk.display import screens

    with kiosk.lock:
        screens.show(device, display.shown[-1])


def pattern() -> Image.Image:
    """A 1-bit frame around the edge, a chequered band and the words SELF TEST."""
    image = Image.new("1", (WIDTH, HEIGHT), 0)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.rectangle((0, 0, WIDTH - 1, HEIGHT - 1), outline=1)
    for x in range(2, WIDTH - 2, 4):
        for y in range(44, 60, 4):
            if (x // 4 + y // 4) % 2 == 0:
                draw.rectangle((x, y, x + 3, y + 3), fill=1)
    left, top, right, bottom = draw.textbbox((0, 0), "SELF TEST", font=font)
    draw.text(((WIDTH - (right - left)) // 2 - left, 18 - (bottom - top) // 2 - top), "SELF TEST", fill=1, font=font)
    return image


def blank_card() -> Image.Image:
    """A blank grey frame with no code in it, for a simulated camera."""
    return Image.new("L", (640, 480), 128)
