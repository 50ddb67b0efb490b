"""``POST /api/v1/purchase``: a till sends the amount of a sale, as staff would type it.

``{"amount": "23.50", "receipt_id": "R-1001"}`` with ``Authorization: Bearer <token>`` (its
SHA-256 is ``[staff] pos_token_sha256``). The amount meets the customer's scan in the
counter session exactly as the keypad's does (``Kiosk.purchase``); a ``receipt_id`` seen
before credits nothing and answers what the first one did, so a till may retry freely.

Answers: 200 ``status`` "credited" (the customer had scanned: the result of the visit),
"pending" (held for the customer's scan) or "repeated"; 400 for a malformed body; 401
without the token; 404 when no token is configured; 409 for a receipt id reused with
another amount; 503 while the ledger cannot be written.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from flask import Blueprint, jsonify, request

from kiosk import app as outcomes
from kiosk.common.errors import LedgerError
from kiosk.web import context
from kiosk.web.auth import bearer_ok

bp = Blueprint("pos", __name__, url_prefix="/api/v1")

RECEIPT = re.compile(r"[\x21-\x7e]{1,64}")  # printable ASCII, no spaces: what tills print


def _error(status: int, message: str):
    return jsonify({"error": message}), status


@bp.route("/purchase", methods=["POST"])
def purchase():
    staff = context.staff()
    expected = staff.settings.pos_token_sha256
    if expected is None:
        return _error(404, "the POS API is off: set [staff] pos_token_sha256 in kiosk.toml")
    if not bearer_ok(expected, request.headers.get("Authorization", "")):
        return _error(401, "a valid POS token is required (Authorization: Bearer ...)")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error(400, 'send JSON: {"amount": "23.50", "receipt_id": "R-1001"}')
    receipt = body.get("receipt_id")
    if not isinstance(receipt, str) or not RECEIPT.fullmatch(receipt):
        return _error(400, "receipt_id is 1-64 printable characters without spaces")
    try:
        amount = _amount(body.get("amount"))
        kiosk = staff.kiosk
        with kiosk.lock:  # the check for another amount and the purchase see the same receipt
            first = kiosk.ledger.receipt(receipt)
            if first is not None and Decimal(first["amount"]) != amount:
                return _error(409, f"receipt {receipt} was received before with amount {first['amount']}")
            result = kiosk.purchase(amount, receipt)
            recorded = kiosk.ledger.receipt(receipt) if result.outcome != outcomes.OUT_OF_ORDER else None
    except ValueError as exc:
        return _error(400, str(exc))
    except LedgerError as exc:
        return _error(503, f"the kiosk is out of order: {exc}")
    if result.outcome == outcomes.OUT_OF_ORDER:
        return _error(503, f"the kiosk is out of order: {result.reason}")
    status = {outcomes.REPEATED_RECEIPT: "repeated", outcomes.AMOUNT_PENDING: "pending"}.get(result.outcome,
                                                                                            "credited")
    return jsonify({"status": status, "receipt_id": receipt, "amount": str(amount), "outcome": result.outcome,
                    "member": result.member, "balance": result.balance, "earned": result.earned,
                    "unit": result.unit, "event_ids": result.event_ids, "receipt": recorded}), 200


def _amount(value) -> Decimal:
    """The amount as a JSON string or number (not a boolean); ValueError naming the form."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError('amount is a number or a decimal string, e.g. "23.50"')
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"amount {value!r} is not a number") from None
    if not amount.is_finite() or amount.as_tuple().exponent < -3:
        raise ValueError("amount has at most three decimals")
    return amount
