"""The ledger's schema version: made at 1, migrated forward in one transaction, a newer one refused.

The updater may put an older release back in service on a ledger a newer one migrated; these
tests hold what makes that safe on the ledger's side: ``PRAGMA user_version`` on every ledger,
the ledgers of the releases before versions taken in as version 1 with every row, migration
steps that commit whole or not at all (also when the process dies inside one), and a ledger
beyond this code refused without a byte written. The updater's side is in test_update.py.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from kiosk.check import check, check_ledger
from kiosk.common.errors import LedgerError
from kiosk.config import KioskConfig, KioskSection
from kiosk.ledger import Ledger
from kiosk.ledger_schema import (
    LEDGER,
    LEDGER_SCHEMA,
    STEPS,
    LedgerTooNew,
    OnDisk,
    Schema,
    Step,
    declared_schema,
    read_version,
)
from kiosk.rules.state import Entry

AT = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
REPO = Path(__file__).resolve().parents[1]

# The ledger exactly as the release before ledger versions made it (kiosk/ledger.py's _SCHEMA then).
PREVIOUS_RELEASE = """
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
CREATE TABLE IF NOT EXISTS hub_events (
    hub_seq     INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,
    kiosk       TEXT NOT NULL,
    kiosk_seq   INTEGER NOT NULL,
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
"""
OLD_ROWS = """
INSERT INTO events (event_id, kind, member, delta, rule, detail, occurred_at, mono_ns, boot_id) VALUES
    ('0190aaaa-0000-7000-8000-000000000001', 'earn', 'm-1', 1, 'visit', '{"cause": "c1"}', '2026-03-01T09:00:00+00:00', 1, 'b1'),
    ('0190aaaa-0000-7000-8000-000000000002', 'earn', 'm-1', 1, 'visit', '{"cause": "c2"}', '2026-03-01T10:00:00+00:00', 2, 'b1');
INSERT INTO hub_events (hub_seq, event_id, kiosk, kiosk_seq, kind, member, delta, rule, detail, occurred_at, mono_ns, boot_id)
    VALUES (1, '0190bbbb-0000-7000-8000-000000000001', 'counter-2', 7, 'earn', 'm-1', 1, 'visit', '{"cause": "h1"}',
            '2026-03-01T11:00:00+00:00', 9, 'b9');
INSERT INTO hub_cursor VALUES (1, 1);
INSERT INTO ledger_meta VALUES (1, 'c0ffee00c0ffee00c0ffee00c0ffee00', '2026-03-01T08:00:00+00:00');
INSERT INTO hub_refused VALUES (2, 'unreadable detail', '{"hub_seq": 2}');
INSERT INTO pos_receipts VALUES ('r-1', '12.50', '2026-03-01T10:00:00+00:00', 'm-1', 'credited');
INSERT INTO counter_session VALUES (1, 'm-1', 'b1', 123.5);
"""
OLD_TABLES = ("events", "hub_events", "hub_cursor", "ledger_meta", "hub_refused", "pos_receipts", "counter_session")


def old_ledger(path: Path, missing: tuple[str, ...] = ()) -> Path:
    """A ledger as a release before versions left it: WAL, its tables, rows in each, user_version 0.
    *missing*: tables an even older release did not have yet."""
    schema, inserts = PREVIOUS_RELEASE, OLD_ROWS
    for table in missing:
        schema = re.sub(rf"CREATE TABLE IF NOT EXISTS {table} \(.*?\);\n", "", schema, flags=re.S)
        inserts = re.sub(rf"INSERT INTO {table} .*?;\n", "", inserts, flags=re.S)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(f"BEGIN;{schema}{inserts}COMMIT;")
    db.close()
    return path


def rows(path: Path, tables=OLD_TABLES) -> dict[str, list[tuple]]:
    db = sqlite3.connect(path)
    try:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
    finally:
        db.close()


def pragma(path: Path, name: str):
    db = sqlite3.connect(path)
    try:
        return db.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        db.close()


def columns(path: Path, table: str) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
    finally:
        db.close()


# The mechanism's tests run their own steps from version 1, as a release at version 1 left the ledger.
V1 = Schema(1)


def stamp(ledger: Ledger, member: str = "m-1") -> None:
    ledger.append([Entry("earn", member, 1, "visit", "scan")], AT, 5.0, "boot-2")


def add_note(db: sqlite3.Connection) -> None:
    """Step 2 of the tests' ledger: a nullable column and a table."""
    db.execute("ALTER TABLE events ADD COLUMN note TEXT")
    db.execute("CREATE TABLE notes (kiosk_seq INTEGER NOT NULL, note TEXT NOT NULL)")
    db.execute("INSERT INTO notes SELECT kiosk_seq, 'migrated' FROM events")


# --- version 1 ---------------------------------------------------------------------------------

def test_a_new_ledger_is_made_at_this_releases_version(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    stamp(ledger)
    ledger.close()
    assert LEDGER_SCHEMA == 2 == pragma(tmp_path / "ledger.sqlite3", "user_version")
    assert read_version(tmp_path / "ledger.sqlite3") == OnDisk(2, 1)  # step 2 only lets a profile be blanked
    assert read_version(tmp_path / "none.sqlite3") is None


@pytest.mark.parametrize("missing", [(), ("ledger_meta", "pos_receipts")], ids=["previous", "older"])
def test_an_unversioned_ledger_keeps_every_row_and_becomes_version_1(tmp_path, missing):
    path = old_ledger(tmp_path / "ledger.sqlite3", missing)
    kept = [t for t in OLD_TABLES if t not in missing]
    before = rows(path, kept)
    assert pragma(path, "user_version") == 0 and all(before.values())

    ledger = Ledger(path, V1)  # this release takes it to 2: tests/test_ledger_profile_scrub.py
    assert [e.event_id[-1] for e in ledger.events()] == ["1", "2"] and len(ledger.foreign_events()) == 1
    assert ledger.hub_applied_through() == 1 and ledger.session() == ("m-1", "b1", 123.5)
    # an old ledger keeps its id; one from before ids, which already held events, keeps "" (issue 7)
    assert ledger.ledger_id == ("" if missing else "c0ffee00c0ffee00c0ffee00c0ffee00")
    stamp(ledger)  # and it goes on working, receipts too
    assert ledger.claim_receipt("r-2", "3.00", AT)
    ledger.close()

    assert pragma(path, "user_version") == 1 and read_version(path) == OnDisk(1, 1)
    after = rows(path, kept)
    assert {t: after[t][:len(before[t])] for t in kept} == before  # every row as it was, in its place
    assert [len(after[t]) - len(before[t]) for t in kept] == [1 if t in ("events", "pos_receipts") else 0 for t in kept]
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM events")
    db.close()


# --- migration steps ----------------------------------------------------------------------------

def test_a_step_runs_once_and_the_ledger_then_carries_its_version(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path, V1)
    stamp(ledger)
    ledger.close()
    ran: list[int] = []
    schema = Schema(2, (Step(2, lambda db: (ran.append(2), add_note(db))),))
    for _ in range(2):
        ledger = Ledger(path, schema)
        stamp(ledger)  # the older code's writes still work on the new layout
        ledger.close()
    assert ran == [2] and pragma(path, "user_version") == 2 and read_version(path) == OnDisk(2, 2)
    assert "note" in columns(path, "events") and rows(path, ["notes"])["notes"] == [(1, "migrated")]
    assert len(rows(path, ["events"])["events"]) == 3


def test_an_unversioned_ledger_is_completed_and_stepped_in_one_go(tmp_path):
    path = old_ledger(tmp_path / "ledger.sqlite3")
    Ledger(path, Schema(2, (Step(2, add_note),))).close()
    assert pragma(path, "user_version") == 2 and rows(path, ["notes"])["notes"] == [(1, "migrated"), (2, "migrated")]


def test_two_processes_opening_an_old_ledger_together_migrate_it_once(tmp_path):
    path = old_ledger(tmp_path / "ledger.sqlite3")
    ran: list[str] = []

    def slow_step(db: sqlite3.Connection) -> None:
        ran.append(threading.current_thread().name)
        time.sleep(0.2)  # the other opener waits for the write lock meanwhile
        add_note(db)

    schema = Schema(2, (Step(2, slow_step),))
    opened: list[Ledger] = []
    threads = [threading.Thread(target=lambda: opened.append(Ledger(path, schema)), name=f"t{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for ledger in opened:
        ledger.close()
    assert len(opened) == 2 and len(ran) == 1 and pragma(path, "user_version") == 2


@pytest.mark.parametrize("start", ["version 1", "unversioned"])
def test_a_step_that_fails_half_way_leaves_the_version_and_every_row(tmp_path, start):
    path = tmp_path / "ledger.sqlite3"
    if start == "unversioned":
        old_ledger(path)
    else:
        ledger = Ledger(path, V1)
        stamp(ledger)
        ledger.close()
    version, before = pragma(path, "user_version"), rows(path, ["events", "hub_events"])

    def half_then_crash(db: sqlite3.Connection) -> None:
        add_note(db)  # the column and the table are made, the rows copied ...
        raise RuntimeError("power cut")  # ... and then it stops

    with pytest.raises(LedgerError, match=rf"could not migrate the ledger at {path} from version {version} to 2 "
                                          rf"\(RuntimeError: power cut\); it stays at version {version}"):
        Ledger(path, Schema(2, (Step(2, half_then_crash),)))
    assert pragma(path, "user_version") == version and rows(path, ["events", "hub_events"]) == before
    assert "note" not in columns(path, "events") and columns(path, "notes") == []
    if start == "unversioned":
        assert columns(path, "ledger_schema") == []  # version 1's part went back with it

    Ledger(path, Schema(2, (Step(2, add_note),))).close()  # the fixed release migrates it
    after = rows(path, ["events", "hub_events"])
    assert pragma(path, "user_version") == 2 and [r[:-1] for r in after["events"]] == before["events"]
    assert [r[-1] for r in after["events"]] == [None] * len(before["events"])  # the new column, empty


CRASH_INSIDE_A_STEP = """
import os, sys
from kiosk.ledger import Ledger
from kiosk.ledger_schema import Schema, Step

def step(db):
    db.execute("ALTER TABLE events ADD COLUMN note TEXT")
    db.execute("CREATE TABLE bulk (n INTEGER, pad TEXT)")
    db.execute("PRAGMA cache_size = 2")  # spill pages to the WAL before the commit
    for n in range(3000):
        db.execute("INSERT INTO bulk VALUES (?, ?)", (n, "x" * 200))
    os._exit(9)  # the power goes: no rollback, no close

Ledger(sys.argv[1], Schema(2, (Step(2, step),)))
"""


def test_a_process_that_dies_inside_a_step_leaves_the_old_version(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path, V1)
    stamp(ledger)
    ledger.close()
    before = rows(path, ["events"])
    died = subprocess.run([sys.executable, "-c", CRASH_INSIDE_A_STEP, str(path)], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert died.returncode == 9, died.stderr
    ledger = Ledger(path, V1)  # SQLite drops the unfinished transaction when the file is next opened
    assert ledger.events()[0].member == "m-1"
    ledger.close()
    assert pragma(path, "user_version") == 1 and rows(path, ["events"]) == before
    assert "note" not in columns(path, "events") and columns(path, "bulk") == []


# --- a ledger from a newer release --------------------------------------------------------------

def test_a_ledger_of_a_newer_release_is_refused_and_not_written(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    stamp(ledger)
    ledger.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    before = path.read_bytes()
    with pytest.raises(LedgerTooNew) as refused:
        Ledger(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: this ledger was written by a newer release (schema version 99)")
    assert f"this release knows ledger versions up to {LEDGER_SCHEMA}" in message and "update or restore" in message
    assert path.read_bytes() == before


def test_a_newer_releases_migration_still_in_the_wal_is_seen_and_nothing_is_checkpointed(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    newer = sqlite3.connect(path, isolation_level=None)  # the newer release, still running
    newer.execute("PRAGMA wal_autocheckpoint = 0")
    newer.execute("PRAGMA user_version = 99")
    before = path.read_bytes()
    assert int.from_bytes(before[60:64], "big") == LEDGER_SCHEMA  # the file's header does not say 99 yet
    try:
        with pytest.raises(LedgerTooNew, match=r"schema version 99\)"):
            Ledger(path)
        assert read_version(path) == OnDisk(99, 99)
        assert path.read_bytes() == before
    finally:
        newer.close()


def test_a_newer_ledger_whose_steps_only_added_is_used_by_older_code(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    Ledger(path, Schema(2, (Step(2, add_note, readable_from=1),))).close()
    assert read_version(path) == OnDisk(2, 1)
    ledger = Ledger(path, V1)  # code that knows version 1 only
    stamp(ledger)
    ledger.close()
    assert pragma(path, "user_version") == 2 and read_version(path) == OnDisk(2, 1)  # never taken back


# --- the schema as code -------------------------------------------------------------------------

def test_this_releases_version_is_a_literal_the_updater_can_read():
    source = (REPO / "kiosk" / "ledger_schema.py").read_text()
    assert declared_schema(source) == LEDGER_SCHEMA == LEDGER.version == 1 + len(STEPS)
    with pytest.raises(ValueError, match="not a plain positive integer"):
        declared_schema("LEDGER_SCHEMA = 1 + 1\n")
    with pytest.raises(ValueError, match="no LEDGER_SCHEMA"):
        declared_schema("OTHER = 2\n")


@pytest.mark.parametrize("version, steps, message", [
    (2, (), r"needs steps numbered 2..2, got \[\]"),
    (3, (Step(3, add_note), Step(2, add_note)), r"got \[3, 2\]"),
    (2, (Step(2, add_note, readable_from=3),), "readable_from must be 1..2"),
])
def test_a_misnumbered_schema_is_refused(version, steps, message):
    with pytest.raises(ValueError, match=message):
        Schema(version, steps)


# --- stempel-kiosk check ------------------------------------------------------------------------

def kiosk_config(data: Path) -> KioskConfig:
    return KioskConfig(kiosk=KioskSection(data_dir=data))


class Everything:
    """The check's probes, as far as the ledger needs them: a writable folder, user stempel."""

    @staticmethod
    def access(path: str, mode: int) -> bool:
        return True

    @staticmethod
    def user() -> str:
        return "stempel"


def test_the_check_says_the_ledgers_version_in_words(tmp_path):
    data = tmp_path / "state"
    data.mkdir()
    config = kiosk_config(data)
    assert check_ledger(config, Everything).text == f"{data} is writable; the ledger is made at the first start " \
                                                    f"(schema version {LEDGER_SCHEMA})"
    old_ledger(data / "ledger.sqlite3")
    old = check_ledger(config, Everything)
    assert old.ok and f"no schema version: made before ledger versions; the kiosk marks it version {LEDGER_SCHEMA}" \
        in old.text
    Ledger(data / "ledger.sqlite3").close()
    now = check_ledger(config, Everything)
    assert now.ok and now.text.endswith(f"KiB, schema version {LEDGER_SCHEMA}, this release's)")
    db = sqlite3.connect(data / "ledger.sqlite3")
    db.execute("PRAGMA user_version = 99")
    db.close()
    newer = check_ledger(config, Everything)
    assert not newer.ok and "schema version 99): written by a newer release" in newer.text
    assert "update or restore" in newer.fix


def test_the_check_command_prints_the_ledgers_version(tmp_path):
    data = tmp_path / "state"
    ledger = Ledger(data / "ledger.sqlite3")
    stamp(ledger)
    ledger.close()
    (tmp_path / "kiosk.toml").write_text('[kiosk]\ndata_dir = "state"\n\n[hardware]\nbackend = "sim"\n')
    result = CliRunner().invoke(check, ["--config", str(tmp_path / "kiosk.toml")])
    [line] = [line for line in result.output.splitlines() if line.startswith("ledger: ")]
    assert line.startswith(f"ledger: {data / 'ledger.sqlite3'} (") and line.endswith(
        f"KiB, schema version {LEDGER_SCHEMA}, this release's)")
