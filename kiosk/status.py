"""What the kiosk says about itself in its retained ``state`` beyond the outbox.

The remote link (configs, keys, the hub ledger) writes here from its worker thread; the
outbox sender reads it when it publishes ``state``. A change asks the sender to publish
at once, so the hub sees a new applied version (or a refused document) without waiting
for the next periodic state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class StatusBoard:
    """Applied document versions and the latest error per source, behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._applied: dict[str, int] = {}
        self._errors: dict[str, str] = {}
        self._latest: str | None = None  # the source of the most recent error
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def set_applied(self, versions: dict[str, int]) -> None:
        with self._lock:
            changed = any(self._applied.get(k) != v for k, v in versions.items())
            self._applied.update(versions)
        if changed:
            self._changed()

    def set_error(self, source: str, error: str | None) -> None:
        """Record (or with None clear) the error of *source*, e.g. ``keys`` or ``config``."""
        with self._lock:
            if self._errors.get(source) == error:
                return
            if error is None:
                self._errors.pop(source, None)
            else:
                self._errors[source] = error
                self._latest = source
        self._changed()

    def applied(self) -> dict[str, int]:
        with self._lock:
            return dict(self._applied)

    def last_error(self) -> str | None:
        with self._lock:
            if self._latest in self._errors:
                return self._errors[self._latest]
            return next(iter(self._errors.values()), None)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()
