"""The FrameGrabber: a slow decode never queues frames, a repeated frame is not decoded twice,
and a camera that goes silent stops the watchdog pings instead of looking like an idle counter.

The camera behind the grabber is the VirtualCamera (frames presented by the test, read on the
grabber's thread as a live camera's would be); the stall clock is injected.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from kiosk.common.errors import CameraError, CameraExhausted
from kiosk.hardware.camera import Frame, VirtualCamera
from kiosk.hardware.grabber import FrameGrabber, FrameStats, frame_stats, same_pixels
from kiosk.loop import run as run_loop


def until(condition, timeout: float = 5.0) -> None:
    """Wait for the grabber's thread to get somewhere (it reads the camera on its own)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the grabber's thread did not get there in time")
        time.sleep(0.002)


def picture(value: int, shape=(48, 64)) -> np.ndarray:
    return np.full(shape, value, np.uint8)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stall_clock() -> Clock:
    return Clock()


@pytest.fixture
def camera():
    return VirtualCamera()


@pytest.fixture
def grabber(camera, stall_clock):
    g = FrameGrabber(camera, stall_after=5.0, retry_after=0.01, monotonic=stall_clock)
    yield g
    g.close()


def test_after_a_slow_decode_the_loop_gets_the_newest_frame_not_a_queue(camera, grabber):
    camera.present(picture(1), source="first")
    assert grabber.capture(timeout=5).source == "first"
    for n in range(2, 7):  # the loop is busy decoding "first" while five more frames arrive
        camera.present(picture(n), source=f"frame-{n}")
    until(lambda: grabber.stats().captured == 6)
    assert grabber.capture(timeout=5).source == "frame-6"
    assert grabber.capture(timeout=0.05) is None  # nothing older is left behind it
    assert grabber.stats() == FrameStats(captured=6, delivered=2, duplicates=0, behind=4)


def test_a_frame_equal_to_the_one_before_is_not_decoded_again(camera, grabber):
    for n, value in enumerate((7, 7, 7, 8)):
        camera.present(picture(value), source=f"frame-{n}")
        until(lambda: grabber.stats().captured == n + 1)
        frame = grabber.capture(timeout=0.05)
        assert (frame.source if frame else None) == {0: "frame-0", 3: "frame-3"}.get(n)
    assert grabber.stats() == FrameStats(captured=4, delivered=2, duplicates=2, behind=0)
    assert str(grabber.stats()) == "4 frames, 2 repeated, 0 skipped behind"


def test_a_change_the_subsample_does_not_see_still_counts_as_a_new_frame():
    a = picture(50, (480, 640))
    b = a.copy()
    b[3, 5] = 51  # off the 1-in-8 grid
    assert same_pixels(a, a.copy()) and not same_pixels(a, b)
    assert not same_pixels(a, picture(50, (240, 320)))


def test_a_camera_that_goes_silent_stops_looking_idle(camera, grabber, stall_clock):
    clock = stall_clock
    assert grabber.capture(timeout=0.01) is None  # an idle counter: nothing new, no error
    clock.now += 4.9
    assert grabber.capture(timeout=0.01) is None
    clock.now += 0.2  # more than stall_after without a frame from the camera
    with pytest.raises(CameraError, match="no frame for 5 s"):
        grabber.capture(timeout=0.01)
    camera.present(picture(3), source="back")
    assert grabber.capture(timeout=5).source == "back"  # delivering again: no longer stalled


def test_repeated_frames_keep_the_camera_alive(camera, grabber, stall_clock):
    """A still scene (the same frame over and over) is a working camera, not a stall."""
    for n in range(3):
        stall_clock.now += 3  # 9 s in all, each frame within stall_after of the one before
        camera.present(picture(9))
        until(lambda: grabber.stats().captured == n + 1)
        frame = grabber.capture(timeout=0.01)
        assert (frame is not None) == (n == 0)
    assert grabber.stats().duplicates == 2


class Failing:
    """A camera whose reads raise *error*."""

    name = "usb"

    def __init__(self, error: BaseException) -> None:
        self.error, self.closed = error, False

    def capture(self, timeout=None):
        time.sleep(0.001)
        raise self.error

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("error, raised, message", [
    (CameraError("the Pi camera stopped delivering frames"), CameraError, "stopped delivering"),
    (RuntimeError("dequeue timeout"), CameraError, "camera usb failed: RuntimeError: dequeue timeout"),
    (CameraExhausted("no frames left"), CameraExhausted, "no frames left"),
])
def test_errors_on_the_reading_thread_are_raised_on_the_loops(error, raised, message):
    grabber = FrameGrabber(Failing(error), retry_after=0.01)
    try:
        with pytest.raises(raised, match=message):
            grabber.capture(timeout=5)
    finally:
        grabber.close()
    assert grabber.camera.closed


def test_closing_stops_the_thread_then_closes_the_camera(camera, grabber):
    grabber.close()
    grabber.close()
    assert not grabber._thread.is_alive()
    with pytest.raises(CameraExhausted):
        grabber.capture(timeout=0.01)


def test_only_a_grabbed_camera_has_frame_stats(camera, grabber):
    assert frame_stats(grabber) == FrameStats() and frame_stats(camera) is None and frame_stats(None) is None


class Hanging:
    """A camera that gives *frames* frames, then hangs in its read until closed (a cable pulled)."""

    name = "hanging"

    def __init__(self, frames: int) -> None:
        self.left = frames
        self.hung = threading.Event()
        self._closed = threading.Event()

    def capture(self, timeout=None):
        if self.left:
            self.left -= 1
            time.sleep(0.005)
            return Frame(np.random.default_rng(self.left).integers(0, 256, (48, 64), dtype=np.uint8))
        self.hung.set()
        self._closed.wait()
        raise CameraExhausted("closed")

    def close(self) -> None:
        self._closed.set()


class Pings:
    """What systemd would hear from the loop (kiosk/service.py's ready/alive)."""

    def __init__(self) -> None:
        self.count = 0

    def ready(self) -> None:
        pass

    def alive(self) -> None:
        self.count += 1


def test_the_loop_stops_pinging_the_watchdog_when_the_camera_hangs(sim_kiosk, stall_clock):
    grabber = FrameGrabber(Hanging(frames=3), stall_after=5.0, monotonic=stall_clock)
    pings, stop = Pings(), threading.Event()
    loop = threading.Thread(target=run_loop, args=(sim_kiosk, grabber, stop), kwargs={"service": pings}, daemon=True)
    loop.start()
    try:
        until(lambda: grabber.camera.hung.is_set())
        before = pings.count
        until(lambda: pings.count > before + 5)  # silent for less than stall_after: an idle counter, pinging
        stall_clock.now += 6
        time.sleep(0.2)  # the loop meets the stall: CameraError, then a 1 s back-off with no ping
        count = pings.count
        time.sleep(0.5)
        assert pings.count == count
        assert loop.is_alive()
    finally:
        stop.set()
        grabber.close(join_timeout=0.1)  # the hung read returns only once the camera is closed
        loop.join(10)
    assert not loop.is_alive()
