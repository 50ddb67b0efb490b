"""The kiosk ledger: append-only events in SQLite (WAL, synchronous=FULL).

Every event gets a UUIDv7 ``event_id`` and a per-kiosk ``kiosk_seq``; balances are folded
from events, never stored. ``append`` returns only after the commit is on disk, so the
kiosk shows feedback only for events that survive a power cut.

Events of the merchant's other kiosks arrive from the hub's ``ledger`` stream and are kept
in ``hub_events`` (once per ``event_id``, with the hub's ``hub_seq``); a member's state is
the fold of the union of both tables, in ``(occurred_at, event_id)`` order, so every kiosk
of a merchant folds the same events in the same order and shows the same balance.

Append-only has one exception (ledger version 2): a member's newest ``profile`` entry replaces
what the older ones said (birthday, referrer), so when one is stored the older ones' detail is
blanked to ``{}`` in the same transaction. After the hub erases a member (an empty profile) no
row keeps their birthday, and every fold, balance and snapshot stays what it was.

The file carries its layout's version (``PRAGMA user_version``, kiosk/ledger_schema.py): opening
migrates an older ledger forward in one transaction and refuses one a newer release migrated
(``LedgerTooNew``), so a release the updater went back to never writes to a layout it does not know.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk.common.errors import LedgerError
from kiosk.ledger_schema import LEDGER, SCHEMA_TABLE, Schema, blank_superseded_profiles, check_readable, migrate
from kiosk.protocol.event import (
    CONTENT,
    SQLITE_TYPES,
    Event,
    engine_entry,
    from_sqlite,
    from_wire,
    sqlite_values,
)
from kiosk.protocol.ids import new_event_id
from kiosk.rules.program import Program
from kiosk.rules.state import PROFILE, Entry, MemberState, fold

if TYPE_CHECKING:  # the wire models cost ~0.1 s to import; a scan-image run never needs them
    from kiosk.protocol.messages import LedgerEntry

log = logging.getLogger(__name__)

SCAN_REJECTED = "scan_rejected"

# What every ledger row holds, own events and those of the merchant's other kiosks alike.
_EVENT_COLUMNS = ",\n".join(f"    {name:<11} {SQLITE_TYPES[name]}" for name in CONTENT)

# Layout 1: the tables of the releases before ledger versions, plus ``ledger_schema``. Never edit
# it to change the layout: add a Step to kiosk/ledger_schema.py (an unversioned ledger is
# completed with this script and then migrated by the steps, like any ledger at version 1).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    kiosk_seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
{columns});
CREATE INDEX IF NOT EXISTS events_member ON events (member, kiosk_seq);
CREATE TABLE IF NOT EXISTS counter_session (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    member      TEXT NOT NULL,
    boot_id     TEXT NOT NULL,
    expires_mono REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS hub_events (
    hub_seq     INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,
    kiosk       TEXT NOT NULL,
    kiosk_seq   INTEGER NOT NULL,
{columns});
CREATE INDEX IF NOT EXISTS hub_events_member ON hub_events (member, hub_seq);
CREATE TABLE IF NOT EXISTS hub_cursor (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    applied_through INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_meta (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    ledger_id   TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hub_refused (
    hub_seq     INTEGER PRIMARY KEY,
    reason      TEXT NOT NULL,
    entry       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pos_receipts (
    receipt_id  TEXT PRIMARY KEY,
    amount      TEXT NOT NULL,
    received_at TEXT NOT NULL,
    member      TEXT,
    outcome     TEXT
);
CREATE TRIGGER IF NOT EXISTS hub_events_append_only_u BEFORE UPDATE ON hub_events
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS hub_events_append_only_d BEFORE DELETE ON hub_events
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_u BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_d BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
""".replace("{columns}", _EVENT_COLUMNS + "\n") + SCHEMA_TABLE


@dataclass(frozen=True)
class _Snapshot:
    """A member's folded state and how far it has read each table."""

    own_seq: int
    hub_seq: int
    last: tuple[datetime, str] | None  # the order key of the newest event folded in
    state: MemberState


def _guarded(what: str) -> Callable:
    """SQLite failures of a ledger method (a full disk, a corrupt page) become LedgerError, the one
    error the scan loop and the sender handle (out of order on screen, reported in ``state``)."""
    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        def guarded(self: "Ledger", *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except (sqlite3.Error, OverflowError) as exc:
                raise LedgerError(f"could not {what} the ledger at {self.path}: {exc}") from exc
        return guarded
    return wrap


def _rollback(db: sqlite3.Connection) -> None:
    """Undo a failed write; a rollback that fails too (the file is gone or corrupt) is logged only,
    the caller raises the write's error."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.error("ledger.rollback_failed", extra={"error": str(exc)})


def _incarnation(db: sqlite3.Connection) -> str:
    """This ledger file's ``ledger_id``, made once when the file is new: a wiped and reinstalled
    kiosk numbers its events from 1 again, and the id tells the hub (and its acks) the two apart.
    A ledger that already held events before ids existed keeps "" (the numbering the hub knows).
    ``INSERT OR IGNORE`` on the one row: two processes opening a new file agree on one id."""
    row = db.execute("SELECT ledger_id FROM ledger_meta WHERE id = 1").fetchone()
    if row is not None:
        return row[0]
    db.execute("INSERT OR IGNORE INTO ledger_meta (id, ledger_id, created_at) SELECT 1,"
               " CASE WHEN EXISTS (SELECT 1 FROM events) THEN '' ELSE ? END, ?",
               (uuid.uuid4().hex, datetime.now(timezone.utc).isoformat()))
    return db.execute("SELECT ledger_id FROM ledger_meta WHERE id = 1").fetchone()[0]


_INSERT_OWN = (f"INSERT INTO events (event_id, {', '.join(CONTENT)})"
               f" VALUES ({', '.join('?' * (len(CONTENT) + 1))})")
_INSERT_HUB = (f"INSERT OR IGNORE INTO hub_events (hub_seq, event_id, kiosk, kiosk_seq, {', '.join(CONTENT)})"
               f" VALUES ({', '.join('?' * (len(CONTENT) + 4))})")
_OWN_ROWS = "SELECT * FROM events WHERE member = ? AND kiosk_seq > ? ORDER BY kiosk_seq"
_HUB_ROWS = (f"SELECT hub_seq, event_id, kiosk, kiosk_seq, {', '.join(CONTENT)}"
             " FROM hub_events WHERE member = ? AND hub_seq > ? ORDER BY hub_seq")


class Ledger:
    """One SQLite file per kiosk, any number of readers. One writer per table: the kiosk loop
    appends to ``events``, the hub link's worker thread (its own connection) to ``hub_events``;
    SQLite's write lock (WAL, busy timeout) keeps the two apart."""

    def __init__(self, path: Path | str, schema: Schema = LEDGER) -> None:
        """Open (or make) the ledger at *path* and migrate it to *schema* (tests pass their own).

        Raises LedgerTooNew for a ledger a newer release migrated (nothing is written to it),
        LedgerError when it cannot be opened or migrated (a failed migration leaves it as it was)."""
        self.path = Path(path)
        db = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            check_readable(self.path, schema)  # read-only first: not even a checkpoint for a newer release's file
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA secure_delete=ON")  # a blanked profile's bytes are zeroed, not left in free space
            version = migrate(db, self.path, _SCHEMA, schema)  # one transaction: one fsync, all or nothing
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise LedgerError(f"cannot open the ledger at {self.path}: {exc}") from exc
        except BaseException:  # LedgerTooNew, or a migration that failed (rolled back)
            if db is not None:
                db.close()
            raise
        self._db = db
        self._blanks_profiles = version >= 2  # version 1's trigger refuses every UPDATE (a test's Schema(1))
        self._snapshots: dict[str, _Snapshot] = {}
        self._snapshot_program: Program | None = None
        self._ledger_id: str | None = None

    @property
    @_guarded("read the id of")
    def ledger_id(self) -> str:
        """This ledger file's incarnation (read on first use: a ledger with a corrupt page still
        opens, so the kiosk can show "out of order" instead of failing to start)."""
        if self._ledger_id is None:
            self._ledger_id = _incarnation(self._db)
        return self._ledger_id

    def close(self) -> None:
        self._db.close()

    def append(self, entries: Sequence[Entry], at: datetime, mono: float, boot: str,
               session: tuple[str, str, float] | None = None) -> list[Event]:
        """Write earning/redeeming entries in one transaction; return them as committed events.

        *session* (member, boot id, expiry on the monotonic clock) opens the counter session in
        the same transaction: one fsync per stamp, and never a session without its stamp."""
        rows = [(e.kind, e.member, e.delta, e.rule, e.reward, None, {**e.detail, "cause": e.cause}) for e in entries]
        return self._insert(rows, at, mono, boot, session)

    def reject(self, reason: str, detail: dict, at: datetime, mono: float, boot: str, member: str | None = None) -> Event:
        """Record a ``scan_rejected`` event (a bad code was shown)."""
        return self._insert([(SCAN_REJECTED, member, 0, None, None, reason, detail)], at, mono, boot)[0]

    def _insert(self, rows: list[tuple], at: datetime, mono: float, boot: str,
                session: tuple[str, str, float] | None = None) -> list[Event]:
        out: list[Event] = []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for kind, member, delta, rule, reward, reason, detail in rows:
                event = Event(0, new_event_id(), kind, member, delta, rule, reward, reason, detail, at,
                              int(mono * 1e9), boot)
                cur = self._db.execute(_INSERT_OWN, (event.event_id, *sqlite_values(event)))
                out.append(replace(event, kiosk_seq=cur.lastrowid))
            if session is not None:
                self._db.execute(_UPSERT_SESSION, session)
            self._db.execute("COMMIT")
        except (sqlite3.Error, OverflowError) as exc:  # OverflowError: an integer SQLite cannot hold
            _rollback(self._db)
            raise LedgerError(f"could not write to the ledger at {self.path}: {exc}") from exc
        return out

    @_guarded("read")
    def member_state(self, member: str, program: Program) -> MemberState:
        """The member's state under *program*: the fold of their own and foreign events.

        A cached snapshot is extended with newer rows when they sort after everything it
        holds; a row that sorts earlier (a foreign event made while this kiosk was offline,
        or a wall clock set back) makes it fold the member's history again from the start.
        """
        if program is not self._snapshot_program:  # state depends on the programme (windows, time zone)
            self._snapshots.clear()
            self._snapshot_program = program
        snap = self._snapshots.get(member)
        if snap is not None:
            own, own_seq = self._own_after(member, snap.own_seq)
            foreign, hub_seq = self._foreign_after(member, snap.hub_seq)
            if not own and not foreign:
                return snap.state
            new = _ordered(own + foreign)
            if not new or snap.last is None or new[0].order() > snap.last:
                return self._fold(member, new, program, snap, own_seq, hub_seq).state
        own, own_seq = self._own_after(member, 0)
        foreign, hub_seq = self._foreign_after(member, 0)
        return self._fold(member, _ordered(own + foreign), program, None, own_seq, hub_seq).state

    def _fold(self, member: str, events: list[Event], program: Program, snap: _Snapshot | None,
              own_seq: int, hub_seq: int) -> _Snapshot:
        state = fold(member, ((engine_entry(e), e.occurred_at) for e in events), program,
                     start=snap.state if snap else None)
        last = events[-1].order() if events else (snap.last if snap else None)
        self._snapshots[member] = new = _Snapshot(own_seq, hub_seq, last, state)
        return new

    def _own_after(self, member: str, seq: int) -> tuple[list[Event], int]:
        rows = self._db.execute(_OWN_ROWS, (member, seq)).fetchall()
        return [from_sqlite(r) for r in rows], (rows[-1][0] if rows else seq)

    def _foreign_after(self, member: str, hub_seq: int) -> tuple[list[Event], int]:
        rows = self._db.execute(_HUB_ROWS, (member, hub_seq)).fetchall()
        return [_foreign(r) for r in rows], (rows[-1][0] if rows else hub_seq)

    # -- the hub's ledger stream (written by the hub link's worker thread, read by member_state) --
    @_guarded("read")
    def hub_applied_through(self) -> int:
        """The highest ``hub_seq`` up to which every entry of the merchant's stream is applied."""
        row = self._db.execute("SELECT applied_through FROM hub_cursor WHERE id = 1").fetchone()
        return row[0] if row else 0

    def apply_hub_entries(self, entries: Sequence["LedgerEntry"], own_kiosk: str,
                          refused: Mapping[int, tuple[str, str]] | None = None) -> tuple[int, int]:
        """Apply the run of entries that continues the stream, in one transaction.

        Entries at or below the cursor are repeats and skipped; the run stops at the first
        gap. This kiosk's own events (already in ``events``) only move the cursor; an event
        with this kiosk's id that ``events`` does not hold (the ledger was lost and the kiosk
        set up again) is kept like a foreign one, so the member's history stays whole.
        *refused* maps a ``hub_seq`` this kiosk cannot apply to (why, the entry as received):
        it moves the cursor too and is kept in ``hub_refused``, never folded.
        A stored ``profile`` blanks the detail of the member's other profiles but the newest in
        fold order (itself, unless it arrived after a newer one): no fold result changes, so the
        snapshots stay valid.
        Returns ``(applied_through, events stored)``.
        """
        stored, refused = 0, refused or {}
        profiled: set[str] = set()
        by_seq = {**{seq: None for seq in refused}, **{e.hub_seq: e for e in entries}}
        try:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self.hub_applied_through()
            for seq in sorted(by_seq):
                e = by_seq[seq]
                if seq <= cursor:
                    continue
                if seq != cursor + 1:
                    break
                cursor = seq
                if e is None:
                    self._db.execute("INSERT OR IGNORE INTO hub_refused (hub_seq, reason, entry) VALUES (?,?,?)",
                                     (seq, *refused[seq]))
                    continue
                if e.kiosk == own_kiosk and self._is_own(e.event_id):
                    continue
                added = self._db.execute(_INSERT_HUB, (e.hub_seq, e.event_id, e.kiosk, e.kiosk_seq,
                                                       *sqlite_values(from_wire(e)))).rowcount
                stored += added
                if added and e.kind == PROFILE and e.member is not None:
                    profiled.add(e.member)
            if self._blanks_profiles:
                blank_superseded_profiles(self._db, profiled)
            self._db.execute("INSERT INTO hub_cursor (id, applied_through) VALUES (1, ?) ON CONFLICT (id) DO UPDATE"
                             " SET applied_through = excluded.applied_through", (cursor,))
            self._db.execute("COMMIT")
        except (sqlite3.Error, OverflowError, ValueError) as exc:  # ValueError: a stored time unreadable
            _rollback(self._db)
            raise LedgerError(f"could not store hub events in the ledger at {self.path}: {exc}") from exc
        return cursor, stored

    @_guarded("read")
    def hub_refused(self) -> list[tuple[int, str]]:
        """Entries of the hub's stream this kiosk refused: ``(hub_seq, why)``, oldest first."""
        return self._db.execute("SELECT hub_seq, reason FROM hub_refused ORDER BY hub_seq").fetchall()

    def _is_own(self, event_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM events WHERE event_id = ?", (event_id,)).fetchone() is not None

    @_guarded("read")
    def foreign_events(self, member: str | None = None) -> list[Event]:
        """Events of the merchant's other kiosks (from the hub), in ``hub_seq`` order."""
        sql = _HUB_ROWS if member is not None else _HUB_ROWS.replace("member = ? AND ", "")
        rows = self._db.execute(sql, (member, 0) if member is not None else (0,))
        return [_foreign(r) for r in rows]

    @_guarded("read")
    def events_after(self, kiosk_seq: int, limit: int = 500) -> list[Event]:
        """Events with a sequence number above *kiosk_seq*, oldest first (the outbox reads this)."""
        rows = self._db.execute("SELECT * FROM events WHERE kiosk_seq > ? ORDER BY kiosk_seq LIMIT ?",
                                (kiosk_seq, limit))
        return [from_sqlite(row) for row in rows]

    @_guarded("read")
    def last_seq(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(kiosk_seq), 0) FROM events").fetchone()[0]

    @_guarded("read")
    def events(self, member: str | None = None) -> list[Event]:
        """All events (or one member's), oldest first."""
        sql, args = "SELECT * FROM events ORDER BY kiosk_seq", ()
        if member is not None:
            sql, args = "SELECT * FROM events WHERE member = ? ORDER BY kiosk_seq", (member,)
        return [from_sqlite(row) for row in self._db.execute(sql, args)]

    # The counter session lives here so that `stempel-kiosk redeem` in another process sees it.
    @_guarded("write the counter session to")
    def open_session(self, member: str, boot: str, expires_mono: float) -> None:
        self._db.execute(_UPSERT_SESSION, (member, boot, expires_mono))

    @_guarded("read the counter session from")
    def session(self) -> tuple[str, str, float] | None:
        return self._db.execute("SELECT member, boot_id, expires_mono FROM counter_session").fetchone()

    @_guarded("read")
    def recent_events(self, limit: int = 200) -> list[Event]:
        """This kiosk's last *limit* events, newest first (the staff screen's undo looks here)."""
        rows = self._db.execute("SELECT * FROM events ORDER BY kiosk_seq DESC LIMIT ?", (limit,))
        return [from_sqlite(row) for row in rows]

    # Receipt ids a till (POS) sent with an amount: a repeated id is credited once. Not ledger
    # events (nothing is folded from them), so a plain table: settled in place when a scan uses one.
    @_guarded("write a receipt to")
    def claim_receipt(self, receipt_id: str, amount: str, at: datetime) -> bool:
        """Record *receipt_id*; False if it was recorded before (a repeat: credit nothing)."""
        return self._db.execute("INSERT OR IGNORE INTO pos_receipts (receipt_id, amount, received_at)"
                                " VALUES (?, ?, ?)", (receipt_id, amount, at.isoformat())).rowcount == 1

    @_guarded("write a receipt to")
    def settle_receipt(self, receipt_id: str, member: str | None, outcome: str) -> None:
        """Say what the receipt's amount did (credited to *member*, or why not)."""
        self._db.execute("UPDATE pos_receipts SET member = ?, outcome = ? WHERE receipt_id = ?",
                         (member, outcome, receipt_id))

    @_guarded("write a receipt to")
    def release_receipt(self, receipt_id: str) -> None:
        """Forget a receipt whose amount could not be taken (the ledger failed): the till may retry."""
        self._db.execute("DELETE FROM pos_receipts WHERE receipt_id = ?", (receipt_id,))

    @_guarded("read a receipt from")
    def receipt(self, receipt_id: str) -> dict | None:
        """A recorded receipt: ``receipt_id, amount, received_at, member, outcome`` (None if unknown)."""
        row = self._db.execute("SELECT receipt_id, amount, received_at, member, outcome FROM pos_receipts"
                               " WHERE receipt_id = ?", (receipt_id,)).fetchone()
        return None if row is None else dict(zip(("receipt_id", "amount", "received_at", "member", "outcome"), row))


_UPSERT_SESSION = ("INSERT INTO counter_session (id, member, boot_id, expires_mono) VALUES (1, ?, ?, ?)"
                   " ON CONFLICT (id) DO UPDATE SET member = excluded.member, boot_id = excluded.boot_id,"
                   " expires_mono = excluded.expires_mono")


def _ordered(events: list[Event]) -> list[Event]:
    """Balance-relevant events in the merchant-wide order (rejected scans change no state)."""
    return sorted((e for e in events if e.kind != SCAN_REJECTED), key=Event.order)


def _foreign(row: tuple) -> Event:
    """A ``hub_events`` row as an Event (its ``kiosk_seq`` is the other kiosk's)."""
    _hub_seq, event_id, _kiosk, kiosk_seq, *rest = row
    return from_sqlite((kiosk_seq, event_id, *rest))
