"""``stempel-hub ingest``: kiosk events from MQTT into the hub database, exactly once.

Per message, in this order (DESIGN.md, "Hub ingest"): insert (idempotent on ``event_id``),
commit, PUBACK (paho manual ack), then publish the kiosk's retained cumulative
``events/ack``. A crash before the PUBACK makes the broker redeliver (our session is
persistent) and the kiosk re-send; both are counted once because the insert is
idempotent. Accepted events reach the merchant's ``ledger`` topic from the
``ledger_outbox`` table by a relay thread, after the commit, so a crash between insert
and publish loses nothing (the lease expires and the row is published again).

Several workers share the load through an MQTT 5 shared subscription. Each worker also
answers kiosks' catch-up requests (cloud/sync_responder.py) on the same connection.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import tomllib
from pathlib import Path

from cloud.events import EventStore, Stored, ingest_with_retry
from cloud.sync_responder import SyncResponder
from kiosk.bus import Bus, BusSettings, Message, MqttBus, Tls
from kiosk.errors import BusError, ConfigError
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
                 crash_after_commits: int | None = None) -> None:
        self.store = store
        self.bus = bus
        self.worker_id = worker_id
        self.subscription = topics.shared_events(group)
        self.relay_interval = relay_interval
        self.lease = lease
        self.publish_timeout = publish_timeout
        self.crash_after_commits = crash_after_commits
        self.commits = 0
        self._stopping = threading.Event()
        self._relay_wake = threading.Event()
        self._relay = threading.Thread(target=self._relay_loop, name=f"relay-{worker_id}", daemon=True)

    def start(self) -> None:
        self.bus.subscribe(self.subscription, self._on_events, qos=1)
        self.bus.on_connect(self._relay_wake.set)  # publish what waited while we were offline
        self._relay.start()
        self.bus.start()

    def stop(self) -> None:
        self._stopping.set()
        self._relay_wake.set()
        self.bus.stop()
        self._relay.join(self.publish_timeout + 5)

    # -- per message (the bus's dispatch thread) ------------------------------------------
    def _on_events(self, message: Message) -> None:
        stored = ingest_with_retry(self.store, message.topic, message.payload, self._stopping)
        self.commits += 1
        if self.crash_after_commits is not None and self.commits >= self.crash_after_commits:
            log.critical("ingest.test_crash", extra={"worker": self.worker_id, "commits": self.commits})
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)
        message.ack()
        log.info("ingest.stored", extra={"worker": self.worker_id, "topic": message.topic, "dup": message.dup,
                                         "new": stored.new, "duplicates": stored.duplicates,
                                         "rejected": stored.rejected, "acked": stored.acked_through_seq,
                                         "conflicts": stored.conflicts})
        self._publish_ack(stored)
        if stored.new:
            self._relay_wake.set()

    def _publish_ack(self, stored: Stored) -> None:
        """Always answer, even for duplicates: a re-send means the kiosk missed our last ack
        (a broker restart without persistence forgets retained messages)."""
        if stored.merchant is None or stored.kiosk is None:
            return
        ack = EventsAck(acked_through_seq=stored.acked_through_seq)
        try:
            self.bus.publish(topics.events_ack(stored.merchant, stored.kiosk), encode(ack), qos=1, retain=True)
        except BusError as exc:  # the kiosk re-sends and we answer then
            log.info("ingest.ack_not_sent", extra={"kiosk": stored.kiosk, "error": str(exc)})

    # -- the ledger outbox relay -------------------------------------------------------------
    def _relay_loop(self) -> None:
        while not self._stopping.is_set():
            self._relay_wake.wait(self.relay_interval)
            self._relay_wake.clear()
            if not self.bus.connected:
                continue
            try:
                self.relay_once()
            except Exception:  # a database or broker hiccup: the rows stay and are retried
                log.exception("ingest.relay_failed", extra={"worker": self.worker_id})

    def relay_once(self) -> int:
        """Publish claimed outbox rows; mark each batch only after its PUBACK. Returns rows published."""
        published = 0
        for claim in self.store.claim_outbox(self.worker_id, lease=self.lease):
            try:
                delivery = self.bus.publish(topics.ledger(claim.merchant), encode(claim.batch), qos=1)
                acked = delivery.wait(self.publish_timeout)
            except BusError as exc:
                log.info("ingest.relay_publish_failed", extra={"merchant": claim.merchant, "error": str(exc)})
                return published
            if not acked:
                return published  # the lease runs out and the rows are published again
            self.store.mark_published(claim.ids)
            published += len(claim.ids)
        return published


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
