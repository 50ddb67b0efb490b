"""``stempel-hub ingest``: kiosk events from MQTT into the hub database, exactly once.

Per message, in this order (DESIGN.md, "Hub ingest"): insert (idempotent on ``event_id``),
commit, PUBACK (paho manual ack), then publish the kiosk's retained cumulative
``events/ack``. A crash before the PUBACK makes the broker redeliver (our session is
persistent) and the kiosk re-send; both are counted once because the insert is
idempotent.

Accepted events reach the merchant's ``ledger`` topic through the ``ledger_outbox`` table
(a transactional outbox). The ingest transaction writes the message's outbox rows already
leased to this worker and hands the batch, built in memory, to the relay thread, which
publishes it after the commit; the PUBACKed ids are marked published by the worker's next
ingest transaction (or by the relay when the worker is idle). So publishing costs no
database round trip of its own, and on SQLite the relay never queues for the write lock
behind back-to-back ingest transactions. A crash between commit and publish loses
nothing: the rows stay unpublished, and a sweep (every ``relay_interval``, by whichever
thread is free) leases rows whose lease ran out, e.g. a crashed worker's; a restarted
worker takes its own leftovers at once.

Every message ends in exactly one of three ways: committed; dead-lettered with its reason
(in a transaction of its own, after the failed one rolled back); or left unacknowledged for
redelivery, only while the database does not answer. An unexpected error in the handler
dead-letters the message rather than leave it unacknowledged: the broker's receive maximum
(20) would otherwise stall this worker for every merchant after a handful of them.

Several workers share the load through an MQTT 5 shared subscription. Each worker also
answers kiosks' catch-up requests (cloud/sync_responder.py) on the same connection.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import tomllib
from collections import deque
from pathlib import Path

from cloud.events import (MAX_ATTEMPTS, Attempts, DatabaseUnavailable, EventStore, OutboxBatch, Stored,
                          ingest_or_dead_letter)
from cloud.sync_responder import SyncResponder
from kiosk.common.bus import Bus, BusSettings, Message, MqttBus, Tls
from kiosk.common.errors import BusError, ConfigError
from kiosk.protocol import topics
from kiosk.protocol.messages import EventsAck, encode

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 86  # the test hook's exit status, distinct from real failures


class IngestWorker:
    """One worker: a bus (manual ack, persistent session), the store, and the outbox relay.

    *crash_after_commits* is a fault-injection hook for tests: the process ``os._exit``\\ s right
    after that many commits, before the PUBACK, as a power cut there would.
    """

    def __init__(self, store: EventStore, bus: Bus, *, worker_id: str, group: str = topics.INGEST_GROUP,
                 relay_interval: float = 1.0, lease: float = 30.0, publish_timeout: float = 10.0,
                 crash_after_commits: int | None = None, max_attempts: int = MAX_ATTEMPTS,
                 retry_max_delay: float = 30.0) -> None:
        self.store = store
        self.bus = bus
        self.worker_id = worker_id
        self.subscription = topics.shared_events(group)
        self.relay_interval = relay_interval
        self.lease = lease
        self.publish_timeout = publish_timeout
        self.crash_after_commits = crash_after_commits
        self.max_attempts = max_attempts
        self.retry_max_delay = retry_max_delay
        self._attempts = Attempts()
        self.commits = 0
        self._stopping = threading.Event()
        self._relay_wake = threading.Event()
        self._relay = threading.Thread(target=self._relay_loop, name=f"relay-{worker_id}", daemon=True)
        self._outgoing: deque[OutboxBatch] = deque()  # leased to us, committed, not yet PUBACKed
        self._acked: list[int] = []  # outbox ids PUBACKed, not yet marked published
        self._acked_lock = threading.Lock()
        self._sweep_lock = threading.Lock()
        self._next_sweep = 0.0
        self._ingesting = False

    def start(self) -> None:
        # What an earlier run of this worker committed but never published: ours to send first.
        self._outgoing.extend(self.store.claim_outbox(self.worker_id, lease=self.lease))
        self.bus.subscribe(self.subscription, self._on_events, qos=1)
        self.bus.on_connect(self._relay_wake.set)  # publish what waited while we were offline
        self._relay.start()
        self.bus.start()

    def stop(self) -> None:
        self._stopping.set()
        self._relay_wake.set()
        self.bus.stop()
        self._relay.join(self.publish_timeout + 5)
        acked = self._take_acked()
        if acked:  # else a restart would publish them again (harmless, but avoidable)
            try:
                self.store.mark_published(acked)
            except Exception:
                log.exception("ingest.mark_failed", extra={"worker": self.worker_id, "rows": len(acked)})

    # -- per message (the bus's dispatch thread) ------------------------------------------
    def _on_events(self, message: Message) -> None:
        """Commit or dead-letter, then PUBACK; raises (no PUBACK) only if the database is down
        while we stop, or for a base exception such as a KeyboardInterrupt."""
        self._ingesting = True
        acked = self._take_acked()
        try:
            stored = ingest_or_dead_letter(self.store, message.topic, message.payload, self._stopping,
                                           attempts=self._attempts, max_attempts=self.max_attempts,
                                           max_delay=self.retry_max_delay, lease_to=self.worker_id,
                                           lease=self.lease, published=acked)
        except DatabaseUnavailable as exc:
            self._add_acked(acked)
            log.warning("ingest.left_for_redelivery", extra={"worker": self.worker_id, "topic": message.topic,
                                                             "error": str(exc)})
            raise
        except BaseException:
            self._add_acked(acked)
            raise
        finally:
            self._ingesting = False
        self.commits += 1
        if self.crash_after_commits is not None and self.commits >= self.crash_after_commits:
            log.critical("ingest.test_crash", extra={"worker": self.worker_id, "commits": self.commits})
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)
        if stored.ledger is not None:
            self._outgoing.append(stored.ledger)
            self._relay_wake.set()
        message.ack()
        log.info("ingest.stored", extra={"worker": self.worker_id, "topic": message.topic, "dup": message.dup,
                                         "new": stored.new, "duplicates": stored.duplicates,
                                         "rejected": stored.rejected, "acked": stored.acked_through_seq,
                                         "conflicts": stored.conflicts})
        self._publish_ack(stored)
        try:
            self._sweep_if_due(time.monotonic())
        except Exception:  # the relay's next sweep tries again
            log.exception("ingest.sweep_failed", extra={"worker": self.worker_id})

    def _publish_ack(self, stored: Stored) -> None:
        """Always answer, even for duplicates: a re-send means the kiosk missed our last ack
        (a broker restart without persistence forgets retained messages)."""
        if stored.merchant is None or stored.kiosk is None:
            return
        ack = EventsAck(ledger_id=stored.ledger_id, acked_through_seq=stored.acked_through_seq)
        try:
            self.bus.publish(topics.events_ack(stored.merchant, stored.kiosk), encode(ack), qos=1, retain=True)
        except BusError as exc:  # the kiosk re-sends and we answer then
            log.info("ingest.ack_not_sent", extra={"kiosk": stored.kiosk, "error": str(exc)})

    # -- the ledger outbox relay (its own thread) ----------------------------------------------
    def _relay_loop(self) -> None:
        while not self._stopping.is_set():
            self._relay_wake.wait(self.relay_interval)
            self._relay_wake.clear()
            if not self.bus.connected:
                continue
            try:
                self.relay_once()
                if not self._ingesting:  # idle: the worker thread is not sweeping, so we do
                    self._sweep_if_due(time.monotonic())
            except Exception:  # a database or broker hiccup: the rows stay and are retried
                log.exception("ingest.relay_failed", extra={"worker": self.worker_id})

    def relay_once(self) -> int:
        """Publish the batches waiting, oldest first; each one's ids count as published only after
        its PUBACK. Stops at the first failure (the batch stays first in line). Returns rows sent."""
        published = 0
        while self._outgoing:
            claim = self._outgoing[0]
            try:
                delivery = self.bus.publish(topics.ledger(claim.merchant), encode(claim.batch), qos=1)
                acked = delivery.wait(self.publish_timeout)
            except BusError as exc:
                log.info("ingest.relay_publish_failed", extra={"merchant": claim.merchant, "error": str(exc)})
                return published
            if not acked:
                return published
            self._outgoing.popleft()
            self._add_acked(claim.ids)
            published += len(claim.ids)
        return published

    def _sweep_if_due(self, now: float) -> None:
        """Every ``relay_interval``: mark what was PUBACKed and lease outbox rows whose lease ran out
        (a crashed worker's). Run by the worker thread between messages, or by the relay when the
        worker is idle, so on SQLite it never waits for the write lock behind our own ingest."""
        if now < self._next_sweep or not self._sweep_lock.acquire(blocking=False):
            return
        try:
            acked = self._take_acked()
            try:
                claims = self.store.claim_outbox(self.worker_id, lease=self.lease, own=False, published=acked)
            except Exception:
                self._add_acked(acked)
                raise
            self._outgoing.extend(claims)
            self._next_sweep = now + self.relay_interval
        finally:
            self._sweep_lock.release()
        if claims:
            self._relay_wake.set()

    def _take_acked(self) -> list[int]:
        with self._acked_lock:
            acked, self._acked = self._acked, []
        return acked

    def _add_acked(self, ids: list[int]) -> None:
        with self._acked_lock:
            self._acked.extend(ids)


def hub_mqtt_settings(path: Path, worker: int) -> dict:
    """Read the ``hub-mqtt.toml`` that ``stempel-hub broker-config`` writes: broker address, the
    secret ingest group, and worker *worker*'s account (``stempel-hub-N`` and its password file)."""
    try:
        doc = tomllib.loads(path.read_text())
        mqtt, accounts = doc["mqtt"], doc.get("accounts", {})
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise ConfigError(f"{path}: not a hub MQTT settings file ({exc})") from None
    username = f"stempel-hub-{worker}"
    if username not in accounts:
        raise ConfigError(f"{path}: no account {username}; rerun `stempel-hub broker-config --hub-workers {worker}`")
    return {"host": mqtt["host"], "port": int(mqtt["port"]), "group": mqtt.get("ingest_group", topics.INGEST_GROUP),
            "username": username, "password_file": Path(accounts[username]),
            "ca_file": Path(mqtt["ca_file"]) if mqtt.get("ca_file") else None, "tls": bool(mqtt.get("tls"))}


def bus_settings(*, host: str, port: int, worker_id: str, username: str | None, password_file: Path | None,
                 tls: bool, ca_file: Path | None, cert_file: Path | None, key_file: Path | None,
                 session_expiry: int) -> BusSettings:
    """A persistent-session, manual-ack connection: unacked messages wait on the broker for us."""
    password = None
    if password_file is not None:
        try:
            password = password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"password file {password_file}: {exc.strerror}") from None
    use_tls = tls or ca_file is not None or cert_file is not None
    return BusSettings(host=host, port=port, client_id=username or worker_id, username=username, password=password,
                       tls=Tls(ca_file, cert_file, key_file) if use_tls else None, session_expiry=session_expiry,
                       manual_ack=True, reconnect_min=0.5, reconnect_max=10)


def serve(store: EventStore, settings: BusSettings, *, worker_id: str, group: str,
          crash_after_commits: int | None = None) -> None:
    """Run one worker until SIGTERM or SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    bus = MqttBus(settings)
    responder = SyncResponder(store, bus, group=group)
    worker = IngestWorker(store, bus, worker_id=worker_id, group=group, crash_after_commits=crash_after_commits)
    responder.start()
    worker.start()
    log.info("ingest.started", extra={"worker": worker_id, "host": settings.host, "port": settings.port})
    stop.wait()
    worker.stop()
    responder.stop()
    store.close()
