"""The dashboard's reads of ``hub_events`` and ``members``: GROUP BY queries, never a fetch of raw events.

What each query costs on a merchant with a million events (bench/dashboard.py), and the index of
migration 0005 it rides on (all covering, so neither database visits the table):

* ``member_activity`` — one pass over the merchant's visits, one row per member, through
  ``hub_events_kind_member (merchant_id, kind, member_id, occurred_at)``, read in member order
  so the GROUP BY needs no sort. The grid of cohorts comes out of the same pass as a bit set
  of months per member, instead of a second join over a year of visits.
* ``balances`` — one pass over the merchant's events with a delta, through
  ``hub_events_member_time (merchant_id, member_id, occurred_at, delta)``.
* ``visits_per_day``, ``amounts``, ``reward_counts`` — ranges of one kind, through
  ``hub_events_kind_time (merchant_id, kind, occurred_at)``.

Times are compared in UTC (see activity.py): bounds are bound as UTC datetimes (SQLite stores
UTC text and compares it as text). Days are UTC calendar days — ``date()`` on SQLite,
``to_char`` of ``occurred_at AT TIME ZONE 'UTC'`` on PostgreSQL, so the server's TimeZone
setting cannot move a visit to another day — and months are found by comparison with UTC month
starts (``member_activity``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Float, and_, case, cast, distinct, func, literal, null, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from cloud.db import READ_ONLY
from cloud.metrics.activity import MemberActivity, Period, utc
from cloud.metrics.feedback import NpsComment
from cloud.metrics.formulas import Amounts, Scores
from cloud.models import HubEvent, Member, NpsAnswer

VISIT, REDEEM, EXPIRE = "visit", "redeem", "expire"
E = HubEvent


def _pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


@contextlib.contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One read transaction for every query of a dashboard, so its figures agree with each other
    while kiosks keep sending: REPEATABLE READ and read-only on PostgreSQL, with the transaction's
    TimeZone set to UTC (times come back in ``timezone.utc``, no conversion per row); on SQLite a
    deferred transaction (``READ_ONLY``): in WAL mode one snapshot that never blocks ingest."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        pg = _pg(conn)
        if pg:
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            if pg:
                conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
            yield conn


def day_of(conn: Connection, column: ColumnElement) -> ColumnElement[str]:
    """The UTC calendar day of *column* as ``YYYY-MM-DD``."""
    if _pg(conn):
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.date(column)


def member_activity(conn: Connection, merchant: str, period: Period,
                    month_starts: Sequence[datetime] = ()) -> list[MemberActivity]:
    """Per member with a visit before the period's end: first and last visit, visits overall, in the
    period and in the window before its start, and the months with a visit as a bit set: bit k
    for a visit in [month_starts[k], month_starts[k + 1]) (the last one up to the period's end).

    The month of a visit is found by comparing it with *month_starts* (a CASE, newest first),
    not by formatting it: strftime on SQLite costs more than the comparisons, and the same CASE
    runs on both databases.
    """
    at = E.occurred_at
    ladder = [(at < month_starts[0], null())] if month_starts else []
    ladder += [(at >= s, literal(1 << k, BigInteger)) for k, s in reversed(list(enumerate(month_starts)))]
    if not ladder:
        months = literal(0, BigInteger)
    elif _pg(conn):
        months = func.bit_or(case(*ladder))  # a plain aggregate: no sort per member, as DISTINCT needs
    else:
        months = func.sum(distinct(case(*ladder)))  # SQLite has no bit_or: the distinct bits summed
    query = (select(E.member_id, func.min(at), func.max(at), func.count(),
                    func.count(case((at >= period.start, 1))),
                    func.count(case((and_(at >= period.start - period.window, at < period.start), 1))),
                    months)
             .where(E.merchant_id == merchant, E.kind == VISIT, E.member_id.is_not(None), at < period.end)
             .group_by(E.member_id))
    return [MemberActivity(member, utc(first), utc(last), visits, in_period, in_start_window, int(bits or 0))
            for member, first, last, visits, in_period, in_start_window, bits in conn.execute(query)]


def balances(conn: Connection, merchant: str, end: datetime) -> dict[str, int]:
    """Each member's balance at *end*: the sum of every delta before it (members whose deltas net to
    0 are here with 0; members with no delta at all are not)."""
    query = (select(E.member_id, func.sum(E.delta))
             .where(E.merchant_id == merchant, E.member_id.is_not(None), E.delta != 0, E.occurred_at < end)
             .group_by(E.member_id))
    return {member: int(total) for member, total in conn.execute(query)}


def visits_per_day(conn: Connection, merchant: str, period: Period) -> dict[date, int]:
    """Visits per UTC day of the period (days without a visit are absent)."""
    day = day_of(conn, E.occurred_at)
    query = (select(day, func.count())
             .where(E.merchant_id == merchant, E.kind == VISIT, E.occurred_at >= period.start,
                    E.occurred_at < period.end)
             .group_by(day))
    return {date.fromisoformat(d): n for d, n in conn.execute(query)}


def amounts(conn: Connection, merchant: str, period: Period) -> Amounts:
    """The purchase amounts of the period's visits, summed exactly in cents (``detail.amount`` is a
    decimal string; a visit without one, or with 0 — a stamp card's default — is not counted)."""
    cents = cast(func.round(cast(E.detail["amount"].as_string(), Float) * 100), BigInteger)
    query = (select(func.sum(case((cents > 0, cents))), func.count(case((cents > 0, 1))))
             .where(E.merchant_id == merchant, E.kind == VISIT, E.occurred_at >= period.start,
                    E.occurred_at < period.end))
    total, visits = conn.execute(query).one()
    return Amounts(Decimal(int(total or 0)) / 100, visits)


def reward_counts(conn: Connection, merchant: str, end: datetime) -> tuple[int, int]:
    """(rewards redeemed, rewards expired unused) before *end*. An ``expire`` without a reward is a
    dormant balance expiring, not a reward."""
    redeemed = (select(func.count()).where(E.merchant_id == merchant, E.kind == REDEEM, E.occurred_at < end)
                .scalar_subquery())
    expired = (select(func.count()).where(E.merchant_id == merchant, E.kind == EXPIRE, E.reward.is_not(None),
                                          E.occurred_at < end).scalar_subquery())
    r, x = conn.execute(select(redeemed, expired)).one()
    return int(r), int(x)


def member_counts(conn: Connection, merchant: str, period: Period) -> tuple[int, int]:
    """(members enrolled before the end, of them enrolled in the period): the members table,
    so a member who joined on the web and never visited counts too."""
    total = (select(func.count()).where(Member.merchant_id == merchant, Member.created_at < period.end)
             .scalar_subquery())
    new = (select(func.count()).where(Member.merchant_id == merchant, Member.created_at >= period.start,
                                      Member.created_at < period.end).scalar_subquery())
    t, n = conn.execute(select(total, new)).one()
    return int(t), int(n)


def names(conn: Connection, merchant: str, member_ids: Collection[str]) -> dict[str, str]:
    """What to show for each of *member_ids*: the member's name, or the id for an erased member
    (and for an id with no ``members`` row)."""
    if not member_ids:
        return {}
    query = (select(Member.id, Member.name, Member.erased_at)
             .where(and_(Member.merchant_id == merchant, Member.id.in_(sorted(member_ids)))))
    shown = {m: m for m in member_ids}
    for member, name, erased_at in conn.execute(query):
        if erased_at is None and name:
            shown[member] = name
    return shown


# -- NPS answers (cloud/nps.py), through nps_answers_time (merchant_id, answered_at) -----------------
A = NpsAnswer
_GROUPS = (func.count(case((A.score >= 9, 1))), func.count(case((and_(A.score >= 7, A.score <= 8), 1))),
           func.count(case((A.score <= 6, 1))))


def nps_scores(conn: Connection, merchant: str, period: Period) -> Scores:
    """Promoters, passives and detractors among the answers given in the period."""
    query = select(*_GROUPS).where(A.merchant_id == merchant, A.answered_at >= period.start,
                                   A.answered_at < period.end)
    return Scores(*(int(n) for n in conn.execute(query).one()))


def nps_per_month(conn: Connection, merchant: str, month_starts: Sequence[datetime],
                  end: datetime) -> dict[int, Scores]:
    """The answers of each month of *month_starts* (the last up to *end*), keyed by the month's
    index; found by comparison with the month starts, as in ``member_activity``."""
    if not month_starts:
        return {}
    month = case(*[(A.answered_at >= s, literal(k)) for k, s in reversed(list(enumerate(month_starts)))])
    query = (select(month, *_GROUPS)
             .where(A.merchant_id == merchant, A.answered_at >= month_starts[0], A.answered_at < end)
             .group_by(month))
    return {int(k): Scores(int(p), int(q), int(d)) for k, p, q, d in conn.execute(query)}


def nps_comments(conn: Connection, merchant: str, period: Period, limit: int) -> list[NpsComment]:
    """The newest *limit* comments of the period with their scores; an erased member's comment
    (erasure clears them, but one written in between) comes without a name."""
    query = (select(A.member_id, Member.name, Member.erased_at, A.score, A.comment, A.answered_at)
             .join(Member, Member.id == A.member_id, isouter=True)
             .where(A.merchant_id == merchant, A.comment.is_not(None), A.answered_at >= period.start,
                    A.answered_at < period.end)
             .order_by(A.answered_at.desc(), A.id.desc())
             .limit(limit))
    return [NpsComment(member, name if erased_at is None and name else None, score, comment, utc(at))
            for member, name, erased_at, score, comment, at in conn.execute(query)]
