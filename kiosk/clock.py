"""Clocks are injected: wall time for the ledger and rules, monotonic time for sessions."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC wall time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (system-wide since boot on Linux)."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock tests move by hand; wall time may jump while monotonic time only advances."""

    def __init__(self, start: datetime, mono: float = 1000.0) -> None:
        self.wall = start
        self.mono = mono

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@lru_cache(maxsize=1)
def boot_id() -> str:
    """This boot's id; monotonic times are comparable only within one boot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown-boot"
