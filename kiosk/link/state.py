"""What the kiosk says about itself: its retained ``kiosks/{kiosk}/state`` and what goes into it.

``state`` is ``online`` (with the outbox depth, the applied document versions and the latest
error), ``offline`` after a clean stop, or ``lost``: the last will the broker publishes if the
kiosk vanishes without a goodbye. The documents follower (configs, keys), the ledger
follower, the broker link (why it could not connect), the scan loop (a ledger it cannot write)
and the thread watch write to the :class:`StatusBoard`; the outbox sender publishes ``state``
with its own numbers (kiosk/link/events.py), at once when the board changes, so the hub sees
a new applied version or a refused document without waiting for the next periodic state.

The board and the thread watch serve every kiosk, one without a hub too (``stempel-kiosk run``
makes them first); the MQTT side (paho, ssl, the wire messages: ~4 MiB resident) is imported
by the functions that publish, so a kiosk without ``[mqtt]`` never loads it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING

from kiosk.common.errors import MessageError
from kiosk.protocol import topics

if TYPE_CHECKING:
    from kiosk.common.bus import Bus, Handler, Message, Published, Will

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


def state_will(merchant: str, kiosk: str, boot_id: str) -> Will:
    """The last will: the broker publishes ``lost`` (retained) if we vanish without a goodbye."""
    from kiosk.common.bus import Will  # MQTT only: see the module docstring
    from kiosk.protocol.messages import KioskState, encode

    lost = KioskState(status="lost", boot_id=boot_id)
    return Will(topics.state(merchant, kiosk), encode(lost), qos=1, retain=True)


def software_version() -> str:
    try:
        return metadata.version("stempel")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class StateReporter:
    """Builds the kiosk's ``state`` from the outbox numbers and the board, and publishes it retained."""

    def __init__(self, merchant: str, kiosk: str, boot_id: str, board: StatusBoard,
                 software_version: str = "0+unknown") -> None:
        self.merchant, self.kiosk, self.boot_id = merchant, kiosk, boot_id
        self.board, self.software_version = board, software_version
        self.topic = topics.state(merchant, kiosk)

    def message(self, status: str, *, last_seq: int | None, acked: int, error: str | None) -> bytes:
        """The ``state`` payload; *error* (the outbox's own) goes before the board's latest."""
        from kiosk.protocol.messages import KioskState, encode  # MQTT only: see the module docstring

        depth = None if last_seq is None else max(0, last_seq - acked)
        board = self.board
        return encode(KioskState(status=status, boot_id=self.boot_id, software_version=self.software_version,
                                 outbox_depth=depth, last_seq=last_seq, acked_through_seq=acked,
                                 last_error=error or board.last_error(), applied_config=board.applied()))

    def publish(self, bus: Bus, status: str, *, last_seq: int | None, acked: int, error: str | None) -> Published:
        """Publish ``state`` retained at QoS 1; raises BusError when offline."""
        return bus.publish(self.topic, self.message(status, last_seq=last_seq, acked=acked, error=error),
                           qos=1, retain=True)

    def watch_own(self, bus: Bus, on_stale: Callable[[str], None]) -> None:
        """Subscribe to our own retained ``state``: a ``lost`` (or ``offline``) seen while we run is
        a late last will of an earlier connection, or a stale copy; *on_stale* says ``online`` again
        so no one takes us for gone."""
        bus.subscribe(self.topic, self._own_state_handler(on_stale), qos=1)

    @staticmethod
    def _own_state_handler(on_stale: Callable[[str], None]) -> Handler:
        from kiosk.protocol.messages import KioskState, decode  # MQTT only: see the module docstring

        def handler(message: Message) -> None:
            try:
                seen = decode(KioskState, message.payload)
            except MessageError:
                seen = None
            if seen is None or seen.status != "online":
                on_stale(seen.status if seen else "invalid")
        return handler


class ThreadWatch:
    """No background thread dies silently: an uncaught exception in any thread of the process
    (the hub link, paho's network thread, a gpiozero callback) is logged with its traceback,
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
