"""The purchase amount at the counter, undo and till receipts, on the kiosk itself (kiosk/app.py).

A points programme (boutique: 10 points per whole euro) needs the amount of the sale. Staff
type it before or after the customer scans, within ``counter_seconds`` (30 s): amount first,
the scan takes it; scan first (``amount_required``), the amount credits that visit. Undo
takes the last stamp or redemption back with a compensating ``adjust`` entry, for a minute.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from staffsite import staff  # noqa: F401

from kiosk.app import AMOUNT_PENDING, AMOUNT_REQUIRED, NOTHING_TO_UNDO, OUT_OF_ORDER, REPEATED_RECEIPT, UNDONE
from kiosk.common.errors import LedgerError
from kiosk.protocol.event_schema import check_detail
from kiosk.rules.state import ADJUST, VISIT
from kiosk.undo import UNDO_RULE


def visits(site, issued) -> list:
    return [e for e in site.kiosk.ledger.events(issued.member) if e.kind == VISIT]


def test_amount_first_then_the_scan_takes_it(staff):
    anna = staff.member("Anna")
    held = staff.kiosk.enter_amount(Decimal("23.50"))
    assert (held.outcome, held.amount) == (AMOUNT_PENDING, "23.50")
    staff.clock.advance(10)
    scanned = staff.scan(anna)
    assert (scanned.outcome, scanned.earned, scanned.balance, scanned.amount) == ("stamped", 230, 230, "23.50")
    assert [v.detail["amount"] for v in visits(staff, anna)] == ["23.50"]
    staff.clock.advance(10)
    assert staff.scan(anna).outcome == AMOUNT_REQUIRED  # the amount was used once


def test_scan_first_then_the_amount_credits_that_visit(staff):
    anna = staff.member("Anna")
    assert staff.scan(anna).outcome == AMOUNT_REQUIRED
    assert visits(staff, anna) == []
    staff.clock.advance(20)
    credited = staff.kiosk.enter_amount(Decimal("47.00"))
    assert (credited.outcome, credited.member, credited.earned) == ("stamped", anna.member, 470 + 20)  # spend bonus
    assert credited.event_ids and staff.balance(anna) == 490
    again = staff.kiosk.enter_amount(Decimal("5"))  # the next amount is not hers again: it waits for a scan
    assert again.outcome == AMOUNT_PENDING and staff.balance(anna) == 490


def test_an_amount_held_too_long_is_dropped(staff):
    anna = staff.member("Anna")
    staff.kiosk.enter_amount(Decimal("10"))
    staff.clock.advance(31)  # counter_seconds is 30
    assert staff.scan(anna).outcome == AMOUNT_REQUIRED


def test_a_scan_without_amount_waits_only_counter_seconds(staff):
    anna = staff.member("Anna")
    staff.scan(anna)
    staff.clock.advance(31)
    assert staff.kiosk.enter_amount(Decimal("10")).outcome == AMOUNT_PENDING
    assert staff.balance(anna) == 0


def test_the_last_customer_to_scan_gets_the_amount(staff):
    anna, ben = staff.member("Anna"), staff.member("Ben")
    staff.scan(anna)
    staff.scan(ben)
    assert staff.kiosk.enter_amount(Decimal("12.90")).member == ben.member
    assert (staff.balance(anna), staff.balance(ben)) == (0, 120)  # whole euros


def test_a_rejected_code_does_not_take_the_amount(staff):
    anna = staff.member("Anna")
    staff.kiosk.enter_amount(Decimal("20"))
    assert staff.kiosk.handle_codes("camera", [b"not a pass"], 0.0, 0.0).outcome == "rejected"
    assert staff.scan(anna).earned == 200


def test_a_new_amount_replaces_the_held_one_and_clear_drops_it(staff):
    anna = staff.member("Anna")
    staff.kiosk.enter_amount(Decimal("99"))
    staff.kiosk.enter_amount(Decimal("9"))  # a typo corrected
    assert staff.scan(anna).earned == 90
    staff.clock.advance(5)
    staff.kiosk.enter_amount(Decimal("50"))
    staff.kiosk.cancel_amount()
    assert staff.scan(anna).outcome == AMOUNT_REQUIRED


@pytest.mark.parametrize("amount", [Decimal("-1"), Decimal("100001"), Decimal("NaN")])
def test_amounts_out_of_range_are_refused(staff, amount):
    with pytest.raises(ValueError, match="between 0 and"):
        staff.kiosk.enter_amount(amount)
    assert staff.kiosk.session.pending_amount() is None


def test_undo_takes_a_stamp_back_with_an_adjust_entry(staff):
    anna = staff.member("Anna")
    staff.kiosk.enter_amount(Decimal("23.50"))
    stamped = staff.scan(anna)
    staff.clock.advance(59)
    undone = staff.kiosk.undo()
    assert (undone.outcome, undone.member, undone.balance, undone.earned) == (UNDONE, anna.member, 0, -230)
    events = staff.kiosk.ledger.events(anna.member)
    visit = next(e for e in events if e.kind == VISIT)
    adjust = events[-1]
    assert (adjust.kind, adjust.delta, adjust.rule) == (ADJUST, -230, UNDO_RULE)
    assert adjust.detail == {"by": "staff", "note": f"undo visit {visit.event_id}", "cause": visit.detail["cause"]}
    assert len(events) == len(stamped.event_ids) + 1  # nothing deleted: the stamp and its undo
    check_detail(adjust.kind, adjust.rule, adjust.detail)  # what the hub's ingest checks
    again = staff.kiosk.undo()
    assert (again.outcome, again.reason) == (NOTHING_TO_UNDO, "the last stamp was undone already")
    assert staff.balance(anna) == 0


def test_undo_after_sixty_seconds_is_refused(staff):
    anna = staff.member("Anna")
    staff.kiosk.enter_amount(Decimal("23.50"))
    staff.scan(anna)
    staff.clock.advance(61)
    refused = staff.kiosk.undo()
    assert refused.outcome == NOTHING_TO_UNDO and "older than 60 s" in refused.reason
    assert staff.balance(anna) == 230


def test_undo_gives_a_redemption_back(staff):
    anna = staff.member("Anna")
    staff.kiosk.enter_amount(Decimal("52"))
    assert staff.scan(anna).outcome == "reward_ready"  # 520 + 20 bonus
    staff.clock.advance(5)
    redeemed = staff.kiosk.press_button()
    assert (redeemed.outcome, redeemed.balance) == ("redeemed", 40)
    staff.clock.advance(30)
    undone = staff.kiosk.undo()
    assert (undone.outcome, undone.balance, undone.earned) == (UNDONE, 540, 500)
    assert staff.kiosk.ledger.events(anna.member)[-1].detail["note"].startswith("undo redeem ")
    staff.clock.advance(5)
    assert staff.kiosk.press_button().outcome == "redeemed"  # the voucher is ready again


def test_nothing_to_undo_on_a_new_kiosk_or_after_a_restart(staff):
    assert staff.kiosk.undo().reason == "there is no stamp or redemption to undo"
    anna = staff.member("Anna")
    staff.kiosk.enter_amount(Decimal("1"))
    staff.scan(anna)
    staff.kiosk.boot = "another-boot"  # the monotonic clock of the stamp's boot cannot be compared
    assert "older than" in staff.kiosk.undo().reason


def test_a_repeated_receipt_is_credited_once(staff):
    anna = staff.member("Anna")
    staff.scan(anna)
    first = staff.kiosk.purchase(Decimal("30"), "R-1001")
    assert (first.outcome, first.earned) == ("stamped", 300)
    staff.clock.advance(2)
    staff.scan(anna)  # she scans again: a new visit waits for its amount
    repeat = staff.kiosk.purchase(Decimal("30"), "R-1001")  # the till retries the first sale
    assert (repeat.outcome, repeat.event_ids) == (REPEATED_RECEIPT, [])
    assert staff.balance(anna) == 300 and len(visits(staff, anna)) == 1
    assert staff.kiosk.ledger.receipt("R-1001") | {"received_at": None} == {
        "receipt_id": "R-1001", "amount": "30", "received_at": None, "member": anna.member, "outcome": "stamped"}


def test_a_receipt_held_for_the_scan_is_settled_by_it(staff):
    anna = staff.member("Anna")
    assert staff.kiosk.purchase(Decimal("8.80"), "R-7").outcome == AMOUNT_PENDING
    assert staff.kiosk.ledger.receipt("R-7")["outcome"] is None
    assert staff.scan(anna).earned == 80
    assert staff.kiosk.ledger.receipt("R-7")["member"] == anna.member
    assert staff.kiosk.purchase(Decimal("8.80"), "R-7").outcome == REPEATED_RECEIPT
    assert staff.balance(anna) == 80


def test_receipts_survive_a_restart(staff, kiosk_dir, clock, hub):
    from staffsite import make_site

    staff.kiosk.purchase(Decimal("5"), "R-9")
    staff.kiosk.close()
    again = make_site(kiosk_dir, clock, hub)
    try:
        assert again.kiosk.purchase(Decimal("5"), "R-9").outcome == REPEATED_RECEIPT
    finally:
        again.kiosk.close()


def test_a_failed_write_frees_the_receipt_for_a_retry(staff, monkeypatch):
    anna = staff.member("Anna")
    staff.scan(anna)
    append = staff.kiosk.ledger.append

    def full_disk(*args, **kwargs):
        raise LedgerError("could not write to the ledger: database or disk is full")

    monkeypatch.setattr(staff.kiosk.ledger, "append", full_disk)
    assert staff.kiosk.purchase(Decimal("30"), "R-5").outcome == OUT_OF_ORDER
    assert staff.kiosk.ledger.receipt("R-5") is None
    monkeypatch.setattr(staff.kiosk.ledger, "append", append)
    staff.clock.advance(1)
    staff.scan(anna)
    assert staff.kiosk.purchase(Decimal("30"), "R-5").earned == 300


def test_every_result_is_kept_for_the_staff_screen(staff):
    anna = staff.member("Anna")
    staff.kiosk.enter_amount(Decimal("3"))
    staff.scan(anna)
    staff.kiosk.press_button()
    staff.kiosk.undo()
    assert [r.result.outcome for r in staff.kiosk.recent] == [AMOUNT_PENDING, "stamped", "nothing_to_redeem", UNDONE]
