"""The pure loyalty engine: (member state, event, now, programme) → (ledger entries, feedback).

No I/O, no clock reads, no globals; the hub can run the same engine to explain a balance.
"""

from kiosk.rules.engine import Decision, Entry, Feedback, MemberState, Outcome, Redeem, Visit, evaluate, fold
from kiosk.rules.program import StampCard

__all__ = ["Decision", "Entry", "Feedback", "MemberState", "Outcome", "Redeem", "StampCard", "Visit", "evaluate", "fold"]
