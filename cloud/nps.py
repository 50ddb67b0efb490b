"""The NPS question on the member's card (issue 11, item 4): when to ask, what an answer may
hold, and storing it once per member per quarter.

Why a quarter of the shop's time zone: "once per quarter" is what the owner reads on the
dashboard, and a member answering on New Year's Eve at 23:30 in Berlin answered in Q4 there,
whatever UTC says. The unique (merchant, member, quarter) row decides races between web
workers; nothing here checks first and inserts later.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.models import NpsAnswer
from kiosk.common.errors import StempelError

log = logging.getLogger(__name__)

MAX_COMMENT = 500
_SCORE = re.compile(r"(?:10|[0-9])")  # no sign, no spaces, no leading zero, no "7.0"

Reason = Literal["score", "comment", "answered", "not_asked", "left"]
Prompt = Literal["ask", "thanks"]


class NpsRefused(StempelError, ValueError):
    """An answer the hub does not take; ``reason`` picks the words the member sees."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def quarter_of(moment: datetime, zone: ZoneInfo) -> str:
    """``2026-Q4``: the quarter *moment* (aware) falls in at the shop (*zone*)."""
    local = moment.astimezone(zone)
    return f"{local.year}-Q{(local.month - 1) // 3 + 1}"


def parse_answer(score: str | None, comment: str | None) -> tuple[int, str | None]:
    """(score, comment or None) from the form's text; raises NpsRefused for a score that is not
    a whole number 0–10 written plainly, or a comment over MAX_COMMENT characters or holding
    control characters (line breaks are kept, as ``\\n``)."""
    if score is None or not _SCORE.fullmatch(score):
        raise NpsRefused("score", f"the score must be a whole number from 0 to 10, not {score!r}")
    text = (comment or "").replace("\r\n", "\n").strip()
    if len(text) > MAX_COMMENT:
        raise NpsRefused("comment", f"the comment has {len(text)} characters; at most {MAX_COMMENT}")
    if not all(line.isprintable() for line in text.split("\n")):
        raise NpsRefused("comment", "the comment holds control characters; write plain text")
    return int(score), text or None


def prompt(engine: Engine, merchant: str, member: str, visits: int, after_visits: int, now: datetime,
           zone: ZoneInfo) -> Prompt | None:
    """What the card shows: ``ask`` from the member's *after_visits*-th visit on, ``thanks`` once
    they answered this quarter, None before that."""
    if visits < after_visits:
        return None
    with Session(engine) as session:
        done = session.scalar(select(NpsAnswer.id).where(
            NpsAnswer.merchant_id == merchant, NpsAnswer.member_id == member,
            NpsAnswer.quarter == quarter_of(now, zone)))
    return "thanks" if done is not None else "ask"


def record(engine: Engine, merchant: str, member: str, score: int, comment: str | None, now: datetime,
           zone: ZoneInfo) -> str:
    """Store the answer; returns its quarter. Raises NpsRefused("answered") when the member
    already answered this quarter (the unique key decides, so two tabs cannot both count)."""
    quarter = quarter_of(now, zone)
    try:
        with Session(engine) as session, session.begin():
            session.add(NpsAnswer(merchant_id=merchant, member_id=member, score=score, comment=comment,
                                  quarter=quarter, answered_at=now))
    except IntegrityError as exc:
        raise NpsRefused("answered", f"member {member} already answered in {quarter}") from exc
    log.info("nps.answer", extra={"merchant": merchant, "quarter": quarter, "score": score})
    return quarter


def forget_comments(session: Session, merchant: str, member: str) -> None:
    """Erasure: the member's comments go (free text may name them), the scores stay so the
    NPS of past periods does not move. Runs in the caller's transaction."""
    session.execute(update(NpsAnswer).where(NpsAnswer.merchant_id == merchant, NpsAnswer.member_id == member)
                    .values(comment=None))
