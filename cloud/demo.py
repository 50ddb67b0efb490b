"""``make demo``: a hub and a simulated kiosk, end to end, in under a minute.

A private Mosquitto and the hub's ingest worker run as real processes, and so do the hub
commands (as an installer would type them); the kiosk runs its live loop on simulated
hardware: a virtual camera that is shown rendered phone frames, gpiozero's mock pins for
LED, buzzer and button, luma's dummy display. Simulated time moves the counter through a
week of visits so a reward is earned and redeemed, and every event reaches the hub.
"""

from __future__ import annotations

import queue
import shutil
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

from cloud.devbroker import Mosquitto, terminate
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
BIN = Path(sys.executable).parent


def sh(*args: str) -> str:
    """Run a console script, echo the command, return its output."""
    print(f"  $ {' '.join(args)}")
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"demo: {args[0]} failed:\n{done.stderr}")
    return done.stdout


@dataclass
class Step:
    label: str
    minutes: float  # simulated minutes after opening on day 1
    frame: np.ndarray | None = None  # None: staff press the button


def setup_hub() -> dict[str, str]:
    print("1. Hub: create the shop, its signing key and three member passes")
    hub = ["stempel-hub", "--data-dir", str(OUT / "hub")]
    sh(*hub, "init", "--merchant", MERCHANT, "--name", "Demo Cafe")
    urls = {}
    for name in ("Anna", "Ben"):
        out = sh(*hub, "issue-pass", "--merchant", MERCHANT, "--member-name", name, "--out", str(OUT / f"pass-{name.lower()}.png"))
        urls[name] = out.strip().splitlines()[-1]
    sh(*hub, "init", "--merchant", "other-shop", "--name", "Another Shop")
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
    """The private broker and the hub's ingest worker, stopped however the demo ends."""

    def __init__(self) -> None:
        self.broker = Mosquitto(OUT / "broker")
        self.ingest: subprocess.Popen | None = None

    def __enter__(self) -> "Services":
        print("\n2. Broker and hub: a private Mosquitto and `stempel-hub ingest`")
        self.broker.start()
        print(f"  mosquitto on 127.0.0.1:{self.broker.port} (log: {self.broker.log})")
        command = ["stempel-hub", "--data-dir", str(OUT / "hub"), "ingest", "--host", "127.0.0.1",
                   "--port", str(self.broker.port)]
        print(f"  $ {' '.join(command)} &")
        log = open(OUT / "ingest.log", "w")
        self.ingest = subprocess.Popen([str(BIN / command[0]), *command[1:]], stdout=log, stderr=log)
        return self

    def hub(self, *args: str) -> str:
        """Run an admin command of the hub against this broker."""
        return sh("stempel-hub", "--data-dir", str(OUT / "hub"), *args, "--port", str(self.broker.port))

    def __exit__(self, *exc) -> None:
        terminate(self.ingest)
        self.broker.stop()


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


def hub_report(kiosk_events: int) -> bool:
    """What arrived at the hub; True if every kiosk event is stored exactly once."""
    from cloud.app import create_hub
    from cloud.config import load_hub_config

    hub = create_hub(load_hub_config(hub__data_dir=OUT / "hub"))  # as the hub commands above, --data-dir
    try:
        store = hub.events()
        events = store.events(MERCHANT)
        acked = store.acked_through(MERCHANT, "counter-1")
    finally:
        hub.close()
    kinds = Counter(e.kind for e in events)
    print("\n5. At the hub (SQLite, written by the ingest worker)")
    print(f"  {len(events)} of the kiosk's {kiosk_events} events stored, hub_seq "
          f"{min((e.hub_seq for e in events), default=0)}..{max((e.hub_seq for e in events), default=0)}; "
          f"acknowledged to the kiosk through seq {acked}")
    print("  by kind: " + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())))
    return len(events) == kiosk_events and len({e.event_id for e in events}) == kiosk_events


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "frames").mkdir(parents=True)
    urls = setup_hub()
    # The kiosk trusts documents signed by this hub (add-kiosk puts this file in its bundle).
    (OUT / "kiosk" / "hub-keys.json").write_text(hub_keys_json(OUT / "hub"))
    with Services() as services:
        print("  " + services.hub("config", "push", str(PROGRAM), "--merchant", MERCHANT).rstrip())
        done = run_kiosk(script(urls, np.random.default_rng(2026)), services.broker.port)
        print("\n  the hub's view of its kiosks:")
        print("  " + services.hub("fleet", "status", "--merchant", MERCHANT).rstrip().replace("\n", "\n  "))
    sheet = contact_sheet(len(done))
    print("\n4. The kiosk ledger, folded into balances")
    from kiosk.ledger import Ledger

    program = load_program(PROGRAM)
    ledger = Ledger(OUT / "kiosk" / "ledger.sqlite3")
    members = sorted({e.member for e in ledger.events() if e.member})
    for member in members:
        state = ledger.member_state(member, program)
        print(f"  member {member}: {state.balance} stamps, {state.visits} visits, {state.redeemed} rewards redeemed")
    rejected = [e.reason for e in ledger.events() if e.kind == "scan_rejected"]
    print(f"  rejected scans recorded: {', '.join(rejected)}")
    kiosk_events = len(ledger.events())
    ledger.close()
    arrived = hub_report(kiosk_events)
    print(f"\nDisplay frames: {OUT / 'display'}/NN.png (all on one sheet: {sheet})")
    print(f"Camera frames:  {OUT / 'frames'}/   Passes: {OUT}/pass-*.png")
    print(f"Try the live loop on them:  .venv/bin/stempel-kiosk run --simulate --replay {OUT / 'frames'} "
          f"--data-dir {OUT / 'kiosk'}")
    outcomes = [r.outcome for _, r in done]
    if "redeemed" not in outcomes or "reward_ready" not in outcomes:
        sys.exit("demo: the reward was not earned and redeemed; see the lines above")
    if not arrived:
        sys.exit(f"demo: not every kiosk event reached the hub; see {OUT / 'ingest.log'}")


if __name__ == "__main__":
    main()
