"""Whether the hub counts as unreachable, for the marker the screens carry (``Kiosk.offline``).

The hub link's bus knows whether it is connected to the broker. A kiosk that lost the broker
a moment ago (a Wi-Fi hiccup, a broker restart) is not worth a marker; one that has been
without it for ``grace`` seconds is, and so is one that never reached it since the start. The
watch looks every ``period`` seconds on its own thread and, when the verdict flips, queues a
change on the hub link's ``updates``: the scan loop applies it between frames (the only
thread that draws), setting ``Kiosk.offline`` and drawing the screen in view again with the
marker on or off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from kiosk.display import screens
from kiosk.link.updates import Change, Updates

if TYPE_CHECKING:
    from kiosk.app import Kiosk

log = logging.getLogger(__name__)

GRACE = 10.0
"""Seconds without the broker before the screens say "offline" (MQTT keepalive is 30 s)."""


class OfflineWatch:
    """Turns "connected to the broker?" into the screens' offline marker, with a grace period."""

    def __init__(self, connected: Callable[[], bool], updates: Updates, *, grace: float = GRACE,
                 period: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.connected, self.updates = connected, updates
        self.grace, self.period, self._now = grace, period, monotonic
        self.offline = False  # the verdict last queued
        self._down_since: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> bool:
        """Look once; queue a change if the verdict flipped. Returns the verdict (True: offline)."""
        now = self._now()
        if self.connected():
            self._down_since = None
            offline = False
        else:
            self._down_since = now if self._down_since is None else self._down_since
            offline = now - self._down_since >= self.grace
        if offline != self.offline:
            self.offline = offline
            if offline:
                log.warning("kiosk.hub_offline", extra={"grace_seconds": self.grace})
            else:
                log.info("kiosk.hub_online")
            self.updates.put("offline marker" if offline else "online again", mark(offline))
        return offline

    def start(self) -> "OfflineWatch":
        self._thread = threading.Thread(target=self._run, name="offline-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.poll()


def mark(offline: bool) -> Change:
    """The change that puts the marker on (or takes it off) the kiosk's screens, the one in
    view included (run by the scan loop, through ``Updates``)."""
    def change(kiosk: "Kiosk") -> None:
        kiosk.offline = offline
        display = kiosk.display
        if display is not None and display.shown:
            display.show(screens.marked(display.shown[-1], offline))
    return change
