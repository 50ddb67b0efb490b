"""The counter session: "this customer is at the counter now", for the staff button and the amount.

Kept on monotonic time (with the boot id), so a wall clock corrected by NTP neither
ends nor extends it; stored in the ledger file so a separate ``redeem`` process sees it.

A purchase amount typed on the staff screen (or sent by the till) meets the customer's scan
here, whichever comes first, within ``counter_seconds``:

- amount first: it is *held* (``hold_amount``) and the next verified scan *takes* it;
- scan first (a points programme answered ``amount_required``): the member is *awaiting* an
  amount (``await_amount``), and the next amount is credited to them (``take_awaiting``).

Both live in memory only: they belong to the running kiosk process (the staff screen and the
till talk to it), and a restart forgets them, so staff type the amount again rather than a
stale amount landing on the next customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from kiosk.clock import Clock
from kiosk.ledger import Ledger


@dataclass(frozen=True)
class PendingAmount:
    """An amount waiting for the customer's scan until ``expires`` (monotonic seconds);
    ``receipt`` is the till's receipt id when a POS sent it."""

    amount: Decimal
    expires: float
    receipt: str | None = None


@dataclass(frozen=True)
class Awaiting:
    """A member who scanned without an amount: the next amount is theirs until ``expires``."""

    member: str
    expires: float


class CounterSession:
    def __init__(self, ledger: Ledger, clock: Clock, seconds: float, boot: str) -> None:
        self._ledger = ledger
        self._clock = clock
        self._seconds = seconds
        self._boot = boot
        self._pending: PendingAmount | None = None
        self._awaiting: Awaiting | None = None

    @property
    def seconds(self) -> float:
        return self._seconds

    def open(self, member: str) -> None:
        """Start (or restart) the session for *member*."""
        self._ledger.open_session(*self.row(member))

    def row(self, member: str) -> tuple[str, str, float]:
        """The session row for *member* starting now: ``Ledger.append(..., session=row)`` writes
        it in the same transaction as the stamp."""
        return member, self._boot, self._clock.monotonic() + self._seconds

    def member(self) -> str | None:
        """The member at the counter, or None when nobody is (expired, or another boot)."""
        row = self._ledger.session()
        if row is None:
            return None
        member, boot, expires = row
        if boot != self._boot or self._clock.monotonic() >= expires:
            return None
        return member

    # -- the purchase amount (memory only, see the module's docstring) --
    def hold_amount(self, amount: Decimal, receipt: str | None = None) -> PendingAmount:
        """Hold *amount* for the next scan (replacing one held before: staff corrected a typo)."""
        self._pending = PendingAmount(amount, self._clock.monotonic() + self._seconds, receipt)
        self._awaiting = None
        return self._pending

    def pending_amount(self) -> PendingAmount | None:
        """The amount held for the next scan, if it has not expired (it stays held)."""
        if self._pending is not None and self._clock.monotonic() >= self._pending.expires:
            self._pending = None
        return self._pending

    def take_amount(self) -> PendingAmount | None:
        """The held amount, now used by a scan (so never by a second one)."""
        pending, self._pending = self.pending_amount(), None
        return pending

    def cancel_amount(self) -> PendingAmount | None:
        """Drop the held amount (staff pressed "clear"); returns what was held."""
        return self.take_amount()

    def await_amount(self, member: str | None) -> None:
        """After a verified scan: *member* scanned without an amount (or None: the scan needed none)."""
        self._awaiting = None if member is None else Awaiting(member, self._clock.monotonic() + self._seconds)

    def awaiting(self) -> Awaiting | None:
        """The member still waiting for an amount, if any."""
        if self._awaiting is not None and self._clock.monotonic() >= self._awaiting.expires:
            self._awaiting = None
        return self._awaiting

    def take_awaiting(self) -> str | None:
        """The member waiting for an amount, now given one (so never credited twice)."""
        waiting, self._awaiting = self.awaiting(), None
        return waiting.member if waiting is not None else None
