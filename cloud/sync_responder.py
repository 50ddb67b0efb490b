"""Answers kiosks' ``sync/request``: "send me the merchant's ledger after hub_seq N".

Runs inside ``stempel-hub ingest`` on the worker's own connection, through a shared
subscription (like the events), so one worker answers each request. The bus handler only
checks and queues the request (requests of one kiosk are merged into the lowest asked
for); one thread reads the database and publishes one ``sync/response`` batch per request.
The kiosk asks again from where the batch ended until it reaches ``head_hub_seq``, so a
kiosk that was offline for a month pulls its backlog at its own pace and a lost request
or answer costs only a retry (the kiosk re-asks after a few seconds).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import DBAPIError

from cloud.events import EventStore
from kiosk.common.bus import Bus, Message
from kiosk.common.errors import BusError, MessageError
from kiosk.protocol import topics
from kiosk.protocol.messages import SyncRequest, SyncResponse, decode, encode

log = logging.getLogger(__name__)

BATCH = 500


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

