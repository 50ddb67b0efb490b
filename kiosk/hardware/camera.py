"""Cameras: where frames come from.

Kinds: ``picamera2`` (the Pi camera, imported lazily), ``opencv`` (a USB webcam),
``replay`` (image files or arrays, in order) and ``virtual`` (frames pushed in by code).
Which backend offers which kind, and which is opened, is decided in ``factory.py``; the
live ones (picamera2, opencv) are read through a ``FrameGrabber`` (``grabber.py``), which
keeps only the newest frame and skips repeats. A frame is a 2-D ``uint8`` grayscale array:
the Y plane the Pi camera gives for free, and what every QR decoder wants.
"""

from __future__ import annotations

import logging
import queue
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from kiosk.common.errors import BackendUnavailable, CameraError, CameraExhausted, UnreadableImage

log = logging.getLogger(__name__)


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
    """The Raspberry Pi camera through picamera2 (``sudo apt install python3-picamera2``).

    One low-resolution YUV420 stream (the ``main`` stream at *width* x *height*): the first
    *height* rows of a YUV420 buffer are the Y plane, which is the grayscale frame the decoder
    wants, so no colour conversion is done at all. Continuous autofocus is switched on where
    the camera has it (Camera Module 3; ``AfMode`` in ``camera_controls``); fixed-focus
    modules are left as they are. ``capture`` blocks until the next frame: the factory wraps
    this camera in a ``FrameGrabber`` so the scan loop never waits on it.
    """

    name = "picamera2"

    def __init__(self, index: int = 0, width: int = 640, height: int = 480, fps: float = 15.0,
                 autofocus: bool = True) -> None:
        Picamera2 = _import_picamera2()
        cameras = Picamera2.global_camera_info()
        if index >= len(cameras):
            raise CameraError(
                f"no Pi camera {index}: libcamera sees {len(cameras)} camera(s); check the ribbon cable "
                "(fully seated, the right way round) and `rpicam-hello --list-cameras`"
            )
        self.model = str(cameras[index].get("Model", "unknown"))
        self._size = (width, height)
        try:
            self._cam = Picamera2(index)
        except (RuntimeError, IndexError) as exc:
            raise CameraError(f"Pi camera {index} ({self.model}) cannot be opened: {exc}: is another program "
                              "using it? (stop it, or `sudo systemctl stop stempel-kiosk` while testing)") from exc
        try:
            self._start(fps)
            self.autofocus = autofocus and self._focus_continuously()
        except Exception as exc:  # noqa: BLE001 - picamera2 raises RuntimeError/ValueError; close what we opened
            self._cam.close()
            raise CameraError(f"Pi camera {index} ({self.model}) cannot stream {width}x{height} YUV420: {exc}") from exc
        log.info("camera.open", extra={"camera": self.name, "model": self.model, "size": f"{width}x{height}",
                                       "autofocus": self.autofocus})

    def _start(self, fps: float) -> None:
        controls = {}
        if "FrameDurationLimits" in self._cam.camera_controls:
            period = int(1_000_000 / fps)
            controls["FrameDurationLimits"] = (period, period)
        config = self._cam.create_video_configuration(main={"size": self._size, "format": "YUV420"},
                                                      controls=controls)
        self._cam.configure(config)
        self._cam.start()

    def _focus_continuously(self) -> bool:
        """Continuous autofocus, fast, if the camera has a focus motor; True when switched on."""
        offered = self._cam.camera_controls
        if "AfMode" not in offered:
            return False
        from libcamera import controls  # comes with picamera2 (python3-libcamera)

        wanted = {"AfMode": controls.AfModeEnum.Continuous}
        if "AfSpeed" in offered:
            wanted["AfSpeed"] = controls.AfSpeedEnum.Fast
        self._cam.set_controls(wanted)
        return True

    def capture(self, timeout: float | None = None) -> Frame | None:
        """The next frame's Y plane (blocks for up to a frame period; *timeout* is not used)."""
        width, height = self._size
        try:
            array = self._cam.capture_array("main")
        except Exception as exc:  # noqa: BLE001 - picamera2's RuntimeError/TimeoutError, translated
            raise CameraError(f"the Pi camera stopped delivering frames: {exc}") from exc
        return Frame(np.ascontiguousarray(array[:height, :width]), source=self.name)

    def close(self) -> None:
        """Stop and release the camera (``Picamera2.close`` stops it first); safe to call twice."""
        cam, self._cam = getattr(self, "_cam", None), None
        if cam is not None:
            cam.close()


def _import_picamera2():
    """picamera2's ``Picamera2`` class, or BackendUnavailable saying what to install."""
    try:
        from picamera2 import Picamera2  # only on a Pi
    except ImportError as exc:
        raise BackendUnavailable(
            "camera 'picamera2' needs picamera2: run `sudo apt install python3-picamera2` "
            "(and make the venv with --system-site-packages), or set camera = \"opencv\" for a USB webcam"
        ) from exc
    except ValueError as exc:  # "numpy.dtype size changed": a venv numpy Debian's picamera2 was not built for
        raise BackendUnavailable(
            f"picamera2 is installed but does not load ({exc}): the venv's numpy must match the one "
            "python3-picamera2 was built for; reinstall with scripts/install-kiosk.sh"
        ) from exc
    return Picamera2


class OpenCVCamera:
    """A USB webcam through OpenCV's V4L2 backend (``sudo apt install python3-opencv`` or
    ``pip install opencv-python-headless``).

    *device* is N of ``/dev/videoN``, or a path or URL OpenCV can open (a video file, an image
    sequence such as ``frames/%03d.png``). Webcams deliver colour, so each frame is converted
    to grayscale here, the only colour conversion any camera does.
    """

    name = "opencv"

    def __init__(self, device: int | str = 0, width: int = 640, height: int = 480, fps: float = 15.0) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise BackendUnavailable(
                "camera 'opencv' needs OpenCV: run `sudo apt install python3-opencv` "
                "or `pip install opencv-python-headless`"
            ) from exc
        self._cv2 = cv2
        where = f"/dev/video{device}" if isinstance(device, int) else str(device)
        backend = cv2.CAP_V4L2 if isinstance(device, int) and sys.platform.startswith("linux") else cv2.CAP_ANY
        self._cap = cv2.VideoCapture(device, backend)
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraError(f"no webcam at {where}: check the cable, `ls /dev/video*`, and that the user "
                              "is in group 'video'")
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                            (cv2.CAP_PROP_FPS, fps), (cv2.CAP_PROP_BUFFERSIZE, 1)):
            self._cap.set(prop, value)  # a camera that cannot do it keeps its own; the decoder takes any size
        log.info("camera.open", extra={"camera": self.name, "device": where,
                                       "size": f"{int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x"
                                               f"{int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"})

    def capture(self, timeout: float | None = None) -> Frame | None:
        """The next frame in grayscale (blocks for up to a frame period; *timeout* is not used)."""
        ok, image = self._cap.read()
        if not ok:
            raise CameraError("the webcam stopped delivering frames: check the cable")
        if image.ndim == 3:
            image = self._cv2.cvtColor(image, self._cv2.COLOR_BGR2GRAY)
        return Frame(np.ascontiguousarray(image), source=self.name)

    def close(self) -> None:
        self._cap.release()
