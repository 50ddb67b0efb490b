"""Stand-in for picamera2 (the Picamera2 manual and picamera2/picamera2.py): the ``Picamera2``
calls the kiosk makes, with picamera2's signatures, defaults, checks and errors:
``global_camera_info()``, ``Picamera2(camera_num=0)`` (RuntimeError "Camera __init__
sequence did not complete." when there is no such camera), ``camera_controls`` (name ->
(min, max, default)), ``create_video_configuration(main={}, lores=None, ...)`` (ValueError
for a key other than format/size; even sizes; controls merged over FrameDurationLimits),
``configure``, ``start``, ``set_controls`` (RuntimeError for a control the camera does not
advertise), ``capture_array(name="main")`` (YUV420: an array of height*3/2 rows of *stride*
bytes, the Y plane first, padding kept), ``stop`` and ``close``.

Test hooks: ``CAMERAS`` (what is attached: sensor model per camera number; ``imx708`` is
Camera Module 3 with autofocus, ``imx219`` the fixed-focus Camera Module 2), ``scene`` (the
grayscale pictures the sensor sees, one per capture; the last one stays in view), and
``opened`` (every Picamera2 made, to read its configuration and controls).
"""

from __future__ import annotations

from collections import deque

import numpy as np

import libcamera

CAMERAS: list[str] = ["imx708"]
_COMMON = {"FrameDurationLimits": (33333, 1000000, 33333), "ExposureTime": (1, 1000000, 20000),
           "NoiseReductionMode": (0, 4, 0)}
CONTROLS = {
    "imx708": {**_COMMON, "AfMode": (0, 2, 0), "AfSpeed": (0, 1, 0), "AfRange": (0, 2, 0),
               "LensPosition": (0.0, 15.0, 1.0)},
    "imx219": dict(_COMMON),
}
STRIDE_ALIGN = 64  # YUV420 rows are padded to this (the Picamera2 manual's format table)
scene: deque[np.ndarray] = deque()
opened: list["Picamera2"] = []


def _even(size) -> bool:
    return size[0] % 2 == 0 and size[1] % 2 == 0


class Picamera2:
    @staticmethod
    def global_camera_info() -> list[dict]:
        return [{"Model": model, "Location": 2, "Rotation": 180, "Id": f"/base/axi/i2c@{n}/{model}@1a",
                 "Num": n} for n, model in enumerate(CAMERAS)]

    def __init__(self, camera_num: int = 0, verbose_console=None, tuning=None) -> None:
        if not 0 <= camera_num < len(CAMERAS):
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.camera_idx = camera_num
        self.model = CAMERAS[camera_num]
        self.is_open, self.started = True, False
        self.camera_config: dict | None = None
        self.controls_set: dict = {}
        self.captures = 0
        opened.append(self)

    @property
    def camera_controls(self) -> dict:
        return dict(CONTROLS[self.model])

    def create_video_configuration(self, main={}, lores=None, raw={}, transform=None, colour_space=None,
                                   buffer_count=6, controls={}, display="main", encode="main", queue=True) -> dict:
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        streams = {"main": {"format": "XBGR8888", "size": (1280, 720)}}
        for name, given in (("main", main), ("lores", lores)):
            if given is None:
                streams[name] = None
                continue
            stream = dict(streams.get(name) or {"format": "YUV420", "size": streams["main"]["size"]})
            for key, value in given.items():
                if key not in ("format", "size"):
                    raise ValueError(f"Bad key {key!r}: valid stream configuration keys are ('format', 'size')")
                stream[key] = value
            streams[name] = stream
        merged = {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)} | dict(controls)
        return {"use_case": "video", "transform": transform or libcamera.Transform(),
                "colour_space": colour_space or libcamera.ColorSpace.Smpte170m(), "buffer_count": buffer_count,
                "queue": queue, "main": streams["main"], "lores": streams["lores"], "raw": raw, "controls": merged,
                "display": display, "encode": encode}

    def configure(self, camera_config: dict) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        for name in ("main", "lores"):
            stream = camera_config.get(name)
            if stream is None:
                continue
            if not isinstance(stream.get("size"), tuple) or len(stream["size"]) != 2:
                raise RuntimeError(f"size in {name} stream should be (width, height)")
            if not _even(stream["size"]):
                raise RuntimeError("width and height should be even")
        lores = camera_config.get("lores")
        if lores is not None and not lores["format"].startswith("YUV"):
            raise RuntimeError("lores stream must be YUV")
        for control in camera_config.get("controls", {}):
            self._check_control(control)
        self.camera_config = camera_config

    def start(self, config=None, show_preview=False) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def set_controls(self, controls: dict) -> None:
        for control in controls:
            self._check_control(control)
        self.controls_set.update(controls)

    def _check_control(self, control: str) -> None:
        if control not in ("NoiseReductionMode",) and control not in CONTROLS[self.model]:
            raise RuntimeError(f"Control {control} is not advertised by libcamera")

    def capture_array(self, name: str = "main", wait=None, signal_function=None) -> np.ndarray:
        if not self.started:
            raise RuntimeError("Camera is not running")
        stream = self.camera_config.get(name)
        if stream is None:
            raise RuntimeError(f"Stream {name!r} is not configured")
        width, height = stream["size"]
        if not scene:
            raise RuntimeError("the stand-in camera has no scene (put pictures in picamera2.scene)")
        picture = scene.popleft() if len(scene) > 1 else scene[0]
        if picture.shape != (height, width):
            raise AssertionError(f"scene picture {picture.shape} is not the configured {width}x{height}")
        self.captures += 1
        if stream["format"] in ("YUV420", "YVU420"):
            stride = -(-width // STRIDE_ALIGN) * STRIDE_ALIGN
            buffer = np.full((height * 3 // 2, stride), 128, np.uint8)  # neutral chroma
            buffer[:height, width:] = 0xEE  # row padding: must not reach the decoder
            buffer[:height, :width] = picture
            return buffer
        rgb = np.repeat(picture[..., None], 4, axis=2)
        rgb[..., 3] = 255
        return rgb

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        if not self.is_open:
            return
        self.stop()
        self.is_open = False
