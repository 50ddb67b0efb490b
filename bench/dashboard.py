"""Benchmark the owner dashboard: ``cloud.metrics.dashboard.dashboard()`` on a merchant with a
million ledger events and 50,000 members, on SQLite and on PostgreSQL.

Why: the dashboard computes every figure from the ledger at request time (no summary tables);
this says whether that stays interactive on a busy café's history. Target: under 1 s warm
(p95 of the repeated calls) on this 2-core machine, for the last 30 and the last 90 days.

The ledger (bench/ledgerload.py) is made from a seed and bulk-written into a fresh hub database
at the current schema (migration 0005's indexes included); PostgreSQL gets ``VACUUM ANALYZE``
afterwards, as autovacuum would. Then, per period:

* **cold** — the first call on a new engine: a new connection, SQLite's page cache and
  PostgreSQL's plan and catalog caches empty. The operating system's file cache is warm (the
  database was just written), so this is a process restart, not a machine reboot.
* **warm** — 5 more calls on the same engine: p50 and p95. ``sql`` is the share spent reading
  (``read_ms`` of the ``metrics.dashboard`` log record), the rest is Python.

Exits 1 naming a missed target.

    .venv/bin/python bench/dashboard.py [--backend sqlite|postgresql] [--events N] [--members N]
                                        [--runs 5] [--explain] [--json]
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import platform
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import click
import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ledgerload import END, MERCHANT, Shape, generate, query_plans, write_postgres, write_sqlite  # noqa: E402
from cloud.db import make_engine, open_store  # noqa: E402
from cloud.metrics.dashboard import Dashboard, dashboard  # noqa: E402
from kiosk.rules import load_program  # noqa: E402
from tests.postgres import session_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGET_WARM_S = 1.0
PERIODS = (30, 90)


# -- databases -----------------------------------------------------------------------------
@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """(SQLAlchemy URL, what the loader needs: a file path or a libpq DSN) of a new hub database
    at the current schema, removed afterwards."""
    if backend == "sqlite":
        path = workdir / "hub.sqlite3"
        open_store(f"sqlite:///{path}").dispose()
        yield f"sqlite:///{path}", str(path)
        return
    name = f"stempel_bench_dashboard_{os.getpid()}_{secrets.token_hex(3)}"
    with session_server() as server:  # STEMPEL_TEST_PG, else 127.0.0.1:5432, else a private cluster
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            open_store(server.url(name)).dispose()
            yield server.url(name), server.dsn(name)
        finally:
            with psycopg.connect(server.dsn(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ReadTimes(logging.Handler):
    """Keeps ``read_ms`` of each ``metrics.dashboard`` record (the time spent in SQL)."""

    def __init__(self) -> None:
        super().__init__()
        self.read_ms: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "metrics.dashboard":
            self.read_ms.append(record.read_ms)


# -- the run -------------------------------------------------------------------------------
def run(backends: list[str], seed: int, shape: Shape, program, runs: int, explain: bool) -> tuple[dict, list[dict]]:
    """Load the ledger into every backend, then measure each. The ledger's million Python objects
    are freed before measuring: left alive, every full collection of the garbage collector walks
    them, and a dashboard call that triggers one takes half a second longer — a cost of this
    process, not of the dashboard."""
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp, contextlib.ExitStack() as stack:
        t0 = time.perf_counter()
        ledger = generate(seed, shape)
        info = {"generated_s": round(time.perf_counter() - t0, 1), "kinds": ledger.kinds()}
        loaded = {}
        for backend in backends:
            url, target = stack.enter_context(database(backend, Path(tmp)))
            t0 = time.perf_counter()
            (write_sqlite if backend == "sqlite" else write_postgres)(target, ledger)
            loaded[backend] = (url, round(time.perf_counter() - t0, 1), _size(backend, target))
        del ledger
        gc.collect()
        results = []
        for backend, (url, load_s, size) in loaded.items():
            periods = {days: measure(url, days, program, runs) for days in PERIODS}
            results.append({"backend": backend, "load_s": load_s, "db_mb": size, "periods": periods,
                            "plans": explain_plans(url, program) if explain else None})
    return info, results


def measure(url: str, days: int, program, runs: int) -> dict:
    handler = ReadTimes()
    logger = logging.getLogger("cloud.metrics.dashboard")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    engine = make_engine(url)
    start, end = END - timedelta(days=days), END
    try:
        t0 = time.perf_counter()
        board = dashboard(engine, MERCHANT, start, end, program=program)
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(runs):
            t0 = time.perf_counter()
            dashboard(engine, MERCHANT, start, end, program=program)
            warm.append(time.perf_counter() - t0)
    finally:
        engine.dispose()
        logger.removeHandler(handler)
    ms = np.array(warm) * 1000
    return {"cold_ms": round(cold * 1000, 1), "warm_p50_ms": round(float(np.percentile(ms, 50)), 1),
            "warm_p95_ms": round(float(np.percentile(ms, 95)), 1),
            "warm_sql_p50_ms": round(float(np.percentile(handler.read_ms[1:], 50)), 1),
            "load_1min": round(os.getloadavg()[0], 2), "figures": _figures(board), "sizes": _sizes(board)}


def explain_plans(url: str, program) -> list[str]:
    """The plan of every statement of a 30-day dashboard: EXPLAIN QUERY PLAN on SQLite, EXPLAIN
    ANALYZE on PostgreSQL."""
    return query_plans(url, lambda engine: dashboard(engine, MERCHANT, END - timedelta(days=30), END, program=program),
                       width=160)


def _size(backend: str, target: str) -> float:
    if backend == "sqlite":
        return round(Path(target).stat().st_size / 2 ** 20, 1)
    with psycopg.connect(target) as conn:
        return round(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2 ** 20, 1)


def _figures(board: Dashboard) -> dict:
    def shown(f) -> str:
        if f.value is None:
            return f"– ({f.note})"
        return f"{f.value:.2f}" if isinstance(f.value, float) else str(f.value)
    return {f.key: shown(f) + (" %" if f.unit == "%" and f.value is not None else "") for f in board.figures}


def _sizes(board: Dashboard) -> dict:
    return {"series_days": len(board.series[0].points), "cohort_rows": len(board.cohorts.rows),
            "at_risk": len(board.at_risk), "top_members": len(board.top_members),
            "close_to_reward": len(board.close_to_reward)}


# -- report --------------------------------------------------------------------------------
def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "platform": platform.platform()}


def table(results: list[dict], kinds: dict[str, int], shape: Shape, runs: int) -> str:
    lines = [f"dashboard: {shape.events:,} events ({', '.join(f'{k} {n:,}' for k, n in sorted(kinds.items()))}), "
             f"{shape.members:,} members; warm = {runs} calls after the cold one", "",
             "| backend | period | cold ms | warm p50 ms | warm p95 ms | of which SQL (p50) ms | load 1 min |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for days, p in r["periods"].items():
            lines.append(f"| {r['backend']} | {days} days | {p['cold_ms']} | {p['warm_p50_ms']} | {p['warm_p95_ms']} "
                         f"| {p['warm_sql_p50_ms']} | {p['load_1min']} |")
    lines += ["", "| backend | bulk load s | database MB |", "|---|---:|---:|"]
    lines += [f"| {r['backend']} | {r['load_s']} | {r['db_mb']} |" for r in results]
    first = results[0]["periods"]
    lines += ["", f"figures ({results[0]['backend']}):", "", "| figure | " + " | ".join(f"{d} days" for d in first)
              + " |", "|---|" + "---:|" * len(first)]
    for key in first[PERIODS[0]]["figures"]:
        lines.append(f"| {key} | " + " | ".join(p["figures"][key] for p in first.values()) + " |")
    lines.append("lists and series: " + "; ".join(f"{d} days {p['sizes']}" for d, p in first.items()))
    same = all(r["periods"][d]["figures"] == first[d]["figures"] for r in results for d in PERIODS)
    lines.append("the backends agree on every figure" if same else "THE BACKENDS DISAGREE (see --json)")
    for r in results:
        for plan in r["plans"] or []:
            lines += ["", f"{r['backend']}: {plan}"]
    return "\n".join(lines)


def missed_targets(results: list[dict]) -> list[str]:
    missed = [f"{r['backend']} {days} days: warm p95 {p['warm_p95_ms']} ms ≥ {TARGET_WARM_S * 1000:.0f} ms"
              for r in results for days, p in r["periods"].items() if p["warm_p95_ms"] >= TARGET_WARM_S * 1000]
    first = results[0]["periods"]
    if any(r["periods"][d]["figures"] != first[d]["figures"] for r in results for d in PERIODS):
        missed.append("SQLite and PostgreSQL computed different figures from the same ledger")
    return missed


@click.command()
@click.option("--backend", "backends", multiple=True, type=click.Choice(["sqlite", "postgresql"]),
              help="Only these backends. [both]")
@click.option("--events", type=int, default=Shape.events, show_default=True, help="Ledger events.")
@click.option("--members", type=int, default=Shape.members, show_default=True, help="Members.")
@click.option("--seed", type=int, default=20261127, show_default=True, help="Seed of the ledger.")
@click.option("--runs", type=int, default=5, show_default=True, help="Warm calls per period.")
@click.option("--explain", is_flag=True, help="Print each statement's plan (EXPLAIN ANALYZE on PostgreSQL).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def main(backends, events, members, seed, runs, explain, as_json) -> None:
    shape = Shape(events=events, members=members)
    program = load_program(ROOT / "examples" / "cafe.toml")  # the stamp card the ledger was made for
    info, results = run(list(backends or ("sqlite", "postgresql")), seed, shape, program, runs, explain)
    missed = missed_targets(results)
    if as_json:
        click.echo(json.dumps({"machine": machine(), "seed": seed, "events": events, "members": members, **info,
                               "results": results, "missed": missed}, indent=2))
    else:
        click.echo(f"machine: {machine()}")
        click.echo(table(results, info["kinds"], shape, runs))
        click.echo("\n" + ("missed targets:\n  " + "\n  ".join(missed) if missed else "all targets met"))
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
