"""Undo at the counter: the last stamp or redemption taken back by compensating ``adjust`` entries.

The ledger is append-only (triggers refuse UPDATE and DELETE, and the hub and the other
kiosks hold copies), so a mistake is undone the way a bookkeeper does it: a new entry that
moves the balance back. It reuses the ``adjust`` kind the owner's corrections at the hub use
(the hub already checks it, every kiosk already folds it), with ``by = "staff"`` and a note
naming the event undone, and the undone decision's cause, so a second undo of it is refused.

What an ``adjust`` does not take back: the visit itself still counts (visit number, cooldown,
tier window, daily cap, milestones, the hub's visit metrics). For a wrong scan that is the
honest record ("scanned, then taken back"); see the staff screen's report for the open part.

Pure functions of events: the kiosk (kiosk/app.py) reads the ledger, calls these and appends.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from kiosk.protocol.event import Event
from kiosk.rules.program import MAX_DELTA
from kiosk.rules.state import ADJUST, BONUS, EARN, REDEEM, VISIT, Entry

UNDO_SECONDS = 60.0
UNDO_RULE = "staff-undo"
UNDONE_KINDS = (VISIT, REDEEM)  # what staff can take back: a stamp (a credited visit) or a redemption
_MOVED_BY = (EARN, BONUS, REDEEM)  # the entries of that decision whose balance change is taken back


@dataclass(frozen=True)
class Candidate:
    """The last stamp or redemption of this kiosk and the entries its decision made."""

    target: Event                # the visit or redeem row
    group: tuple[Event, ...]     # every row with the same cause (the one decision), oldest first
    age: float | None            # seconds since it was committed; None if before this boot
    undone: bool                 # a staff undo of it is in the ledger already

    @property
    def cause(self) -> str:
        return self.target.detail.get("cause", "")

    @property
    def what(self) -> str:
        """"stamp" or "redemption", for staff."""
        return "stamp" if self.target.kind == VISIT else "redemption"

    def seconds_left(self, within: float = UNDO_SECONDS) -> float:
        """How long it can still be undone (0 when it cannot)."""
        if self.undone or self.age is None:
            return 0.0
        return max(0.0, within - self.age)

    def refusal(self, within: float = UNDO_SECONDS) -> str | None:
        """Why it cannot be undone now, in words for staff; None if it can."""
        if self.undone:
            return f"the last {self.what} was undone already"
        if self.seconds_left(within) <= 0:
            return f"the last {self.what} is older than {within:.0f} s; correct it at the hub"
        if not compensation(self):
            return f"the last {self.what} moved no balance"
        return None


def last_candidate(newest_first: Sequence[Event], boot: str, mono: float) -> Candidate | None:
    """The last visit or redemption among this kiosk's recent events (newest first), or None.

    Its age is measured on the monotonic clock of this boot (immune to NTP steps); an event of
    an earlier boot has no comparable time and is never undone here.
    """
    target = next((e for e in newest_first if e.kind in UNDONE_KINDS and e.member), None)
    if target is None:
        return None
    cause = target.detail.get("cause")
    group = tuple(reversed([e for e in newest_first if e.detail.get("cause") == cause and e.kind != ADJUST]))
    undone = any(e.kind == ADJUST and e.rule == UNDO_RULE and e.detail.get("cause") == cause for e in newest_first)
    age = mono - target.mono_ns / 1e9 if target.boot_id == boot else None
    return Candidate(target, group, None if age is None or age < 0 else age, undone)


def compensation(candidate: Candidate) -> list[Entry]:
    """The ``adjust`` entries that take the candidate's balance changes back, one per member
    (a referral bonus went to another member), each within an entry's bound."""
    moved: dict[str, int] = defaultdict(int)
    for event in candidate.group:
        if event.kind in _MOVED_BY and event.member:
            moved[event.member] += event.delta
    note = f"undo {candidate.target.kind} {candidate.target.event_id}"
    detail = {"by": "staff", "note": note}
    return [Entry(ADJUST, member, part, UNDO_RULE, candidate.cause, detail=detail)
            for member, delta in moved.items() if delta for part in _parts(-delta)]


def _parts(delta: int) -> list[int]:
    """*delta* in entries of at most MAX_DELTA each (the wire's bound on one entry)."""
    sign, left, out = (1 if delta > 0 else -1), abs(delta), []
    while left:
        out.append(sign * min(left, MAX_DELTA))
        left -= out[-1] * sign
    return out
