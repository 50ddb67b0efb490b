"""The display the kiosk draws on: a luma device plus the screens shown on it.

On a Pi the device is a real luma.oled (SSD1306 or SH1106 over I2C, or the 128x128 colour
SSD1351 over SPI, which shows the same 128x64 screens centred); simulated, it is
luma's ``dummy`` device, a real luma device that keeps the last image, so what the
customer would see can be saved as PNG (``--display-out``) and compared with golden
images. Which one is opened is decided in ``kiosk/hardware/factory.py``.
"""

from __future__ import annotations

import errno
from collections import deque
from typing import TYPE_CHECKING, Protocol

from kiosk.common.errors import BackendUnavailable, HardwareError

if TYPE_CHECKING:
    from PIL import Image

    from kiosk.display.screens import Screen

WIDTH, HEIGHT = 128, 64
I2C_OLEDS = ("ssd1306", "sh1106")
OLEDS = (*I2C_OLEDS, "ssd1351")
"""The real displays: 128x64 monochrome on I2C, and the 128x128 colour SSD1351 on SPI."""
NO_ANSWER = {errno.ENXIO, errno.EREMOTEIO, errno.EIO, errno.ETIMEDOUT}
"""What an I2C write returns when nothing acknowledges the address (it varies by bus driver)."""


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

        if (self.device.mode, self.device.width, self.device.height) == ("1", WIDTH, HEIGHT):
            screens.show(self.device, screen)
        else:  # a colour or taller display: the same 128x64 picture, centred
            self.device.display(letterbox(screens.render(screen), self.device))
        self.shown.append(screen)


def letterbox(image: Image.Image, device) -> Image.Image:
    """The 1-bit 128x64 *image* on a black canvas of *device*'s size and mode, centred (white
    on black on a colour display, as on the monochrome ones)."""
    from PIL import Image

    canvas = Image.new(device.mode, device.size)
    canvas.paste(image.convert(device.mode), ((device.width - image.width) // 2, (device.height - image.height) // 2))
    return canvas


class DummyDisplay(LumaDisplay):
    """luma's dummy device, keeping the images of the last *keep_images* screens too (``images``).

    Fewer images than screens: PIL holds a 1-bit image a byte a pixel, 8 KiB a screen, so 1,000
    of them were 8 MiB of the simulated kiosk's memory (bench/kiosk_footprint.py) that a real
    OLED's process never holds. ``shown`` keeps the last *keep* screens, and a screen is a pure
    function of its state: ``screens.render(display.shown[i])`` draws any of them again.
    """

    def __init__(self, keep: int = 1000, keep_images: int = 100) -> None:
        from luma.core.device import dummy

        super().__init__(dummy(width=WIDTH, height=HEIGHT, mode="1"), "dummy", keep)
        self.images: deque[Image.Image] = deque(maxlen=keep_images)

    @property
    def image(self) -> Image.Image | None:
        """What the screen shows now (None before the first screen)."""
        return self.device.image

    def show(self, screen: Screen) -> None:
        super().show(screen)
        self.images.append(self.device.image)  # the dummy device keeps a copy per display()


def open_oled(kind: str, i2c_port: int = 1, i2c_address: int = 0x3C, rotate: int = 0) -> LumaDisplay:
    """An SSD1306 or SH1106 128x64 OLED on I2C (luma.oled); raises BackendUnavailable without
    luma.oled and HardwareError (with the fix) when the bus or the display cannot be reached."""
    if kind not in I2C_OLEDS:
        raise HardwareError(f"unknown I2C OLED {kind!r}: use {' or '.join(I2C_OLEDS)}")
    oled, error = _import_luma()
    from luma.core.interface.serial import i2c

    bus = f"I2C bus {i2c_port} (/dev/i2c-{i2c_port})"
    try:
        serial = i2c(port=i2c_port, address=i2c_address)
    except error.DevicePermissionError as exc:
        raise HardwareError(f"no permission for {bus}: add the user to group 'i2c' "
                            "(`sudo usermod -aG i2c stempel`) and restart the kiosk") from exc
    except error.DeviceNotFoundError as exc:
        raise HardwareError(f"no OLED on I2C port {i2c_port}: there is no {bus}; enable I2C with "
                            "`sudo raspi-config nonint do_i2c 0` and reboot") from exc
    try:
        device = getattr(oled, kind)(serial, width=WIDTH, height=HEIGHT, rotate=rotate)
    except (error.DeviceNotFoundError, OSError) as exc:
        serial.cleanup()
        if isinstance(exc, OSError) and exc.errno not in NO_ANSWER:
            raise HardwareError(f"{bus}: {exc}: check the wiring, then reboot") from exc
        raise HardwareError(
            f"no display at I2C {i2c_address:#04x} on bus {i2c_port}: check the wiring (SDA to GPIO2, pin 3; "
            f"SCL to GPIO3, pin 5; VCC to 3.3 V; GND) and the address: `i2cdetect -y {i2c_port}` lists what "
            "answers (some modules use 0x3d: set [hardware] i2c_address = 0x3D)"
        ) from exc
    return LumaDisplay(device, kind)


def open_ssd1351(spi_port: int = 0, spi_device: int = 0, dc_pin: int = 24, reset_pin: int = 25,
                 rotate: int = 0) -> LumaDisplay:
    """The 128x128 colour SSD1351 OLED on SPI (luma.oled; luma drives D/C and reset through
    RPi.GPIO). Raises BackendUnavailable naming what is missing, HardwareError with the fix."""
    oled, error = _import_luma()
    from luma.core.interface.serial import spi

    where = f"SPI {spi_port}.{spi_device} (/dev/spidev{spi_port}.{spi_device})"
    try:
        serial = spi(port=spi_port, device=spi_device, gpio_DC=dc_pin, gpio_RST=reset_pin)
    except ImportError as exc:  # spidev, or RPi.GPIO (rpi-lgpio stands in for it on a Pi 5)
        package = "python3-spidev" if exc.name == "spidev" else "python3-rpi-lgpio (Pi 5) or python3-rpi.gpio"
        raise BackendUnavailable(f"display 'ssd1351' needs {exc.name or 'spidev'}: "
                                 f"run `sudo apt install {package}`") from exc
    except error.UnsupportedPlatform as exc:
        raise HardwareError(f"display 'ssd1351': RPi.GPIO cannot reach the pins ({exc}): on a Pi 5 "
                            "install python3-rpi-lgpio instead of python3-rpi.gpio") from exc
    except error.DeviceNotFoundError as exc:
        raise HardwareError(f"no {where}: enable SPI with `sudo raspi-config nonint do_spi 0` and reboot") from exc
    except PermissionError as exc:
        raise HardwareError(f"no permission for {where}: add the user to groups 'spi' and 'gpio'") from exc
    try:
        device = oled.ssd1351(serial, width=128, height=128, rotate=rotate)
    except OSError as exc:
        serial.cleanup()
        raise HardwareError(f"the SSD1351 on {where} does not answer ({exc}): check the wiring") from exc
    return LumaDisplay(device, "ssd1351")


def _import_luma():
    """luma.oled's device module and luma.core's errors, or BackendUnavailable."""
    try:
        import luma.core.error as error
        from luma.oled import device as oled
    except ImportError as exc:
        raise BackendUnavailable("display needs luma.oled: `pip install luma.oled`") from exc
    return oled, error
