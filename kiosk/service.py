"""What systemd hears from ``stempel-kiosk run``: ready, how it is doing, and that the camera loop turns.

The scan loop (kiosk/loop.py) calls ``ready()`` once its first capture came back (camera,
display and ledger are then up) and ``alive()`` after every capture that returned normally,
a frame or a timeout. ``alive()`` pings the watchdog (at most every half ``WatchdogSec=``)
and refreshes the ``STATUS=`` line, so a camera that hangs or raises, or a loop that
deadlocks, stops the pings and systemd restarts the kiosk; the line is recomputed every few
seconds, or at once when the status board changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from kiosk.common.errors import LedgerError
from kiosk.common.sdnotify import Notifier
from kiosk.hardware.grabber import frame_stats
from kiosk.link.documents import KIOSK, MERCHANT

if TYPE_CHECKING:
    from kiosk.app import Kiosk
    from kiosk.link.documents import DocumentFollower
    from kiosk.link.hub_link import HubLink
    from kiosk.link.state import StatusBoard

log = logging.getLogger(__name__)

MAX_STATUS = 200  # characters of the error kept in the line: `systemctl status` is one screen


class KioskService:
    """The kiosk's side of ``Type=notify``: *describe* makes the ``STATUS=`` line (on the loop's thread)."""

    def __init__(self, notifier: Notifier, describe: Callable[[], str], *, status_every: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.describe = describe
        self.status_every = status_every
        self._now = monotonic
        self._next_status = 0.0
        self._changed = threading.Event()
        self._failure: str | None = None  # the describe() failure last logged
        self.is_ready = False

    def refresh(self) -> None:
        """Something the line shows changed (any thread): recompute it at the next ``alive()``."""
        self._changed.set()

    def ready(self) -> None:
        """``READY=1`` with the first status line; once."""
        if self.is_ready:
            return
        self.is_ready = True
        self.notifier.ready(self._line())
        self._next_status = self._now() + self.status_every
        log.info("kiosk.ready", extra={"notify": self.notifier.enabled,
                                       "watchdog_s": self.notifier.watchdog_interval})

    def alive(self) -> None:
        """The loop turned: ping the watchdog if due, refresh the status line if due."""
        self.notifier.watchdog()
        if not self.notifier.enabled:
            return
        now = self._now()
        if now >= self._next_status or self._changed.is_set():
            self._changed.clear()
            self._next_status = now + self.status_every
            self.notifier.status(self._line())

    def stopping(self, why: str) -> None:
        self.notifier.stopping(why)

    def _line(self) -> str:
        try:
            line = self.describe()
        except Exception as exc:  # noqa: BLE001 - a status line must never stop the scan loop
            failure = f"{type(exc).__name__}: {exc}"
            if failure != self._failure:  # once per distinct failure, not every few seconds
                log.exception("kiosk.status_failed")
            self._failure = failure
            return f"running; status unavailable ({type(exc).__name__})"
        self._failure = None
        return line


def status_line(kiosk: Kiosk, link: HubLink | None, board: StatusBoard,
                documents: DocumentFollower | None) -> str:
    """The line ``systemctl status`` shows, e.g. ``online, 0 waiting, programme v3``: the hub
    connection, the stamps the hub has not acknowledged, the programme in force, the camera's
    frame counts (``1200 frames, 30 repeated, 12 skipped behind``), then the latest error if any. Read on the scan loop's thread (it owns ``kiosk.ledger``)."""
    parts = ["OUT OF ORDER"] if kiosk.out_of_order is not None else []
    if link is None:
        parts.append("standalone (no [mqtt])")
    else:
        parts.append("online" if link.bus.connected else "offline")
        try:
            parts.append(f"{max(0, kiosk.ledger.last_seq() - link.sender.acked_through_seq)} waiting")
        except LedgerError:
            parts.append("outbox unreadable")
    parts.append(programme_label(documents))
    frames = frame_stats(kiosk.camera)
    if frames is not None:  # a real camera, read through the grabber
        parts.append(str(frames))
    line = ", ".join(parts)
    error = kiosk.out_of_order or board.last_error()
    if error:
        line += f"; last error: {error[:MAX_STATUS]}"
    return line


def programme_label(documents: DocumentFollower | None) -> str:
    """Which programme counts: the version the hub pushed (this kiosk's own config first), else the file's."""
    if documents is not None:
        if documents.held[KIOSK].program is not None:
            return f"programme v{documents.version(KIOSK)} (this kiosk's config)"
        if documents.held[MERCHANT].program is not None:
            return f"programme v{documents.version(MERCHANT)}"
    return "programme from kiosk.toml"
