"""The merchant's ledger in: the hub's ``ledger`` stream applied on a kiosk, each ``hub_seq``
once, gaps filled on request (``sync/request`` out, ``sync/response`` in; the hub's side is
``cloud/link/ledger.py``).

Delivery is at least once and may come out of order (several hub workers relay the
stream; a kiosk offline misses some). Entries above the next expected ``hub_seq`` wait in
memory; the contiguous run is written to the ledger in one transaction together with the
new cursor, so a crash re-applies nothing and skips nothing. On a gap, on every
(re)connect and now and then anyway (the last message before a silence may be the lost
one), the kiosk sends ``sync/request {after_hub_seq}`` and applies the ``sync/response``
batches; it asks again until it reaches the hub's head.

An entry that fails the event schema (kiosk/protocol/event_schema.py: a compromised hub or
broker, or a hub older than this kiosk) is refused on its own: logged, kept in the ledger's
``hub_refused`` with why, counted in ``refused`` and reported through *on_refused*; its
``hub_seq`` moves the cursor like an applied one, so the kiosk never folds it and never
stops following the stream for it. The rest of its batch is applied.

Not thread-safe: the hub link's worker thread owns it (and its ledger connection).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from kiosk.common.bus import Bus
from kiosk.common.errors import BusError
from kiosk.ledger import Ledger
from kiosk.protocol import topics
from kiosk.protocol.event_schema import INT64_MAX, printable
from kiosk.protocol.messages import (ItemsRefused, LedgerBatch, LedgerEntry, Refused, SyncRequest, SyncResponse,
                                     decode_items, encode)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FollowerSettings:
    retry: float = 5.0  # ask again this often while behind and no answer moved us on
    resync: float = 300.0  # ask anyway after this long without asking
    max_pending: int = 10_000  # out-of-order entries held in memory; the rest come by request


class LedgerFollower:
    """Keeps ``hub_events`` and the cursor of one kiosk's ledger in step with the hub."""

    def __init__(self, ledger: Ledger, kiosk: str, request: Callable[[int], bool],
                 settings: FollowerSettings = FollowerSettings(),
                 monotonic: Callable[[], float] = time.monotonic,
                 on_refused: Callable[[int | None, str], None] | None = None) -> None:
        self.ledger, self.kiosk, self.settings = ledger, kiosk, settings
        self._request = request  # sends sync/request; False if it could not be sent
        self._now = monotonic
        self._on_refused = on_refused  # (hub_seq or None, why): for the kiosk's ``state``
        self.cursor = ledger.hub_applied_through()
        self.head = self.cursor  # the highest hub_seq heard of
        self.refused = 0  # entries refused by this follower (the ledger keeps those with a hub_seq)
        self._pending: dict[int, LedgerEntry | tuple[str, str]] = {}  # an entry, or (why, as received)
        self._asked: tuple[float, int] | None = None  # when, and after which hub_seq

    # -- input (all raise MessageError for an invalid payload, LedgerError if SQLite fails) --
    def on_ledger(self, payload: bytes) -> None:
        try:
            batch, refused = decode_items(LedgerBatch, payload, "entries")
        except ItemsRefused as exc:  # not one entry valid: pass their hub_seqs; each is reported on its
            self._refuse(exc.refused)  # own (on_refused: "refused hub_seq N"), which a generic "invalid
            self._take([])             # message" on the status board would only hide
            return
        self._refuse(refused)
        self._take(batch.entries)
        if self.behind():
            self._ask(force=False)

    def on_response(self, payload: bytes) -> None:
        response, refused = decode_items(SyncResponse, payload, "entries")
        self._refuse(refused)
        moved = self._take(response.entries)
        self.head = max(self.head, response.head_hub_seq)
        if self.behind():
            self._ask(force=moved)  # keep paging while batches move us on

    def on_connected(self) -> None:
        """The broker may have dropped ledger messages while we were away: ask from the cursor."""
        self._ask(force=True)

    def tick(self) -> None:
        """Called about once a second: retry a stalled catch-up, apply what a failed write left."""
        if self._pending and min(self._pending) == self.cursor + 1:
            self._drain()
        since = self._now() - self._asked[0] if self._asked else float("inf")
        if (self.behind() and since >= self.settings.retry) or since >= self.settings.resync:
            self._ask(force=True)

    def behind(self) -> bool:
        return self.head > self.cursor

    # -- internals ----------------------------------------------------------------------
    def _refuse(self, refused: list[Refused]) -> None:
        """Log and count entries that failed the schema; hold those with a usable ``hub_seq`` so
        the cursor passes them (in order, with the entries around them)."""
        for r in refused:
            seq = r.item.get("hub_seq") if isinstance(r.item, dict) else None
            if not (type(seq) is int and 0 < seq <= INT64_MAX):
                seq = None
            self.refused += 1
            log.warning("ledger.entry_refused", extra={"hub_seq": seq, "reason": r.reason[:300]})
            if self._on_refused is not None:
                self._on_refused(seq, r.reason)
            if seq is not None and seq > self.cursor and not isinstance(self._pending.get(seq), LedgerEntry):
                self._pending[seq] = (printable(r.reason)[:500], _as_text(r.item))
                self.head = max(self.head, seq)

    def _take(self, entries: list[LedgerEntry]) -> bool:
        """Hold new entries and apply the run that continues the cursor; True if it moved."""
        for entry in entries:
            if entry.hub_seq > self.cursor:
                self._pending[entry.hub_seq] = entry
                self.head = max(self.head, entry.hub_seq)
        if len(self._pending) > self.settings.max_pending:  # keep the oldest; the rest come by request
            for seq in sorted(self._pending)[self.settings.max_pending:]:
                del self._pending[seq]
        return self._drain()

    def _drain(self) -> bool:
        run, seq = [], self.cursor + 1
        while seq in self._pending:
            run.append(self._pending[seq])
            seq += 1
        if not run:
            return False
        entries = [e for e in run if isinstance(e, LedgerEntry)]
        refused = {self.cursor + 1 + i: e for i, e in enumerate(run) if not isinstance(e, LedgerEntry)}
        cursor, stored = self.ledger.apply_hub_entries(entries, self.kiosk, refused)
        for seq in range(self.cursor + 1, cursor + 1):
            self._pending.pop(seq, None)
        log.debug("ledger.applied", extra={"through": cursor, "foreign": stored})
        moved, self.cursor = cursor > self.cursor, cursor
        return moved

    def _ask(self, *, force: bool) -> None:
        now = self._now()
        if not force and self._asked and self._asked[1] == self.cursor and now - self._asked[0] < self.settings.retry:
            return  # the same question is already out
        if self._request(self.cursor):
            self._asked = (now, self.cursor)
            log.info("ledger.sync_requested", extra={"after_hub_seq": self.cursor, "head": self.head})


def _as_text(item: object, limit: int = 4096) -> str:
    """A refused entry as ASCII JSON (lone surrogates escaped), cut to *limit* characters."""
    try:
        return json.dumps(item, ensure_ascii=True)[:limit]
    except (TypeError, ValueError, RecursionError):
        return repr(item)[:limit]


def sync_requester(bus: Bus, merchant: str, kiosk: str) -> Callable[[int], bool]:
    """What the follower calls to ask the hub for the entries after a ``hub_seq``: publishes
    ``sync/request``; False (asked again later) when offline or the publish fails."""
    topic = topics.sync_request(merchant, kiosk)

    def request(after: int) -> bool:
        if not bus.connected:
            return False
        try:
            bus.publish(topic, encode(SyncRequest(after_hub_seq=after)), qos=1)
        except BusError as exc:
            log.info("link.sync_request_not_sent", extra={"error": str(exc)})
            return False
        return True
    return request
