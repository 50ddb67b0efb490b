"""sd_notify(3) without libsystemd: tell systemd we are ready, what we are doing, and that we live.

A ``Type=notify`` service gets ``$NOTIFY_SOCKET``, a path or ``@name`` in the abstract
namespace; each message is one datagram of ``KEY=value`` lines (``READY=1``, ``STATUS=...``,
``WATCHDOG=1``, ``STOPPING=1``). ``WatchdogSec=`` sets ``$WATCHDOG_USEC`` (and
``$WATCHDOG_PID``): without a ``WATCHDOG=1`` in that time systemd kills the service and
``Restart=`` starts it afresh, so we ping at half of it, and only from the loop whose life
the ping vouches for.

Outside systemd (a terminal, most tests) nothing is set and every call is a no-op. A failed
send is logged, never raised: telling systemd must not stop the work it reports on (a ping
that does not arrive is what the watchdog is there to notice).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

SEND_TIMEOUT = 1.0  # a full queue on systemd's side must not hang the loop that pings


class Notifier:
    """One service's messages to systemd over ``$NOTIFY_SOCKET``; safe to share between threads.

    *address* is ``$NOTIFY_SOCKET`` (None: not under systemd, every call a no-op);
    *watchdog_usec* is ``$WATCHDOG_USEC`` (None: no watchdog, ``watchdog()`` a no-op);
    *monotonic* decides when the next ping is due (tests pass a fake clock).
    """

    def __init__(self, address: str | None = None, *, watchdog_usec: int | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.address = _socket_address(address) if address else None
        if address and self.address is None:
            log.warning("sdnotify.unsupported_socket", extra={"notify_socket": address})
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._now = monotonic
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._last_ping: float | None = None
        self._last_status: str | None = None
        self._last_error: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, *, pid: int | None = None,
                     monotonic: Callable[[], float] = time.monotonic) -> "Notifier":
        """The notifier systemd set up for this process (read here, at the call, never at import).

        The watchdog is ours only if ``$WATCHDOG_PID`` is unset or names *pid* (this process):
        a child that inherited the variables must not ping for its parent.
        """
        env = os.environ if environ is None else environ
        pid = os.getpid() if pid is None else pid
        usec: int | None = None
        raw = env.get("WATCHDOG_USEC")
        owner = env.get("WATCHDOG_PID")
        if raw and (not owner or owner == str(pid)):
            try:
                usec = int(raw)
            except ValueError:
                log.warning("sdnotify.bad_watchdog_usec", extra={"watchdog_usec": raw})
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_usec=usec, monotonic=monotonic)

    @property
    def enabled(self) -> bool:
        """Whether systemd listens (``$NOTIFY_SOCKET`` set and usable)."""
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half of ``WatchdogSec=``, as sd_watchdog_enabled(3) advises."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2_000_000

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: a ``Type=notify`` unit counts as started from here (and its dependants start)."""
        return self._send_with_status(["READY=1"], status)

    def status(self, text: str) -> bool:
        """``STATUS=``: the line ``systemctl status`` shows; sent only when it changed."""
        return self._send_with_status([], text)

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: we are shutting down on purpose (the unit shows "deactivating")."""
        return self._send_with_status(["STOPPING=1"], status)

    def watchdog(self) -> bool:
        """``WATCHDOG=1`` if half a watchdog period passed since the last one; call it from the
        loop whose progress it vouches for, as often as the loop turns. True if a ping went out."""
        interval = self.watchdog_interval
        if interval is None:
            return False
        now = self._now()
        with self._lock:
            if self._last_ping is not None and now - self._last_ping < interval:
                return False
            self._last_ping = now
            return self._send_locked("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> "Notifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the wire --------------------------------------------------------------------------
    def _send_with_status(self, lines: list[str], status: str | None) -> bool:
        if self.address is None:
            return False
        with self._lock:
            if status is not None:
                status = " ".join(status.split())  # one line: a newline would end the assignment
                if status != self._last_status or lines:
                    lines = [*lines, f"STATUS={status}"]
            if not lines:
                return False
            sent = self._send_locked("\n".join(lines))
            if sent and status is not None:
                self._last_status = status
            return sent

    def _send_locked(self, message: str) -> bool:
        """One datagram; False (logged when the error is new) if it could not be sent."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.settimeout(SEND_TIMEOUT)
            self._sock.sendto(message.encode("utf-8", "replace"), self.address)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
            if error != self._last_error:
                log.warning("sdnotify.send_failed", extra={"notify_socket": _printable(self.address),
                                                           "error": error})
            self._last_error = error
            if self._sock is not None:  # a fresh socket next time (systemd may have re-executed)
                self._sock.close()
                self._sock = None
            return False
        if self._last_error is not None:
            log.info("sdnotify.send_recovered", extra={"error": self._last_error})
            self._last_error = None
        return True


def trace_watchdog_kills(notifier: Notifier) -> Notifier:
    """With a watchdog, have a kill by it (``SIGABRT``, systemd's ``WatchdogSignal=``) print every
    thread's stack to stderr, the journal: a hung camera or a deadlock then says where it hung."""
    if notifier.watchdog_interval is not None and not faulthandler.is_enabled():
        faulthandler.enable()
    return notifier


def _socket_address(value: str) -> str | None:
    """``/path`` as is, ``@name`` as the abstract ``\\0name``; anything else (``vsock:``) unsupported."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


def _printable(address: str) -> str:
    return "@" + address[1:] if address.startswith("\0") else address
