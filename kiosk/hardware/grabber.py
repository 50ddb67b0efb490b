"""Reading a live camera so that one slow decode never queues frames.

A ``FrameGrabber`` reads its camera on its own thread into a one-frame slot. The scan loop
takes whatever is newest: frames the loop had no time for are overwritten, never queued, so
after a slow decode the next one is of what the camera sees now, not of what it saw a
second ago. A frame equal to the one before (a frozen sensor, a driver handing the same
buffer twice, a covered lens) is dropped before it reaches the decoder: decoding the same
pixels again can only give the same answer. Both are counted (``stats()``) for the status.

A camera that stops delivering must not look like an idle counter: when nothing arrived for
*stall_after* seconds, ``capture`` raises CameraError, so the loop stops pinging systemd's
watchdog and the kiosk is restarted. Errors on the reading thread are raised from
``capture``, on the loop's thread, where the loop already handles them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kiosk.common.errors import CameraError, CameraExhausted, StempelError
from kiosk.hardware.camera import Camera, Frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameStats:
    """What the grabber did with the camera's frames since it started."""

    captured: int = 0
    """Frames the camera delivered."""
    delivered: int = 0
    """Frames handed to the scan loop."""
    duplicates: int = 0
    """Frames equal to the one before, dropped undecoded."""
    behind: int = 0
    """Frames overwritten by a newer one before the loop took them (the loop was busy)."""

    def __str__(self) -> str:
        return f"{self.captured} frames, {self.duplicates} repeated, {self.behind} skipped behind"


def same_pixels(a: np.ndarray, b: np.ndarray, step: int = 8) -> bool:
    """Whether *a* and *b* are equal, cheaply: a 1-in-``step``² subsample first (different
    frames almost always differ there), the full comparison only when that matches."""
    if a.shape != b.shape:
        return False
    if not np.array_equal(a[::step, ::step], b[::step, ::step]):
        return False
    return np.array_equal(a, b)


class FrameGrabber:
    """A Camera that reads *camera* on a thread and hands out only its newest, new frame.

    *monotonic* is the clock of the stall check (tests inject theirs); *retry_after* is how
    long the thread waits before reading again after the camera raised.
    """

    def __init__(self, camera: Camera, *, stall_after: float = 5.0, retry_after: float = 0.5,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.camera = camera
        self.name = camera.name
        self.stall_after = stall_after
        self._retry_after = retry_after
        self._now = monotonic
        self._changed = threading.Condition()
        self._slot: Frame | None = None
        self._error: BaseException | None = None
        self._previous: np.ndarray | None = None
        self._last_arrival = monotonic()
        self._counts = {"captured": 0, "delivered": 0, "duplicates": 0, "behind": 0}
        self._stopping = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._read, name=f"camera-{self.name}", daemon=True)
        self._thread.start()

    def capture(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not handed out before, waiting up to *timeout* seconds for one.

        None when nothing new arrived in time (an idle counter, or only repeats). Raises
        what the camera raised on the reading thread (once), CameraExhausted when it has
        ended, and CameraError when it has delivered nothing for ``stall_after`` seconds.
        """
        with self._changed:
            if self._slot is None and self._error is None and not self._ended:
                self._changed.wait(timeout if timeout else 0)
            if self._slot is not None:
                frame, self._slot = self._slot, None
                self._counts["delivered"] += 1
                return frame
            if self._error is not None:
                error = self._error
                if not isinstance(error, CameraExhausted):  # the end stays the end
                    self._error = None
                raise error
            if self._ended:
                raise CameraExhausted(f"camera {self.name} is closed")
            silent = self._now() - self._last_arrival
        if silent > self.stall_after:
            raise CameraError(f"camera {self.name} has delivered no frame for {silent:.0f} s: "
                              "check its cable; the kiosk restarts if it stays silent")
        return None

    def stats(self) -> FrameStats:
        with self._changed:
            return FrameStats(**self._counts)

    def close(self, join_timeout: float = 2.0) -> None:
        """Stop the reading thread, then close the camera; safe to call twice.

        A camera blocked in a read gets *join_timeout* seconds to return; it is closed
        after that in any case (closing is what unblocks picamera2).
        """
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._thread.join(join_timeout)
        if self._thread.is_alive():
            log.warning("camera.read_stuck", extra={"camera": self.name})
        self.camera.close()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def _read(self) -> None:
        """The reading thread: camera -> one-frame slot, until closed or the camera ends."""
        while not self._stopping.is_set():
            try:
                frame = self.camera.capture(timeout=0.1)
            except CameraExhausted as exc:
                self._fail(exc)
                return
            except Exception as exc:  # noqa: BLE001 - handed to the loop's thread, which reports it
                if self._stopping.is_set():
                    return
                self._fail(exc if isinstance(exc, StempelError) else
                           CameraError(f"camera {self.name} failed: {type(exc).__name__}: {exc}"))
                self._stopping.wait(self._retry_after)
                continue
            if frame is not None:
                self._offer(frame)

    def _offer(self, frame: Frame) -> None:
        previous, self._previous = self._previous, frame.pixels  # the reading thread's own
        repeated = previous is not None and same_pixels(previous, frame.pixels)
        with self._changed:
            self._counts["captured"] += 1
            self._last_arrival = self._now()
            if repeated:
                self._counts["duplicates"] += 1
                return
            if self._slot is not None:
                self._counts["behind"] += 1
            self._slot = frame
            self._changed.notify_all()

    def _fail(self, error: BaseException) -> None:
        log.warning("camera.error", extra={"camera": self.name, "error": str(error)})
        with self._changed:
            self._error = error
            self._changed.notify_all()


def frame_stats(camera: Camera | None) -> FrameStats | None:
    """The grabber's counts for *camera*, or None for a camera read directly (virtual, replay)."""
    return camera.stats() if isinstance(camera, FrameGrabber) else None
