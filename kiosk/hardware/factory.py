"""The hardware factory: the one place that turns ``[hardware]`` into devices.

Like gpiozero's pin factories, a backend is chosen by configuration (``backend = "pi" |
"sim"`` in kiosk.toml, or ``STEMPEL_HARDWARE``, or ``--simulate``) and each device's
library is imported only when that device is opened. Both backends give the same four
things behind small interfaces: a camera, a QR decoder, a front panel and a display.

- ``PiHardware``: picamera2 (or a webcam, or replayed files), luma.oled (SSD1306/SH1106 over
  I2C, SSD1351 over SPI), gpiozero on real pins through the lgpio or RPi.GPIO pin factory
  (``pin_factory``). A missing library raises BackendUnavailable naming the package to
  install; it never falls back to a fake. Live cameras are read through a ``FrameGrabber``:
  only the newest frame reaches the decoder, repeats are skipped (``grabber.py``).
- ``SimHardware``: a ``VirtualCamera`` (frames presented by code) or replayed files,
  gpiozero's ``MockFactory`` pins, luma's dummy display. Each records what happened
  (``frames_shown``, the panel's ``history`` and pin ``states``, the display's ``shown``
  and ``images``), so tests assert on the devices themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

from kiosk.display.device import OLEDS, Display, DummyDisplay, LumaDisplay, open_oled, open_ssd1351
from kiosk.common.errors import ConfigError
from kiosk.hardware import pins
from kiosk.hardware.camera import Camera, OpenCVCamera, PiCamera, ReplayCamera, VirtualCamera
from kiosk.hardware.decoder import Decoder, open_decoder
from kiosk.hardware.grabber import FrameGrabber
from kiosk.hardware.panel import FrontPanel, Panel

if TYPE_CHECKING:
    from kiosk.config import HardwareSection


class HardwareFactory(Protocol):
    """What ``build_kiosk`` asks for; each call opens a new device."""

    name: str

    def camera(self) -> Camera: ...

    def decoder(self) -> Decoder: ...

    def panel(self) -> Panel: ...

    def display(self) -> Display: ...


class _Backend:
    """What both backends share: the settings, their check, the choice of camera and display."""

    name: ClassVar[str]
    CAMERAS: ClassVar[tuple[str, ...]]
    """The camera kinds this backend offers; the first is its default."""
    DISPLAYS: ClassVar[tuple[str, ...]]
    """The display kinds this backend offers; the first is its default."""
    PIN_FACTORIES: ClassVar[tuple[str, ...]]
    """The gpiozero pin factories this backend offers (``auto`` picks among them)."""
    LIVE_CAMERAS = frozenset({"picamera2", "opencv"})
    """Cameras that deliver at their own pace: read through a FrameGrabber."""

    def __init__(self, settings: HardwareSection) -> None:
        check_hardware(settings, "hardware in force")
        self.settings = settings

    @classmethod
    def options(cls) -> dict[str, tuple[str, ...]]:
        return {"camera": cls.CAMERAS, "display": cls.DISPLAYS, "pin_factory": cls.PIN_FACTORIES}

    @property
    def camera_kind(self) -> str:
        return self.settings.camera if self.settings.camera != "auto" else self.CAMERAS[0]

    @property
    def display_kind(self) -> str:
        return self.settings.display if self.settings.display != "auto" else self.DISPLAYS[0]

    def camera(self) -> Camera:
        """Open the camera; raises CameraError / BackendUnavailable with the fix.

        A live camera comes wrapped in a FrameGrabber; the virtual and replay cameras are read
        directly, so every frame a test presents or a folder holds is decoded, in order."""
        s = self.settings
        openers = {
            "picamera2": lambda: PiCamera(s.camera_index, s.camera_width, s.camera_height, s.camera_fps, s.autofocus),
            "opencv": lambda: OpenCVCamera(s.camera_index, s.camera_width, s.camera_height, s.camera_fps),
            "virtual": VirtualCamera,
            "replay": lambda: ReplayCamera.from_folder(s.replay_dir),
        }
        camera = openers[self.camera_kind]()
        return FrameGrabber(camera) if self.camera_kind in self.LIVE_CAMERAS else camera

    def decoder(self) -> Decoder:
        return open_decoder(self.settings.decoder)


class PiHardware(_Backend):
    """Real devices on a Raspberry Pi."""

    name = "pi"
    CAMERAS = ("picamera2", "opencv", "replay")
    DISPLAYS = OLEDS
    PIN_FACTORIES = pins.PIN_FACTORIES

    def panel(self) -> FrontPanel:
        """The panel on the pin factory ``pin_factory`` names, which the panel closes with its pins."""
        s = self.settings
        return FrontPanel(s.led_pin, s.buzzer_pin, s.button_pin, pin_factory=pins.open_pin_factory(s.pin_factory),
                          owns_factory=True)

    def display(self) -> LumaDisplay:
        s = self.settings
        if self.display_kind == "ssd1351":
            return open_ssd1351(s.spi_port, s.spi_device, s.display_dc_pin, s.display_reset_pin, s.display_rotate)
        return open_oled(self.display_kind, s.i2c_port, s.i2c_address, s.display_rotate)


class SimHardware(_Backend):
    """Simulated devices that record what happened to them."""

    name = "sim"
    CAMERAS = ("virtual", "replay", "opencv")
    DISPLAYS = ("dummy",)
    PIN_FACTORIES = ("mock",)

    @property
    def camera_kind(self) -> str:
        if self.settings.camera == "auto" and self.settings.replay_dir is not None:
            return "replay"  # `run --simulate --replay DIR` needs no camera setting
        return super().camera_kind

    def panel(self) -> FrontPanel:
        from gpiozero.pins.mock import MockFactory

        s = self.settings
        return FrontPanel(s.led_pin, s.buzzer_pin, s.button_pin, pin_factory=MockFactory())

    def display(self) -> DummyDisplay:
        return DummyDisplay()


BACKENDS: dict[str, type[_Backend]] = {"pi": PiHardware, "sim": SimHardware}


def hardware_factory(settings: HardwareSection) -> HardwareFactory:
    """The backend *settings* name, checked; raises ConfigError naming the field and the fix."""
    return BACKENDS[settings.backend](settings)


def hardware_problems(settings: HardwareSection) -> list[tuple[str, str]]:
    """(field, message) for each option that the chosen backend does not offer."""
    backend = BACKENDS[settings.backend]
    problems = []
    for field, offered in backend.options().items():
        value = getattr(settings, field)
        if value != "auto" and value not in offered:
            owner = next(b.name for b in BACKENDS.values() if value in b.options()[field])
            problems.append((field, (f"{value!r} is a {field} of backend \"{owner}\"; backend \"{backend.name}\" "
                                     f"offers {', '.join(offered)} (or \"auto\")")))
    if settings.camera == "replay" and settings.replay_dir is None:
        problems.append(("replay_dir", ("camera \"replay\" needs replay_dir, a folder of PNG frames "
                                        "(or `stempel-kiosk run --replay DIR`)")))
    return problems


def check_hardware(settings: HardwareSection, source: str) -> None:
    """Raise one ConfigError listing every option the backend does not offer, by field."""
    problems = hardware_problems(settings)
    if problems:
        raise ConfigError("\n".join(f"{source}: [hardware.{field}] {message}" for field, message in problems))
