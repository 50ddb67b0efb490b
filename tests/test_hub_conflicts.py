"""Offline double redemption is caught where the ledgers merge: in the hub store (SQLite and
PostgreSQL), once per dip, with the member and the events that shared the same stamps.
Also the store's answer to a sync request (entries after a hub_seq, and the head)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from hubdb import hub_url, pg_database, store  # noqa: F401  (fixtures)

from cloud.events.conflicts import find_dip
from cloud.events import EventStore
from cloud.models import HubEvent
from kiosk.protocol import topics
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import EventBatch, WireEvent, encode

M = "cafe-rosa"
AT = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


class Kiosk:
    """Numbers one kiosk's events the way its ledger does."""

    def __init__(self, name: str) -> None:
        self.name, self._seq = name, itertools.count(1)

    def event(self, minute: int, delta: int, member: str = "anna", kind: str | None = None) -> WireEvent:
        return WireEvent(event_id=new_event_id(), kiosk_seq=next(self._seq), occurred_at=AT + timedelta(minutes=minute),
                         mono_ns=minute, boot_id="boot-1", kind=kind or ("redeem" if delta < 0 else "earn"),
                         member=member, delta=delta, rule="r", reward="free-coffee" if delta < 0 else None)

    def send(self, store: EventStore, *events: WireEvent):
        return store.ingest(topics.events(M, self.name), encode(EventBatch(events=list(events))))


def test_two_offline_redemptions_of_the_same_stamps_are_one_conflict(store):
    k1, k2 = Kiosk("k1"), Kiosk("k2")
    k1.send(store, *(k1.event(i, 1) for i in range(10)))  # both kiosks saw these 10 before going offline
    a = k1.event(100, -10)
    b = k2.event(101, -10)
    assert k1.send(store, a, k1.event(102, 0, "bob", "visit")).conflicts == 0  # the first redemption is fine
    merged = k2.send(store, b)
    assert merged.conflicts == 1
    assert k2.send(store, b).conflicts == 0  # the re-sent batch is a duplicate: no second conflict
    assert k2.send(store, k2.event(103, 1)).conflicts == 0  # nothing new spent
    [conflict] = store.conflicts(M)
    assert (conflict.member_id, conflict.balance, conflict.first_event_id) == ("anna", -10, b.event_id)
    assert conflict.event_ids == [a.event_id, b.event_id] and conflict.kiosks == ["k1", "k2"]


def test_the_dip_is_found_in_merchant_order_whichever_kiosk_arrives_first(store):
    """The late kiosk's redemption happened first: the conflict names the *other* one as the dip."""
    k1, k2 = Kiosk("k1"), Kiosk("k2")
    k1.send(store, *(k1.event(i, 1) for i in range(10)))
    late, early = k1.event(200, -10), k2.event(150, -10)
    k1.send(store, late)
    assert k2.send(store, early).conflicts == 1
    [conflict] = store.conflicts(M)
    assert conflict.first_event_id == late.event_id and conflict.event_ids == [early.event_id, late.event_id]


def test_normal_spending_and_other_merchants_make_no_conflict(store):
    k1 = Kiosk("k1")
    k1.send(store, *(k1.event(i, 1) for i in range(10)), k1.event(20, -10), k1.event(21, 1))
    other = store.ingest(topics.events("other-shop", "k1"), encode(EventBatch(events=[Kiosk("k1").event(0, -5)])))
    assert other.conflicts == 1  # a spend with nothing earned is a conflict too, but only in its merchant
    assert store.conflicts(M) == [] and len(store.conflicts("other-shop")) == 1


def test_ledger_after_pages_through_the_merchants_stream(store):
    k1, k2 = Kiosk("k1"), Kiosk("k2")
    k1.send(store, *(k1.event(i, 1) for i in range(3)))
    k2.send(store, *(k2.event(i, 1, "bob") for i in range(4)))
    page, head = store.ledger_after(M, 2, limit=3)
    assert head == 7 and [e.hub_seq for e in page] == [3, 4, 5]
    assert [e.kiosk for e in page] == ["k1", "k2", "k2"]
    assert store.ledger_after(M, 7) == ([], 7) and store.ledger_after("nobody", 0) == ([], 0)


@pytest.mark.parametrize("deltas, dip_at, lowest, spent", [
    ([], None, 0, []),
    ([5, -5, 3, -3], None, 0, []),
    ([10, -10, -10], 2, -10, [1, 2]),
    ([10, -10, 2, -10, 5], 3, -8, [1, 3]),  # both spent the 10 stamps; the 2 between do not cover it
    ([-1], 0, -1, [0]),
    ([3, -2, -2, 4, -9], 2, -6, [1, 2]),  # the first dip is what is recorded; the lowest point is kept
])
def test_find_dip(deltas, dip_at, lowest, spent):
    events = [HubEvent(event_id=f"e{i:02d}", kiosk_id="k", delta=d, occurred_at=AT + timedelta(minutes=i))
              for i, d in enumerate(deltas)]
    dip = find_dip(list(reversed(events)))  # order comes from occurred_at, not from the input
    if dip_at is None:
        assert dip is None
        return
    assert (dip.first_event_id, dip.lowest) == (f"e{dip_at:02d}", lowest)
    assert [e.event_id for e in dip.spending] == [f"e{i:02d}" for i in spent]


@pytest.mark.slow  # the stempel-hub CLI
def test_the_owner_sees_the_conflict_with_stempel_hub_conflicts(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    store = EventStore.open(url)
    k1, k2 = Kiosk("k1"), Kiosk("k2")
    k1.send(store, *(k1.event(i, 1) for i in range(10)))
    k1.send(store, k1.event(100, -10))
    k2.send(store, k2.event(101, -10))
    store.close()
    hub = str(Path(sys.executable).parent / "stempel-hub")
    out = subprocess.run([hub, "--data-dir", str(tmp_path), "--db-url", url, "conflicts", "--merchant", M, "--json"],
                         check=True, capture_output=True, text=True).stdout
    [row] = json.loads(out)
    assert (row["member"], row["balance"], row["kiosks"], row["resolved"]) == ("anna", -10, ["k1", "k2"], False)
