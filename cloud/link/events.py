"""Kiosks' ``events`` in, ``events/ack`` out: the ingest worker, exactly once.

Per message, in this order (DESIGN.md, "Hub ingest"): insert (idempotent on ``event_id``),
commit, PUBACK (paho manual ack), then publish the kiosk's retained cumulative
``events/ack``. A crash before the PUBACK makes the broker redeliver (our session is
persistent) and the kiosk re-send; both are counted once because the insert is idempotent.

Every message ends in exactly one of three ways: committed; dead-lettered with its reason
(in a transaction of its own, after the failed one rolled back); or left unacknowledged for
redelivery, only while the database does not answer (cloud/events/retry.py). An unexpected
error in the handler dead-letters the message rather than leave it unacknowledged: the
broker's receive maximum (20) would otherwise stall this worker for every merchant after a
handful of them.

Several workers share the load through an MQTT 5 shared subscription. Each worker also
relays the ledger outbox and answers kiosks' catch-up requests (cloud/link/ledger.py) on the
same connection.

Under systemd (``Type=notify``) the worker says ``READY=1`` once its connection is up (the
subscriptions go out on it first), keeps a ``STATUS=`` line, and pings the watchdog while no
message has been in the handler longer than ``stuck_after``: a handler hung on the database
gets the worker restarted; the broker redelivers the unacknowledged message.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from cloud.events import MAX_ATTEMPTS, Attempts, DatabaseUnavailable, EventStore, Stored, ingest_or_dead_letter
from cloud.link.ledger import LedgerRelay, SyncResponder
from kiosk.common.bus import Bus, BusSettings, Message, MqttBus
from kiosk.common.errors import BusError
from kiosk.common.sdnotify import Notifier
from kiosk.protocol import topics
from kiosk.protocol.messages import EventsAck, encode

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 86  # the test hook's exit status, distinct from real failures
# Seconds one message may stay in the handler before the watchdog is no longer fed: far beyond
# a slow transaction or one retry back-off (30 s at most). A database down for longer restarts
# the worker too, which is harmless: the message was not acknowledged, the broker redelivers it.
STUCK_AFTER = 300.0


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
        self.lease = lease
        self.crash_after_commits = crash_after_commits
        self.max_attempts = max_attempts
        self.retry_max_delay = retry_max_delay
        self._attempts = Attempts()
        self.commits = 0
        self.busy_since: float | None = None  # monotonic time the message in the handler arrived there
        self._stopping = threading.Event()
        self.relay = LedgerRelay(store, bus, worker_id=worker_id, stopping=self._stopping, interval=relay_interval,
                                 lease=lease, publish_timeout=publish_timeout)

    @property
    def ingesting(self) -> bool:
        """Whether a message is being stored right now (on the bus's dispatch thread)."""
        return self.relay.worker_busy

    def stuck(self, now: float, after: float = STUCK_AFTER) -> bool:
        """Whether one message has been in the handler longer than *after* seconds at *now*."""
        since = self.busy_since
        return since is not None and now - since > after

    def start(self) -> None:
        self.relay.start()  # first our own leftovers, then the subscription
        self.bus.subscribe(self.subscription, self._on_events, qos=1)
        self.bus.start()

    def stop(self) -> None:
        self._stopping.set()
        self.relay.wake()
        self.bus.stop()
        self.relay.stop()

    def _on_events(self, message: Message) -> None:  # the bus's dispatch thread
        """Commit or dead-letter, then PUBACK; raises (no PUBACK) only if the database is down
        while we stop, or for a base exception such as a KeyboardInterrupt."""
        stored = self._store(message)
        self.commits += 1
        if self.crash_after_commits is not None and self.commits >= self.crash_after_commits:
            log.critical("ingest.test_crash", extra={"worker": self.worker_id, "commits": self.commits})
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)
        if stored.ledger is not None:
            self.relay.hand(stored.ledger)
        message.ack()
        log.info("ingest.stored", extra={"worker": self.worker_id, "topic": message.topic, "dup": message.dup,
                                         "new": stored.new, "duplicates": stored.duplicates,
                                         "rejected": stored.rejected, "acked": stored.acked_through_seq,
                                         "conflicts": stored.conflicts})
        self._publish_ack(stored)
        try:
            self.relay.sweep_if_due(time.monotonic())
        except Exception:  # the relay's next sweep tries again
            log.exception("ingest.sweep_failed", extra={"worker": self.worker_id})

    def _store(self, message: Message) -> Stored:
        """The message committed or dead-lettered, with the relay's PUBACKed ids marked in the
        same transaction (handed back if it did not commit)."""
        self.relay.worker_busy = True
        self.busy_since = time.monotonic()
        acked = self.relay.take_acked()
        try:
            return ingest_or_dead_letter(self.store, message.topic, message.payload, self._stopping,
                                         attempts=self._attempts, max_attempts=self.max_attempts,
                                         max_delay=self.retry_max_delay, lease_to=self.worker_id,
                                         lease=self.lease, published=acked)
        except DatabaseUnavailable as exc:
            self.relay.give_back(acked)
            log.warning("ingest.left_for_redelivery", extra={"worker": self.worker_id, "topic": message.topic,
                                                             "error": str(exc)})
            raise
        except BaseException:
            self.relay.give_back(acked)
            raise
        finally:
            self.relay.worker_busy = False
            self.busy_since = None

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


def serve(store: EventStore, settings: BusSettings, *, worker_id: str, group: str,
          crash_after_commits: int | None = None, notifier: Notifier | None = None) -> None:
    """Run one worker and its sync responder on one connection until SIGTERM or SIGINT;
    *notifier* tells systemd (by default the one ``$NOTIFY_SOCKET`` names, if any)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    notifier = notifier if notifier is not None else Notifier.from_environ()
    try:
        run_worker(store, MqttBus(settings), stop, worker_id=worker_id, group=group, notifier=notifier,
                   crash_after_commits=crash_after_commits, broker=f"{settings.host}:{settings.port}")
    finally:
        notifier.close()


def run_worker(store: EventStore, bus: Bus, stop: threading.Event, *, worker_id: str, group: str,
               notifier: Notifier, crash_after_commits: int | None = None, broker: str = "the broker",
               stuck_after: float = STUCK_AFTER, status_every: float = 5.0) -> None:
    """What ``serve`` runs on its bus until *stop* is set; closes *store* at the end."""
    responder = SyncResponder(store, bus, group=group)
    worker = IngestWorker(store, bus, worker_id=worker_id, group=group, crash_after_commits=crash_after_commits)
    connected = threading.Event()
    bus.on_connect(connected.set)  # on the dispatch thread, after the subscriptions went out
    responder.start()
    worker.start()
    log.info("ingest.started", extra={"worker": worker_id, "broker": broker})
    try:
        _supervise(worker, connected, stop, notifier, broker, stuck_after, status_every)
    finally:
        notifier.stopping(f"stopping after {worker.commits} message(s)")
        worker.stop()
        responder.stop()
        store.close()


def _supervise(worker: IngestWorker, connected: threading.Event, stop: threading.Event, notifier: Notifier,
               broker: str, stuck_after: float, status_every: float) -> None:
    """The main thread until *stop*: READY once connected, then the status line and watchdog pings."""
    ready, stuck = False, False
    interval = notifier.watchdog_interval
    tick = min(status_every, interval / 2) if interval is not None else status_every
    while True:
        if not ready and connected.is_set():
            notifier.ready(_status(worker, broker))
            ready = True
            log.info("ingest.ready", extra={"worker": worker.worker_id, "notify": notifier.enabled})
        if ready:
            was_stuck, stuck = stuck, worker.stuck(time.monotonic(), stuck_after)
            if stuck and not was_stuck:
                log.critical("ingest.stuck", extra={"worker": worker.worker_id, "after_s": stuck_after})
            if not stuck:
                notifier.watchdog()
            notifier.status(_status(worker, broker, stuck_after if stuck else None))
        if stop.wait(tick if ready else 0.05):
            return


def _status(worker: IngestWorker, broker: str, stuck_after: float | None = None) -> str:
    """The ``systemctl status`` line: "connected to 127.0.0.1:1883, 12 message(s) handled"."""
    if stuck_after is not None:
        return f"stuck: one message in the handler for over {stuck_after:g} s; the watchdog will restart us"
    link = f"connected to {broker}" if worker.bus.connected else f"reconnecting to {broker}"
    error = getattr(worker.bus, "last_error", None)
    detail = f" (last error: {error})" if error and not worker.bus.connected else ""
    return f"{link}{detail}, {worker.commits} message(s) handled"
