"""One fsync per stamp instead of two (issue 10, item 5): what writing the counter session in the
stamp's own transaction would save on the scan path.

Why: a verified scan writes twice today. ``Kiosk._handle_texts`` opens the counter session
(``CounterSession.open`` → ``Ledger.open_session``, an autocommit UPSERT: its own commit),
then ``_commit_and_show`` appends the stamp (``Ledger.append``: ``BEGIN IMMEDIATE`` …
``COMMIT``). With WAL and ``synchronous=FULL`` every commit fsyncs the WAL, so a stamp costs
two fsyncs; the customer waits for both before the kiosk beeps.

Three variants, each on its own kiosk and ledger in the same folder, built like
``bench/scan_pipeline.py``'s (``build_kiosk``: mock GPIO panel, dummy display), taking turns
in blocks so machine noise falls on all alike:

* ``two-commits`` — the code as it is;
* ``one-commit`` — a prototype (``OneCommitLedger``/``OneCommitKiosk`` below, nothing in
  kiosk/ is changed): ``open_session`` only remembers the row, ``_insert`` writes it inside
  the events' transaction, and a scan that commits no event writes it alone afterwards;
* ``unsynced-session`` — the session's commit alone runs with ``synchronous=NORMAL`` (no
  fsync of its own; the stamp's fsync right after flushes the WAL with both in it).

Each scan is ``Kiosk.handle_codes`` on a pass already decoded (decoding costs the same in
every variant, ~1.5 ms at p50 with the default decoder: bench/scan_pipeline.py), so
verify → session → rules → ledger → display. The fake clock moves 2 h between scans, so
every scan is a new stamp that commits (the worst case). Wall time is the figure here: an
fsync is time spent waiting for the disk, which CPU time does not see (the CPU time of the
scanning thread is printed beside it). After the scans, each ledger is opened again as
``stempel-kiosk redeem`` would open it, to check that the session is there.

    .venv/bin/python bench/stamp_commits.py [--scans 1000] [--block 50] [--dir DIR] [--only VARIANT] [--json]
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scan_pipeline import issue_passes, machine  # noqa: E402
from kiosk.app import Kiosk  # noqa: E402
from kiosk.clock import FakeClock  # noqa: E402
from kiosk.common.errors import LedgerError  # noqa: E402
from kiosk.config import load_config  # noqa: E402
from kiosk.ledger import _INSERT_OWN, Ledger, _rollback  # noqa: E402
from kiosk.protocol.event import Event, sqlite_values  # noqa: E402
from kiosk.protocol.ids import new_event_id  # noqa: E402
from kiosk.session import CounterSession  # noqa: E402
from kiosk.wiring import build_kiosk  # noqa: E402

MEMBERS = 20
START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
BETWEEN_SCANS_S = 2 * 3600  # longer than the default programme's 60-minute cooldown: every scan stamps
STAMPED = {"stamped", "reward_ready"}
_UPSERT_SESSION = ("INSERT INTO counter_session (id, member, boot_id, expires_mono) VALUES (1, ?, ?, ?)"
                   " ON CONFLICT (id) DO UPDATE SET member = excluded.member, boot_id = excluded.boot_id,"
                   " expires_mono = excluded.expires_mono")


class OneCommitLedger(Ledger):
    """Prototype: the counter session rides in the next events transaction of the same scan."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._session_row: tuple[str, str, float] | None = None

    def open_session(self, member: str, boot: str, expires_mono: float) -> None:
        self._session_row = (member, boot, expires_mono)

    def flush_session(self) -> None:
        """Write a session no events transaction took (a scan that committed nothing)."""
        if self._session_row is not None:
            row, self._session_row = self._session_row, None
            super().open_session(*row)

    def _insert(self, rows: list[tuple], at: datetime, mono: float, boot: str) -> list[Event]:
        """``Ledger._insert`` with one statement more before the COMMIT: the session's UPSERT."""
        out: list[Event] = []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for kind, member, delta, rule, reward, reason, detail in rows:
                event = Event(0, new_event_id(), kind, member, delta, rule, reward, reason, detail, at,
                              int(mono * 1e9), boot)
                cur = self._db.execute(_INSERT_OWN, (event.event_id, *sqlite_values(event)))
                out.append(replace(event, kiosk_seq=cur.lastrowid))
            if self._session_row is not None:
                self._db.execute(_UPSERT_SESSION, self._session_row)
            self._db.execute("COMMIT")
        except (sqlite3.Error, OverflowError) as exc:
            _rollback(self._db)
            raise LedgerError(f"could not write to the ledger at {self.path}: {exc}") from exc
        self._session_row = None
        return out


class OneCommitKiosk(Kiosk):
    """Prototype: after a scan's commit, the session is on disk whether or not an event was written."""

    def _commit_and_show(self, source, decision, at):
        result = super()._commit_and_show(source, decision, at)
        self.ledger.flush_session()
        return result


class UnsyncedSessionLedger(Ledger):
    """The session's own commit without an fsync of its own (``synchronous=NORMAL`` for that write)."""

    def open_session(self, member: str, boot: str, expires_mono: float) -> None:
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            super().open_session(member, boot, expires_mono)
        finally:
            self._db.execute("PRAGMA synchronous=FULL")


VARIANTS = {"two-commits": (Ledger, Kiosk), "one-commit": (OneCommitLedger, OneCommitKiosk),
            "unsynced-session": (UnsyncedSessionLedger, Kiosk)}


def open_variant(name: str, folder: Path, keys_json: str) -> Kiosk:
    """A simulated kiosk as ``build_kiosk`` makes it, with the variant's ledger and kiosk class."""
    folder.mkdir(parents=True)
    (folder / "keys.json").write_text(keys_json)
    clock = FakeClock(START)
    built = build_kiosk(load_config(None, env={}, kiosk__data_dir=str(folder)), clock=clock)
    built.ledger.close()
    ledger_cls, kiosk_cls = VARIANTS[name]
    ledger = ledger_cls(folder / "ledger.sqlite3")
    return kiosk_cls(shop_name=built.shop_name, decoder=built.decoder, verifier=built.verifier,
                     program=built.program, ledger=ledger,
                     session=CounterSession(ledger, clock, built.session.seconds, built.boot),
                     clock=clock, boot=built.boot, display=built.display, panel=built.panel, camera=built.camera)


def one_scan(kiosk: Kiosk, text: bytes) -> tuple[float, float, str, str | None]:
    """(wall ms, CPU ms of this thread, outcome, member) of one scan of an already decoded pass."""
    t0, c0 = time.perf_counter(), time.thread_time()
    result = kiosk.handle_codes("bench", [text], t0, t0)
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    kiosk.clock.advance(BETWEEN_SCANS_S)
    return wall * 1000, cpu * 1000, result.outcome, result.member


def session_seen_by_another_process(kiosk: Kiosk) -> tuple[str, str, float] | None:
    """The session as a second connection (``stempel-kiosk redeem``) reads it from the file."""
    other = Ledger(kiosk.ledger.path)
    try:
        return other.session()
    finally:
        other.close()


def summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "mean": round(float(a.mean()), 3)}


def measure(scans: int, block: int, folder: Path, names: list[str]) -> dict:
    (folder / "hub").mkdir()
    passes, keys_json = issue_passes(folder / "hub", MEMBERS, seed=1)
    texts = [p.url.encode() for p in passes]
    kiosks = {name: open_variant(name, folder / name, keys_json) for name in names}
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    wrong = {n: 0 for n in names}
    try:
        for name in names:  # warm-up: first-use costs (fonts, SQLite pages) out of the figures
            for i in range(5):
                one_scan(kiosks[name], texts[i % len(texts)])
        done = 0
        while done < scans:
            for name in names:
                for i in range(done, min(done + block, scans)):
                    w, c, outcome, member = one_scan(kiosks[name], texts[i % len(texts)])
                    wall[name].append(w)
                    cpu[name].append(c)
                    wrong[name] += outcome not in STAMPED or member != passes[i % len(passes)].member
            done += block
            click.echo(f"{done}/{scans} scans per variant", err=True)
        last = passes[(scans - 1) % len(passes)].member
        sessions = {n: session_seen_by_another_process(k) for n, k in kiosks.items()}
        events = {n: len(k.ledger.events()) for n, k in kiosks.items()}
    finally:
        for kiosk in kiosks.values():
            kiosk.close()
    out = {"machine": machine(), "folder": str(folder), "scans": scans, "block": block, "variants": {}}
    for n in names:
        out["variants"][n] = {"wall_ms": summary(wall[n]), "cpu_ms": summary(cpu[n]), "not_stamped": wrong[n],
                              "events": events[n],
                              "session_in_file_is_last_member": sessions[n] is not None and sessions[n][0] == last}
    return out


def print_report(report: dict) -> None:
    m = report["machine"]
    click.echo(f"scan path after decoding (verify → session → rules → ledger → display), {report['scans']} stamps "
               f"per variant, ledger in {report['folder']}; {m['nproc']} CPUs ({m['cpu']})")
    click.echo(f"  {'variant':<17} {'wall p50':>9} {'p95':>8} {'mean':>8}   {'CPU p50':>8} {'mean':>7}   checks")
    base = report["variants"].get("two-commits")
    for name, v in report["variants"].items():
        w, c = v["wall_ms"], v["cpu_ms"]
        ok = v["not_stamped"] == 0 and v["session_in_file_is_last_member"]
        gain = "" if base is None or name == "two-commits" else (
            f"   saves {base['wall_ms']['p50'] - w['p50']:.2f} ms at p50 "
            f"({100 * (1 - w['p50'] / base['wall_ms']['p50']):.0f} %)")
        click.echo(f"  {name:<17} {w['p50']:>6.2f} ms {w['p95']:>5.2f} ms {w['mean']:>5.2f} ms   "
                   f"{c['p50']:>5.2f} ms {c['mean']:>4.2f} ms   {'ok' if ok else 'FAILED'}{gain}")


@click.command()
@click.option("--scans", default=1000, show_default=True, help="stamps per variant")
@click.option("--block", default=50, show_default=True, help="stamps per turn")
@click.option("--dir", "folder", type=click.Path(file_okay=False), help="where the ledgers go [system temp dir]")
@click.option("--only", type=click.Choice(sorted(VARIANTS)), help="run one variant (e.g. under strace -c)")
@click.option("--json", "as_json", is_flag=True)
def main(scans: int, block: int, folder: str | None, only: str | None, as_json: bool) -> None:
    names = [only] if only else list(VARIANTS)
    with tempfile.TemporaryDirectory(prefix="stempel-commits-", dir=folder) as tmp:
        report = measure(scans, block, Path(tmp), names)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_report(report)
    failed = any(v["not_stamped"] or not v["session_in_file_is_last_member"] for v in report["variants"].values())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
