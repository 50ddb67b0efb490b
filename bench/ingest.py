"""Benchmark the hub: ingest rate, end-to-end lag, and fleet config convergence.

Why: issue 4 asks whether one hub on this 2-core machine keeps up with a chain's fleet.
Targets: ≥ 5,000 events/s sustained on PostgreSQL; p99 lag (kiosk publish → row
committed) under 1 s at an offered 1,000 events/s; 1,000 kiosks report a pushed
programme applied within 10 s.

Everything is real except the kiosks: a private Mosquitto, ``stempel-hub ingest`` worker
processes (1 and 2, on a shared subscription) against a fresh SQLite file and a fresh
PostgreSQL database, and the hub's own ``cloud.link.documents`` push. Before measuring, each
database receives 20,000 events of history through the same path and is ``ANALYZE``d, as
autovacuum would have done on a hub that has been running (see ``Reader.analyze``).

* **sustained** — 20 kiosks (over 5 merchants) each hold a backlog and send it as the
  kiosk's sender does: batches of 100 events, at most 1,000 events beyond the hub's ack.
  The committed count (sum of the merchants' ``hub_seq``) is polled every 0.2 s; the rate is
  taken between 10 % and 90 % of the events committed (steady state: no start-up, no tail).
  CPU seconds of every process of the rig are read from /proc over the same run.
* **lag** — the same kiosks send an open-loop 1,000 events/s: every kiosk one batch per
  0.2 s (the sender's poll interval), phases spread evenly. Each batch's publish time is
  kept; a reader polls the new rows every 25 ms and records when each ``event_id`` is
  first visible (committed). lag = first seen − published, so it includes up to one poll
  interval. ``insert`` lag uses the row's ``received_at`` (set when the row is inserted,
  before the commit) for comparison.
* **convergence** — 1,000 MQTT connections (bench/fleetsim.py) with real ``DocumentFollower``s;
  the hub pushes ``examples/cafe.toml`` with ``cloud.link.documents.prepare`` + ``publish``;
  the time runs from the push until the 1,000th ``config/reported`` says applied with that
  version. Two pushes: v1 to fresh kiosks, then v2 to kiosks already on v1.

Exits 1 naming any missed target.

    .venv/bin/python bench/ingest.py [--quick] [--json] [--events 60000] [--lag-seconds 20]
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import timezone
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.broker import Broker  # noqa: E402
from bench.eventload import SENDER, CpuMeter, Reader, fleet, hub_database, ingest_workers  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATE, TARGET_LAG_P99, TARGET_CONVERGE = 5000.0, 1.0, 10.0
LAG_POLL = 0.025


# -- sustained rate ----------------------------------------------------------------------
def sustained(port: int, reader: Reader, kiosks: int, merchants: int, events: int, timeout: float,
              prefix: str = "rate", meter: CpuMeter | None = None, batch: int = SENDER.batch_size) -> dict:
    each = max(1, events // kiosks)
    total = each * kiosks
    base = reader.committed()
    with fleet(port, prefix, kiosks, merchants, each, batch) as sims:
        stop = threading.Event()
        driver = threading.Thread(target=_drive_windowed, args=(sims, stop), daemon=True)
        if meter is not None:
            meter.start()
        t0 = time.monotonic()
        driver.start()
        samples = [(0.0, 0)]
        try:
            while samples[-1][1] < total and time.monotonic() - t0 < timeout:
                time.sleep(0.2)
                samples.append((time.monotonic() - t0, reader.committed() - base))
        finally:
            stop.set()
            driver.join(5)
        cpu = meter.stop() if meter is not None else None
        backlog = reader.unpublished()
        while backlog and time.monotonic() - t0 < timeout:  # the relay still owes the kiosks these on `ledger`
            time.sleep(0.5)
            backlog = reader.unpublished()
        relayed_s = time.monotonic() - t0
    done = samples[-1][1]
    t10, c10 = next(((t, c) for t, c in samples if c >= 0.1 * total), samples[-1])
    t90, c90 = next(((t, c) for t, c in samples if c >= 0.9 * total), samples[-1])
    steady = (c90 - c10) / (t90 - t10) if t90 > t10 else 0.0
    return {"events": total, "committed": done, "complete": done >= total, "seconds": round(samples[-1][0], 2),
            "overall_per_s": round(done / samples[-1][0], 1) if samples[-1][0] else 0.0,
            "steady_per_s": round(steady, 1), "cpu": cpu,
            "relay_backlog_at_end": backlog,
            "relayed_s": round(relayed_s, 2), "relayed_per_s": round(total / relayed_s, 1)}


def _drive_windowed(sims, stop: threading.Event) -> None:
    """Send every kiosk's backlog, each kiosk holding at most ``max_in_flight`` unacked events."""
    wake = sims[0].wake
    while not stop.is_set() and not all(s.done for s in sims):
        wake.clear()
        sent = False
        for sim in sims:
            while sim.can_send():
                sim.send()
                sent = True
        if not sent:
            wake.wait(0.05)


# -- lag at a fixed offered load ---------------------------------------------------------
def lag(port: int, reader: Reader, kiosks: int, merchants: int, rate: float, seconds: float, timeout: float) -> dict:
    period = SENDER.poll_interval
    per_batch = max(1, round(rate * period / kiosks))
    rounds = max(1, round(seconds / period))
    with fleet(port, "lag", kiosks, merchants, per_batch * rounds, per_batch) as sims:
        schedule = sorted((r * period + k * period / kiosks, k, r) for k in range(kiosks) for r in range(rounds))
        driver = threading.Thread(target=_drive_paced, args=(sims, schedule), daemon=True)
        sent_ids = {eid for sim in sims for b in sim.batches for eid in b.event_ids}
        seen: dict[str, tuple[float, object]] = {}
        marks = {m: reader.last_hub_seq(m) for m in {s.merchant for s in sims}}
        driver.start()
        deadline = time.monotonic() + seconds + timeout
        while len(seen) < len(sent_ids) and time.monotonic() < deadline:
            time.sleep(LAG_POLL)
            for merchant, mark in marks.items():
                rows = reader.new_rows(merchant, mark)
                now = time.time()
                for hub_seq, event_id, received_at in rows:
                    if event_id in sent_ids:
                        seen.setdefault(event_id, (now, received_at))
                if rows:
                    marks[merchant] = rows[-1][0]
        driver.join(seconds + 5)
        published = {eid: sim.sent_at[i] for sim in sims for i, b in enumerate(sim.batches) if i in sim.sent_at
                     for eid in b.event_ids}
    sends = sorted(published.values())
    offered = len(published) / (sends[-1] - sends[0] + period / kiosks) if len(sends) > 1 else 0.0
    commit = np.array([seen[e][0] - published[e] for e in seen if e in published])
    insert = np.array([_epoch(seen[e][1]) - published[e] for e in seen if e in published])
    return {"events": len(sent_ids), "committed": len(seen), "complete": len(seen) == len(sent_ids),
            "offered_per_s": round(offered, 1), "batch": per_batch,
            **_pcts("commit", commit), **_pcts("insert", insert)}


def _drive_paced(sims, schedule) -> None:
    t0 = time.monotonic() + 0.1
    for at, k, r in schedule:
        delay = t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sims[k].send()


def _epoch(dt) -> float:
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def _pcts(name: str, values: np.ndarray) -> dict:
    if values.size == 0:
        return {f"{name}_p50_ms": None, f"{name}_p99_ms": None, f"{name}_max_ms": None}
    ms = values * 1000
    return {f"{name}_p50_ms": round(float(np.percentile(ms, 50)), 1),
            f"{name}_p99_ms": round(float(np.percentile(ms, 99)), 1), f"{name}_max_ms": round(float(ms.max()), 1)}


# -- one backend × worker count ----------------------------------------------------------
def run_config(backend: str, workers: int, opts: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-ingest-{backend}-{workers}-") as tmp:
        work = Path(tmp)
        load = [os.getloadavg()[0]]
        with Broker(work / "broker") as broker, hub_database(backend, work) as url:
            reader = Reader(url)
            try:
                with ingest_workers(workers, url, broker, work) as procs:
                    if opts["history"]:
                        sustained(broker.port, reader, opts["kiosks"], opts["merchants"], opts["history"],
                                  opts["timeout"], prefix="history")
                    reader.analyze()
                    rate = sustained(broker.port, reader, opts["kiosks"], opts["merchants"], opts["events"],
                                     opts["timeout"], meter=CpuMeter(procs, broker, url), batch=opts["batch"])
                    load.append(os.getloadavg()[0])
                    lagged = lag(broker.port, reader, opts["kiosks"], opts["merchants"], opts["lag_rate"],
                                 opts["lag_seconds"], opts["timeout"])
                    load.append(os.getloadavg()[0])
            finally:
                reader.close()
    return {"backend": backend, "workers": workers, "sustained": rate, "lag": lagged, "load_1min": load}


# -- fleet convergence -------------------------------------------------------------------
def convergence(n: int, timeout: float) -> dict:
    from bench.fleetsim import FleetSim, ReportWatcher
    from cloud.link import documents as fleet_config
    from cloud.hubkey import hub_signing_key
    from cloud.keys import KeyStore
    from cloud.passes import init_merchant
    from cloud.db import default_url, open_store
    from kiosk.common.bus import BusSettings, MqttBus
    from kiosk.rules import load_program

    merchant = "bench-fleet"
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        work = Path(tmp)
        hub_dir = work / "hub"
        hub_dir.mkdir()
        engine = open_store(default_url(hub_dir))
        init_merchant(engine, KeyStore(hub_dir), merchant, "Bench Fleet", "https://stempel.example")
        program = load_program(ROOT / "examples" / "cafe.toml")
        public = hub_signing_key(hub_dir).public_key()
        with Broker(work / "broker") as broker:
            sim = FleetSim(broker.port, merchant, n, public, work / "kiosks")
            watcher = ReportWatcher(broker.port, merchant)
            hub = MqttBus(BusSettings(host="127.0.0.1", port=broker.port, client_id="bench-hub-admin"))
            try:
                # The hub's connection first: paho's loop uses select(), which fails on a socket
                # numbered above 1024, and the 1,000 kiosk sockets of this process come first otherwise.
                hub.start()
                hub.wait_connected(10)
                connect_s = sim.start(timeout)
                pushes = [_push(fleet_config, engine, hub_dir, merchant, program, hub, watcher, sim, n, timeout)
                          for _ in range(2)]
            finally:
                hub.stop()
                watcher.close()
                sim.close()
                engine.dispose()
    return {"kiosks": n, "connect_subscribe_s": round(connect_s, 2), "pushes": pushes,
            "rejected": len(watcher.rejected)}


def _push(fleet_config, engine, hub_dir, merchant, program, hub, watcher, sim, n: int, timeout: float) -> dict:
    doc = fleet_config.prepare(engine, hub_dir, merchant, program)
    version = doc["version"]
    t0 = time.time()
    fleet_config.publish(hub, doc)
    deadline = time.monotonic() + timeout
    while watcher.count(version) < n and time.monotonic() < deadline:
        sim.check()
        time.sleep(0.01)
    times = np.array(watcher.times(version)) - t0
    return {"version": version, "applied": int(times.size), "complete": times.size == n,
            "all_s": round(float(times.max()), 2) if times.size == n else None,
            "p50_s": round(float(np.percentile(times, 50)), 2) if times.size else None,
            "p99_s": round(float(np.percentile(times, 99)), 2) if times.size else None,
            "load_1min": os.getloadavg()[0]}


# -- report ------------------------------------------------------------------------------
def missed_targets(results: list[dict], fleet_result: dict | None, opts: dict) -> list[str]:
    missed = []
    pg = [r for r in results if r["backend"] == "postgresql"]
    if pg:
        best = max(pg, key=lambda r: r["sustained"]["steady_per_s"])
        if best["sustained"]["steady_per_s"] < TARGET_RATE:
            missed.append(f"sustained PostgreSQL ingest {best['sustained']['steady_per_s']:.0f} events/s "
                          f"(best, {best['workers']} worker(s)) < {TARGET_RATE:.0f}")
    for r in results:
        p99 = r["lag"]["commit_p99_ms"]
        if not r["lag"]["complete"] or p99 is None or p99 >= TARGET_LAG_P99 * 1000:
            missed.append(f"p99 lag {r['backend']} × {r['workers']} worker(s) at {opts['lag_rate']:.0f} events/s: "
                          f"{p99} ms (committed {r['lag']['committed']}/{r['lag']['events']}) ≥ 1000 ms")
    if fleet_result is not None:
        for push in fleet_result["pushes"]:
            if not push["complete"] or push["all_s"] >= TARGET_CONVERGE:
                missed.append(f"config v{push['version']} reached {push['applied']}/{fleet_result['kiosks']} "
                              f"kiosks, all in {push['all_s']} s (target < {TARGET_CONVERGE:.0f} s)")
    return missed


def table(results: list[dict], fleet_result: dict | None, opts: dict) -> str:
    lines = [f"ingest: {opts['kiosks']} kiosks over {opts['merchants']} merchants; sustained {opts['events']} events "
             f"(batches of {opts['batch']}, window {SENDER.max_in_flight}); lag at {opts['lag_rate']:.0f} "
             f"events/s for {opts['lag_seconds']} s, commit seen by a {LAG_POLL * 1000:.0f} ms poll", "",
             "| backend | workers | sustained ev/s (10–90 %) | overall ev/s | relayed on ledger ev/s | offered ev/s "
             "| batch | lag p50 ms | lag p99 ms | lag max ms | insert p99 ms | load 1 min |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        s, lg = r["sustained"], r["lag"]
        flag = "" if s["complete"] else f" (only {s['committed']}/{s['events']})"
        left = s["relay_backlog_at_end"]
        relay = f"{s['relayed_per_s']:.0f}" + (f" ({left} left)" if left else "")
        lines.append(f"| {r['backend']} | {r['workers']} | {s['steady_per_s']:.0f}{flag} | {s['overall_per_s']:.0f} "
                     f"| {relay} | {lg['offered_per_s']:.0f} | {lg['batch']} | {lg['commit_p50_ms']} "
                     f"| {lg['commit_p99_ms']} | {lg['commit_max_ms']} | {lg['insert_p99_ms']} "
                     f"| {'–'.join(f'{x:.1f}' for x in r['load_1min'])} |")
    lines += _cpu_table(results)
    if fleet_result is not None:
        lines += ["", f"convergence: {fleet_result['kiosks']} kiosk connections, connected and subscribed in "
                      f"{fleet_result['connect_subscribe_s']} s", "",
                  "| push | applied | all applied s | p50 s | p99 s | load 1 min |", "|---|---:|---:|---:|---:|---:|"]
        for p in fleet_result["pushes"]:
            lines.append(f"| v{p['version']} | {p['applied']} | {p['all_s']} | {p['p50_s']} | {p['p99_s']} "
                         f"| {p['load_1min']:.1f} |")
    return "\n".join(lines)


def _cpu_table(results: list[dict]) -> list[str]:
    """CPU seconds per 1,000 events during the sustained run, by process, and how many of the cores were busy."""
    rows = [r for r in results if r["sustained"]["cpu"]]
    if not rows:
        return []
    parts = list(rows[0]["sustained"]["cpu"]["cpu_s"])
    lines = ["", "CPU seconds per 1,000 events during the sustained run (and cores busy, of "
                 f"{os.cpu_count()}):", "",
             "| backend | workers | " + " | ".join(parts) + " | cores busy |",
             "|---|---:|" + "---:|" * (len(parts) + 1)]
    for r in rows:
        cpu, k = r["sustained"]["cpu"], r["sustained"]["committed"] / 1000
        lines.append(f"| {r['backend']} | {r['workers']} | " + " | ".join(f"{cpu['cpu_s'][p] / k:.3f}" for p in parts)
                     + f" | {cpu['cores_busy']} |")
    return lines


@click.command()
@click.option("--quick", is_flag=True, help="A small smoke run (fewer events, 200 kiosks, 5 s of lag).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--events", type=int, help="Events for the sustained run. [60000; quick 6000]")
@click.option("--history", type=int, help="Events stored (then ANALYZEd) before measuring. [20000; quick 2000]")
@click.option("--lag-seconds", type=float, help="Length of the lag run. [20; quick 5]")
@click.option("--batch", type=int, default=SENDER.batch_size, show_default=True,
              help="Events per message in the sustained run (the kiosk's batch_size).")
@click.option("--lag-rate", type=float, default=1000.0, show_default=True, help="Offered events/s in the lag run.")
@click.option("--kiosks", type=int, default=20, show_default=True, help="Producer kiosks.")
@click.option("--merchants", type=int, default=5, show_default=True, help="Merchants the kiosks belong to.")
@click.option("--fleet", "fleet_size", type=int, help="Kiosk connections in the convergence run. [1000; quick 200]")
@click.option("--backend", "backends", multiple=True, type=click.Choice(["sqlite", "postgresql"]),
              help="Only these backends. [both]")
@click.option("--workers", "worker_counts", multiple=True, type=int, help="Only these worker counts. [1 and 2]")
@click.option("--no-convergence", is_flag=True, help="Skip the convergence run.")
@click.option("--timeout", type=float, default=180.0, show_default=True, help="Bound on each phase, seconds.")
def main(quick, as_json, events, history, lag_seconds, batch, lag_rate, kiosks, merchants, fleet_size, backends,
         worker_counts, no_convergence, timeout) -> None:
    opts = {"events": events or (6000 if quick else 60000), "history": history if history is not None else
            (2000 if quick else 20000), "lag_seconds": lag_seconds or (5.0 if quick else 20.0),
            "lag_rate": lag_rate, "batch": batch, "kiosks": kiosks, "merchants": merchants, "timeout": timeout}
    results = [run_config(b, w, opts) for b in (backends or ("sqlite", "postgresql"))
               for w in (worker_counts or (1, 2))]
    fleet_result = None if no_convergence else convergence(fleet_size or (200 if quick else 1000), timeout)
    missed = missed_targets(results, fleet_result, opts)
    if as_json:
        click.echo(json.dumps({"machine": machine(), "options": opts, "ingest": results, "convergence": fleet_result,
                               "missed": missed}, indent=2))
    else:
        click.echo(table(results, fleet_result, opts))
        click.echo("\n" + ("missed targets:\n  " + "\n  ".join(missed) if missed else "all targets met"))
    sys.exit(1 if missed else 0)


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


if __name__ == "__main__":
    main()
