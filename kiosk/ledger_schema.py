"""The ledger's schema version (``PRAGMA user_version``): migrated forward on open, never back.

Releases sit side by side and the updater may switch back to an older one (a rollback, or
``update --to``), but ``/var/lib/stempel/ledger.sqlite3`` is not versioned with them: the new
release may already have migrated it. So the ledger says which layout it has, and:

* opening a ledger applies the missing steps in **one** transaction (``BEGIN IMMEDIATE`` ...
  ``COMMIT`` under ``synchronous=FULL``): a power cut or a failing step leaves the old version
  and every row as they were, and two processes opening it together migrate it once;
* a ledger newer than this code knows is **refused** before anything is written to it (it is
  first looked at through a read-only connection, so not even a WAL checkpoint touches it);
* the updater reads the same two numbers (kiosk/update.py) before it points ``current`` at a
  release, and refuses one whose ``LEDGER_SCHEMA`` is below what the ledger needs.

Version 1 is the layout of the releases before versions existed (tables made with ``CREATE
TABLE IF NOT EXISTS``): a ledger with ``user_version`` 0 is completed to that layout and marked 1.
A new ledger is made the same way: layout 1, then every step, in the one transaction.

Version 2 lets the ledger forget a member's superseded profiles: ``hub_events`` stays append-only
except that a ``profile`` entry's detail may be blanked to ``{}`` (the hub's erasure sends an empty
profile; the older ones still held the birthday and the referrer). The fold takes a member's
birthday and referrer from their newest profile only, so no state changes. Code of version 1
still reads and writes such a ledger (``readable_from=1``): inserts are as they were, and the
trigger keeps its name, so a release from before versions, which runs layout 1's ``CREATE TRIGGER
IF NOT EXISTS`` on every start, finds it and leaves it. That code just never blanks anything.

Each step may say the oldest code that can still use the ledger after it (``readable_from``): a
step that only adds (a table, an index, a nullable column) leaves older releases able to read
*and write* it, so a rollback across it stays possible. The ledger keeps the highest such value
in ``ledger_schema``, beside the version it was written for; code refuses a ledger whose
``readable_from`` is above its own version. Unless a step says otherwise it is its own version:
older code is refused; so is any code when the row does not match ``user_version`` (a version
set some other way promises nothing to older code).

Standard library only (and kiosk.common): ``kiosk.update`` imports this, and must work when the
rest of the package is what is being replaced.
"""

from __future__ import annotations

import ast
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kiosk.common.errors import LedgerError

log = logging.getLogger(__name__)

# The newest layout this code reads and writes. Keep it a literal integer: the updater reads it
# from a release's installed copy of this file without running the release (``declared_schema``).
LEDGER_SCHEMA = 2

# What a release made before ledger versions reads: the unversioned layout, which is version 1.
UNVERSIONED_READS = 1


class LedgerTooNew(LedgerError):
    """The ledger was migrated by a newer release; this code must not write to it."""


@dataclass(frozen=True)
class Step:
    """One migration, from ``version - 1`` to ``version``; *apply* runs inside the migration's
    transaction (``db.execute`` only: ``executescript`` would commit half of it)."""

    version: int
    apply: Callable[[sqlite3.Connection], None]
    readable_from: int | None = None  # the oldest code version that may still use the ledger after it

    def oldest_reader(self) -> int:
        return self.version if self.readable_from is None else self.readable_from


@dataclass(frozen=True)
class Schema:
    """The version this code knows and the steps up to it (steps 2..version, in order)."""

    version: int
    steps: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        numbers = [s.version for s in self.steps]
        if self.version < 1 or numbers != list(range(2, self.version + 1)):
            raise ValueError(f"ledger schema {self.version} needs steps numbered 2..{self.version}, got {numbers}")
        for step in self.steps:
            if not 1 <= step.oldest_reader() <= step.version:
                raise ValueError(f"ledger step {step.version}: readable_from must be 1..{step.version}, "
                                 f"got {step.readable_from}")

    @property
    def readable_from(self) -> int:
        """The oldest code version that may use a ledger at ``version``."""
        return max([1, *(s.oldest_reader() for s in self.steps)])


# -- step 2: a superseded profile's detail may be blanked ------------------------------------------
PROFILE = "profile"  # kiosk.rules.state.PROFILE (not imported: standard library only here)
BLANK_DETAIL = "{}"  # how the ledger stores an empty detail (kiosk.protocol.event.sqlite_values)

# Replaces layout 1's trigger of the same name. Every column but ``detail`` is named, as layout 1
# has them: a step that adds a column to hub_events must make this trigger again with it. ``IS``,
# never ``=``: a NULL must not turn the condition into NULL, which would let the update through.
_SCRUBBABLE_TRIGGER = """
CREATE TRIGGER hub_events_append_only_u BEFORE UPDATE ON hub_events
    WHEN NOT (OLD.kind IS 'profile' AND NEW.detail IS '{}'
              AND NEW.hub_seq IS OLD.hub_seq AND NEW.event_id IS OLD.event_id AND NEW.kiosk IS OLD.kiosk
              AND NEW.kiosk_seq IS OLD.kiosk_seq AND NEW.kind IS OLD.kind AND NEW.member IS OLD.member
              AND NEW.delta IS OLD.delta AND NEW.rule IS OLD.rule AND NEW.reward IS OLD.reward
              AND NEW.reason IS OLD.reason AND NEW.occurred_at IS OLD.occurred_at
              AND NEW.mono_ns IS OLD.mono_ns AND NEW.boot_id IS OLD.boot_id)
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END
"""


def blank_superseded_profiles(db: sqlite3.Connection, members: Iterable[str] | None = None) -> int:
    """Blank the detail of every ``profile`` entry in ``hub_events`` but each member's newest (in
    the fold's order, ``(occurred_at, event_id)``) for *members* (None: all); returns how many.

    The newest profile replaces what the older ones said, so the fold's result is the same: only
    the bytes of a birthday or referrer the member (or the hub's erasure) has replaced go. Runs
    inside the caller's transaction; needs the ledger at version 2 (else the trigger aborts)."""
    sql = f"SELECT hub_seq, member, occurred_at, event_id, detail FROM hub_events WHERE kind = '{PROFILE}'"
    if members is None:
        rows = db.execute(sql + " AND member IS NOT NULL").fetchall()
    else:
        rows = [r for m in sorted(set(members)) for r in db.execute(sql + " AND member = ?", (m,))]
    by_member: dict[str, list[tuple]] = {}
    for row in rows:
        by_member.setdefault(row[1], []).append(row)
    blanked = 0
    for profiles in by_member.values():
        newest = max(profiles, key=lambda r: (datetime.fromisoformat(r[2]), r[3]))
        for hub_seq, _member, _at, _event_id, detail in profiles:
            if hub_seq != newest[0] and detail != BLANK_DETAIL:
                db.execute("UPDATE hub_events SET detail = ? WHERE hub_seq = ?", (BLANK_DETAIL, hub_seq))
                blanked += 1
    return blanked


def _scrubbable_profiles(db: sqlite3.Connection) -> None:
    """Step 2: the new trigger, and the profiles the ledger already holds blanked where superseded
    (a member the hub erased before this release keeps no birthday either)."""
    db.execute("DROP TRIGGER IF EXISTS hub_events_append_only_u")
    db.execute(_SCRUBBABLE_TRIGGER)
    blanked = blank_superseded_profiles(db)
    if blanked:
        log.info("ledger.profiles_blanked", extra={"count": blanked})


# Steps beyond version 1, oldest first.
STEPS: tuple[Step, ...] = (
    Step(2, _scrubbable_profiles, readable_from=1),  # only an UPDATE is allowed that was refused before
)
LEDGER = Schema(LEDGER_SCHEMA, STEPS)

# Part of layout 1 (kiosk/ledger.py creates it): ``readable_from``, valid for ``version`` only.
SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS ledger_schema (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    version       INTEGER NOT NULL,
    readable_from INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class OnDisk:
    """A ledger's ``user_version`` and the oldest code version that may use it."""

    version: int
    readable_from: int

    def words(self) -> str:
        older = f" (readable from version {self.readable_from})" if self.readable_from != self.version else ""
        return f"schema version {self.version}{older}"


def _read(db: sqlite3.Connection) -> OnDisk:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    row = None
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_schema'").fetchone():
        row = db.execute("SELECT version, readable_from FROM ledger_schema WHERE id = 1").fetchone()
    if row is None or row[0] != version or type(row[1]) is not int:  # no promise for this version: none older
        return OnDisk(version, version)
    return OnDisk(version, max(0, min(row[1], version)))


def read_version(path: Path) -> OnDisk | None:
    """The schema of the ledger at *path*, through a read-only connection (None: no ledger yet).

    SQLite is asked, not the file's header: a migration still in the WAL is not in the header.
    Raises LedgerError when the file cannot be read as a ledger."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read the ledger at {path}: {exc}") from exc
    try:
        return _read(db)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read the schema version of the ledger at {path}: {exc}") from exc
    finally:
        db.close()


def too_new(path: Path, found: OnDisk, known: int) -> LedgerTooNew:
    return LedgerTooNew(
        f"{path}: this ledger was written by a newer release ({found.words()}); this release knows ledger "
        f"versions up to {known} and will not write to it: update or restore (install a release that reads "
        f"version {found.version}, e.g. stempel-kiosk update --to VERSION, or restore a backup of the ledger "
        "made by this release)")


def check_readable(path: Path, schema: Schema = LEDGER) -> OnDisk | None:
    """Raise LedgerTooNew if the ledger at *path* is beyond *schema*; only reads."""
    found = read_version(path)
    if found is not None and found.readable_from > schema.version:
        raise too_new(path, found, schema.version)
    return found


def migrate(db: sqlite3.Connection, path: Path, first: str, schema: Schema = LEDGER) -> int:
    """Bring the ledger open on *db* (autocommit, WAL) to ``schema.version``; returns its version.

    *first* is layout 1 (``CREATE ... IF NOT EXISTS``, so it also completes an unversioned
    ledger). All steps and the new version commit together or not at all: a failing step is
    rolled back and raised as LedgerError (the ledger stays at its version, rows untouched).
    Raises LedgerTooNew for a ledger beyond *schema*; sqlite3 errors outside the transaction
    (a busy lock past the timeout) as they are, for the caller to translate.
    """
    found = _read(db)
    if found.version >= schema.version:
        if found.readable_from > schema.version:
            raise too_new(path, found, schema.version)
        return found.version
    db.execute("BEGIN IMMEDIATE")
    try:
        found = _read(db)  # another process may have migrated it while we waited for the lock
        if found.readable_from > schema.version:
            raise too_new(path, found, schema.version)
        if found.version < schema.version:
            if found.version == 0:
                for statement in _statements(first):
                    db.execute(statement)
            for step in schema.steps:
                if step.version > max(found.version, 1):
                    step.apply(db)
            db.execute(f"PRAGMA user_version = {int(schema.version)}")
            db.execute("INSERT INTO ledger_schema (id, version, readable_from) VALUES (1, ?, ?) ON CONFLICT (id)"
                       " DO UPDATE SET version = excluded.version, readable_from = excluded.readable_from",
                       (schema.version, schema.readable_from))
        db.execute("COMMIT")
    except BaseException as exc:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error as again:  # the file is gone or corrupt: the step's error says more
                log.error("ledger.migration_rollback_failed", extra={"path": str(path), "error": str(again)})
        if isinstance(exc, Exception) and not isinstance(exc, LedgerError):
            raise LedgerError(f"could not migrate the ledger at {path} from version {found.version} to "
                              f"{schema.version} ({type(exc).__name__}: {exc}); it stays at version "
                              f"{found.version} with every row as it was") from exc
        raise
    if found.version < schema.version:
        log.info("ledger.migrated", extra={"path": str(path), "from": found.version, "to": schema.version})
    return max(found.version, schema.version)


def _statements(script: str) -> Iterator[str]:
    """The statements of *script* one by one (a trigger's body holds ``;`` too)."""
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending.strip()
            pending = ""


def declared_schema(source: str, where: str = "kiosk/ledger_schema.py") -> int:
    """The ``LEDGER_SCHEMA = N`` of a copy of this module, read without running it (the updater
    asks releases it is about to switch to). Raises ValueError if it is not a plain integer."""
    try:
        tree = ast.parse(source, filename=where)
    except SyntaxError as exc:
        raise ValueError(f"{where}: not readable Python ({exc.msg}, line {exc.lineno})") from exc
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "LEDGER_SCHEMA"
                                                for t in node.targets):
            value = node.value
            if isinstance(value, ast.Constant) and type(value.value) is int and value.value >= 1:
                return value.value
            raise ValueError(f"{where}: LEDGER_SCHEMA is not a plain positive integer")
    raise ValueError(f"{where}: no LEDGER_SCHEMA = N in it")
