"""systemd's end of sd_notify for tests: a real AF_UNIX datagram socket bound in a test folder.

``NotifySocket(tmp_path)`` is what ``$NOTIFY_SOCKET`` names for the code under test
(``env()`` gives the variables systemd would set). Each datagram is parsed into a dict of
its ``KEY=value`` lines. Waits are event-driven (a blocking receive with a generous timeout);
only a check that something does *not* arrive waits out a fixed time, and that time is
never what the assertion measures.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

SUN_PATH_MAX = 107  # bytes in sockaddr_un.sun_path, less the terminating NUL


class NotifySocket:
    def __init__(self, folder: Path, name: str = "notify.sock") -> None:
        self._spare: str | None = None
        path = Path(folder) / name
        if len(str(path).encode()) > SUN_PATH_MAX:  # a long pytest folder name: a short one instead
            self._spare = tempfile.mkdtemp(prefix="sd-")
            path = Path(self._spare) / name
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.seen: list[dict[str, str]] = []

    @property
    def address(self) -> str:
        return str(self.path)

    def env(self, watchdog_usec: int | None = None, **extra: str) -> dict[str, str]:
        """The variables systemd sets for a ``Type=notify`` service (with ``WatchdogSec=``)."""
        env = {"NOTIFY_SOCKET": self.address, **extra}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def next(self, timeout: float = 20.0) -> dict[str, str] | None:
        """The next message, or None if none came within *timeout* seconds."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        message = parse(data)
        self.seen.append(message)
        return message

    def wait_for(self, key: str, value: str | None = None, timeout: float = 20.0) -> dict[str, str]:
        """Read messages until one has *key* (equal to *value* if given); AssertionError on timeout."""
        while True:
            message = self.next(timeout)
            if message is None:
                raise AssertionError(f"no {key}={value or '...'} within {timeout}s; heard: {self.seen}")
            if key in message and (value is None or message[key] == value):
                return message

    def drain(self) -> list[dict[str, str]]:
        """Every message already waiting, without blocking."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    return out
                out.append(parse(data))
                self.seen.append(out[-1])
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)
        if self._spare is not None:
            shutil.rmtree(self._spare, ignore_errors=True)


def parse(data: bytes) -> dict[str, str]:
    """``b"READY=1\\nSTATUS=online"`` → ``{"READY": "1", "STATUS": "online"}``."""
    out = {}
    for line in data.decode("utf-8").split("\n"):
        if line:
            key, _, value = line.partition("=")
            out[key] = value
    return out


def pings(messages: list[dict[str, str]]) -> int:
    return sum(1 for m in messages if m.get("WATCHDOG") == "1")
