"""What the win-back messages did: members who came back after one, against the held-out control group.

A *win-back* is one decision: a member and a lapse (the ``messages`` rows of all channels with
the trigger ``winback`` and the same lapse day, the first ten characters of ``occasion``, which
carries a channel suffix on channels other than e-mail). It is **messaged** when a row of it went
out — sent, bounced later, or unknown (lost between sending and marking) — from its first
``sent_at``: the control group holds members whose mail would have bounced too, so leaving the
bounced ones out would compare unlike groups. It is **held out** when its rows are ``control`` (from the
decision, ``created_at``; cloud/automations/winback.py). It **came back** when the member has a
credited visit (a ``visit`` entry) after that moment and less than ``WINDOW`` later.

Only win-backs whose window has closed by *now* count in the rates: one decided yesterday has
had no time to come back, and counting it would lower both rates by chance. Those still inside
their window are counted apart (``open``). Decisions planned but not sent (pending, suppressed,
failed) are in neither group.

One GROUP BY over the merchant's win-back rows, with an EXISTS per decision on
``hub_events_kind_member (merchant_id, kind, member_id, occurred_at)``. The window's end is
computed in SQL per decision: ``occurred_at + interval`` on PostgreSQL; on SQLite, which keeps
times as text, ``strftime`` writes it in the text form SQLAlchemy stores (to the millisecond).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from cloud.metrics.activity import utc
from cloud.models import HubEvent, Message

WINDOW = timedelta(days=14)
WINBACK, CONTROL, VISIT = "winback", "control", "visit"
WENT_OUT = ("sent", "bounced", "unknown")  # cloud/automations/outbox.py: SENT, BOUNCED, UNKNOWN
M, E = Message, HubEvent


@dataclass(frozen=True)
class Arm:
    """One group of win-backs: how many, and how many of them came back within the window."""

    members: int
    returned: int

    @property
    def rate(self) -> float | None:
        """The share that came back (0–1), or None for an empty group."""
        return self.returned / self.members if self.members else None


@dataclass(frozen=True)
class Lift:
    """Messaged against held out, over win-backs whose window has closed; ``open`` are still inside it."""

    messaged: Arm
    control: Arm
    open: int = 0
    window_days: int = WINDOW.days

    @property
    def difference(self) -> float | None:
        """Messaged rate − control rate (a share; × 100 for percentage points), or None."""
        if self.messaged.rate is None or self.control.rate is None:
            return None
        return self.messaged.rate - self.control.rate

    def sentence(self) -> str:
        """The lift in one plain sentence for the owner."""
        days, m, c = self.window_days, self.messaged, self.control
        if not m.members and not c.members:
            tail = f" ({self.open} still within their {days} days)" if self.open else ""
            return f"No win-back has had its {days} days yet{tail}: the lift shows once they have."
        first = f"Of {_n(m.members, 'member')} sent a win-back, {m.returned} came back within {days} days"
        first += f" ({_pct(m.rate)})" if m.members else ""
        if not c.members:
            return (f"{first}. No one was held out, so there is nothing to compare with: set "
                    "[automations] control_share (e.g. 0.1) to measure what the message adds.")
        diff = self.difference
        verdict = ("the message made no difference" if diff is None or abs(diff) < 0.005 else
                   f"{abs(diff) * 100:.0f} percentage points {'more' if diff > 0 else 'fewer'} came back "
                   "with the message")
        return (f"{first}; of {_n(c.members, 'member')} held out without a message, {c.returned} came back "
                f"({_pct(c.rate)}): {verdict}.")


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.0f} %"


def _window_end(conn: Connection, at: ColumnElement) -> ColumnElement:
    if conn.dialect.name == "postgresql":
        return at + WINDOW
    return func.strftime("%Y-%m-%d %H:%M:%f000", at, f"+{WINDOW.days} days")


def winback_lift(conn: Connection, merchant: str, now: datetime) -> Lift:
    """The lift of *merchant*'s win-backs as of *now* (see the module docstring)."""
    now = utc(now)
    control = func.max(case((M.status == CONTROL, 1), else_=0))
    at = func.min(case((M.status == CONTROL, M.created_at), else_=M.sent_at))
    decisions = (select(M.member_id.label("member"), control.label("control"), at.label("at"))
                 .where(M.merchant_id == merchant, M.trigger == WINBACK, M.status.in_((CONTROL, *WENT_OUT)))
                 .group_by(M.member_id, func.substr(M.occasion, 1, 10))
                 .subquery())
    came_back = exists().where(E.merchant_id == merchant, E.kind == VISIT, E.member_id == decisions.c.member,
                               E.occurred_at > decisions.c.at, E.occurred_at < _window_end(conn, decisions.c.at))
    closed = decisions.c.at <= now - WINDOW
    query = (select(decisions.c.control, func.count(case((closed, 1))),
                    func.count(case((and_(closed, came_back), 1))), func.count(case((~closed, 1))))
             .group_by(decisions.c.control))
    arms = {0: Arm(0, 0), 1: Arm(0, 0)}
    still = 0
    for is_control, members, returned, pending in conn.execute(query):
        arms[int(is_control)] = Arm(int(members), int(returned))
        still += int(pending)
    return Lift(arms[0], arms[1], still)
