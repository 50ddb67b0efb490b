"""A private Mosquitto for benchmarks: a free port, limits raised for load, subscriptions logged.

Like ``tests/mosquitto.py`` but tuned for many clients and deep queues, and with
``log_type subscribe`` so a benchmark can see when a worker's subscription is in place
(the workers run quiet, as in production). Always used as a context manager, so the
process is gone when the benchmark ends, whatever happened.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

LIMITS = (
    "max_connections -1",
    "max_inflight_messages 1000",
    "max_queued_messages 1000000",
    "max_queued_bytes 0",
    "set_tcp_nodelay true",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Broker":
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto is not installed (`apt install mosquitto`)")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join([f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
                                   "log_dest stderr", "log_type error", "log_type warning",
                                   "log_type subscribe", *LIMITS]) + "\n")
        with self.log.open("w") as log:  # stderr, not a log file: a root broker drops to user mosquitto
            self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within 10 s: {self.log_tail()}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def subscribed(self, client_id: str, topic_filter: str) -> bool:
        """True once the log shows *client_id* subscribing to *topic_filter*."""
        if not self.log.exists():
            return False
        return any(line.split(" ", 1)[-1].startswith(f"{client_id} ") and line.rstrip().endswith(topic_filter)
                   for line in self.log.read_text().splitlines())

    def log_tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log.exists() else ""
