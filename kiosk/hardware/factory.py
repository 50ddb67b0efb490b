"""The hardware factory: the one place that turns ``[hardware]`` into devices.

Like gpiozero's pin factories, a backend is chosen by configuration (``backend = "pi" |
"sim"`` in kiosk.toml, or ``STEMPEL_HARDWARE``, or ``--simulate``) and each device's
library is imported only when that device is opened. Both backends give the same four
things behind small interfaces: a camera, a QR decoder, a front panel and a display.

- ``PiHardware``: picamera2 (or a webcam, or replayed files), luma.oled over I2C, gpiozero
  on real pins. A missing library raises BackendUnavailable naming the package to install;
  it never falls back to a fake.
- ``SimHardware``: a ``VirtualCamera`` (frames presented by code) or replayed files,
  gpiozero's ``MockFactory`` pins, luma's dummy display. Each records what happened
  (``frames_shown``, the panel's ``history`` and pin ``states``, the display's ``shown``
  and ``images``), so tests assert on the devices themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

from kiosk.display.device import OLEDS, Display, DummyDisplay, LumaDisplay, open_oled
from kiosk.common.errors import ConfigError
from kiosk.hardware.camera import Camera, OpenCVCamera, PiCamera, ReplayCamera, VirtualCamera
from kiosk.hardware.decoder import Decoder, open_decoder
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

    def __init__(self, settings: HardwareSection) -> None:
        check_hardware(settings, "hardware in force")
        self.settings = settings

    @classmethod
    def options(cls) -> dict[str, tuple[str, ...]]:
        return {"camera": cls.CAMERAS, "display": cls.DISPLAYS}

    @property
    def camera_kind(self) -> str:
        return self.settings.camera if self.settings.camera != "auto" else self.CAMERAS[0]

    @property
    def display_kind(self) -> str:
        return self.settings.display if self.settings.display != "auto" else self.DISPLAYS[0]

    def camera(self) -> Camera:
        """Open the camera; raises CameraError / BackendUnavailable with the fix."""
        replay_dir = self.settings.replay_dir
        openers = {"picamera2": PiCamera, "opencv": OpenCVCamera, "virtual": VirtualCamera,
                   "replay": lambda: ReplayCamera.from_folder(replay_dir)}
        return openers[self.camera_kind]()

    def decoder(self) -> Decoder:
        return open_decoder(self.settings.decoder)


class PiHardware(_Backend):
    """Real devices on a Raspberry Pi."""

    name = "pi"
    CAMERAS = ("picamera2", "opencv", "replay")
    DISPLAYS = OLEDS

    def panel(self) -> FrontPanel:
        s = self.settings
        return FrontPanel(s.led_pin, s.buzzer_pin, s.button_pin)  # gpiozero's default (real) pin factory

    def display(self) -> LumaDisplay:
        return open_oled(self.display_kind, self.settings.i2c_port, self.settings.i2c_address)


class SimHardware(_Backend):
    """Simulated devices that record what happened to them."""

    name = "sim"
    CAMERAS = ("virtual", "replay", "opencv")
    DISPLAYS = ("dummy",)

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
