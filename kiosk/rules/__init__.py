"""The pure loyalty engine: (member state, event, now, programme) → (ledger entries, feedback).

No I/O, no clock reads, no globals; the hub can run the same engine to explain a balance.
Modules: ``program`` (the validated schema), ``state`` (entries and folding),
``engine`` (the decisions), ``calendar`` (time-zone arithmetic), ``simulate`` (CSV runs).
"""

from kiosk.rules.engine import Decision, Feedback, Outcome, Redeem, Visit, evaluate, ready_rewards
from kiosk.rules.program import Program, load_program, parse_program
from kiosk.rules.state import Entry, MemberState, apply, fold

__all__ = ["Decision", "Entry", "Feedback", "MemberState", "Outcome", "Program", "Redeem", "Visit",
           "apply", "evaluate", "fold", "load_program", "parse_program", "ready_rewards"]
