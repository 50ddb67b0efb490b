"""Identifiers: the `[a-z0-9-]` ids of merchants, kiosks and members, and event ids.

Event ids are UUIDv7 (RFC 9562): time-ordered, made on the kiosk, globally unique, so
an event can be delivered many times and counted once.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

from kiosk.common.errors import ConfigError

ID_REGEX = r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?"
# ``\A...\Z``, not ``^...$``: in Python's ``re``, ``$`` also matches before a final newline,
# so ``"k3\n"`` passed ``match`` and split an ACL line in two (issue 7). With ``\Z`` the
# pattern is safe whichever of match, search or fullmatch a caller uses; use fullmatch.
ID_PATTERN = re.compile(rf"\A{ID_REGEX}\Z")
# For pydantic's ``Field(pattern=...)``: its default engine (Rust ``regex``) knows no ``\Z``,
# and there ``$`` is the end of the text (a final newline does not match; tests/test_hardening_broker.py).
WIRE_ID_PATTERN = rf"^{ID_REGEX}$"


def is_id(value: object) -> bool:
    """True if *value* is a whole id: a str of 1-32 characters of a-z, 0-9 and '-', no other byte."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def check_id(value: str, what: str) -> str:
    """Return *value* if it is a valid id, else raise ConfigError naming *what* and the fix."""
    if not is_id(value):
        raise ConfigError(
            f"{what} {value!r} is not a valid id: use 1-32 characters of a-z, 0-9 and '-', "
            "starting and ending with a letter or digit (e.g. 'cafe-rosa')"
        )
    return value


class UUID7Factory:
    """Makes UUIDv7s that are strictly increasing within this process, even within one ms."""

    def __init__(self, clock_ms=lambda: time.time_ns() // 1_000_000, randbytes=os.urandom):
        self._clock_ms = clock_ms
        self._randbytes = randbytes
        self._lock = threading.Lock()
        self._last = 0

    def __call__(self) -> str:
        with self._lock:
            ms = self._clock_ms() & ((1 << 48) - 1)
            rand = int.from_bytes(self._randbytes(10), "big") & ((1 << 74) - 1)
            value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
            if value <= self._last:  # same ms (or clock stepped back): keep order by counting up
                value = self._last + 1
            self._last = value
            return str(uuid.UUID(int=value))


new_event_id = UUID7Factory()
