"""The display the kiosk draws on: a luma device plus the screens shown on it.

On a Pi the device is a real luma.oled (SSD1306 or SH1106 over I2C); simulated, it is
luma's ``dummy`` device, a real luma device that keeps the last image, so what the
customer would see can be saved as PNG (``--display-out``) and compared with golden
images. Which one is opened is decided in ``kiosk/hardware/factory.py``.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Protocol

from kiosk.common.errors import BackendUnavailable, HardwareError

if TYPE_CHECKING:
    from PIL import Image

    from kiosk.display.screens import Screen

WIDTH, HEIGHT = 128, 64
OLEDS = ("ssd1306", "sh1106")


class Display(Protocol):
    """A screen the kiosk shows things on; ``shown`` is what it was asked to show."""

    name: str
    shown: deque[Screen]

    def show(self, screen: Screen) -> None: ...


class LumaDisplay:
    """Draws screens on a luma device through luma's ``canvas``.

    ``shown`` keeps the last *keep* screens (the state, not the pixels) on every backend:
    the scenario tests read it on the simulated display and on a real OLED alike. The
    device is not closed here: luma clears and releases it at exit by itself.
    """

    def __init__(self, device, name: str, keep: int = 1000) -> None:
        self.device = device
        self.name = name
        self.shown: deque[Screen] = deque(maxlen=keep)

    def show(self, screen: Screen) -> None:
        from kiosk.display import screens  # screens imports this module for the size

        screens.show(self.device, screen)
        self.shown.append(screen)


class DummyDisplay(LumaDisplay):
    """luma's dummy device, keeping each screen's image too (``images``, the last *keep*)."""

    def __init__(self, keep: int = 1000) -> None:
        from luma.core.device import dummy

        super().__init__(dummy(width=WIDTH, height=HEIGHT, mode="1"), "dummy", keep)
        self.images: deque[Image.Image] = deque(maxlen=keep)

    @property
    def image(self) -> Image.Image | None:
        """What the screen shows now (None before the first screen)."""
        return self.device.image

    def show(self, screen: Screen) -> None:
        super().show(screen)
        self.images.append(self.device.image)  # the dummy device keeps a copy per display()


def open_oled(kind: str, i2c_port: int = 1, i2c_address: int = 0x3C) -> LumaDisplay:
    """An SSD1306 or SH1106 OLED on I2C; raises BackendUnavailable without luma.oled and
    HardwareError (with the fix) when the bus or the display cannot be reached."""
    if kind not in OLEDS:
        raise HardwareError(f"unknown OLED {kind!r}: use {' or '.join(OLEDS)}")
    try:
        from luma.core.error import DeviceNotFoundError, DevicePermissionError
        from luma.core.interface.serial import i2c
        from luma.oled import device as oled
    except ImportError as exc:
        raise BackendUnavailable("display needs luma.oled: `pip install luma.oled`") from exc
    try:
        device = getattr(oled, kind)(i2c(port=i2c_port, address=i2c_address), width=WIDTH, height=HEIGHT)
    except DevicePermissionError as exc:
        raise HardwareError(f"no permission for I2C port {i2c_port}: add the user to group 'i2c'") from exc
    except DeviceNotFoundError as exc:
        raise HardwareError(
            f"no OLED on I2C port {i2c_port} at 0x{i2c_address:02x}: enable I2C (raspi-config) and check wiring"
        ) from exc
    return LumaDisplay(device, kind)
