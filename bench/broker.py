"""A private Mosquitto for benchmarks: the product's runner (cloud/devbroker.py) with limits
raised for load and subscriptions logged.

``log_type subscribe`` lets a benchmark see when a worker's subscription is in place (the
workers run quiet, as in production). Always used as a context manager, so the process is
gone when the benchmark ends, whatever happened.
"""

from __future__ import annotations

from pathlib import Path

from cloud.devbroker import Mosquitto

LIMITS = (
    "max_connections -1",
    "max_inflight_messages 1000",
    "max_queued_messages 1000000",
    "max_queued_bytes 0",
    "set_tcp_nodelay true",
    "log_type subscribe",
)


class Broker(Mosquitto):
    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, extra="\n".join(LIMITS))

    def __enter__(self) -> "Broker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def subscribed(self, client_id: str, topic_filter: str) -> bool:
        """True once the log shows *client_id* subscribing to *topic_filter*."""
        if not self.log.exists():
            return False
        return any(line.split(" ", 1)[-1].startswith(f"{client_id} ") and line.rstrip().endswith(topic_filter)
                   for line in self.log.read_text().splitlines())
