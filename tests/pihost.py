"""Whether these tests run on a Raspberry Pi, where the `pi` backend has real devices."""

from pathlib import Path


def on_a_pi() -> bool:
    try:
        return Path("/proc/device-tree/model").read_text().startswith("Raspberry Pi")
    except OSError:
        return False
