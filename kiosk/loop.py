"""The live loop: frames from the camera, presses from the button, one thread doing the work.

The loop is also what systemd's watchdog watches (kiosk/service.py): ``ready()`` after the
first capture that came back, ``alive()`` after every one, so the pings stop when the camera
hangs or keeps failing, or the loop itself is stuck.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Protocol

from kiosk.app import Kiosk, ScanResult
from kiosk.common.errors import CameraError, CameraExhausted, UnreadableImage
from kiosk.hardware.camera import Camera
from kiosk.link.updates import Updates

log = logging.getLogger(__name__)


class Supervision(Protocol):
    """Who hears that the loop runs (``KioskService``; nothing when not given)."""

    def ready(self) -> None: ...

    def alive(self) -> None: ...


class _Unsupervised:
    def ready(self) -> None:
        pass

    def alive(self) -> None:
        pass


class Debouncer:
    """Ignores the same code while it stays in view, so one hold is one scan."""

    def __init__(self, hold_seconds: float = 3.0) -> None:
        self.hold = hold_seconds
        self._last: tuple[tuple[str, ...], float] | None = None

    def fresh(self, key: tuple[str, ...], now: float) -> bool:
        if self._last and self._last[0] == key and now - self._last[1] < self.hold:
            self._last = (key, now)
            return False
        self._last = (key, now)
        return True


def run(kiosk: Kiosk, camera: Camera, stop: threading.Event, on_result=lambda r: None,
        idle_after: float = 5.0, updates: Updates | None = None, service: Supervision | None = None) -> None:
    """Run until *stop* is set or a replay camera runs out; every result goes to *on_result*.

    *camera* is the one the hardware factory gave (``kiosk.camera``), or one a test holds.
    *updates* (programme, keys from the hub) are applied here, between frames, never mid-scan.
    *service* hears ``ready()`` once the first capture came back and ``alive()`` after every
    capture that returned a frame or timed out; a capture that raises counts as neither.
    """
    presses: queue.SimpleQueue[None] = queue.SimpleQueue()
    if kiosk.panel is not None:
        kiosk.panel.on_press(lambda: presses.put(None))
    try:
        _loop(kiosk, camera, stop, on_result, idle_after, updates, presses, service or _Unsupervised())
    finally:  # a press while the kiosk shuts down goes nowhere
        if kiosk.panel is not None:
            kiosk.panel.on_press(None)


def _loop(kiosk: Kiosk, camera: Camera, stop: threading.Event, on_result, idle_after: float,
          updates: Updates | None, presses: queue.SimpleQueue, service: Supervision) -> None:
    """The loop proper. A ledger that fails is handled by the kiosk (out of order, reported);
    anything else ends the loop with its exception, for `run` to report and exit non-zero."""
    debounce = Debouncer()
    clock = kiosk.clock
    last_activity = clock.monotonic()
    idled_for: float | None = None  # the activity the idle screen last followed
    kiosk.show_idle()
    ready = False
    while not stop.is_set():
        if updates is not None:
            updates.apply_pending(kiosk)
        while not presses.empty():
            presses.get()
            on_result(kiosk.press_button())
            last_activity = clock.monotonic()
        try:
            frame = camera.capture(timeout=0.05)
        except CameraExhausted:
            break
        except UnreadableImage as exc:
            log.warning("camera.unreadable", extra={"error": str(exc)})
            continue
        except CameraError as exc:  # no ping: a camera that keeps failing gets the kiosk restarted
            log.error("camera.failed", extra={"error": str(exc)})
            stop.wait(1.0)
            continue
        if not ready:  # the camera answered: camera, display and ledger are up
            service.ready()
            ready = True
        service.alive()
        if frame is None:
            # the latest result of any thread: the staff screen's count too (kiosk.active_at)
            latest = max(last_activity, kiosk.active_at if kiosk.active_at is not None else last_activity)
            if latest != idled_for and clock.monotonic() - latest > idle_after:
                kiosk.show_idle()
                idled_for = latest
            continue
        result = _scan(kiosk, frame, debounce)
        if result is not None:
            on_result(result)
            last_activity = clock.monotonic()


def _scan(kiosk: Kiosk, frame, debounce: Debouncer) -> ScanResult | None:
    started = time.perf_counter()
    texts = kiosk.decode(frame)
    if not texts or not debounce.fresh(tuple(sorted(t.hex() for t in texts)), kiosk.clock.monotonic()):
        return None
    return kiosk.handle_codes(frame.source, texts, started, time.perf_counter())
