"""The counter session: "this customer is at the counter now", for the staff button.

Kept on monotonic time (with the boot id), so a wall clock corrected by NTP neither
ends nor extends it; stored in the ledger file so a separate ``redeem`` process sees it.
"""

from __future__ import annotations

from kiosk.clock import Clock
from kiosk.ledger import Ledger


class CounterSession:
    def __init__(self, ledger: Ledger, clock: Clock, seconds: float, boot: str) -> None:
        self._ledger = ledger
        self._clock = clock
        self._seconds = seconds
        self._boot = boot

    def open(self, member: str) -> None:
        """Start (or restart) the session for *member*."""
        self._ledger.open_session(member, self._boot, self._clock.monotonic() + self._seconds)

    def member(self) -> str | None:
        """The member at the counter, or None when nobody is (expired, or another boot)."""
        row = self._ledger.session()
        if row is None:
            return None
        member, boot, expires = row
        if boot != self._boot or self._clock.monotonic() >= expires:
            return None
        return member
