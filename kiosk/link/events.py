"""Events out, acks in: drain the ledger to the hub, release only what the hub says it stored.

The ledger's ``events`` table *is* the outbox (events are committed there before any
feedback). This sender only remembers how far the hub has acknowledged
(``acked_through_seq``, in a small table of the same SQLite file) and re-sends everything
after it on every reconnect and whenever the hub stays silent too long. A PUBACK is not
trusted for anything: the broker may lose what it acknowledged; the hub's cumulative
``events/ack`` is the only release. Re-sends are harmless because the hub ignores known
``event_id``s. Days offline cost disk only: nothing is queued in memory.

The hub's side of this exchange is ``cloud/link/events.py``. The bus connection belongs to the
hub link (kiosk/link/hub_link.py), which starts the sender and says goodbye after it stops.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from kiosk.common.bus import Bus, Message
from kiosk.common.errors import BusError, LedgerError, MessageError
from kiosk.ledger import Ledger
from kiosk.link.state import StateReporter
from kiosk.protocol import topics
from kiosk.protocol.event import Event, wire_fields
from kiosk.protocol.messages import EventBatch, EventsAck, WireEvent, decode, encode

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_state (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    acked_through_seq INTEGER NOT NULL,
    updated_at        TEXT NOT NULL
);
"""


class SyncState:
    """The sender's one number, kept beside the ledger (own connection; WAL lets both write).

    Losing an update to a power cut only means a re-send, so ``synchronous=NORMAL`` is enough.
    """

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the sync state in {path}: {exc}") from exc

    def acked(self) -> int:
        row = self._db.execute("SELECT acked_through_seq FROM sync_state WHERE id = 1").fetchone()
        return row[0] if row else 0

    def set_acked(self, seq: int) -> None:
        self._db.execute(
            "INSERT INTO sync_state (id, acked_through_seq, updated_at) VALUES (1, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET acked_through_seq = MAX(acked_through_seq, excluded.acked_through_seq),"
            " updated_at = excluded.updated_at",
            (seq, datetime.now(timezone.utc).isoformat()),
        )

    def close(self) -> None:
        self._db.close()


def to_wire(event: Event) -> WireEvent:
    """The wire form of a ledger row; MessageError (naming the row) if the wire cannot carry it."""
    try:
        return WireEvent(**wire_fields(event))
    except ValidationError as exc:
        shown = "; ".join(f"[{'.'.join(map(str, e['loc']))}] {e['msg']}" for e in exc.errors()[:3])
        raise MessageError(f"ledger event {event.kiosk_seq} ({event.kind}) cannot be sent to the hub: {shown}") from None


def _wire_prefix(events: Sequence[Event]) -> tuple[list[WireEvent], MessageError | None]:
    """The events up to the first one the wire cannot carry, and that one's error."""
    wire: list[WireEvent] = []
    for event in events:
        try:
            wire.append(to_wire(event))
        except MessageError as exc:
            return wire, exc
    return wire, None


def batch_message(events: Sequence[Event], ledger_id: str = "") -> bytes:
    """The ``events`` payload for these ledger rows (also used by tests that replay batches)."""
    return encode(EventBatch(ledger_id=ledger_id, events=[to_wire(e) for e in events]))


@dataclass(frozen=True)
class SenderSettings:
    batch_size: int = 100
    max_in_flight: int = 1000  # events sent but not yet acknowledged by the hub
    ack_timeout: float = 10.0  # re-send if the hub is silent this long; doubles up to max_ack_timeout
    max_ack_timeout: float = 300.0
    poll_interval: float = 0.2  # how often new ledger rows are looked for (the loop writes elsewhere)
    state_interval: float = 60.0
    warn_depth: int = 10_000
    retry_min: float = 1.0  # after a failed step the sender waits this long, doubling up to retry_max
    retry_max: float = 60.0


class OutboxSender:
    """One thread that moves ledger rows to the broker and hub acks into ``sync_state``; it also
    publishes the kiosk's ``state`` (*state*), which carries the outbox's numbers."""

    def __init__(self, ledger_path: Path, bus: Bus, state: StateReporter, *,
                 settings: SenderSettings = SenderSettings(),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ledger_path = Path(ledger_path)
        self.bus = bus
        self.state = state
        self.merchant, self.kiosk = state.merchant, state.kiosk
        self.settings = settings
        self._now = monotonic
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._hub_acked = 0  # highest ack heard from the hub, not yet persisted
        self._reconnected = False
        self._state_requested = False
        self._drained = threading.Event()
        self._last_seen: int | None = None  # the ledger's last seq, as the loop last read it
        self._thread = threading.Thread(target=self._run, name=f"sync-{self.kiosk}", daemon=True)
        self._acks = SyncState(self.ledger_path)
        self.ledger_id: str | None = None  # read with the ledger; acks for any other ledger release nothing
        self.acked_through_seq = self._acks.acked()
        self.last_error: str | None = None
        self.failures = 0  # consecutive failed steps (reported, retried with backoff)
        self.outbox_left: int | None = None  # events the hub had not acknowledged when we stopped
        self.stopped_at: int | None = None  # the ledger's last seq when stop() was called
        state.board.on_change(self.request_state)  # a new applied version or error: ``state`` at once

    def start(self) -> None:
        """Subscribe to our ack and our own state, and start the loop (the hub link starts the bus)."""
        self.bus.subscribe(topics.events_ack(self.merchant, self.kiosk), self._on_ack, qos=1)
        self.state.watch_own(self.bus, self._on_stale_state)
        self.bus.on_connect(self._on_connected)
        self._thread.start()

    def request_state(self) -> None:
        """Publish ``state`` at the next step (something the hub should see changed)."""
        with self._lock:
            self._state_requested = True
        self._wake.set()

    def drained(self) -> bool:
        """True when the hub has acknowledged every event of the ledger (checked by the loop)."""
        return self._drained.is_set()

    def stop(self, timeout: float = 5.0, drain: float = 0.0) -> int:
        """Wait up to *drain* s for the hub to ack every event in the ledger *now*, then stop the
        loop (the hub link then says ``offline`` and disconnects). Returns how many events are
        still unacknowledged (also in ``outbox_left``): they stay in the ledger and go out on the
        next start.

        The target is read from the ledger at the call, not taken from the sender's last look:
        a scan written just before the stop (the last frame of a replay) must be waited for too.
        """
        self.stopped_at = target = self._ledger_last_seq()
        deadline = time.monotonic() + drain
        self._wake.set()
        while self.acked_through_seq < target and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.02)
        self.outbox_left = left = max(0, target - self.acked_through_seq)
        (self._drained.set if left == 0 else self._drained.clear)()
        log.log(logging.WARNING if left else logging.INFO, "sync.stopped",
                extra={"outbox_left": left, "last_seq": target, "acked_through_seq": self.acked_through_seq})
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._acks.close()
        return left

    def goodbye(self) -> None:
        """Say ``offline`` (retained) with the outbox as ``stop`` left it, if still connected."""
        if not self.bus.connected:
            return
        try:
            self._publish("offline", self.stopped_at).wait(2.0)
        except BusError as exc:
            log.info("sync.goodbye_failed", extra={"error": str(exc)})

    def _ledger_last_seq(self) -> int:
        """The ledger's last seq, read on the caller's thread (read-only; the sender's connection is its own)."""
        try:
            db = sqlite3.connect(f"file:{self.ledger_path}?mode=ro", uri=True, timeout=5)
            try:
                return db.execute("SELECT COALESCE(MAX(kiosk_seq), 0) FROM events").fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error as exc:
            log.warning("sync.ledger_unreadable", extra={"error": str(exc)})
            return self._last_seen or 0

    # -- bus side (dispatch thread) ------------------------------------------------------
    def _on_ack(self, message: Message) -> None:
        try:
            ack = decode(EventsAck, message.payload)
        except MessageError as exc:
            log.warning("sync.bad_ack", extra={"topic": message.topic, "error": str(exc)})
            return
        if ack.ledger_id != self.ledger_id:  # e.g. the retained ack of this kiosk's wiped ledger
            log.info("sync.foreign_ack", extra={"ack_ledger": ack.ledger_id, "ledger_id": self.ledger_id,
                                                "acked": ack.acked_through_seq})
            return
        with self._lock:
            self._hub_acked = max(self._hub_acked, ack.acked_through_seq)
        self._wake.set()

    def _on_connected(self) -> None:
        with self._lock:
            self._reconnected = True
        self._wake.set()

    def _on_stale_state(self, seen: str) -> None:
        """Our retained ``state`` says ``lost``/``offline`` while we run: say ``online`` again."""
        if not self._stop.is_set():
            log.info("sync.state_reasserted", extra={"seen": seen})
            self.request_state()

    # -- the loop ------------------------------------------------------------------------
    def _run(self) -> None:
        """Step until stopped. A failed step never ends the thread: it is logged, put in ``state``
        with its error and retried with backoff (a ledger on a full disk, an event the wire refuses)."""
        ledger: Ledger | None = None
        loop: _Loop | None = None
        try:
            while not self._stop.is_set():
                try:
                    if loop is None:
                        ledger = Ledger(self.ledger_path)
                        self.ledger_id = ledger.ledger_id
                        loop = _Loop(self, ledger)
                    loop.step()
                    if self.failures:
                        self._recovered()
                except Exception as exc:  # noqa: BLE001 - any failure is reported and retried, never fatal
                    self._stop.wait(self._failed(exc, loop))
                self._wake.wait(self.settings.poll_interval)
                self._wake.clear()
        finally:
            if ledger is not None:
                ledger.close()

    def _failed(self, exc: Exception, loop: "_Loop | None") -> float:
        """Log (once per distinct error), report in ``state``; returns the backoff before the next try."""
        self.failures += 1
        error = f"outbox sender: {exc}" if isinstance(exc, (LedgerError, MessageError, BusError)) \
            else f"outbox sender: {type(exc).__name__}: {exc}"
        delay = min(self.settings.retry_max, self.settings.retry_min * 2 ** min(self.failures - 1, 16))
        if error != self.last_error:
            log.error("sync.step_failed", exc_info=not isinstance(exc, (LedgerError, MessageError)),
                      extra={"error": error, "failures": self.failures, "retry_in_s": delay})
        self.last_error = error
        if loop is not None:
            loop.publish_state()  # best effort: the hub must see why the outbox does not move
        return delay

    def _recovered(self) -> None:
        log.warning("sync.recovered", extra={"after_failures": self.failures, "error": self.last_error})
        self.failures, self.last_error = 0, None
        self.request_state()

    def _take_acks(self, last_seq: int) -> bool:
        """Persist a newer hub ack; True if it moved. An ack beyond our last event is refused."""
        with self._lock:
            heard = self._hub_acked
        if heard > last_seq:  # never release on a claim about events we don't have; say so once
            error = f"hub ack {heard} is ahead of this ledger ({last_seq}); was the ledger replaced?"
            if self.last_error != error:
                self.last_error = error
                log.error("sync.ack_ahead", extra={"acked": heard, "last_seq": last_seq})
            return False
        if heard <= self.acked_through_seq:
            return False
        self._acks.set_acked(heard)
        self.acked_through_seq = heard
        return True

    def _publish(self, status: str, last_seq: int | None):
        """``state`` with the outbox's numbers and error; raises BusError when offline."""
        return self.state.publish(self.bus, status, last_seq=last_seq, acked=self.acked_through_seq,
                                  error=self.last_error)


class _Loop:
    """The sender's per-thread working state: what is in flight and when the hub last spoke."""

    def __init__(self, sender: OutboxSender, ledger: Ledger) -> None:
        self.s = sender
        self.ledger = ledger
        self.sent_through = sender.acked_through_seq
        self.timeout = sender.settings.ack_timeout
        self.waiting_since = sender._now()
        self.state_due = 0.0
        self.deep = False
        self.last_depth = -1

    def step(self) -> None:
        s, now = self.s, self.s._now()
        last = s._last_seen = self.ledger.last_seq()
        if s._take_acks(last):
            self.waiting_since, self.timeout = now, s.settings.ack_timeout
        with s._lock:
            reconnected, s._reconnected = s._reconnected, False
            if s._state_requested:
                self.state_due, s._state_requested = 0.0, False
        if reconnected:  # the broker may have lost anything not yet acked by the hub
            self.sent_through, self.state_due = s.acked_through_seq, 0.0
            self.waiting_since = now
        acked = s.acked_through_seq
        (s._drained.set if last == acked else s._drained.clear)()
        self._watch_depth(last - acked)  # offline for days is exactly when this matters
        if not s.bus.connected:
            return
        self.sent_through = max(self.sent_through, acked)
        if self.sent_through > acked and now - self.waiting_since > self.timeout:
            log.warning("sync.resend", extra={"from_seq": acked + 1, "through_seq": self.sent_through,
                                              "silent_s": round(now - self.waiting_since, 1)})
            self.sent_through, self.waiting_since = acked, now
            self.timeout = min(self.timeout * 2, s.settings.max_ack_timeout)
        self._send(last, acked, now)
        if now >= self.state_due or (last == acked) != (self.last_depth == 0):
            self._publish_state(last)
            self.state_due = now + s.settings.state_interval
            self.last_depth = last - acked

    def _send(self, last: int, acked: int, now: float) -> None:
        s = self.s
        while self.sent_through < last and self.sent_through - acked < s.settings.max_in_flight:
            room = s.settings.max_in_flight - (self.sent_through - acked)
            events = self.ledger.events_after(self.sent_through, min(s.settings.batch_size, room))
            if not events:
                return
            wire, unsendable = _wire_prefix(events)
            if wire:
                try:
                    s.bus.publish(topics.events(s.merchant, s.kiosk), encode(EventBatch(ledger_id=s.ledger_id, events=wire)), qos=1)
                except BusError as exc:  # offline again: the next connect re-sends from the ack
                    log.info("sync.publish_failed", extra={"error": str(exc)})
                    return
                if self.sent_through == acked:
                    self.waiting_since = now
                self.sent_through = wire[-1].kiosk_seq
                log.debug("sync.sent", extra={"first_seq": wire[0].kiosk_seq, "last_seq": self.sent_through})
            if unsendable is not None:  # the hub gets everything before it; this one is reported and retried
                raise unsendable

    def _watch_depth(self, depth: int) -> None:
        warn = self.s.settings.warn_depth
        if depth > warn and not self.deep:
            log.warning("sync.outbox_deep", extra={"depth": depth, "warn_depth": warn})
        self.deep = depth > warn

    def _publish_state(self, last: int) -> None:
        try:
            self.s._publish("online", last)
        except BusError as exc:
            log.info("sync.state_failed", extra={"error": str(exc)})

    def publish_state(self) -> None:
        """``state`` now, with the last known outbox, if connected (after a failed step)."""
        if self.s.bus.connected:
            self._publish_state(self.s._last_seen if self.s._last_seen is not None else self.s.acked_through_seq)
            self.state_due = self.s._now() + self.s.settings.state_interval

