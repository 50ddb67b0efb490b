"""``make demo``: a hub and a simulated kiosk, end to end, in under a minute.

A private Mosquitto, the hub's ingest worker and its web app run as real processes, and so
do the hub commands (as an installer would type them); the kiosk runs its live loop on
simulated hardware: a virtual camera that is shown rendered phone frames, gpiozero's mock
pins for LED, buzzer and button, luma's dummy display. Simulated time moves the counter
through a week of visits so a reward is earned and redeemed, and every event reaches the hub.
Then a second simulated kiosk scans six months of a café's members (cloud/demo_history.py),
so the owner's dashboard has a history to show. Run from a terminal, the demo keeps the web
app serving until Ctrl-C; otherwise (CI, tests) it stops after its checks.
"""

from __future__ import annotations

import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from cloud.demo_history import HistoryReport, fill
from cloud.devbroker import Mosquitto, free_port, terminate
from cloud.hubkey import hub_keys_json
from kiosk.app import ScanResult
from kiosk.clock import FakeClock
from kiosk.config import load_config
from kiosk.hardware import scenes
from kiosk.hardware.camera import VirtualCamera
from kiosk.link.hub_link import start_hub_link
from kiosk.loop import run as run_loop
from kiosk.rules import load_program
from kiosk.wiring import build_kiosk, open_documents

OUT = Path("demo-out")
PROGRAM = Path("examples/cafe.toml")
MERCHANT = "demo-cafe"
HISTORY_KIOSK = "counter-2"  # its broker account is not needed: the private Mosquitto has no ACL
BIN = Path(sys.executable).parent
WEB_HOST = "127.0.0.1"
OWNER = f"owner@{MERCHANT}"


def sh(*args: str, stdin: str | None = None) -> str:
    """Run a console script, echo the command, return its output."""
    print(f"  $ {' '.join(args)}" + (" < (the password)" if stdin is not None else ""))
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, input=stdin)
    if done.returncode:
        sys.exit(f"demo: {args[0]} failed:\n{done.stderr}")
    return done.stdout


@dataclass
class Step:
    label: str
    minutes: float  # simulated minutes after opening on day 1
    frame: np.ndarray | None = None  # None: staff press the button


def setup_hub(base_url: str) -> dict[str, str]:
    """Two shops on this hub (passes open their card page on its web app) and three passes."""
    print("1. Hub: create the shop, its signing key and three member passes")
    hub = ["stempel-hub", "--data-dir", str(OUT / "hub")]
    sh(*hub, "init", "--merchant", MERCHANT, "--name", "Demo Cafe", "--base-url", base_url)
    urls = {}
    for name in ("Anna", "Ben"):
        out = sh(*hub, "issue-pass", "--merchant", MERCHANT, "--member-name", name, "--out", str(OUT / f"pass-{name.lower()}.png"))
        urls[name] = out.strip().splitlines()[-1]
    sh(*hub, "init", "--merchant", "other-shop", "--name", "Another Shop", "--base-url", base_url)
    out = sh(*hub, "issue-pass", "--merchant", "other-shop", "--member-name", "Zoe", "--out", str(OUT / "pass-zoe-other-shop.png"))
    urls["Zoe (other shop)"] = out.strip().splitlines()[-1]
    sh(*hub, "export-keys", "--merchant", MERCHANT, "--out", str(OUT / "kiosk" / "keys.json"))
    return urls


def script(urls: dict[str, str], rng: np.random.Generator) -> list[Step]:
    def phone(text: str) -> np.ndarray:
        return scenes.render(text, rng, _look(rng))

    head, sig = urls["Anna"].rsplit(".", 1)
    forged = f"{head}.{sig[:-20]}{'2' if sig[-20] == '1' else '1'}{sig[-19:]}"  # one digit of the signature
    steps = [
        Step("Anna shows her pass", 5, phone(urls["Anna"])),
        Step("Ben shows his pass", 7, phone(urls["Ben"])),
        Step("Anna again, 15 minutes later", 20, phone(urls["Anna"])),
        Step("a tampered copy of Anna's pass", 21, phone(forged)),
        Step("a pass from another shop", 22, phone(urls["Zoe (other shop)"])),
        Step("the lunch menu's QR code", 23, phone("https://example.com/lunch-menu")),
    ]
    for day in range(2, 9):  # signup bonus + Double Stamp Tuesday: the card is full on day 8
        steps.append(Step(f"Anna, day {day}", (day - 1) * 24 * 60 + 5, phone(urls["Anna"])))
    steps.append(Step("staff press the button", 7 * 24 * 60 + 5.2))
    steps.append(Step("staff press it again", 7 * 24 * 60 + 5.3))
    return steps


def _look(rng: np.random.Generator) -> scenes.Look:
    """Realistic but always readable: the demo is about the flow, the benchmark about the odds."""
    return scenes.Look(rotation_deg=float(rng.uniform(-25, 25)), tilt=float(rng.uniform(0, 0.08)),
                       blur=float(rng.uniform(0, 0.6)), noise=float(rng.uniform(2, 6)),
                       glare=float(rng.uniform(0, 50)), contrast=float(rng.uniform(0.6, 1.0)))


class Services:
    """The private broker, the hub's ingest worker and its web app, stopped however the demo ends."""

    def __init__(self, web_port: int) -> None:
        self.broker = Mosquitto(OUT / "broker")
        self.web_port = web_port
        self.ingest: subprocess.Popen | None = None
        self.web: subprocess.Popen | None = None
        self._logs: list = []

    def __enter__(self) -> "Services":
        print("\n2. Broker and hub: a private Mosquitto, `stempel-hub ingest` and `stempel-hub serve`")
        self.broker.start()
        print(f"  mosquitto on 127.0.0.1:{self.broker.port} (log: {self.broker.log})")
        self.ingest = self._start("ingest", "--host", "127.0.0.1", "--port", str(self.broker.port))
        # plain HTTP on this machine only: the session cookie may go without TLS
        self.web = self._start("serve", "--host", WEB_HOST, "--port", str(self.web_port), "--insecure-cookies")
        return self

    def _start(self, command: str, *args: str) -> subprocess.Popen:
        """A hub command in the background, its output in demo-out/<command>.log."""
        line = ["stempel-hub", "--data-dir", str(OUT / "hub"), command, *args]
        print(f"  $ {' '.join(line)} &   (log: {OUT / f'{command}.log'})")
        log = open(OUT / f"{command}.log", "w")
        self._logs.append(log)
        return subprocess.Popen([str(BIN / line[0]), *line[1:]], stdout=log, stderr=log)

    def hub(self, *args: str) -> str:
        """Run an admin command of the hub against this broker."""
        return sh("stempel-hub", "--data-dir", str(OUT / "hub"), *args, "--port", str(self.broker.port))

    def wait_for_web(self, timeout: float = 30.0) -> None:
        """Return once the web app accepts connections; exit the demo if it stopped or never did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.web.poll() is None:
            try:
                with socket.create_connection((WEB_HOST, self.web_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        sys.exit(f"demo: `stempel-hub serve` is not listening on {WEB_HOST}:{self.web_port}; see {OUT / 'serve.log'}")

    def serve_until_interrupted(self) -> None:
        """Keep everything running until Ctrl-C or SIGTERM (or until the web app or the ingest
        worker stops); either way the processes are stopped on the way out, none is left behind."""
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill PID`: a Ctrl-C, not an orphaned broker
        try:
            while self.web.poll() is None and self.ingest.poll() is None:
                time.sleep(0.5)
            print(f"demo: the web app or the ingest worker stopped; see {OUT / 'serve.log'}, {OUT / 'ingest.log'}")
        except KeyboardInterrupt:
            print("\n  stopping the web app, the ingest worker and the broker")

    def __exit__(self, *exc) -> None:
        terminate(self.web)
        terminate(self.ingest)
        self.broker.stop()
        for log in self._logs:
            log.close()


def run_kiosk(steps: list[Step], port: int) -> list[tuple[Step, ScanResult]]:
    print("\n3. Kiosk (simulated hardware): camera frames in, stamps and screens out, events to the hub")
    config = load_config(None, env={}, kiosk__id="counter-1", kiosk__data_dir=str(OUT / "kiosk"),
                         kiosk__shop_name="Demo Cafe", kiosk__program_file=str(PROGRAM), hardware__backend="sim",
                         mqtt__host="127.0.0.1", mqtt__port=port)
    clock = FakeClock(datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc))
    opened = clock.wall
    documents = open_documents(config)  # loaded and verified once, for the kiosk and its link
    kiosk = build_kiosk(config, clock=clock, documents=documents)
    link = start_hub_link(config, kiosk.boot, documents)
    camera, results, stop = VirtualCamera(), queue.Queue(), threading.Event()
    worker = threading.Thread(target=run_loop, args=(kiosk, camera, stop, results.put),
                              kwargs={"updates": link.updates}, daemon=True)
    worker.start()
    display_dir = OUT / "display"
    display_dir.mkdir(parents=True)
    done = []
    for i, step in enumerate(steps, 1):
        target = opened + timedelta(minutes=step.minutes)
        clock.advance((target - clock.wall).total_seconds())
        if step.frame is None:
            kiosk.panel.button.pin.drive_low()
            kiosk.panel.button.pin.drive_high()
        else:
            Image.fromarray(step.frame).save(OUT / "frames" / f"{i:02d}.png")
            camera.present(step.frame, source=f"frames/{i:02d}.png")
        result = results.get(timeout=10)
        kiosk.display.image.save(display_dir / f"{i:02d}.png")
        done.append((step, result))
        _report(i, clock.wall, step, result)
    stop.set()
    worker.join(5)
    kiosk.panel.close()
    deadline = time.monotonic() + 20
    while not link.sender.drained() and time.monotonic() < deadline:
        time.sleep(0.1)
    link.stop()
    return done


def _report(i: int, at: datetime, step: Step, r: ScanResult) -> None:
    what = r.outcome + (f" ({r.reason})" if r.reason else "")
    card = f"{r.balance}/{r.goal}" if r.member else ""
    timing = f"{r.total_ms:5.1f} ms" if step.frame is not None else ""
    print(f"  {i:2d} {at:%a %H:%M}  {step.label:<32} {what:<36} {card:<6} {timing}")


def contact_sheet(count: int) -> Path:
    """All display frames on one image, scaled up, for a quick look."""
    sheet = Image.new("L", (4 * 266, ((count + 3) // 4) * 138), 90)
    for i in range(count):
        with Image.open(OUT / "display" / f"{i + 1:02d}.png") as shot:
            sheet.paste(shot.convert("L").resize((256, 128)), ((i % 4) * 266 + 5, (i // 4) * 138 + 5))
    path = OUT / "display-sheet.png"
    sheet.save(path)
    return path


def history(port: int) -> HistoryReport:
    print("\n4. Six months of history: members enrolled at the hub, their visits scanned at a second kiosk")
    report = fill(OUT / "hub", MERCHANT, broker_port=port, kiosk_dir=OUT / HISTORY_KIOSK, program_file=PROGRAM,
                  kiosk_id=HISTORY_KIOSK)
    print("  " + report.summary())
    return report


def hub_report(expected: dict[str, int], made: HistoryReport) -> bool:
    """What arrived at the hub; True if every kiosk event is stored exactly once and the history's
    members and visits are all there."""
    from cloud.app import create_hub
    from cloud.config import load_hub_config

    hub = create_hub(load_hub_config(hub__data_dir=OUT / "hub"))  # as the hub commands above, --data-dir
    try:
        store = hub.events()
        events = store.events(MERCHANT)
        acked = {kiosk: store.acked_through(MERCHANT, kiosk) for kiosk in expected}
    finally:
        hub.close()
    print("\n6. At the hub (SQLite, written by the ingest worker)")
    print(f"  {len(events)} events stored, hub_seq {min((e.hub_seq for e in events), default=0)}.."
          f"{max((e.hub_seq for e in events), default=0)}")
    whole = True
    for kiosk, count in expected.items():
        mine = [e for e in events if e.kiosk_id == kiosk]
        print(f"  {kiosk}: {len(mine)} of its {count} events, acknowledged to the kiosk through seq {acked[kiosk]}")
        whole &= len(mine) == count == len({e.event_id for e in mine}) == acked[kiosk]
    kinds = Counter(e.kind for e in events)
    print("  by kind: " + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())))
    history_events = [e for e in events if e.kiosk_id == made.kiosk]
    members = len({e.member_id for e in history_events if e.member_id})
    visits = sum(1 for e in history_events if e.kind == "visit")
    print(f"  from {made.kiosk}: {members} members, {visits} visits, "
          f"{sum(1 for e in history_events if e.kind == 'redeem')} rewards redeemed")
    return whole and (members, visits) == (made.members, made.visits)


def owner_login() -> str:
    """An owner account for the dashboard, with a fresh random password (read from stdin)."""
    password = secrets.token_urlsafe(12)
    sh("stempel-hub", "--data-dir", str(OUT / "hub"), "user", "add", "--merchant", MERCHANT, "--login", OWNER,
       "--role", "owner", "--password-stdin", stdin=password + "\n")
    return password


def kiosk_ledger_report() -> int:
    """The first kiosk's members and rejections; returns how many events its ledger holds."""
    from kiosk.ledger import Ledger

    print("\n5. The first kiosk's ledger, folded into balances")
    program = load_program(PROGRAM)
    ledger = Ledger(OUT / "kiosk" / "ledger.sqlite3")
    try:
        events = ledger.events()
        for member in sorted({e.member for e in events if e.member}):
            state = ledger.member_state(member, program)
            print(f"  member {member}: {state.balance} stamps, {state.visits} visits, "
                  f"{state.redeemed} rewards redeemed")
        print(f"  rejected scans recorded: {', '.join(e.reason for e in events if e.kind == 'scan_rejected')}")
        return len(events)
    finally:
        ledger.close()


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "frames").mkdir(parents=True)
    web_port = free_port()
    web = f"http://{WEB_HOST}:{web_port}"
    urls = setup_hub(web)
    # The kiosk trusts documents signed by this hub (add-kiosk puts this file in its bundle).
    (OUT / "kiosk" / "hub-keys.json").write_text(hub_keys_json(OUT / "hub"))
    with Services(web_port) as services:
        print("  " + services.hub("config", "push", str(PROGRAM), "--merchant", MERCHANT).rstrip())
        done = run_kiosk(script(urls, np.random.default_rng(2026)), services.broker.port)
        made = history(services.broker.port)
        print("\n  the hub's view of its kiosks:")
        print("  " + services.hub("fleet", "status", "--merchant", MERCHANT).rstrip().replace("\n", "\n  "))
        sheet = contact_sheet(len(done))
        kiosk_events = kiosk_ledger_report()
        arrived = hub_report({"counter-1": kiosk_events, made.kiosk: made.events}, made)
        print(f"\nDisplay frames: {OUT / 'display'}/NN.png (all on one sheet: {sheet})")
        print(f"Camera frames:  {OUT / 'frames'}/   Passes: {OUT}/pass-*.png, "
              f"the history's members' in {OUT / HISTORY_KIOSK / 'passes'}/")
        print(f"Try the live loop on them:  .venv/bin/stempel-kiosk run --simulate --replay {OUT / 'frames'} "
              f"--data-dir {OUT / 'kiosk'}")
        outcomes = [r.outcome for _, r in done]
        if "redeemed" not in outcomes or "reward_ready" not in outcomes:
            sys.exit("demo: the reward was not earned and redeemed; see the lines above")
        if made.refused or made.unacked:
            sys.exit(f"demo: the history had refused scans or unacknowledged events; see {OUT / 'ingest.log'}")
        if not arrived:
            sys.exit(f"demo: not every kiosk event reached the hub; see {OUT / 'ingest.log'}")
        print("\n7. The hub's web app (`stempel-hub serve`)")
        password = owner_login()
        services.wait_for_web()
        print(f"  join page (the shop's QR at the counter):  {web}/j/{MERCHANT}")
        print(f"  owner dashboard:                           {web}/owner/")
        print(f"  owner login:                               {OWNER}  password: {password}")
        print(f"  a member's card: open the URL of a pass, e.g. {urls['Anna']}")
        if sys.stdin.isatty():
            print("\nServing until Ctrl-C (stdin is a terminal).")
            services.serve_until_interrupted()
        else:
            print("\nNot serving on: stdin is not a terminal (CI, tests), so the demo stops after its checks.")


if __name__ == "__main__":
    main()
