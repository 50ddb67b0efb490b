"""gpiozero pin factories for the real front panel: lgpio (every Pi; the only one on a Pi 5) or RPi.GPIO.

We choose the factory ourselves and pass it to the gpiozero devices as ``pin_factory=``
(gpiozero's own fallback chain would end at its ``native`` factory and warn on the way).
Each library is imported only when its factory is chosen; one that is not installed raises
BackendUnavailable naming the apt package, and never turns into a mock pin. ``auto`` tries
lgpio, then RPi.GPIO, and moves on only when a library is *missing*: a library that is there
but fails (no permission on /dev/gpiochip0, RPi.GPIO on a Pi 5) is reported as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kiosk.common.errors import BackendUnavailable, HardwareError

log = logging.getLogger(__name__)

PIN_FACTORIES = ("lgpio", "rpigpio")
"""What ``[hardware] pin_factory`` may name on the ``pi`` backend (besides ``auto``)."""

PACKAGES = {"lgpio": "python3-lgpio", "rpigpio": "python3-rpi.gpio"}
GROUP_FIX = "add the user to group 'gpio' (`sudo usermod -aG gpio stempel`) and restart the kiosk"


def _lgpio():
    from gpiozero.pins.lgpio import LGPIOFactory  # imports lgpio

    return LGPIOFactory()


def _rpigpio():
    from gpiozero.pins.rpigpio import RPiGPIOFactory  # imports RPi.GPIO

    return RPiGPIOFactory()


OPENERS: dict[str, Callable[[], object]] = {"lgpio": _lgpio, "rpigpio": _rpigpio}


def open_pin_factory(kind: str):
    """The gpiozero pin factory *kind* names (``auto``, ``lgpio`` or ``rpigpio``), opened.

    Raises BackendUnavailable when the library is not installed (for ``auto``: neither is),
    HardwareError with the fix when it is installed but cannot reach the pins.
    """
    if kind == "auto":
        missing = []
        for name in PIN_FACTORIES:
            try:
                return open_pin_factory(name)
            except BackendUnavailable as exc:
                missing.append(exc)
        raise BackendUnavailable(
            "no GPIO library found: run `sudo apt install python3-lgpio` (every Pi; the only one on a Pi 5) "
            "or `sudo apt install python3-rpi.gpio` (Pi 4 and older), or set backend = \"sim\" under [hardware]"
        ) from missing[0]
    if kind not in OPENERS:
        raise HardwareError(f"unknown pin factory {kind!r}: use auto, {', '.join(PIN_FACTORIES)}")
    try:
        factory = OPENERS[kind]()
    except ImportError as exc:  # RPi.GPIO's RuntimeError off a Pi is not "missing": see below
        raise BackendUnavailable(
            f"pin_factory {kind!r} needs {exc.name or 'its library'}: run `sudo apt install {PACKAGES[kind]}` "
            "(and make the venv with --system-site-packages)"
        ) from exc
    except PermissionError as exc:
        raise HardwareError(f"GPIO through {kind}: no permission ({exc}): {GROUP_FIX}") from exc
    except Exception as exc:  # noqa: BLE001 - lgpio.error, RuntimeError, PinUnknownPi: vendor errors, translated
        raise HardwareError(f"GPIO through {kind} failed: {exc}: {_fix(kind, exc)}") from exc
    log.info("gpio.factory", extra={"pin_factory": kind, "class": type(factory).__name__})
    return factory


def _fix(kind: str, exc: Exception) -> str:
    """What to do when *kind*'s library is installed but does not work."""
    text = str(exc).lower()
    if kind == "rpigpio" and ("soc" in text or "base address" in text):
        return "RPi.GPIO does not work on a Pi 5: set pin_factory = \"lgpio\" (sudo apt install python3-lgpio)"
    if "raspberry pi" in text or "revision" in text:
        return "this is not a Raspberry Pi: run with --simulate or set backend = \"sim\" under [hardware]"
    return GROUP_FIX
