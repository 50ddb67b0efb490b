"""A big, plausible ledger for the dashboard benchmark, made from a seed and written straight
into ``hub_events`` and ``members`` (bulk: ``executemany`` on SQLite, ``COPY`` on PostgreSQL).

Why not through ingest: a million events through MQTT would take minutes and measure ingest,
not the dashboard. The rows are what ingest would have stored for a café on the stamp card of
``examples/cafe.toml`` (10 stamps for a free coffee, a signup stamp, double stamps on Tuesdays):
each member joins at some time in the two years of history (more recently more often), visits at
their own pace (a log-normal mean interval) for their own lifetime (exponential), pays an amount
each visit, redeems some of the coffees they can afford, and some let one expire. A few owner
adjustments; the rest of the rows, up to the exact number asked for, are rejected scans.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg

MERCHANT = "bench-cafe"
KIOSKS = ("counter-1", "counter-2", "terrace")
REWARD, COST = "free-coffee", 10
END = datetime(2026, 11, 1, tzinfo=timezone.utc)  # the ledger's last day ends here
HISTORY = timedelta(days=730)
DAY = 86400.0

# hub_events columns written here, in this order (``id`` is the database's)
COLUMNS = ("event_id", "merchant_id", "kiosk_id", "ledger_id", "kiosk_seq", "hub_seq", "kind", "member_id", "delta",
           "rule", "reward", "reason", "detail", "occurred_at", "mono_ns", "boot_id", "received_at")


@dataclass(frozen=True)
class Shape:
    """How many rows, and how the members behave (tuned so members' own events are ~95 % of *events*)."""

    events: int = 1_000_000
    members: int = 50_000
    never_visit: float = 0.04           # joined, never scanned
    interval_days: float = 12.0         # median of the members' mean intervals between visits
    interval_sigma: float = 0.8
    lifetime_days: float = 85.0        # mean of the exponential lifetimes
    redeem_p: float = 0.5               # chance a member with a coffee to spend spends it at a visit
    expire_p: float = 0.6               # chance a member who leaves with a coffee saved lets it expire
    adjust_p: float = 0.004             # owner corrections per visit
    erased: float = 0.01                # members erased (name wiped)


@dataclass
class Ledger:
    """The generated rows: ``members`` as (id, name, created_at, erased_at), ``events`` as tuples in
    COLUMNS order with ``occurred_at`` an aware datetime, sorted by time and numbered."""

    members: list[tuple]
    events: list[tuple]

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.events:
            counts[e[6]] = counts.get(e[6], 0) + 1
        return counts


def generate(seed: int, shape: Shape = Shape()) -> Ledger:
    """The ledger for *seed*: the same seed gives the same rows (ids included)."""
    rng = random.Random(seed)
    raw: list[tuple] = []  # (epoch seconds, kind, member, delta, rule, reward, detail)
    members = []
    start = END.timestamp() - HISTORY.total_seconds()
    for i in range(shape.members):
        member = f"m{i:09d}"
        joined = start + HISTORY.total_seconds() * math.sqrt(rng.random())
        erased = END - timedelta(days=rng.random() * 30) if rng.random() < shape.erased else None
        members.append((member, "" if erased else f"Guest {i}", datetime.fromtimestamp(joined, timezone.utc), erased))
        if rng.random() < shape.never_visit:
            continue
        raw.extend(_member_events(rng, shape, member, joined))
    rejected = shape.events - len(raw)
    if rejected < 0:
        raise ValueError(f"the members made {len(raw):,} events, more than the {shape.events:,} asked for: "
                         "lower Shape.lifetime_days or raise Shape.interval_days")
    for _ in range(rejected):
        raw.append((start + HISTORY.total_seconds() * rng.random(), "scan_rejected",
                    f"m{rng.randrange(shape.members):09d}" if rng.random() < 0.5 else None, 0, None, None,
                    {"reason": "cooldown"}))
    raw.sort(key=lambda r: r[0])
    return Ledger(members, list(_numbered(rng, raw)))


def _member_events(rng: random.Random, shape: Shape, member: str, joined: float) -> Iterator[tuple]:
    mean = shape.interval_days * math.exp(rng.gauss(0, shape.interval_sigma)) * DAY
    leaves = joined + rng.expovariate(1 / (shape.lifetime_days * DAY))
    end = min(leaves, END.timestamp() - 1)
    t, balance, first = joined, 0, True
    spend = 3.5 + rng.random() * 6  # this member's usual basket
    while t < end:
        amount = Decimal(max(1.0, rng.gauss(spend, 1.5))).quantize(Decimal("0.01"))
        yield t, "visit", member, 0, "visit", None, {"amount": str(amount)}
        stamps = 2 if datetime.fromtimestamp(t, timezone.utc).weekday() == 1 else 1
        yield t + 0.001, "earn", member, stamps, "double-stamp-tuesday" if stamps == 2 else "per-visit", None, {}
        balance += stamps
        if first:
            yield t + 0.002, "bonus", member, 1, "signup", None, {}
            balance, first = balance + 1, False
        if balance >= COST and rng.random() < shape.redeem_p:
            yield t + 0.003, "redeem", member, -COST, f"reward:{REWARD}", REWARD, {}
            balance -= COST
        if rng.random() < shape.adjust_p:
            delta = rng.choice((-1, 1, 2))
            yield t + 60, "adjust", member, delta, "owner", None, {"by": "owner@bench-cafe"}
            balance += delta
        t += rng.expovariate(1 / mean)
    if balance >= COST and rng.random() < shape.expire_p and t + 30 * DAY < END.timestamp():
        yield t + 30 * DAY, "expire", member, -COST, f"reward-expiry:{REWARD}", REWARD, {}


def _numbered(rng: random.Random, raw: list[tuple]) -> Iterator[tuple]:
    """Rows in COLUMNS order: hub_seq in time order, each kiosk numbering its own events."""
    kiosk_seq = dict.fromkeys(KIOSKS, 0)
    for hub_seq, (t, kind, member, delta, rule, reward, detail) in enumerate(raw, start=1):
        kiosk = KIOSKS[int(member[1:]) % len(KIOSKS)] if member and kind != "adjust" else KIOSKS[0]
        kiosk_seq[kiosk] += 1
        at = datetime.fromtimestamp(t, timezone.utc)
        yield (str(uuid.UUID(int=rng.getrandbits(128), version=4)), MERCHANT, kiosk, "", kiosk_seq[kiosk], hub_seq,
               kind, member, delta, rule, reward, None, detail, at, int(t * 1e9) % (2 ** 62), "bench-boot",
               at + timedelta(seconds=1))


# -- writing -------------------------------------------------------------------------------
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's DATETIME storage format on SQLite


def write_sqlite(path: str, ledger: Ledger) -> None:
    """Append *ledger* to the hub database at *path* (schema made already), in one transaction."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA synchronous=OFF")
        with db:
            db.execute("INSERT INTO merchants (id, name, base_url, created_at) VALUES (?, ?, ?, ?)",
                       (MERCHANT, "Bench Café", "https://stempel.example", (END - HISTORY).strftime(_SQLITE_TIME)))
            db.executemany("INSERT INTO members (id, merchant_id, name, revoked, created_at, erased_at) "
                           "VALUES (?, ?, ?, 0, ?, ?)",
                           ((m, MERCHANT, name, at.strftime(_SQLITE_TIME), erased and erased.strftime(_SQLITE_TIME))
                            for m, name, at, erased in ledger.members))
            marks = ", ".join("?" * len(COLUMNS))
            db.executemany(f"INSERT INTO hub_events ({', '.join(COLUMNS)}) VALUES ({marks})",
                           (e[:12] + (json.dumps(e[12]), e[13].strftime(_SQLITE_TIME)) + e[14:16]
                            + (e[16].strftime(_SQLITE_TIME),) for e in ledger.events))
        db.execute("ANALYZE")
    finally:
        db.close()


def write_postgres(dsn: str, ledger: Ledger) -> None:
    """Append *ledger* to the hub database at *dsn* with COPY, then VACUUM ANALYZE (what autovacuum
    does on a running server; the test server runs with autovacuum off)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO merchants (id, name, base_url, created_at) VALUES (%s, %s, %s, %s)",
                     (MERCHANT, "Bench Café", "https://stempel.example", END - HISTORY))
        with conn.cursor() as cur:
            with cur.copy("COPY members (id, merchant_id, name, revoked, created_at, erased_at) FROM STDIN") as copy:
                for m, name, at, erased in ledger.members:
                    copy.write_row((m, MERCHANT, name, False, at, erased))
            with cur.copy(f"COPY hub_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for e in ledger.events:
                    copy.write_row(e[:12] + (json.dumps(e[12]),) + e[13:])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def query_plans(url: str, work: Callable, width: int = 200) -> list[str]:
    """Run *work(engine)* on a fresh engine for *url* and return each SELECT it sent with its plan:
    EXPLAIN QUERY PLAN on SQLite, EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL (the benches' --explain)."""
    from sqlalchemy import event

    from cloud.db import make_engine

    engine = make_engine(url)
    seen: list[tuple[str, object]] = []
    event.listen(engine, "before_cursor_execute", lambda c, cur, sql, params, ctx, many: seen.append((sql, params)))
    try:
        work(engine)
    finally:
        engine.dispose()
    statements = [(s, p) for s, p in seen if s.lstrip().upper().startswith("SELECT")]
    out = []
    if url.startswith("sqlite"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        for sql, params in statements:
            rows = db.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            out.append(" ".join(sql.split())[:width] + "\n    " + "\n    ".join(r[3] for r in rows))
        db.close()
        return out
    engine = make_engine(url)
    with engine.connect() as conn:
        for sql, params in statements:
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).all()
            out.append(" ".join(sql.split())[:width] + "\n    " + "\n    ".join(r[0] for r in rows))
    engine.dispose()
    return out
