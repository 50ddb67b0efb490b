"""1,000 simulated kiosks on one machine, for the config-convergence benchmark.

Each kiosk is a real MQTT 5 connection (one paho client, its own client id) that subscribes
to the merchant's ``config/desired`` and its own ``kiosks/{k}/config/desired``, hands every
document to a real ``DocumentFollower`` (kiosk/link/documents.py: signature check, programme
validation, fsync'd save of the applied document) and publishes the ``Report`` retained on its
``kiosks/{k}/config/reported``, as the kiosk does.

A thousand ``loop_start`` threads would measure the scheduler, so the clients run on
paho's external-loop API: a few shard threads, each driving its share of sockets with one
selector. ``DocumentFollower.handle`` runs on a small thread pool (it blocks on fsync), and the
shard thread publishes its result. On a real fleet every kiosk does this on its own CPU and
SD card; here all of them share two cores and one disk, so the figures are an upper bound.
"""

from __future__ import annotations

import json
import queue
import resource
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paho.mqtt.client as paho
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from kiosk.protocol import topics
from kiosk.protocol.passes import key_id
from kiosk.link.documents import MERCHANT, DocumentFollower


def raise_fd_limit(needed: int) -> None:
    """Lift the soft RLIMIT_NOFILE towards the hard limit; raise if *needed* still does not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft < needed:
        raise RuntimeError(f"{needed} file descriptors needed, the hard limit is {hard} (`ulimit -Hn`)")


class _Kiosk:
    def __init__(self, merchant: str, kiosk: str, applier: DocumentFollower) -> None:
        self.merchant, self.kiosk, self.applier = merchant, kiosk, applier
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=kiosk, protocol=MQTTProtocolVersion.MQTTv5)
        self.subscribed = False


class _Shard(threading.Thread):
    """Drives some kiosks' sockets with one selector; never blocks on anything but select()."""

    def __init__(self, kiosks: list[_Kiosk], port: int, pool: ThreadPoolExecutor, stop: threading.Event) -> None:
        super().__init__(name=f"fleet-shard-{kiosks[0].kiosk}", daemon=True)
        self.kiosks, self.port, self.pool, self.stop = kiosks, port, pool, stop
        self.results: queue.Queue = queue.Queue()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.error: BaseException | None = None
        self.subscribed = 0

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by FleetSim.wait_subscribed / close
            self.error = exc

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.wake_r, selectors.EVENT_READ, None)
        for k in self.kiosks:
            k.client.on_connect = self._on_connect
            k.client.on_subscribe = self._on_subscribe
            k.client.on_message = self._on_message
            k.client.user_data_set(k)
            k.client.connect("127.0.0.1", self.port, keepalive=60)
            sel.register(k.client.socket(), selectors.EVENT_READ, k)
        misc_due = time.monotonic() + 1
        while not self.stop.is_set():
            for key, _ in sel.select(0.01):
                if key.data is None:
                    self._drain_wake()
                else:
                    key.data.client.loop_read()
            self._publish_results()
            for k in self.kiosks:
                if k.client.want_write():
                    k.client.loop_write()
            if time.monotonic() >= misc_due:
                for k in self.kiosks:
                    k.client.loop_misc()
                misc_due = time.monotonic() + 1
        for k in self.kiosks:
            k.client.disconnect()
        sel.close()

    def _drain_wake(self) -> None:
        try:
            while self.wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _on_connect(self, client, kiosk: _Kiosk, flags, reason_code, properties) -> None:
        client.subscribe([(topics.config_desired(kiosk.merchant), 1),
                          (topics.kiosk_config_desired(kiosk.merchant, kiosk.kiosk), 1)])

    def _on_subscribe(self, client, kiosk: _Kiosk, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            raise RuntimeError(f"{kiosk.kiosk}: subscription refused: {reason_codes}")
        if not kiosk.subscribed:
            kiosk.subscribed = True
            self.subscribed += 1

    def _on_message(self, client, kiosk: _Kiosk, message) -> None:
        self.pool.submit(self._apply, kiosk, message.payload)

    def _apply(self, kiosk: _Kiosk, payload: bytes) -> None:
        report = kiosk.applier.handle(MERCHANT, payload).report
        self.results.put((kiosk, report.to_json()))
        self.wake_w.send(b"x")

    def _publish_results(self) -> None:
        while True:
            try:
                kiosk, payload = self.results.get_nowait()
            except queue.Empty:
                return
            kiosk.client.publish(topics.config_reported(kiosk.merchant, kiosk.kiosk), payload, qos=1, retain=True)


class FleetSim:
    """*n* simulated kiosks of *merchant* trusting *hub_key*; state files under *state_dir*."""

    def __init__(self, port: int, merchant: str, n: int, hub_key: Ed25519PublicKey, state_dir: Path,
                 shards: int = 4, appliers: int = 8) -> None:
        raise_fd_limit(n + 256)
        trusted = {key_id(hub_key): hub_key}
        self.kiosks = [_Kiosk(merchant, f"kiosk-{i:04d}", DocumentFollower(
            merchant, f"kiosk-{i:04d}", trusted, state_dir / f"kiosk-{i:04d}"))
            for i in range(n)]
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(appliers, thread_name_prefix="fleet-apply")
        self.shards = [_Shard(self.kiosks[i::shards], port, self.pool, self.stop) for i in range(shards)]

    def start(self, timeout: float) -> float:
        """Connect and subscribe every kiosk; returns the seconds it took."""
        t0 = time.monotonic()
        for shard in self.shards:
            shard.start()
        deadline = t0 + timeout
        while sum(s.subscribed for s in self.shards) < len(self.kiosks):
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {sum(s.subscribed for s in self.shards)} of {len(self.kiosks)} kiosks "
                                   f"subscribed within {timeout}s")
            time.sleep(0.05)
        return time.monotonic() - t0

    def check(self) -> None:
        """Raise if a shard thread died (its error says why)."""
        for shard in self.shards:
            if shard.error is not None:
                raise RuntimeError(f"{shard.name} failed: {shard.error!r}") from shard.error

    def close(self) -> None:
        self.stop.set()
        for shard in self.shards:
            shard.join(10)
        self.pool.shutdown(wait=True, cancel_futures=True)


class ReportWatcher:
    """The hub's view: every kiosk's retained ``config/reported`` of one merchant, with arrival times."""

    def __init__(self, port: int, merchant: str) -> None:
        self.merchant = merchant
        self.lock = threading.Lock()
        self.applied: dict[int, dict[str, float]] = {}  # version → kiosk → time.time() of the report
        self.rejected: dict[str, list[str]] = {}
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-hub-watch",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        ready = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(topics.ALL_REPORTS, 1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("the report watcher could not subscribe")

    def _on_message(self, client, userdata, message) -> None:
        at = time.time()
        where = topics.parse_kiosk_topic(message.topic)
        if where is None or where.merchant != self.merchant:
            return
        report = json.loads(message.payload)
        with self.lock:
            if report.get("status") == "applied" and isinstance(report.get("version"), int):
                self.applied.setdefault(report["version"], {}).setdefault(where.kiosk, at)
            else:
                self.rejected[where.kiosk] = report.get("errors", [])

    def count(self, version: int) -> int:
        with self.lock:
            return len(self.applied.get(version, {}))

    def times(self, version: int) -> list[float]:
        with self.lock:
            return sorted(self.applied.get(version, {}).values())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
