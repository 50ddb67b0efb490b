"""The ``messages`` table: every decision to message a member is a row, committed before sending.

Who commits what, when — each step is its own short transaction:

1. **record** (planner): ``INSERT ... ON CONFLICT DO NOTHING`` one ``pending`` row per due
   message. The key (merchant, member, trigger, occasion) is unique, so a duplicate means the
   decision was made already — by an earlier sweep or by another worker right now — and is
   skipped. Commit.
2. **claim**: ``pending`` rows whose ``not_before`` has come, and ``claimed`` rows whose lease ran
   out (the worker that claimed them stopped before it began sending them, so they were
   certainly not sent), become ``claimed`` by this worker with a lease, at most ``weekly_cap``
   per member counting what was claimed, sent or possibly sent in the last 7 days. On
   PostgreSQL the rows are taken ``FOR UPDATE SKIP LOCKED`` and the members' rows are locked
   (in id order) before counting, so two workers cannot both fill the same member's last slot;
   on SQLite the write transaction (``BEGIN IMMEDIATE``) serialises claims. The same
   transaction retires ``pending`` rows past ``expires_at`` (``suppressed``) and turns
   ``sending`` rows whose lease ran out into ``unknown``. Commit.
3. **begin**, per message: ``claimed`` → ``sending`` (attempts + 1, ``sent_at`` = now), only if
   this worker still holds it; in the same transaction the member is checked again (an
   unsubscribe since step 1 makes it ``suppressed``). Commit. From here the message may be out.
4. **send**: no transaction is open while the SMTP server talks.
5. **mark**: ``sending`` → ``sent``. Commit. If the channel knows it did *not* deliver (the
   connection failed before the message was handed over, a 4xx): back to ``pending`` with a
   backoff, ``failed`` after ``MAX_ATTEMPTS``; refused for good (5xx): ``failed``; lost in the
   middle: ``unknown``.
6. **bounce** (bounces.py, e-mail only): a delivery status notification that came back later
   turns ``sent`` or ``unknown`` into ``bounced`` with the report's status. Commit.

**Channels** share the table and its unique key without a schema change: a decision goes out
once per channel, and the channel is part of the key through the occasion — ``2027`` for the
e-mail (as before channels existed), ``2027@webhook`` for the webhook (``occasion_key``). The
``channel`` column says which channel sends the row; each channel claims only its own rows and
has its own weekly cap, so an SMTP server that is down holds back no webhook.

A crash between 4 and 5 leaves the row ``sending``. When its lease has run out the next claim
marks it ``unknown`` and nobody sends it again: the issue asks for *never twice*, so this is
at-most-once — a lost greeting costs the shop less than a duplicate, and ``unknown`` rows are
counted for the owner to see. The window is one message wide (rows are claimed in a batch but
begun one by one). Every transition names the status it expects and the worker that must hold
the row, so a slow worker whose lease was taken over changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import Connection, Engine

from cloud.automations.triggers import Due
from cloud.db import READ_ONLY
from cloud.events.sql import Dialect
from cloud.metrics.activity import utc
from cloud.models import Member, Message

PENDING, CLAIMED, SENDING, SENT = "pending", "claimed", "sending", "sent"
FAILED, SUPPRESSED, UNKNOWN = "failed", "suppressed", "unknown"
CONTROL = "control"  # held out (winback.py): recorded like a send, never claimed, never sent
BOUNCED = "bounced"  # sent (or unknown), then returned by the member's mail system (bounces.py)
WEEK = timedelta(days=7)
MAX_ATTEMPTS = 5
BACKOFF = timedelta(minutes=10)  # doubled per attempt
M = Message
EMAIL = "email"
OCCASION_MAX = 32  # the column's width


def occasion_key(occasion: str, channel: str) -> str:
    """The ``occasion`` column of *channel*'s row: the occasion itself for e-mail, else
    ``<occasion>@<channel>`` (the unique key then holds one row per channel). Raises ValueError
    for a key wider than the column."""
    key = occasion if channel == EMAIL else f"{occasion}@{channel}"
    if len(key) > OCCASION_MAX or "@" in occasion:
        raise ValueError(f"occasion {occasion!r} of channel {channel!r} does not fit the messages' key")
    return key


def occasion_of(key: str) -> str:
    """The occasion a row's ``occasion`` column holds, without its channel."""
    return key.partition("@")[0]


def record(conn: Connection, merchant: str, dues: Iterable[Due], now: datetime, channel: str = EMAIL,
           status: str = PENDING) -> int:
    """Insert a row of *channel* per due message not decided before, ``pending`` (or ``control``:
    held out, the decision kept as durably as a send); how many were new."""
    now = utc(now)
    rows = [{"merchant_id": merchant, "member_id": d.member_id, "trigger": d.trigger,
             "occasion": occasion_key(d.occasion, channel), "channel": channel, "status": status, "attempts": 0,
             "created_at": now, "not_before": now, "expires_at": utc(d.expires_at)} for d in dues]
    if not rows:
        return 0
    # One statement with the rows as parameters (executemany): SQLAlchemy compiles it once and sends
    # it in pages of multi-row VALUES ("insertmanyvalues"); a statement built with .values(rows)
    # is compiled anew for every chunk, which cost 7 of a 9 s sweep of 37,000 rows (bench/automations.py).
    statement = (Dialect(conn.engine).upsert(M.__table__)
                 .on_conflict_do_nothing(index_elements=["merchant_id", "member_id", "trigger", "occasion"])
                 .returning(M.id))
    return len(conn.execute(statement, rows).all())


def claim(conn: Connection, merchant: str, worker: str, now: datetime, lease: timedelta, weekly_cap: int,
          limit: int = 100, channel: str = EMAIL) -> list[int]:
    """Claim up to *limit* due messages of *merchant* and *channel* for *worker* (see the module
    docstring); returns their ids, oldest decision first. Members over the channel's weekly cap
    keep theirs pending."""
    now = utc(now)
    pg = Dialect(conn.engine).pg
    _retire(conn, merchant, now)
    free = or_(and_(M.status == PENDING, M.not_before <= now), and_(M.status == CLAIMED, M.claimed_until < now))
    due = (select(M.id, M.member_id).where(M.merchant_id == merchant, M.channel == channel, free)
           .order_by(M.created_at, M.id).limit(limit))
    if pg:
        due = due.with_for_update(skip_locked=True)
    rows = conn.execute(due).all()
    if not rows:
        return []
    members = sorted({member for _, member in rows})
    if pg:  # the cap's count below must see every other claim of these members
        conn.execute(select(Member.id).where(Member.id.in_(members)).order_by(Member.id).with_for_update())
    taken = dict(conn.execute(
        select(M.member_id, func.count()).where(
            M.member_id.in_(members), M.channel == channel,
            or_(and_(M.status == CLAIMED, M.claimed_until >= now),
                and_(M.status.in_((SENDING, SENT, UNKNOWN)), M.sent_at > now - WEEK)))
        .group_by(M.member_id)).all())
    chosen = []
    for message_id, member in rows:
        if taken.get(member, 0) < weekly_cap:
            taken[member] = taken.get(member, 0) + 1
            chosen.append(message_id)
    if not chosen:
        return []
    claimed = conn.execute(update(M).where(M.id.in_(chosen), free)
                           .values(status=CLAIMED, claimed_by=worker, claimed_until=now + lease)
                           .returning(M.id)).scalars().all()
    return sorted(claimed, key=chosen.index)


def _retire(conn: Connection, merchant: str, now: datetime) -> None:
    """Unsent rows past their day are suppressed; rows left ``sending`` by a stopped worker are unknown."""
    conn.execute(update(M).where(M.merchant_id == merchant, M.expires_at <= now,
                                 or_(M.status == PENDING, and_(M.status == CLAIMED, M.claimed_until < now)))
                 .values(status=SUPPRESSED, claimed_by=None, claimed_until=None,
                         last_error="expired unsent (quiet hours, the weekly cap or retries held it past its day)"))
    conn.execute(update(M).where(M.merchant_id == merchant, M.status == SENDING, M.claimed_until < now)
                 .values(status=UNKNOWN, claimed_until=None,
                         last_error="the worker stopped between sending and marking it sent; not sent again"))


def begin(conn: Connection, message_id: int, worker: str, now: datetime, lease: timedelta) -> Message | None:
    """``claimed`` → ``sending`` if *worker* still holds it; the row, or None (taken over)."""
    now = utc(now)
    done = conn.execute(update(M).where(M.id == message_id, M.status == CLAIMED, M.claimed_by == worker)
                        .values(status=SENDING, attempts=M.attempts + 1, sent_at=now, claimed_until=now + lease))
    if done.rowcount != 1:
        return None
    return conn.execute(select(M).where(M.id == message_id)).one()


def _finish(conn: Connection, message_id: int, worker: str, expect: Sequence[str], **values) -> bool:
    done = conn.execute(update(M).where(M.id == message_id, M.claimed_by == worker, M.status.in_(expect))
                        .values(**values))
    return done.rowcount == 1


def sent(conn: Connection, message_id: int, worker: str, now: datetime) -> bool:
    """``sending`` (or ``unknown``, if the lease ran out meanwhile) → ``sent``."""
    return _finish(conn, message_id, worker, (SENDING, UNKNOWN), status=SENT, sent_at=utc(now), claimed_until=None,
                   last_error=None)


def suppress(conn: Connection, message_id: int, worker: str, why: str) -> bool:
    return _finish(conn, message_id, worker, (SENDING,), status=SUPPRESSED, sent_at=None, claimed_until=None,
                   last_error=why[:500])


def retry(conn: Connection, message: Message, worker: str, now: datetime, why: str) -> bool:
    """Not delivered, and the channel is sure of it: pending again after a backoff, or failed
    after MAX_ATTEMPTS."""
    if message.attempts >= MAX_ATTEMPTS:
        return failed(conn, message.id, worker, f"gave up after {message.attempts} attempts: {why}")
    wait = BACKOFF * 2 ** (message.attempts - 1)
    return _finish(conn, message.id, worker, (SENDING,), status=PENDING, sent_at=None, claimed_by=None,
                   claimed_until=None, not_before=utc(now) + wait, last_error=why[:500])


def failed(conn: Connection, message_id: int, worker: str, why: str) -> bool:
    return _finish(conn, message_id, worker, (SENDING,), status=FAILED, sent_at=None, claimed_until=None,
                   last_error=why[:500])


def uncertain(conn: Connection, message_id: int, worker: str, why: str) -> bool:
    return _finish(conn, message_id, worker, (SENDING,), status=UNKNOWN, claimed_until=None, last_error=why[:500])


def release(conn: Connection, ids: Sequence[int], worker: str) -> None:
    """Give back claimed rows not begun (the channel is down): pending again, no attempt spent."""
    if ids:
        conn.execute(update(M).where(M.id.in_(list(ids)), M.status == CLAIMED, M.claimed_by == worker)
                     .values(status=PENDING, claimed_by=None, claimed_until=None))


def counts(engine: Engine, merchant: str) -> dict[tuple[str, str], int]:
    """Messages per (trigger, status) of *merchant*: what the owner's page and the CLI show."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        rows = conn.execute(select(M.trigger, M.status, func.count()).where(M.merchant_id == merchant)
                            .group_by(M.trigger, M.status))
        return {(trigger, status): n for trigger, status, n in rows}


def channel_counts(engine: Engine, merchant: str) -> dict[tuple[str, str], int]:
    """Messages per (channel, status) of *merchant*: failed webhooks and refused e-mails apart."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        rows = conn.execute(select(M.channel, M.status, func.count()).where(M.merchant_id == merchant)
                            .group_by(M.channel, M.status))
        return {(channel, status): n for channel, status, n in rows}


@dataclass(frozen=True)
class Failure:
    """A message that did not arrive, and why (``last_error``: the SMTP reply, the webhook's status)."""

    id: int
    member_id: str
    trigger: str
    occasion: str
    channel: str
    status: str
    attempts: int
    reason: str
    created_at: datetime


def failures(engine: Engine, merchant: str, limit: int = 50) -> list[Failure]:
    """*merchant*'s newest ``failed`` and ``unknown`` messages with their reasons, for the owner."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        rows = conn.execute(select(M.id, M.member_id, M.trigger, M.occasion, M.channel, M.status, M.attempts,
                                   M.last_error, M.created_at)
                            .where(M.merchant_id == merchant, M.status.in_((FAILED, UNKNOWN)))
                            .order_by(M.id.desc()).limit(limit))
        return [Failure(i, member, trigger, occasion_of(occasion), channel, status, attempts, why or "",
                        utc(created))
                for i, member, trigger, occasion, channel, status, attempts, why, created in rows]
