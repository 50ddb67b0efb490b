"""Benchmark one sweep of the automations' planner: every trigger over 50,000 members and
1,000,000 ledger events, on PostgreSQL and on SQLite. Target: under 10 s on this 2-core machine.

Why: the planner decides from the ledger at every sweep (no summary tables); this says whether a
sweep every few minutes stays affordable on a busy café's history. Delivery is not measured here:
it is bound by the SMTP server, one message at a time.

The ledger is bench/ledgerload.py's (the dashboard benchmark's: a café's two years, bulk-written
at the current schema). Then every member who was not erased gets an address and marketing
consent (the worst case: everybody is a candidate), and the programme in force becomes
examples/cafe.toml with tiers (Silver from 10 visits a year, Gold from 25) and a free coffee that
expires 30 days after it became affordable, so every trigger has work. The moment of the sweep is
the ledger's end. Per backend:

* **first sweep** — ``planner.plan`` end to end on a new engine (records every due message);
* **phases** — the same reads timed one by one in one snapshot: candidates (members, their visits
  and balances), the pure triggers, and each read of planner_more.py;
* **second sweep** — the steady state: everything due is recorded already, nothing new.

    .venv/bin/python bench/automations.py [--backend sqlite|postgresql] [--events N] [--members N]
                                          [--explain] [--json]
"""

from __future__ import annotations

import contextlib
import gc
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import click
from sqlalchemy import text, update
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dashboard import database, machine  # noqa: E402
from bench.ledgerload import END, MERCHANT, Shape, generate, query_plans, write_postgres, write_sqlite  # noqa: E402
from cloud.automations import planner, planner_more, triggers  # noqa: E402
from cloud.automations.triggers import ALMOST, Goal  # noqa: E402
from cloud.config import AutomationsSection  # noqa: E402
from cloud.db import make_engine  # noqa: E402
from cloud.metrics.queries import snapshot  # noqa: E402
from cloud.models import ConfigRevision, Member, Message  # noqa: E402
from kiosk.rules import load_program  # noqa: E402
from kiosk.rules.program import Program, Tiers  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 10.0


def bench_program() -> Program:
    """The café's stamp card with tiers and an expiring reward: every trigger has work."""
    cafe = load_program(ROOT / "examples" / "cafe.toml")
    tiers = Tiers(basis="visits", window_days=365, levels=(
        {"name": "Bronze", "threshold": 0}, {"name": "Silver", "threshold": 10}, {"name": "Gold", "threshold": 25}))
    reward = cafe.rewards[0].model_copy(update={"expires_after_days": 30})
    return cafe.model_copy(update={"tiers": tiers, "rewards": (reward,)})


def prepare(url: str, program: Program) -> None:
    """Addresses and consent for every member not erased; the bench programme in force."""
    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            session.execute(update(Member).where(Member.merchant_id == MERCHANT, Member.erased_at.is_(None))
                            .values(email=Member.id + "@example.org", consent_program_at=Member.created_at,
                                    consent_marketing_at=Member.created_at))
            session.add(ConfigRevision(merchant_id=MERCHANT, kiosk_id="", version=1, created_by="bench",
                                       document=json.dumps({"program": program.model_dump(mode="json")})))
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    finally:
        engine.dispose()


def phases(url: str, program: Program, settings: AutomationsSection) -> dict[str, float]:
    """The sweep's reads one by one, in one snapshot, in seconds (what plan() does, timed)."""
    engine = make_engine(url)
    rules, more = planner.rules_of(settings), planner_more.rules_of(settings)
    now, out = END, {}
    try:
        with snapshot(engine) as conn:
            t0 = time.perf_counter()
            people = planner.candidates(conn, MERCHANT, now, with_balances=ALMOST in rules.triggers)
            out["candidates_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            goal = Goal(min(r.cost for r in program.rewards), program.unit)
            due = [d for c, _ in people for d in triggers.due(c, now, program.zone, rules, goal)]
            out["pure_triggers_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            planner_more.tier_changes(conn, MERCHANT, now - more.tier_reached_valid, now)
            out["tier_changes_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            planner_more.windows(conn, MERCHANT, now, program.tiers, more.tier_loss_days_before)
            out["tier_windows_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            planner_more.affordable(conn, MERCHANT, now, program.rewards)
            out["affordable_since_s"] = time.perf_counter() - t0
        out["candidates"], out["due_basic"] = len(people), len(due)
    finally:
        engine.dispose()
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def sweep(url: str, settings: AutomationsSection) -> tuple[float, int]:
    """One planner sweep on a new engine: (seconds, rows recorded)."""
    engine = make_engine(url)
    try:
        t0 = time.perf_counter()
        new = planner.plan(engine, MERCHANT, END, planner.rules_of(settings), ["email"],
                           more=planner_more.rules_of(settings))
        return time.perf_counter() - t0, new
    finally:
        engine.dispose()


def planned(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return dict(Counter(session.scalars(Message.__table__.select().with_only_columns(Message.trigger))))
    finally:
        engine.dispose()


def explain(url: str, settings: AutomationsSection) -> list[str]:
    """Each SELECT of a sweep with its plan (EXPLAIN QUERY PLAN / EXPLAIN ANALYZE)."""
    return query_plans(url, lambda engine: planner.plan(engine, MERCHANT, END, planner.rules_of(settings), ["email"],
                                                        more=planner_more.rules_of(settings)))


def run(backends: list[str], seed: int, shape: Shape, show_plans: bool) -> tuple[dict, list[dict]]:
    program, settings = bench_program(), AutomationsSection()
    with tempfile.TemporaryDirectory(prefix="bench-automations-") as tmp, contextlib.ExitStack() as stack:
        t0 = time.perf_counter()
        ledger = generate(seed, shape)
        info = {"generated_s": round(time.perf_counter() - t0, 1), "kinds": ledger.kinds()}
        loaded = {}
        for backend in backends:
            url, target = stack.enter_context(database(backend, Path(tmp)))
            t0 = time.perf_counter()
            (write_sqlite if backend == "sqlite" else write_postgres)(target, ledger)
            prepare(url, program)
            loaded[backend] = (url, round(time.perf_counter() - t0, 1))
        del ledger
        gc.collect()  # a million live tuples make every full collection slow: a cost of this process
        results = []
        for backend, (url, load_s) in loaded.items():
            first_s, new = sweep(url, settings)
            second_s, again = sweep(url, settings)
            results.append({"backend": backend, "load_s": load_s, "first_sweep_s": round(first_s, 2),
                            "recorded": new, "second_sweep_s": round(second_s, 2), "recorded_again": again,
                            "by_trigger": planned(url), "phases": phases(url, program, settings),
                            "plans": explain(url, settings) if show_plans else None})
    return info, results


def table(results: list[dict], kinds: dict, shape: Shape) -> str:
    lines = [f"automations sweep: {shape.events:,} events ({', '.join(f'{k} {n:,}' for k, n in sorted(kinds.items()))}),"
             f" {shape.members:,} members", "",
             "| backend | first sweep s | rows recorded | second sweep s | new rows | bulk load s |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['backend']} | {r['first_sweep_s']} | {r['recorded']:,} | {r['second_sweep_s']} "
                     f"| {r['recorded_again']} | {r['load_s']} |")
    for r in results:
        lines += ["", f"{r['backend']}: rows by trigger {r['by_trigger']}", f"{r['backend']}: phases {r['phases']}"]
        for plan in r["plans"] or []:
            lines += ["", f"{r['backend']}: {plan}"]
    return "\n".join(lines)


@click.command()
@click.option("--backend", "backends", multiple=True, type=click.Choice(["sqlite", "postgresql"]),
              help="Only these backends. [both]")
@click.option("--events", type=int, default=Shape.events, show_default=True, help="Ledger events.")
@click.option("--members", type=int, default=Shape.members, show_default=True, help="Members.")
@click.option("--seed", type=int, default=20261127, show_default=True, help="Seed of the ledger.")
@click.option("--explain", "show_plans", is_flag=True, help="Print each statement's plan.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def main(backends, events, members, seed, show_plans, as_json) -> None:
    shape = Shape(events=events, members=members)
    info, results = run(list(backends or ("postgresql", "sqlite")), seed, shape, show_plans)
    missed = [f"{r['backend']}: first sweep {r['first_sweep_s']} s ≥ {TARGET_S:g} s" for r in results
              if r["first_sweep_s"] >= TARGET_S]
    missed += [f"{r['backend']}: the second sweep recorded {r['recorded_again']} rows (must be 0)" for r in results
               if r["recorded_again"]]
    if as_json:
        click.echo(json.dumps({"machine": machine(), "seed": seed, **info, "results": results, "missed": missed},
                              indent=2, default=str))
    else:
        click.echo(f"machine: {machine()}")
        click.echo(table(results, info["kinds"], shape))
        click.echo("\n" + ("missed targets:\n  " + "\n  ".join(missed) if missed else "all targets met"))
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
