"""Rules-engine benchmark: one evaluation for a member with 5,000 past visits.

Measures what the kiosk does per scan, `evaluate` on the member's snapshot plus folding
the new entries into it, against the baseline of re-folding the member's whole ledger
before every evaluation, in the same run. Prints evaluations/s and p50/p95/p99.

    .venv/bin/python bench/rules.py [--history 5000] [--evaluations 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import numpy as np

from kiosk.rules import MemberState, Visit, apply, evaluate, fold, load_program

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def history(program, visits: int, seed: int):
    """A member's ledger: *visits* visits over the years, about one every 8 hours, random amounts."""
    rng = np.random.default_rng(seed)
    state, ledger = MemberState("m-bench"), []
    at = datetime(2020, 1, 1, 9, tzinfo=timezone.utc)
    for i in range(visits):
        at += timedelta(hours=float(rng.uniform(4, 12)))
        decision = evaluate(state, Visit(f"h{i}", "m-bench", Decimal(int(rng.integers(5, 120)))), at, program)
        for entry in decision.entries:
            state = apply(state, entry, at, program)
            ledger.append((entry, at))
    return state, ledger, at


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.array(samples) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "per_second": len(ms) / (ms.sum() / 1000)}


def bench_snapshot(program, state, start, n: int) -> dict:
    """What the kiosk does: evaluate against the cached snapshot, fold the new entries on."""
    samples, at = [], start
    for i in range(n):
        at += timedelta(hours=9)
        t0 = time.perf_counter()
        decision = evaluate(state, Visit(f"b{i}", "m-bench", Decimal(42)), at, program)
        for entry in decision.entries:
            state = apply(state, entry, at, program)
        samples.append(time.perf_counter() - t0)
    return percentiles(samples)


def bench_refold(program, ledger, start, n: int) -> dict:
    """Baseline: rebuild the state from the whole ledger before each evaluation."""
    samples, at = [], start
    for i in range(n):
        at += timedelta(hours=9)
        t0 = time.perf_counter()
        state = fold("m-bench", ledger, program)
        evaluate(state, Visit(f"b{i}", "m-bench", Decimal(42)), at, program)
        samples.append(time.perf_counter() - t0)
    return percentiles(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", default=str(EXAMPLES / "salon.toml"), help="programme TOML [salon: tiers]")
    parser.add_argument("--history", type=int, default=5000, help="past visits of the member")
    parser.add_argument("--evaluations", type=int, default=2000)
    parser.add_argument("--baseline-evaluations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    program = load_program(args.program)
    print(f"building a member with {args.history} past visits ...", file=sys.stderr)
    state, ledger, last = history(program, args.history, args.seed)
    snapshot = bench_snapshot(program, state, last, args.evaluations)
    refold = bench_refold(program, ledger, last, args.baseline_evaluations)
    result = {"program": Path(args.program).name, "past_visits": args.history, "ledger_entries": len(ledger),
              "snapshot": snapshot, "refold_baseline": refold,
              "speedup_p95": refold["p95_ms"] / snapshot["p95_ms"],
              "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}"}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"programme {result['program']}, member with {args.history} visits ({len(ledger)} ledger entries)")
        for name, r in (("snapshot (kiosk)", snapshot), ("re-fold baseline", refold)):
            print(f"  {name:<18} {r['per_second']:>9.0f} eval/s   p50 {r['p50_ms']:.3f} ms   "
                  f"p95 {r['p95_ms']:.3f} ms   p99 {r['p99_ms']:.3f} ms")
        print(f"  snapshot is {result['speedup_p95']:.0f}x faster at p95 (target: p95 < 1 ms)")
    return 0 if snapshot["p95_ms"] < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
