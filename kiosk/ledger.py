"""The kiosk ledger: append-only events in SQLite (WAL, synchronous=FULL).

Every event gets a UUIDv7 ``event_id`` and a per-kiosk ``kiosk_seq``; balances are folded
from events, never stored. ``append`` returns only after the commit is on disk, so the
kiosk shows feedback only for events that survive a power cut.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kiosk.errors import LedgerError
from kiosk.protocol.ids import new_event_id
from kiosk.rules.program import Program
from kiosk.rules.state import Entry, MemberState, fold

SCAN_REJECTED = "scan_rejected"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    kiosk_seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    member      TEXT,
    delta       INTEGER NOT NULL DEFAULT 0,
    rule        TEXT,
    reward      TEXT,
    reason      TEXT,
    detail      TEXT,
    occurred_at TEXT NOT NULL,
    mono_ns     INTEGER NOT NULL,
    boot_id     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_member ON events (member, kiosk_seq);
CREATE TABLE IF NOT EXISTS counter_session (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    member      TEXT NOT NULL,
    boot_id     TEXT NOT NULL,
    expires_mono REAL NOT NULL
);
CREATE TRIGGER IF NOT EXISTS events_append_only_u BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_d BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
"""


@dataclass(frozen=True)
class Event:
    """A committed ledger row."""

    kiosk_seq: int
    event_id: str
    kind: str
    member: str | None
    delta: int
    rule: str | None
    reward: str | None
    reason: str | None
    detail: dict
    occurred_at: datetime
    mono_ns: int
    boot_id: str

    def entry(self) -> Entry:
        """The engine's view of this row."""
        detail = {k: v for k, v in self.detail.items() if k != "cause"}
        return Entry(self.kind, self.member or "", self.delta, self.rule or "", self.detail.get("cause", ""),
                     self.reward, detail)


class Ledger:
    """One SQLite file per kiosk; one writer (the kiosk loop), any number of readers."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger at {self.path}: {exc}") from exc
        self._snapshots: dict[str, tuple[int, MemberState]] = {}
        self._snapshot_program: Program | None = None

    def close(self) -> None:
        self._db.close()

    def append(self, entries: Sequence[Entry], at: datetime, mono: float, boot: str) -> list[Event]:
        """Write earning/redeeming entries in one transaction; return them as committed events."""
        rows = [(e.kind, e.member, e.delta, e.rule, e.reward, None, {**e.detail, "cause": e.cause}) for e in entries]
        return self._insert(rows, at, mono, boot)

    def reject(self, reason: str, detail: dict, at: datetime, mono: float, boot: str, member: str | None = None) -> Event:
        """Record a ``scan_rejected`` event (a bad code was shown)."""
        return self._insert([(SCAN_REJECTED, member, 0, None, None, reason, detail)], at, mono, boot)[0]

    def _insert(self, rows: list[tuple], at: datetime, mono: float, boot: str) -> list[Event]:
        out: list[Event] = []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for kind, member, delta, rule, reward, reason, detail in rows:
                event_id = new_event_id()
                cur = self._db.execute(
                    "INSERT INTO events (event_id, kind, member, delta, rule, reward, reason, detail,"
                    " occurred_at, mono_ns, boot_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (event_id, kind, member, delta, rule, reward, reason, json.dumps(detail),
                     at.isoformat(), int(mono * 1e9), boot),
                )
                out.append(Event(cur.lastrowid, event_id, kind, member, delta, rule, reward, reason,
                                 detail, at, int(mono * 1e9), boot))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise LedgerError(f"could not write to the ledger at {self.path}: {exc}") from exc
        return out

    def member_state(self, member: str, program: Program) -> MemberState:
        """The member's state under *program*: the cached snapshot plus any newer rows folded on."""
        if program is not self._snapshot_program:  # state depends on the programme (windows, time zone)
            self._snapshots.clear()
            self._snapshot_program = program
        seq, state = self._snapshots.get(member, (0, None))
        rows = self._db.execute("SELECT * FROM events WHERE member = ? AND kiosk_seq > ? ORDER BY kiosk_seq",
                                (member, seq)).fetchall()
        if rows or state is None:
            state = fold(member, ((e.entry(), e.occurred_at) for e in map(self._event, rows)
                                  if e.kind != SCAN_REJECTED), program, start=state)
            self._snapshots[member] = (rows[-1][0] if rows else seq, state)
        return state

    def events_after(self, kiosk_seq: int, limit: int = 500) -> list[Event]:
        """Events with a sequence number above *kiosk_seq*, oldest first (the outbox reads this)."""
        rows = self._db.execute("SELECT * FROM events WHERE kiosk_seq > ? ORDER BY kiosk_seq LIMIT ?",
                                (kiosk_seq, limit))
        return [self._event(row) for row in rows]

    def last_seq(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(kiosk_seq), 0) FROM events").fetchone()[0]

    @staticmethod
    def _event(row: tuple) -> Event:
        seq, eid, kind, mem, delta, rule, reward, reason, detail, at, mono, boot = row
        return Event(seq, eid, kind, mem, delta, rule, reward, reason, json.loads(detail or "{}"),
                     datetime.fromisoformat(at), mono, boot)

    def events(self, member: str | None = None) -> list[Event]:
        """All events (or one member's), oldest first."""
        sql, args = "SELECT * FROM events ORDER BY kiosk_seq", ()
        if member is not None:
            sql, args = "SELECT * FROM events WHERE member = ? ORDER BY kiosk_seq", (member,)
        return [self._event(row) for row in self._db.execute(sql, args)]

    # The counter session lives here so that `stempel-kiosk redeem` in another process sees it.
    def open_session(self, member: str, boot: str, expires_mono: float) -> None:
        self._db.execute(
            "INSERT INTO counter_session (id, member, boot_id, expires_mono) VALUES (1, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET member = excluded.member, boot_id = excluded.boot_id,"
            " expires_mono = excluded.expires_mono",
            (member, boot, expires_mono),
        )

    def session(self) -> tuple[str, str, float] | None:
        return self._db.execute("SELECT member, boot_id, expires_mono FROM counter_session").fetchone()
