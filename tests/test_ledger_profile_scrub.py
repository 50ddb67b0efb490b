"""A member's superseded profiles lose their bytes on the kiosk (ledger version 2).

The hub's erasure sends an empty ``profile``; the kiosk folds it (the newest profile wins), and
since ledger version 2 it also blanks the detail of the member's older profiles in ``hub_events``,
in the transaction that stores the new one: no row, and no free page of the file, keeps the
birthday or the referrer. Everything else stays append-only, every fold gives what it gave with the
bytes still there, and code that knows only ledger version 1 still opens and writes the ledger.
"""

from __future__ import annotations

import itertools
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kiosk.common.errors import LedgerError
from kiosk.ledger import _SCHEMA, Ledger
from kiosk.ledger_schema import (
    BLANK_DETAIL,
    LEDGER,
    LEDGER_SCHEMA,
    PROFILE,
    UNVERSIONED_READS,
    OnDisk,
    Schema,
    check_readable,
    read_version,
)
from kiosk.protocol.event import CONTENT, engine_entry, from_wire, sqlite_values
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import LedgerEntry
from kiosk.rules import Entry, Program
from kiosk.rules.state import PROFILE as ENGINE_PROFILE
from kiosk.rules.state import fold

AT = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
PROGRAM = Program()
V1 = Schema(1)  # what a release that knows ledger version 1 only opens it with
REFERRER = "m-referrer-7"
SECRETS = (b"03-14", b"03-15", REFERRER.encode())
_kiosk_seqs = itertools.count(1)


def profile(hub_seq: int, member: str = "anna", minute: int | None = None, event_id: str | None = None,
            **detail: str) -> LedgerEntry:
    """A ``profile`` entry as the hub sends it (``send_profile``); no detail: the erasure's."""
    return LedgerEntry(event_id=event_id or new_event_id(), kiosk_seq=next(_kiosk_seqs), mono_ns=0, boot_id="hub",
                       occurred_at=AT + timedelta(minutes=hub_seq if minute is None else minute), kind="profile",
                       member=member, delta=0, rule="profile", detail=detail, kiosk="hub", hub_seq=hub_seq)


def earn(hub_seq: int, member: str = "anna") -> LedgerEntry:
    """A stamp another kiosk of the merchant gave."""
    return LedgerEntry(event_id=new_event_id(), kiosk_seq=next(_kiosk_seqs), mono_ns=1, boot_id="b",
                       occurred_at=AT + timedelta(minutes=hub_seq), kind="earn", member=member, delta=1, rule="visit",
                       detail={"cause": f"c{hub_seq}"}, kiosk="counter-2", hub_seq=hub_seq)


def unscrubbed(member: str, *entries: LedgerEntry):
    """The member's state folded from *entries* as they were sent, every byte still there."""
    mine = sorted((from_wire(e) for e in entries if e.member == member), key=lambda e: e.order())
    return fold(member, ((engine_entry(e), e.occurred_at) for e in mine), PROGRAM)


def raw(path: Path, sql: str, args: tuple = ()) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def profile_details(path: Path, member: str = "anna") -> dict[int, str]:
    """``hub_seq`` → the stored detail text of the member's profiles, read from the file itself."""
    return dict(raw(path, "SELECT hub_seq, detail FROM hub_events WHERE kind = 'profile' AND member = ?", (member,)))


def trigger_sql(path: Path, name: str = "hub_events_append_only_u") -> str:
    [(sql,)] = raw(path, "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (name,))
    return sql


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "ledger.sqlite3"


def test_the_blank_is_what_the_ledger_stores_for_an_empty_detail():
    assert PROFILE == ENGINE_PROFILE
    stored = dict(zip(CONTENT, sqlite_values(from_wire(profile(1)))))  # the erasure's profile, as kept
    assert stored["detail"] == BLANK_DETAIL == "{}"
    assert LEDGER_SCHEMA == LEDGER.version == 2 and LEDGER.readable_from == 1


def test_a_newer_profile_blanks_the_older_ones_bytes_and_the_fold_is_the_same(path):
    first, stamp, second = profile(1, birthday="03-14", referred_by=REFERRER), earn(2), profile(3, birthday="03-15")
    ledger = Ledger(path)
    assert ledger.apply_hub_entries([first, stamp], "counter-1") == (2, 2)
    cached = ledger.member_state("anna", PROGRAM)  # the snapshot holds the first profile
    assert (cached.birthday, cached.referred_by, cached.balance) == ((3, 14), REFERRER, 1)

    assert ledger.apply_hub_entries([second], "counter-1") == (3, 1)
    assert profile_details(path) == {1: "{}", 3: '{"birthday": "03-15"}'}
    state = ledger.member_state("anna", PROGRAM)  # extended from the snapshot
    assert (state.birthday, state.referred_by, state.balance) == ((3, 15), None, 1)
    assert state == unscrubbed("anna", first, stamp, second)
    other = Ledger(path)  # no snapshot: folds the blanked row from the start
    assert other.member_state("anna", PROGRAM) == state
    assert ledger.member_state("anna", Program()) == state  # another programme: folded again, the same
    other.close()
    ledger.close()
    data = path.read_bytes()
    assert b"03-14" not in data and REFERRER.encode() not in data and b"03-15" in data


def test_after_the_hubs_erasure_no_row_or_page_holds_the_birthday_or_the_referrer(path):
    sent = [profile(1, birthday="03-14", referred_by=REFERRER), earn(2), earn(3),
            profile(4, member="carl", birthday="07-01", referred_by="m-dora"),
            profile(5, birthday="03-15", referred_by=REFERRER), earn(6, member="carl"), earn(7)]
    ledger = Ledger(path)
    ledger.apply_hub_entries(sent, "counter-1")
    before = ledger.member_state("anna", PROGRAM)
    assert (before.birthday, before.referred_by, before.balance) == ((3, 15), REFERRER, 3)
    carl = ledger.member_state("carl", PROGRAM)

    erasure = profile(8)  # cloud/members.py erase: the empty profile
    assert ledger.apply_hub_entries([erasure], "counter-1") == (8, 1)
    assert profile_details(path) == {1: "{}", 5: "{}", 8: "{}"}
    rows = raw(path, "SELECT * FROM hub_events")
    assert len(rows) == 8 and not [r for r in rows if any(s.decode() in str(r) for s in SECRETS)]
    assert profile_details(path, "carl") == {4: '{"birthday": "07-01", "referred_by": "m-dora"}'}  # untouched

    after = ledger.member_state("anna", PROGRAM)
    assert (after.birthday, after.referred_by, after.balance) == (None, None, before.balance)
    assert after == unscrubbed("anna", *sent, erasure)
    assert ledger.member_state("carl", PROGRAM) == carl == unscrubbed("carl", *sent)
    assert [e.detail for e in ledger.foreign_events("anna") if e.kind == "profile"] == [{}, {}, {}]
    ledger.close()
    data = path.read_bytes()  # closed: checkpointed, no WAL left; secure_delete zeroed the old cells
    assert not list(path.parent.glob("*-wal")) and not [s for s in SECRETS if s in data] and b"07-01" in data


def test_a_profile_older_than_the_one_held_is_blanked_itself(path):
    newer = profile(1, minute=30, birthday="03-15")
    older = profile(2, minute=10, birthday="03-14", referred_by=REFERRER)  # made first, arrives last
    ledger = Ledger(path)
    ledger.apply_hub_entries([newer], "counter-1")
    ledger.member_state("anna", PROGRAM)  # a snapshot the late entry sorts before: folded again
    ledger.apply_hub_entries([older], "counter-1")
    assert profile_details(path) == {1: '{"birthday": "03-15"}', 2: "{}"}
    state = ledger.member_state("anna", PROGRAM)
    assert (state.birthday, state.referred_by) == ((3, 15), None) and state == unscrubbed("anna", newer, older)
    ledger.close()


def test_two_profiles_at_the_same_moment_keep_the_one_the_fold_puts_last(path):
    late = profile(1, minute=5, event_id="0190aaaa-0000-7000-8000-000000000002", birthday="03-15")
    early = profile(2, minute=5, event_id="0190aaaa-0000-7000-8000-000000000001", birthday="03-14")
    ledger = Ledger(path)
    ledger.apply_hub_entries([late, early], "counter-1")  # one batch, out of order
    assert profile_details(path) == {1: '{"birthday": "03-15"}', 2: "{}"}
    assert ledger.member_state("anna", PROGRAM) == unscrubbed("anna", late, early)
    ledger.close()


def test_the_blanking_is_part_of_the_transaction_that_stores_the_profile(path, monkeypatch):
    ledger = Ledger(path)
    ledger.apply_hub_entries([profile(1, birthday="03-14")], "counter-1")

    def full_disk(db, members):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr("kiosk.ledger.blank_superseded_profiles", full_disk)
    with pytest.raises(LedgerError, match="could not store hub events .* disk is full"):
        ledger.apply_hub_entries([profile(2)], "counter-1")
    assert ledger.hub_applied_through() == 1 and profile_details(path) == {1: '{"birthday": "03-14"}'}
    ledger.close()


# --- the trigger: everything but the blanking is still refused ------------------------------------

REFUSED = [
    "UPDATE hub_events SET delta = 5 WHERE kind = 'earn'",
    "UPDATE hub_events SET detail = '{}' WHERE kind = 'earn'",
    "UPDATE hub_events SET detail = '{\"birthday\": \"01-01\"}' WHERE kind = 'profile'",
    "UPDATE hub_events SET detail = NULL WHERE kind = 'profile'",
    "UPDATE hub_events SET detail = ' {}' WHERE kind = 'profile'",
    "UPDATE hub_events SET detail = X'7B7D' WHERE kind = 'profile'",
    "UPDATE hub_events SET detail = '{}', member = 'bert' WHERE kind = 'profile'",
    "UPDATE hub_events SET detail = '{}', reason = 'x' WHERE kind = 'profile'",
    "UPDATE hub_events SET detail = '{}', occurred_at = '2020-01-01T00:00:00+00:00' WHERE kind = 'profile'",
    "UPDATE hub_events SET detail = '{}', kind = 'earn' WHERE kind = 'profile'",
    "UPDATE hub_events SET detail = '{}', hub_seq = hub_seq + 100 WHERE kind = 'profile'",
    "UPDATE hub_events SET detail = '{}', event_id = 'x' WHERE kind = 'profile'",
    "UPDATE events SET detail = '{}'",
    "DELETE FROM hub_events WHERE kind = 'profile'",
    "DELETE FROM hub_events",
    "DELETE FROM events",
]


@pytest.fixture
def filled(path) -> Path:
    ledger = Ledger(path)
    ledger.append([Entry("earn", "anna", 1, "visit", "scan")], AT, 1.0, "boot")
    ledger.apply_hub_entries([profile(1, birthday="03-14", referred_by=REFERRER), earn(2)], "counter-1")
    ledger.close()
    return path


@pytest.mark.parametrize("sql", REFUSED)
def test_any_other_change_is_still_refused(filled, sql):
    before = raw(filled, "SELECT * FROM hub_events"), raw(filled, "SELECT * FROM events")
    db = sqlite3.connect(filled, isolation_level=None)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(sql)
    finally:
        db.close()
    assert (raw(filled, "SELECT * FROM hub_events"), raw(filled, "SELECT * FROM events")) == before


def test_the_blanking_itself_is_allowed_to_anyone(filled):
    db = sqlite3.connect(filled, isolation_level=None)
    db.execute("UPDATE hub_events SET detail = '{}' WHERE kind = 'profile'")
    db.close()
    assert profile_details(filled) == {1: "{}"}


# --- the step: new ledgers, old ledgers, old code ---------------------------------------------------

def test_a_new_ledger_is_made_with_layout_1_then_step_2(path):
    Ledger(path).close()
    assert read_version(path) == OnDisk(2, 1)
    assert "WHEN NOT (OLD.kind IS 'profile' AND NEW.detail IS '{}'" in trigger_sql(path)
    for strict in ("hub_events_append_only_d", "events_append_only_u", "events_append_only_d"):
        assert "WHEN" not in trigger_sql(path, strict)


@pytest.mark.parametrize("start", ["version 1", "unversioned"])
def test_an_older_ledger_is_migrated_with_every_row_and_its_superseded_profiles_blanked(path, start):
    """Profiles stored before version 2 (a member erased by then) are blanked by the step itself."""
    sent = [profile(1, birthday="03-14", referred_by=REFERRER), earn(2), profile(3, member="carl", birthday="07-01"),
            profile(4, birthday="03-15"), profile(5)]
    old = Ledger(path, V1)  # version 1's trigger: nothing can be blanked, nothing is tried
    old.append([Entry("earn", "anna", 1, "visit", "scan")], AT, 1.0, "boot")
    old.apply_hub_entries(sent, "counter-1")
    expected = old.member_state("anna", PROGRAM)
    old.close()
    if start == "unversioned":
        raw(path, "PRAGMA user_version = 0")
        raw(path, "DROP TABLE ledger_schema")
    before = {t: raw(path, f"SELECT * FROM {t} ORDER BY 1") for t in ("events", "hub_events", "hub_cursor")}
    assert "WHEN" not in trigger_sql(path) and b"03-14" in path.read_bytes()

    ledger = Ledger(path)
    assert read_version(path) == OnDisk(2, 1) and "WHEN NOT" in trigger_sql(path)
    after = {t: raw(path, f"SELECT * FROM {t} ORDER BY 1") for t in before}
    assert after["events"] == before["events"] and after["hub_cursor"] == before["hub_cursor"]
    blanked = {1, 4}
    assert [r for r in after["hub_events"] if r[0] not in blanked] == [r for r in before["hub_events"]
                                                                       if r[0] not in blanked]
    assert profile_details(path) == {1: "{}", 4: "{}", 5: "{}"} and profile_details(path, "carl") == {
        3: '{"birthday": "07-01"}'}
    assert ledger.member_state("anna", PROGRAM) == expected and expected.balance == 2 and expected.birthday is None
    ledger.close()
    assert not [s for s in SECRETS if s in path.read_bytes()]


def test_code_that_knows_version_1_opens_and_writes_a_version_2_ledger(path):
    ledger = Ledger(path)
    ledger.apply_hub_entries([profile(1, birthday="03-14")], "counter-1")
    ledger.close()
    # what the updater asks before going back to a release (kiosk/update.py: _ledger_ahead)
    assert check_readable(path, V1) == OnDisk(2, 1) and OnDisk(2, 1).readable_from <= UNVERSIONED_READS

    old = Ledger(path, V1)  # opens: readable_from is 1
    old.append([Entry("earn", "anna", 1, "visit", "scan")], AT, 1.0, "boot")
    assert old.apply_hub_entries([earn(2), profile(3, birthday="03-15")], "counter-1") == (3, 2)
    assert old.member_state("anna", PROGRAM).balance == 2
    old.close()
    # a release from before ledger versions runs layout 1 on every start: the trigger keeps its name,
    # so CREATE TRIGGER IF NOT EXISTS leaves the version 2 one in place
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(_SCHEMA)
    db.execute("INSERT INTO hub_events (hub_seq, event_id, kiosk, kiosk_seq, kind, member, delta, rule, detail,"
               " occurred_at, mono_ns, boot_id) VALUES (4, ?, 'hub', 9, 'profile', 'anna', 0, 'profile',"
               " '{\"birthday\": \"03-16\"}', ?, 0, 'hub')", (new_event_id(), (AT + timedelta(minutes=4)).isoformat()))
    db.execute("UPDATE hub_cursor SET applied_through = 4")
    db.close()
    assert read_version(path) == OnDisk(2, 1) and "WHEN NOT" in trigger_sql(path)

    ledger = Ledger(path)  # back on this release: the next profile blanks what the old code left
    ledger.apply_hub_entries([profile(5)], "counter-1")
    assert set(profile_details(path).values()) == {"{}"}
    state = ledger.member_state("anna", PROGRAM)
    assert (state.birthday, state.balance) == (None, 2)
    ledger.close()
