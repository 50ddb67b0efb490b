"""Open the display: a real luma.oled device on a Pi, luma's dummy device when simulated.

The dummy device is a real luma device that keeps the last image, so what the customer
would see can be saved as PNG (``--display-out``) and compared with golden images.
"""

from __future__ import annotations

from kiosk.errors import BackendUnavailable, HardwareError

WIDTH, HEIGHT = 128, 64


def open_display(kind: str, i2c_port: int = 1, i2c_address: int = 0x3C):
    """Return a luma device: ``dummy`` (simulated), ``ssd1306`` or ``sh1106`` (I2C OLED)."""
    if kind == "dummy":
        from luma.core.device import dummy

        return dummy(width=WIDTH, height=HEIGHT, mode="1")
    if kind in ("ssd1306", "sh1106"):
        try:
            from luma.core.error import DeviceNotFoundError, DevicePermissionError
            from luma.core.interface.serial import i2c
            from luma.oled import device as oled
        except ImportError as exc:
            raise BackendUnavailable("display needs luma.oled: `pip install luma.oled`") from exc
        try:
            return getattr(oled, kind)(i2c(port=i2c_port, address=i2c_address), width=WIDTH, height=HEIGHT)
        except DevicePermissionError as exc:
            raise HardwareError(f"no permission for I2C port {i2c_port}: add the user to group 'i2c'") from exc
        except DeviceNotFoundError as exc:
            raise HardwareError(
                f"no OLED on I2C port {i2c_port} at 0x{i2c_address:02x}: enable I2C (raspi-config) and check wiring"
            ) from exc
    raise HardwareError(f"unknown display {kind!r}: use dummy, ssd1306 or sh1106")
