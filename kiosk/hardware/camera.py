"""Cameras: where frames come from.

Kinds: ``picamera2`` (the Pi camera, imported lazily), ``opencv`` (a USB webcam),
``replay`` (image files or arrays, in order) and ``virtual`` (frames pushed in by code).
Which backend offers which kind, and which is opened, is decided in ``factory.py``.
A frame is a 2-D ``uint8`` grayscale array: the Y plane the Pi camera gives for free,
and what every QR decoder wants.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from kiosk.common.errors import BackendUnavailable, CameraError, CameraExhausted, UnreadableImage


@dataclass(frozen=True)
class Frame:
    """One grayscale camera frame, where it came from and when (monotonic seconds)."""

    pixels: np.ndarray
    source: str = "camera"
    captured_mono: float = field(default_factory=time.monotonic)


class Camera(Protocol):
    name: str

    def capture(self, timeout: float | None = None) -> Frame | None:
        """Return the next frame, or None if none arrived within *timeout* seconds."""

    def close(self) -> None: ...


def to_gray(image: Image.Image | np.ndarray) -> np.ndarray:
    """Convert a PIL image or an RGB/gray array to a contiguous 2-D uint8 array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("L"), dtype=np.uint8)
    array = np.asarray(image)
    if array.ndim == 3:
        array = (array[..., :3] @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    return np.ascontiguousarray(array, dtype=np.uint8)


def load_image(path: Path | str) -> np.ndarray:
    """Read an image file as a grayscale frame; raise UnreadableImage if it is not a picture."""
    try:
        with Image.open(path) as image:
            return to_gray(image)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnreadableImage(f"{path}: not a readable image ({exc.__class__.__name__})") from exc


class ReplayCamera:
    """Plays back image files or arrays in order; raises CameraExhausted at the end."""

    name = "replay"

    def __init__(self, items: Iterable[Path | str | np.ndarray | Image.Image]) -> None:
        self._items = list(items)
        self._next = 0

    @classmethod
    def from_folder(cls, folder: Path | str, pattern: str = "*.png") -> "ReplayCamera":
        files = sorted(Path(folder).glob(pattern))
        if not files:
            raise CameraError(f"{folder}: no images matching {pattern!r} to replay")
        return cls(files)

    def capture(self, timeout: float | None = None) -> Frame | None:
        if self._next >= len(self._items):
            raise CameraExhausted("replay camera has no frames left")
        item = self._items[self._next]
        self._next += 1
        if isinstance(item, (str, Path)):
            return Frame(load_image(item), source=str(item))
        return Frame(to_gray(item), source=f"frame-{self._next}")

    def close(self) -> None:
        self._next = len(self._items)


class VirtualCamera:
    """A camera whose scene is set by code: ``present(frame)`` puts a frame in view.

    ``frames_shown`` keeps the last ``keep`` frames presented, in order, for tests to read.
    """

    name = "virtual"

    def __init__(self, keep: int = 100) -> None:
        self._frames: queue.Queue[Frame] = queue.Queue()
        self.frames_shown: deque[Frame] = deque(maxlen=keep)

    def present(self, image: Image.Image | np.ndarray, source: str = "virtual") -> None:
        frame = Frame(to_gray(image), source=source)
        self.frames_shown.append(frame)
        self._frames.put(frame)

    def capture(self, timeout: float | None = None) -> Frame | None:
        try:
            return self._frames.get(timeout=timeout) if timeout else self._frames.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        pass


class PiCamera:
    """The Raspberry Pi camera through picamera2; frames are the Y plane of YUV420."""

    name = "picamera2"

    def __init__(self, width: int = 640, height: int = 480) -> None:
        try:
            from picamera2 import Picamera2  # only on a Pi
        except ImportError as exc:
            raise BackendUnavailable(
                "camera 'picamera2' needs picamera2: run `sudo apt install python3-picamera2` "
                "or `pip install stempel[pi]`"
            ) from exc
        self._size = (width, height)
        self._cam = Picamera2()
        config = self._cam.create_video_configuration(main={"size": self._size, "format": "YUV420"})
        self._cam.configure(config)
        self._cam.start()

    def capture(self, timeout: float | None = None) -> Frame | None:
        width, height = self._size
        array = self._cam.capture_array("main")
        return Frame(np.ascontiguousarray(array[:height, :width]), source="picamera2")

    def close(self) -> None:
        self._cam.stop()
        self._cam.close()


class OpenCVCamera:
    """A USB webcam through OpenCV (``pip install opencv-python-headless``)."""

    name = "opencv"

    def __init__(self, index: int = 0, width: int = 640, height: int = 480) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise BackendUnavailable("camera 'opencv' needs OpenCV: `pip install opencv-python-headless`") from exc
        self._cv2 = cv2
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            raise CameraError(f"no webcam at index {index}: check the cable and `ls /dev/video*`")
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)

    def capture(self, timeout: float | None = None) -> Frame | None:
        ok, bgr = self._cap.read()
        if not ok:
            raise CameraError("the webcam stopped delivering frames")
        return Frame(self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2GRAY), source="opencv")

    def close(self) -> None:
        self._cap.release()

