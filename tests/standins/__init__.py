"""Stand-ins for the Pi libraries that do not install here (picamera2 and libcamera, lgpio,
RPi.GPIO, spidev, smbus2's bus), each written from the library's documented API: the same
module names, functions, signatures and constants our code and gpiozero/luma call, over
simulated hardware with test hooks (a line to drive, a scene to put before the camera, the
bytes that went over the bus).

``install(monkeypatch, name)`` loads a fresh copy (fresh state) into ``sys.modules`` for one
test; the real library, where it is installed, is back when monkeypatch undoes it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).parent
FILES = {
    "picamera2": HERE / "picamera2.py",
    "libcamera": HERE / "libcamera.py",
    "lgpio": HERE / "lgpio.py",
    "RPi": HERE / "RPi" / "__init__.py",
    "RPi.GPIO": HERE / "RPi" / "GPIO.py",
    "spidev": HERE / "spidev.py",
    "smbus2": HERE / "smbus2.py",
}


def install(monkeypatch, name: str) -> ModuleType:
    """A fresh stand-in module *name* in ``sys.modules`` (parents first) until the test ends."""
    if "." in name:
        parent_name, _, child = name.rpartition(".")
        parent = sys.modules.get(parent_name)
        if parent is None or getattr(parent, "__file__", None) != str(FILES[parent_name]):
            parent = install(monkeypatch, parent_name)
    spec = importlib.util.spec_from_file_location(name, FILES[name])
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    if "." in name:
        monkeypatch.setattr(parent, child, module, raising=False)
    return module


def forget(monkeypatch, *names: str) -> None:
    """Drop modules that imported a library at import time (gpiozero.pins.lgpio imports lgpio),
    so they import the stand-in installed for this test. Afterwards ``sys.modules`` is as it was,
    also when the module was not imported before (then the copy bound to the stand-in goes)."""
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)  # recorded: undone last, to what was there
        monkeypatch.delitem(sys.modules, name)
