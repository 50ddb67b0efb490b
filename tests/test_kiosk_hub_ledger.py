"""The hub's ledger stream on a kiosk: each hub_seq applied once, own events skipped, gaps
asked for, and a member's state folded from own and foreign events in one merchant-wide order
(so two kiosks holding the same events show the same balance)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from kiosk.common.errors import MessageError
from kiosk.ledger import Ledger
from kiosk.link.ledger import FollowerSettings, LedgerFollower
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import LedgerBatch, LedgerEntry, SyncResponse, encode
from kiosk.rules import Entry, Program

AT = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
PROGRAM = Program()
_seqs = itertools.count(1)


def entry(hub_seq: int, kiosk: str = "counter-2", member: str = "anna", delta: int = 1, minute: int | None = None,
          event_id: str | None = None, kind: str = "earn") -> LedgerEntry:
    return LedgerEntry(event_id=event_id or new_event_id(), kiosk_seq=next(_seqs),
                       occurred_at=AT + timedelta(minutes=hub_seq if minute is None else minute), mono_ns=1,
                       boot_id="b", kind=kind, member=member, delta=delta, rule="visit",
                       detail={"cause": f"c{hub_seq}"}, kiosk=kiosk, hub_seq=hub_seq)


def stamp(ledger: Ledger, minute: int, member: str = "anna", delta: int = 1, kind: str = "earn"):
    return ledger.append([Entry(kind, member, delta, "visit", f"own{minute}")], AT + timedelta(minutes=minute),
                         float(minute), "boot")[0]


@pytest.fixture
def ledger(tmp_path):
    lg = Ledger(tmp_path / "ledger.sqlite3")
    yield lg
    lg.close()


def test_entries_are_applied_once_in_order_and_own_events_only_move_the_cursor(ledger):
    own = stamp(ledger, 1)
    mine = entry(2, kiosk="counter-1", event_id=own.event_id)
    batch = [entry(1), mine, entry(3)]
    assert ledger.apply_hub_entries(batch, "counter-1") == (3, 2)
    assert ledger.apply_hub_entries(batch, "counter-1") == (3, 0)  # at-least-once delivery: a repeat is a no-op
    assert ledger.apply_hub_entries([entry(5), entry(6)], "counter-1") == (3, 0)  # a gap: nothing applied
    assert [e.kiosk_seq for e in ledger.foreign_events()] == [batch[0].kiosk_seq, batch[2].kiosk_seq]
    assert ledger.member_state("anna", PROGRAM).balance == 3
    lost = entry(4, kiosk="counter-1")  # made by this kiosk before its ledger was lost and set up again
    assert ledger.apply_hub_entries([lost], "counter-1") == (4, 1)
    assert ledger.member_state("anna", PROGRAM).balance == 4


def test_a_foreign_event_older_than_the_snapshot_refolds_the_member(ledger):
    stamp(ledger, 10, delta=0, kind="visit")
    stamp(ledger, 30, delta=0, kind="visit")
    assert ledger.member_state("anna", PROGRAM).applied == ("own10", "own30")  # cached now
    ledger.apply_hub_entries([entry(1, minute=20, delta=0, kind="visit")], "counter-1")  # made offline, between
    state = ledger.member_state("anna", PROGRAM)
    assert (state.visits, state.applied) == (3, ("own10", "c1", "own30"))  # folded again, in time order
    stamp(ledger, 40, delta=0, kind="visit")
    assert ledger.member_state("anna", PROGRAM).applied == ("own10", "c1", "own30", "own40")


def test_two_kiosks_with_the_same_events_fold_the_same_state(tmp_path):
    a, b = Ledger(tmp_path / "a.sqlite3"), Ledger(tmp_path / "b.sqlite3")
    try:
        wire = []
        for hub_seq, (lg, kiosk, minute) in enumerate([(a, "a", 5), (b, "b", 3), (a, "a", 9), (b, "b", 7)], 1):
            own = stamp(lg, minute)
            wire.append(entry(hub_seq, kiosk=kiosk, minute=minute, event_id=own.event_id))
        a.apply_hub_entries(wire, "a")
        b.apply_hub_entries(wire, "b")
        assert a.member_state("anna", PROGRAM) == b.member_state("anna", PROGRAM)
        assert a.member_state("anna", PROGRAM).balance == 4
    finally:
        a.close()
        b.close()


class Requests:
    def __init__(self) -> None:
        self.sent: list[int] = []
        self.online = True

    def __call__(self, after: int) -> bool:
        if self.online:
            self.sent.append(after)
        return self.online


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def follower(ledger) -> tuple[LedgerFollower, Requests, Clock]:
    requests, clock = Requests(), Clock()
    return LedgerFollower(ledger, "counter-1", requests, FollowerSettings(retry=5, resync=300), clock), requests, clock


def live(*entries: LedgerEntry) -> bytes:
    return encode(LedgerBatch(entries=list(entries)))


def test_a_gap_is_held_asked_for_once_and_filled_by_the_response(ledger):
    f, requests, clock = follower(ledger)
    f.on_ledger(live(entry(1)))
    f.on_ledger(live(entry(4)))  # 2 and 3 were lost
    f.on_ledger(live(entry(5)))
    assert (f.cursor, requests.sent) == (1, [1])  # one question for the same gap
    f.on_response(encode(SyncResponse(after_hub_seq=1, entries=[entry(2), entry(3)], head_hub_seq=9)))
    assert f.cursor == 5 and requests.sent == [1, 5]  # moved on; the hub has more: ask for the next page
    f.on_response(encode(SyncResponse(after_hub_seq=5, entries=[entry(s) for s in range(6, 10)], head_hub_seq=9)))
    assert (f.cursor, f.behind(), requests.sent) == (9, False, [1, 5])
    assert ledger.hub_applied_through() == 9 and len(ledger.foreign_events()) == 9


def test_requests_are_retried_while_behind_and_after_a_reconnect(ledger):
    f, requests, clock = follower(ledger)
    requests.online = False
    f.on_ledger(live(entry(2)))  # offline: the question waits
    assert requests.sent == []
    requests.online = True
    f.on_connected()
    assert requests.sent == [0]
    clock.t = 4.0
    f.tick()
    assert requests.sent == [0]  # an answer may still be on its way
    clock.t = 5.5
    f.tick()
    assert requests.sent == [0, 0]
    f.on_response(encode(SyncResponse(after_hub_seq=0, entries=[entry(1)], head_hub_seq=2)))
    assert f.cursor == 2 and not f.behind()
    clock.t = 400.0
    f.tick()  # caught up, but now and then it asks anyway: the last message before a silence may be lost
    assert requests.sent == [0, 0, 2]


def test_a_restarted_kiosk_resumes_from_its_cursor_and_garbage_is_refused(ledger):
    f, _, _ = follower(ledger)
    f.on_ledger(live(entry(1), entry(2)))
    again, requests, _ = follower(ledger)
    assert again.cursor == 2
    again.on_connected()
    assert requests.sent == [2]
    reports: list[tuple[int | None, str]] = []
    again = LedgerFollower(ledger, "counter-1", requests, FollowerSettings(retry=5, resync=300), Clock(),
                           on_refused=lambda seq, why: reports.append((seq, why)))
    # every entry garbage: each is refused and reported on its own (what the kiosk's state shows),
    # nothing applied, no exception that would put a vaguer "invalid message" over that report
    again.on_ledger(b'{"schema": "stempel.ledger.v1", "entries": [{"hub_seq": 0}]}')
    assert (again.cursor, again.refused, [seq for seq, _ in reports]) == (2, 1, [None])
    with pytest.raises(MessageError):  # an envelope that is no message at all still is one
        again.on_response(b"not json")


def test_a_profile_from_the_hub_gives_the_birthday_and_referral_bonuses_at_the_counter(ledger):
    """Item 3 of issue 10: what the hub knows (birthday month/day, referrer) arrives on the ledger
    stream; the kiosk folds it, and its first scan of the member grants both bonuses."""
    from kiosk.rules import Visit, evaluate, parse_program

    program = parse_program({"bonuses": {"birthday": {"amount": 3, "window_days": 3},
                                         "referral": {"referrer": 2, "referee": 1}}})
    profile = LedgerEntry(event_id=new_event_id(), kiosk_seq=1, occurred_at=AT, mono_ns=0, boot_id="hub",
                          kind="profile", member="ben", rule="profile",
                          detail={"birthday": "03-03", "referred_by": "anna"}, kiosk="hub", hub_seq=1)
    assert ledger.apply_hub_entries([profile], "counter-1") == (1, 1)
    state = ledger.member_state("ben", program)
    assert (state.birthday, state.referred_by) == ((3, 3), "anna")
    decision = evaluate(state, Visit("v1", "ben"), AT + timedelta(hours=2), program)
    assert {(e.member, e.rule) for e in decision.entries} >= {
        ("ben", "birthday-bonus"), ("ben", "referral-bonus:referee"), ("anna", "referral-bonus:referrer")}
    erased = profile.model_copy(update={"event_id": new_event_id(), "detail": {}, "hub_seq": 2})
    ledger.apply_hub_entries([erased], "counter-1")
    assert ledger.member_state("ben", program).birthday is None


@pytest.mark.parametrize("detail", [{"birthday": "02-30"}, {"birthday": "1990-03-03"}, {"referred_by": "A B"},
                                    {"birthday": "03-03", "email": "x@y.z"}])
def test_a_profile_with_more_or_other_than_the_engine_needs_is_refused(detail):
    with pytest.raises(ValueError):
        LedgerEntry(event_id=new_event_id(), kiosk_seq=1, occurred_at=AT, mono_ns=0, boot_id="hub", kind="profile",
                    member="ben", rule="profile", detail=detail, kiosk="hub", hub_seq=1)
