"""The merchant's ``ledger`` stream out, and kiosks' catch-up requests answered.

``LedgerRelay`` publishes accepted events from the ``ledger_outbox`` table (a transactional
outbox). The ingest transaction writes a message's outbox rows already leased to this
worker and hands the batch, built in memory, to the relay, which publishes it after the
commit; the PUBACKed ids are marked published by the worker's next ingest transaction (or
by the relay when the worker is idle). So publishing costs no database round trip of its
own, and on SQLite the relay never queues for the write lock behind back-to-back ingest
transactions. A crash between commit and publish loses nothing: the rows stay unpublished,
and a sweep (every ``relay_interval``, by whichever thread is free) leases rows whose lease
ran out, e.g. a crashed worker's; a restarted worker takes its own leftovers at once.

``SyncResponder`` answers ``sync/request`` ("send me the merchant's ledger after hub_seq N")
on the worker's own connection, through a shared subscription (like the events), so one
worker answers each request. The bus handler only checks and queues the request (requests
of one kiosk are merged into the lowest asked for); one thread reads the database and
publishes one ``sync/response`` batch per request. The kiosk asks again from where the batch
ended until it reaches ``head_hub_seq``, so a kiosk that was offline for a month pulls its
backlog at its own pace and a lost request or answer costs only a retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from sqlalchemy.exc import DBAPIError

from cloud.events import EventStore, OutboxBatch
from kiosk.common.bus import Bus, Message
from kiosk.common.errors import BusError, MessageError
from kiosk.protocol import topics
from kiosk.protocol.messages import SyncRequest, SyncResponse, decode, encode

log = logging.getLogger(__name__)

BATCH = 500


class LedgerRelay:
    """The outbox relay of one ingest worker: its own thread, the worker's bus and *stopping*."""

    def __init__(self, store: EventStore, bus: Bus, *, worker_id: str, stopping: threading.Event,
                 interval: float = 1.0, lease: float = 30.0, publish_timeout: float = 10.0) -> None:
        self.store, self.bus, self.worker_id, self.stopping = store, bus, worker_id, stopping
        self.interval, self.lease, self.publish_timeout = interval, lease, publish_timeout
        self.worker_busy = False  # the worker is in a message: it sweeps between messages, not we
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"relay-{worker_id}", daemon=True)
        self._outgoing: deque[OutboxBatch] = deque()  # leased to us, committed, not yet PUBACKed
        self._acked: list[int] = []  # outbox ids PUBACKed, not yet marked published
        self._acked_lock = threading.Lock()
        self._sweep_lock = threading.Lock()
        self._next_sweep = 0.0

    def start(self) -> None:
        """Take what an earlier run of this worker committed but never published (ours to send
        first), and publish whenever the bus (re)connects."""
        self._outgoing.extend(self.store.claim_outbox(self.worker_id, lease=self.lease))
        self.bus.on_connect(self._wake.set)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Join the thread (the caller set *stopping* and stopped the bus), then mark what was
        PUBACKed: else a restart would publish it again (harmless, but avoidable)."""
        self._wake.set()
        self._thread.join(self.publish_timeout + 5)
        acked = self.take_acked()
        if acked:
            try:
                self.store.mark_published(acked)
            except Exception:
                log.exception("ingest.mark_failed", extra={"worker": self.worker_id, "rows": len(acked)})

    def hand(self, batch: OutboxBatch) -> None:
        """A committed batch leased to us: publish it next."""
        self._outgoing.append(batch)
        self._wake.set()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if not self.bus.connected:
                continue
            try:
                self.relay_once()
                if not self.worker_busy:  # idle: the worker thread is not sweeping, so we do
                    self.sweep_if_due(time.monotonic())
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
            self.give_back(claim.ids)
            published += len(claim.ids)
        return published

    def sweep_if_due(self, now: float) -> None:
        """Every ``interval``: mark what was PUBACKed and lease outbox rows whose lease ran out
        (a crashed worker's). Run by the worker thread between messages, or by the relay when the
        worker is idle, so on SQLite it never waits for the write lock behind our own ingest."""
        if now < self._next_sweep or not self._sweep_lock.acquire(blocking=False):
            return
        try:
            acked = self.take_acked()
            try:
                claims = self.store.claim_outbox(self.worker_id, lease=self.lease, own=False, published=acked)
            except Exception:
                self.give_back(acked)
                raise
            self._outgoing.extend(claims)
            self._next_sweep = now + self.interval
        finally:
            self._sweep_lock.release()
        if claims:
            self._wake.set()

    def take_acked(self) -> list[int]:
        """The PUBACKed outbox ids, for the next transaction to mark published."""
        with self._acked_lock:
            acked, self._acked = self._acked, []
        return acked

    def give_back(self, ids: list[int]) -> None:
        """PUBACKed ids still to be marked (newly acked, or a transaction that did not commit)."""
        with self._acked_lock:
            self._acked.extend(ids)
class SyncResponder:
    """One thread answering catch-up requests from the hub database."""

    def __init__(self, store: EventStore, bus: Bus, *, group: str = topics.INGEST_GROUP, batch: int = BATCH,
                 publish_timeout: float = 10.0) -> None:
        self.store, self.bus, self.batch, self.publish_timeout = store, bus, batch, publish_timeout
        self.subscription = f"$share/{group}/{topics.ALL_SYNC_REQUESTS}"
        self._pending: dict[tuple[str, str], int] = {}  # (merchant, kiosk) -> lowest after_hub_seq asked
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sync-responder", daemon=True)
        self.answered = 0

    def start(self) -> None:
        """Subscribe (call before the bus starts, or after) and start answering."""
        self.bus.subscribe(self.subscription, self._on_request, qos=1)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _on_request(self, message: Message) -> None:  # the bus's dispatch thread: check and queue
        where = topics.parse_kiosk_topic(message.topic)
        if where is None or where.leaf != "sync/request":
            log.warning("sync.bad_topic", extra={"topic": message.topic})
            return
        try:
            request = decode(SyncRequest, message.payload)
        except MessageError as exc:
            log.warning("sync.bad_request", extra={"topic": message.topic, "error": str(exc)})
            return
        key = (where.merchant, where.kiosk)
        with self._cond:
            self._pending[key] = min(self._pending.get(key, request.after_hub_seq), request.after_hub_seq)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._pending)
                if self._stopping:
                    return
                (merchant, kiosk), after = self._pending.popitem()
            try:
                self._answer(merchant, kiosk, after)
            except Exception:  # one bad answer must not end the thread: the kiosk asks again
                log.exception("sync.answer_failed", extra={"merchant": merchant, "kiosk": kiosk, "after": after})

    def _answer(self, merchant: str, kiosk: str, after: int) -> None:
        """One batch; failures are logged and dropped: the kiosk asks again."""
        try:
            entries, head = self.store.ledger_after(merchant, after, self.batch)
        except DBAPIError as exc:
            log.warning("sync.db_failed", extra={"merchant": merchant, "kiosk": kiosk, "error": str(exc.orig or exc)[:300]})
            return
        response = SyncResponse(after_hub_seq=after, entries=entries, head_hub_seq=head)
        try:
            self.bus.publish(topics.sync_response(merchant, kiosk), encode(response), qos=1)
        except BusError as exc:
            log.info("sync.answer_not_sent", extra={"kiosk": kiosk, "error": str(exc)})
            return
        self.answered += 1
        log.info("sync.answered", extra={"merchant": merchant, "kiosk": kiosk, "after": after,
                                         "entries": len(entries), "head": head})

