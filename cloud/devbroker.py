"""A private Mosquitto broker: a free port, its own config, killable and restartable.

``make demo``, the benchmarks and the tests each start their own with this, never the
machine's shared broker. A missing ``mosquitto`` binary is an error with the fix.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def terminate(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM a child process, SIGKILL it if it is still there after *grace* seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if not found:
        raise RuntimeError("mosquitto is not installed: `make demo` / `make test` install it, or `apt install mosquitto`")
    return found


class Mosquitto:
    """One broker process. ``extra`` is appended to the generated config (listeners, ACLs, TLS)."""

    def __init__(self, workdir: Path, *, persistence: bool = False, extra: str = "", port: int | None = None,
                 anonymous: bool = True) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persistence = persistence
        self.extra = extra
        self.anonymous = anonymous
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / "mosquitto.log"

    @property
    def conf(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def write_conf(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1" if self.persistence else "",
            f"log_dest file {self.log}",
            "log_type error", "log_type warning", "log_type notice",
            "max_queued_messages 100000",
            # As root Mosquitto would switch to the `mosquitto` user, who cannot write our private
            # log and persistence folder; a private broker stays the user that started it.
            "" if "user " in self.extra else f"user {getpass.getuser()}",
            self.extra,
        ]
        self.conf.write_text("\n".join(line for line in lines if line) + "\n")

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        self.write_conf()
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()} {self._log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout}s: {self._log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no goodbye, no final persistence save."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_pipes()

    def stop(self) -> None:
        terminate(self.proc)
        self._close_pipes()

    def restart(self) -> "Mosquitto":
        self.kill()
        return self.start()

    def _close_pipes(self) -> None:
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()

    def _log_tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log.exists() else ""
