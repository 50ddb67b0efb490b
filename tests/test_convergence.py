"""Every kiosk of a merchant converges to the same balances, through a real Mosquitto and a
real ``stempel-hub ingest`` process, and through the in-memory broker with the same worker in
this process (SQLite and PostgreSQL).

What must hold: a member who visited two kiosks has the same balance on both (and the
cooldown holds across kiosks); a kiosk that was offline, or new, catches up through
``sync/request``; two kiosks offline at once that both redeem are caught at the hub as a
conflict, and both kiosks then show the same (negative) balance.
"""

from __future__ import annotations

import pytest
from buses import bus_factory  # noqa: F401  (fixture)
from fleetrig import WAIT, LiveKiosk
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from syncrig import MERCHANT, converged, wait_until

from cloud.events import EventStore
from kiosk.wiring import ledger_path


@pytest.fixture
def fleet(tmp_path, hub_url, bus_factory):
    store = EventStore.open(hub_url)
    worker = bus_factory.ingest(tmp_path, hub_url, "w1")
    wait_until(lambda: bool(worker.records("bus.connected")), WAIT, "ingest to connect")
    kiosks: list[LiveKiosk] = []
    yield bus_factory, store, worker, kiosks
    for k in kiosks:
        k.stop()
    worker.stop()
    store.close()


def same_balance(kiosks, member: str, balance: int) -> None:
    wait_until(lambda: all(k.balance(member) == balance for k in kiosks), WAIT,
               f"every kiosk to show {member} at {balance} ({[k.balance(member) for k in kiosks]})")


def test_two_kiosks_converge_and_an_offline_kiosk_catches_up(tmp_path, hub, clock, fleet):
    broker, store, worker, kiosks = fleet
    anna = hub.issue("Anna")
    k1, k2 = (LiveKiosk(tmp_path, hub, k, broker, clock).start() for k in ("counter-1", "counter-2"))
    kiosks += [k1, k2]
    assert k1.scan(anna.url).balance == 1
    same_balance(kiosks, anna.member, 1)
    assert k2.scan(anna.url, advance=60).outcome == "already_stamped"  # the cooldown holds across kiosks
    assert k2.scan(anna.url).balance == 2  # counted on top of the stamp from counter-1
    same_balance(kiosks, anna.member, 2)

    k2.stop()  # offline: the live ledger stream passes it by
    kiosks.remove(k2)
    for _ in range(3):
        k1.scan(anna.url)
    wait_until(lambda: converged(store, {k1.id: ledger_path(k1.config)}), WAIT, "the hub to store every event")
    head = len(store.events(MERCHANT))
    from_k1 = len(store.events(MERCHANT, k1.id))
    answered = len(worker.records("sync.answered"))
    back = LiveKiosk(tmp_path, hub, "counter-2", broker, clock).start()
    newcomer = LiveKiosk(tmp_path, hub, "counter-3", broker, clock).start()  # never online before
    kiosks += [back, newcomer]
    same_balance(kiosks, anna.member, 5)
    assert newcomer.cursor() == back.cursor() == head
    assert (newcomer.foreign(), back.foreign()) == (head, from_k1)
    catch_up = [r for r in worker.records("sync.answered")[answered:] if r["entries"]]
    assert {r["kiosk"] for r in catch_up} == {"counter-2", "counter-3"}
    assert store.conflicts(MERCHANT) == []


@pytest.mark.slow
@pytest.mark.parametrize("bus_factory", ["mosquitto"], indirect=True)  # kills the broker: Mosquitto only
def test_offline_double_redemption_is_a_conflict_at_the_hub(tmp_path, hub, clock, fleet):
    buses, store, worker, kiosks = fleet
    broker = buses.broker
    anna = hub.issue("Anna")
    k1, k2 = (LiveKiosk(tmp_path, hub, k, buses, clock).start() for k in ("counter-1", "counter-2"))
    kiosks += [k1, k2]
    for _ in range(10):
        k1.scan(anna.url)
    same_balance(kiosks, anna.member, 10)
    broker.kill()  # both kiosks offline; both see a balance that covers the reward
    redeemed = []
    for k in kiosks:
        assert k.scan(anna.url, advance=60).outcome == "already_stamped"  # opens the counter session
        result = k.press()
        assert (result.outcome, result.balance) == ("redeemed", 0)
        redeemed += result.event_ids
    broker.start()
    wait_until(lambda: len(store.conflicts(MERCHANT)) == 1, WAIT + 10, "the hub to record the conflict")
    conflict = store.conflicts(MERCHANT)[0]
    assert (conflict.member_id, conflict.balance) == (anna.member, -10)
    assert sorted(conflict.event_ids) == sorted(redeemed) and conflict.kiosks == ["counter-1", "counter-2"]
    same_balance(kiosks, anna.member, -10)  # both kiosks see the same truth the owner has to settle
