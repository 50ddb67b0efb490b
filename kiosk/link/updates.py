"""Changes to the running Kiosk made by other threads, applied by the loop thread between frames.

The scan path reads ``kiosk.program`` and ``kiosk.verifier.keyring`` several times per scan;
swapping them from the MQTT side in the middle of a scan could evaluate one visit under
two programmes. So the hub link only queues a change, and the loop applies it while
no frame is being handled.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiosk.app import Kiosk

log = logging.getLogger(__name__)

Change = Callable[["Kiosk"], None]


class Updates:
    """A queue of named changes; ``apply_pending`` runs them in order on the caller's thread."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[str, Change]] = queue.SimpleQueue()

    def put(self, what: str, change: Change) -> None:
        self._queue.put((what, change))

    def apply_pending(self, kiosk: "Kiosk") -> int:
        """Apply every queued change; a failing one is logged and skipped. Returns how many ran."""
        done = 0
        while True:
            try:
                what, change = self._queue.get_nowait()
            except queue.Empty:
                return done
            try:
                change(kiosk)
                done += 1
                log.info("kiosk.updated", extra={"what": what})
            except Exception:
                log.exception("kiosk.update_failed", extra={"what": what})
