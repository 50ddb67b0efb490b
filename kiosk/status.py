"""What the kiosk says about itself in its retained ``state`` beyond the outbox.

The remote link (configs, keys, the hub ledger), the broker link (why it could not connect),
the scan loop (a ledger it cannot write) and the thread watch write here; the
outbox sender reads it when it publishes ``state``. A change asks the sender to publish
at once, so the hub sees a new applied version (or a refused document) without waiting
for the next periodic state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


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


class ThreadWatch:
    """No background thread dies silently: an uncaught exception in any thread of the process
    (the remote link, paho's network thread, a gpiozero callback) is logged with its traceback,
    put in ``state`` (``last_error``) and stops the process, which then exits non-zero so
    systemd starts it afresh. Threads that can recover on their own (the outbox sender) retry
    with backoff instead and never reach this hook.
    """

    def __init__(self, status: StatusBoard, stop: threading.Event) -> None:
        self.status = status
        self.stop = stop
        self.failed: str | None = None  # the first thread failure, if any
        self._previous = None

    def install(self) -> "ThreadWatch":
        self._previous = threading.excepthook
        threading.excepthook = self._hook
        return self

    def report_to(self, status: StatusBoard) -> None:
        """Report on *status* from now on (a failure already seen is put there too): the hub link
        makes its board after the watch must already be watching its threads."""
        self.status = status
        if self.failed is not None:
            status.set_error("process", self.failed)

    def uninstall(self) -> None:
        if self._previous is not None:
            threading.excepthook = self._previous
            self._previous = None

    def fail(self, where: str, exc: BaseException) -> None:
        """Record a fatal failure of *where* (also used for the scan loop on the main thread)."""
        error = f"{where} failed: {type(exc).__name__}: {exc}"
        log.critical("kiosk.thread_failed", exc_info=(type(exc), exc, exc.__traceback__),
                     extra={"where": where, "error": error})
        if self.failed is None:
            self.failed = error
        self.status.set_error("process", error)
        self.stop.set()

    def _hook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread is not None else "a thread"
        self.fail(f"thread {name}", args.exc_value)
