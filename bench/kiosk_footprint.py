"""Footprint of the running kiosk (issue 10): memory after 10,000 scans, start-to-READY, CPU per idle frame.

Why: the kiosk is an appliance on a Raspberry Pi that runs for months. Its memory must not
creep with every customer, a restart (systemd's watchdog, an update's rollback deadline)
must be quick, and the empty counter, where it spends most of the day, must leave the CPU
mostly idle. Everything is measured on the real ``stempel-kiosk run --simulate --json``
process (simulated hardware: mock GPIO pins, luma's dummy display), staff screen on
(``[staff]`` with a PIN hash from ``stempel-kiosk staff hash-pin`` and a till token),
default decoder, a programme without cooldown so that every scan commits a stamp.

How frames get in: ``--replay DIR``, where every "PNG" in DIR is a named pipe. The replay
camera opens them in order, and opening one blocks until this script writes a frame into
it, as a real camera's capture blocks until the sensor delivers. So this script decides
what the kiosk sees and when, the kiosk never runs out of frames, and when this script's
open of the next pipe returns, the kiosk has handled every frame before it (the loop is one
thread): a checkpoint where the process sits blocked, to read ``/proc/<pid>``. Unlike a
Pi camera, the replay camera decodes a PNG per frame: that cost is measured separately
and reported beside the idle figure.

1. **Memory.** ``--scans`` frames of rendered phones showing passes (``kiosk.hardware.scenes``,
   ``--members`` members in turn, each frame checked to decode here first), so every frame
   goes decode → verify → rules → ledger commit → display → LED/buzzer; an empty-counter
   frame before every tenth, so the decoder's work on empty frames is in the figure. Meanwhile a
   "tablet" signed in to the staff screen polls its live view every 0.7 s, as staff.js
   does. ``VmRSS`` (and ``RssAnon``) at checkpoints, and ``VmHWM``, the peak.
2. **Idle CPU.** Frames of the empty counter (rendered, sensor noise, no code) written at
   ``--fps`` by the clock for ``--idle-seconds``; CPU = utime + stime of the process from
   ``/proc/<pid>/stat``. Per frame, and as % of one core at ``--fps`` (per-frame CPU × fps,
   so frames a busy machine delays do not dilute it). Once with nobody looking at the staff
   screen (the target), once with the tablet polling (for information).
3. **Start-to-READY.** ``--starts`` fresh starts on the same data folder (a ledger holding
   the scans), virtual camera: from the exec to ``READY=1`` on a NOTIFY_SOCKET datagram
   socket bound here; and the CPU seconds the process had used by then.

Memory and CPU seconds are counted by the kernel for the process alone, so other work on
the machine barely moves them; start-to-READY is wall-clock by definition, so it grows on a
busy machine: the CPU seconds beside it do not. Exits 1 when a target is missed: RSS after
the scans under 80 MiB, median start-to-READY under 3 s, idle under 20 % of one core.

    .venv/bin/python bench/kiosk_footprint.py [--scans 10000] [--members 200] [--fps 15]
        [--idle-seconds 20] [--starts 5] [--seed 20261124] [--json]
"""

from __future__ import annotations

import http.cookiejar
import io
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scan_pipeline import issue_passes, machine  # noqa: E402
from cloud.devbroker import free_port  # noqa: E402
from kiosk.hardware import scenes  # noqa: E402
from kiosk.hardware.camera import load_image  # noqa: E402
from kiosk.hardware.decoder import AutoDecoder  # noqa: E402
from kiosk.web.auth import new_pos_token  # noqa: E402

KIOSK = str(Path(sys.executable).parent / "stempel-kiosk")
PIN = "2468"
TABLET_POLL_S = 0.7  # what staff.js waits between two polls of the live view
WARMUP_FRAMES = 30  # idle frames before each idle measurement: the idle screen, the last blinks
CHECKPOINTS = 10  # memory readings during the scans
EMPTY_EVERY = 10  # an empty-counter frame before every tenth scan
TARGET_RSS_MIB = 80.0
TARGET_READY_S = 3.0
TARGET_IDLE_PCT = 20.0
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_KEEP_OUT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "STEMPEL_CONFIG", "STEMPEL_HARDWARE",
             "STEMPEL_DATA_DIR")


def progress(message: str) -> None:
    click.echo(message, err=True)


# --- /proc ----------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of *pid* (every thread, the ended ones too), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 onwards
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def memory(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon, RssFile, VmHWM (MiB) and Threads of *pid*, from /proc/<pid>/status, and
    its open file descriptors (a kiosk that runs for months must not leak them either)."""
    values: dict[str, float] = {"FDs": len(os.listdir(f"/proc/{pid}/fd"))}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            values[key] = round(int(value.split()[0]) / 1024, 1)
        elif key == "Threads":
            values[key] = int(value)
    return values


# --- the kiosk's folder, config and frames --------------------------------------------------

@dataclass(frozen=True)
class Setup:
    config: Path
    data_dir: Path
    staff_url: str
    scan_frames: list[bytes]  # PNGs of phones showing passes, each checked to decode
    idle_frames: list[bytes]  # PNGs of the empty counter, each checked to decode to nothing


def pin_hash_line() -> str:
    """``pin_hash = "..."``, as the installer makes it."""
    done = subprocess.run([KIOSK, "staff", "hash-pin", "--pin", PIN], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def write_config(root: Path, data_dir: Path, port: int) -> Path:
    _token, digest = new_pos_token()
    config = root / "kiosk.toml"
    config.write_text(f'[kiosk]\nid = "counter-1"\nshop_name = "Bench Cafe"\ndata_dir = "{data_dir}"\n\n'
                      '[program]\nname = "Bench Cafe"\n[program.limits]\n'
                      "cooldown_minutes = 0  # every scan commits a stamp: the worst case\n\n"
                      f'[staff]\nbind = "127.0.0.1"\nport = {port}\n{pin_hash_line()}\n'
                      f'pos_token_sha256 = "{digest}"\n')
    return config


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def render_frames(urls: list[str], idle: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """One readable frame per pass (redrawn until the default decoder reads it: a frame it
    misses would never reach the ledger), and *idle* frames of the empty counter."""
    decoder, rng = AutoDecoder(), np.random.default_rng(seed)
    scans = []
    for url in urls:
        while True:
            pixels = scenes.render(url, rng)
            if decoder.decode(pixels) == [url.encode()]:
                scans.append(png(pixels))
                break
    empty = []
    while len(empty) < idle:
        pixels = scenes.render([], rng)
        if not decoder.decode(pixels):
            empty.append(png(pixels))
    return scans, empty


def prepare(root: Path, members: int, seed: int) -> Setup:
    (root / "hub").mkdir()
    progress(f"issuing {members} passes and rendering their frames ...")
    passes, keys_json = issue_passes(root / "hub", members, seed)
    data_dir = root / "kiosk"
    data_dir.mkdir()
    (data_dir / "keys.json").write_text(keys_json)
    port = free_port()
    config = write_config(root, data_dir, port)
    scan_frames, idle_frames = render_frames([p.url for p in passes], 30, seed)
    return Setup(config, data_dir, f"http://127.0.0.1:{port}", scan_frames, idle_frames)


def child_env() -> dict[str, str]:
    """This environment without what would redirect the kiosk (systemd's sockets, STEMPEL_*)."""
    return {k: v for k, v in os.environ.items() if k not in _KEEP_OUT}


# --- the camera: a folder of named pipes ----------------------------------------------------

class PipeCamera:
    """The frames the replay camera of *process* reads: pipe ``i`` gets the ``i``-th frame fed.

    ``open_next`` blocks until the kiosk opens the next pipe, i.e. has handled every frame
    before it. A guard thread unblocks it when the kiosk exits, or kills a kiosk that has
    not taken a frame for *stall_after* seconds, so the bench never hangs. (PIL cannot seek a
    pipe: it reads the frame into memory and drops the file object, which CPython closes at once.)
    """

    def __init__(self, folder: Path, count: int) -> None:
        folder.mkdir()
        self.paths = [folder / f"{i:07d}.png" for i in range(count)]
        for path in self.paths:
            os.mkfifo(path)
        self.folder = folder
        self.fed = 0
        self.process: subprocess.Popen | None = None
        self._moved = time.monotonic()
        self._done = threading.Event()

    def watch(self, process: subprocess.Popen, stall_after: float = 60.0) -> None:
        self.process = process
        threading.Thread(target=self._guard, args=(stall_after,), daemon=True).start()

    def open_next(self):
        if self.fed >= len(self.paths):
            raise RuntimeError("no pipes left: raise the frame count")
        pipe = open(self.paths[self.fed], "wb")  # noqa: SIM115 - closed by feed()
        self._moved = time.monotonic()
        if self.process is not None and self.process.poll() is not None:
            pipe.close()
            raise RuntimeError(f"the kiosk exited with status {self.process.returncode}; see its log")
        return pipe

    def feed(self, pipe, frame: bytes) -> None:
        try:
            with pipe:
                pipe.write(frame)
        except BrokenPipeError:
            raise RuntimeError("the kiosk stopped reading its camera; see its log") from None
        self.fed += 1

    def show(self, frame: bytes) -> None:
        self.feed(self.open_next(), frame)

    def close(self) -> None:
        self._done.set()

    def _guard(self, stall_after: float) -> None:
        while not self._done.wait(0.2):
            if self.process.poll() is None and time.monotonic() - self._moved > stall_after:
                progress(f"the kiosk took no frame for {stall_after:.0f} s: killing it")
                self.process.kill()
            if self.process.poll() is not None and self.fed < len(self.paths):
                try:  # a reader end of the pipe being opened: lets a blocked open_next() return
                    os.close(os.open(self.paths[self.fed], os.O_RDONLY | os.O_NONBLOCK))
                except OSError:
                    pass


class Results:
    """Reads the kiosk's ``--json`` lines (one per scan) on a thread: outcomes and times."""

    def __init__(self, stream) -> None:
        self.outcomes: Counter[str] = Counter()
        self.total_ms: list[float] = []
        self._count = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._count:
                self.outcomes[result["outcome"]] += 1
                self.total_ms.append(result["total_ms"])
                self._count.notify_all()

    def wait_for(self, count: int, timeout: float = 30.0) -> int:
        with self._count:
            self._count.wait_for(lambda: len(self.total_ms) >= count, timeout)
            return len(self.total_ms)


class Tablet:
    """The staff screen open on a tablet: signed in once, then polling the live view while ``polling``."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.polling = threading.Event()
        self.polls = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> "Tablet":
        page = self.opener.open(f"{self.base}/login", timeout=10).read().decode()
        body = urllib.parse.urlencode({"csrf_token": _CSRF.search(page).group(1), "pin": PIN}).encode()
        counter = self.opener.open(f"{self.base}/login", body, timeout=10).read().decode()
        if 'id="live"' not in counter:
            raise RuntimeError("the staff screen did not open with the PIN")
        self.polling.set()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.polling.set()
        self._thread.join(10)

    def _poll(self) -> None:
        while not self._stop.wait(TABLET_POLL_S):
            self.polling.wait()
            if self._stop.is_set():
                return
            try:
                self.opener.open(f"{self.base}/live", timeout=10).read()
                self.polls += 1
            except OSError:
                self.errors += 1


# --- the measurements -----------------------------------------------------------------------

def start_kiosk(setup: Setup, replay: Path | None, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``stempel-kiosk run --simulate --json``: replaying *replay* (results on its stdout, a pipe),
    else with the virtual camera (nothing to read: stdout discarded)."""
    command = [KIOSK, "run", "--simulate", "--config", str(setup.config), "--json"]
    if replay is not None:
        command += ["--replay", str(replay)]
    with open(log, "ab") as err:
        return subprocess.Popen(command, env={**child_env(), **(env or {})}, stderr=err, text=True,
                                stdout=subprocess.PIPE if replay is not None else subprocess.DEVNULL,
                                cwd=setup.config.parent)


def stop_kiosk(process: subprocess.Popen, camera: PipeCamera | None = None, idle: bytes | None = None) -> int:
    """SIGTERM; a loop waiting for its next frame gets one more, so it sees the stop."""
    process.send_signal(signal.SIGTERM)
    if camera is not None and idle is not None and camera.fed < len(camera.paths):
        try:
            camera.show(idle)
        except RuntimeError:
            pass  # it had stopped already
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise RuntimeError("the kiosk did not stop within 30 s of SIGTERM") from None


def scan(camera: PipeCamera, process: subprocess.Popen, setup: Setup, scans: int) -> list[dict]:
    """Show *scans* pass frames, an empty counter between every ``EMPTY_EVERY`` of them (customers
    come and go: the decoder's work on empty frames belongs to the steady state too), reading the
    memory at checkpoints while the kiosk waits for a frame."""
    every = max(1, scans // CHECKPOINTS)
    readings = []
    started = time.monotonic()
    for i in range(scans):
        if i % EMPTY_EVERY == 0:
            camera.show(setup.idle_frames[(i // EMPTY_EVERY) % len(setup.idle_frames)])
        pipe = camera.open_next()
        if i % every == 0 and i:
            readings.append({"scans": i, **memory(process.pid)})
            progress(f"  {i} scans, RSS {readings[-1]['VmRSS']} MiB, {i / (time.monotonic() - started):.0f} scans/s")
        camera.feed(pipe, setup.scan_frames[i % len(setup.scan_frames)])
    return readings


def idle(camera: PipeCamera, process: subprocess.Popen, frames: list[bytes], fps: float, seconds: float) -> dict:
    """Empty-counter frames at *fps* by the clock; CPU of the process over the measured frames."""
    count = round(fps * seconds)
    period = 1.0 / fps
    begin = time.perf_counter()
    cpu0 = wall0 = 0.0
    for i in range(WARMUP_FRAMES + count + 1):
        delay = begin + i * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        pipe = camera.open_next()  # the kiosk has handled every frame before this one
        if i == WARMUP_FRAMES:
            cpu0, wall0 = cpu_seconds(process.pid), time.perf_counter()
        elif i == WARMUP_FRAMES + count:
            cpu, wall = cpu_seconds(process.pid) - cpu0, time.perf_counter() - wall0
            camera.feed(pipe, frames[i % len(frames)])
            return {"frames": count, "seconds": round(wall, 2), "fps_achieved": round(count / wall, 2),
                    "cpu_s": round(cpu, 2), "cpu_ms_per_frame": round(1000 * cpu / count, 2),
                    "pct_core_measured": round(100 * cpu / wall, 1),
                    "pct_core_at_fps": round(100 * cpu / count * fps, 1)}
        camera.feed(pipe, frames[i % len(frames)])
    raise AssertionError("unreachable")


def idle_breakdown(frames: list[bytes], folder: Path) -> dict:
    """In this process, CPU per empty frame of the replay camera's PNG read and of the default
    decoder: what the kiosk's idle figure is made of (a Pi camera reads no PNG)."""
    paths = []
    for i, frame in enumerate(frames):
        path = folder / f"{i}.png"
        path.write_bytes(frame)
        paths.append(path)
    decoder, rounds = AutoDecoder(), 5
    t0 = time.process_time()
    pixels = [load_image(p) for _ in range(rounds) for p in paths]
    t1 = time.process_time()
    for frame in pixels:
        decoder.decode(frame)
    t2 = time.process_time()
    return {"png_read_ms": round(1000 * (t1 - t0) / len(pixels), 2),
            "decode_ms": round(1000 * (t2 - t1) / len(pixels), 2)}


def wait_ready(sock: socket.socket, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return False
        if b"READY=1" in data.split(b"\n"):
            return True
    return False


def start_to_ready(setup: Setup, root: Path, starts: int) -> list[dict]:
    """*starts* fresh processes (virtual camera): exec to READY=1, and CPU and RSS at READY."""
    samples = []
    for n in range(starts):
        address = root / f"notify-{n}.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(address))
            t0 = time.perf_counter()
            process = start_kiosk(setup, None, root / "ready.log", {"NOTIFY_SOCKET": str(address)})
            try:
                if not wait_ready(sock, 60):
                    raise RuntimeError("no READY=1 within 60 s; see ready.log")
                ready = time.perf_counter() - t0
                sample = {"ready_s": round(ready, 3), "cpu_s": round(cpu_seconds(process.pid), 2),
                          "rss_mib": memory(process.pid)["VmRSS"]}
            finally:
                status = stop_kiosk(process)
        if status != 0:
            raise RuntimeError(f"the kiosk exited with {status} after SIGTERM; see ready.log")
        samples.append(sample)
        progress(f"  start {n + 1}: READY after {sample['ready_s']:.2f} s ({sample['cpu_s']:.2f} CPU s)")
    return samples


def running_kiosk(setup: Setup, root: Path, scans: int, fps: float, idle_seconds: float) -> dict:
    """Phases 1 and 2 on one kiosk process: the scans with the tablet polling, then idle twice."""
    frames = scans + -(-scans // EMPTY_EVERY) + 2 * (WARMUP_FRAMES + round(fps * idle_seconds) + 1) + 2
    camera = PipeCamera(root / "camera", frames)
    process = start_kiosk(setup, camera.folder, root / "kiosk.log")
    camera.watch(process)
    results, tablet, out = Results(process.stdout), None, {}
    try:
        camera.show(setup.idle_frames[0])  # the first capture: camera, display, ledger are up
        out["at_first_frame"] = memory(process.pid)
        tablet = Tablet(setup.staff_url).start()
        out["tablet_signed_in"] = memory(process.pid)  # the loop still waits for its second frame
        progress(f"kiosk pid {process.pid} up, RSS {out['at_first_frame']['VmRSS']} MiB, "
                 f"{out['tablet_signed_in']['VmRSS']} MiB once the tablet signed in; {scans} scans ...")
        t0 = time.monotonic()
        out["checkpoints"] = scan(camera, process, setup, scans)
        pipe = camera.open_next()  # every scan handled
        out["scan_seconds"] = time.monotonic() - t0
        out["after_scans"] = {"scans": scans, **memory(process.pid)}
        camera.feed(pipe, setup.idle_frames[0])
        out["handled"] = results.wait_for(scans)
        for key, polling in (("staff_screen_unwatched", False), ("tablet_polling", True)):
            (tablet.polling.set if polling else tablet.polling.clear)()
            progress(f"idle at {fps:g} frames/s for {idle_seconds:g} s, {key.replace('_', ' ')} ...")
            out[key] = idle(camera, process, setup.idle_frames, fps, idle_seconds)
        out["at_end"] = memory(process.pid)
    finally:
        if tablet is not None:
            tablet.stop()
        status = stop_kiosk(process, camera, setup.idle_frames[0])
        camera.close()
    if status != 0:
        raise RuntimeError(f"the kiosk exited with {status}; see {root / 'kiosk.log'}")
    out.update(results=results, tablet_polls=tablet.polls, tablet_errors=tablet.errors)
    return out


def measure(scans: int, members: int, fps: float, idle_seconds: float, starts: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="stempel-footprint-") as tmp:
        root = Path(tmp)
        setup = prepare(root, members, seed)
        run = running_kiosk(setup, root, scans, fps, idle_seconds)
        progress(f"{starts} starts to READY=1 ...")
        ready = start_to_ready(setup, root, starts)
        breakdown = idle_breakdown(setup.idle_frames, root)
    results = run["results"]
    times = np.asarray(results.total_ms)
    return {
        "machine": machine(),
        "setup": {"scans": scans, "members": members, "fps": fps, "idle_seconds": idle_seconds, "seed": seed,
                  "decoder": "auto (default)", "feed": "replay camera on named pipes",
                  "program": "stamps, cooldown 0 (every scan commits)"},
        "memory": {key: run[key] for key in ("at_first_frame", "tablet_signed_in", "checkpoints", "after_scans",
                                             "at_end")},
        "scans": {"handled": run["handled"], "outcomes": dict(results.outcomes),
                  "seconds": round(run["scan_seconds"], 1), "per_second": round(scans / run["scan_seconds"], 1),
                  "total_ms_p50": round(float(np.percentile(times, 50)), 2) if len(times) else None,
                  "total_ms_p95": round(float(np.percentile(times, 95)), 2) if len(times) else None,
                  "tablet_polls": run["tablet_polls"], "tablet_errors": run["tablet_errors"]},
        "idle": {"staff_screen_unwatched": run["staff_screen_unwatched"], "tablet_polling": run["tablet_polling"],
                 "bench_process_breakdown": breakdown},
        "ready": {"starts": ready, "median_s": round(statistics.median(s["ready_s"] for s in ready), 3),
                  "max_s": max(s["ready_s"] for s in ready),
                  "median_cpu_s": round(statistics.median(s["cpu_s"] for s in ready), 2)},
    }


def verdicts(report: dict) -> dict[str, dict]:
    rss = report["memory"]["after_scans"]["VmRSS"]
    ready = report["ready"]["median_s"]
    idle_pct = report["idle"]["staff_screen_unwatched"]["pct_core_at_fps"]
    all_scanned = report["scans"]["handled"] == report["setup"]["scans"]
    return {
        "rss": {"value": rss, "target": f"< {TARGET_RSS_MIB:g} MiB after the scans", "met": rss < TARGET_RSS_MIB},
        "ready": {"value": ready, "target": f"median < {TARGET_READY_S:g} s", "met": ready < TARGET_READY_S},
        "idle": {"value": idle_pct, "target": f"< {TARGET_IDLE_PCT:g} % of one core at {report['setup']['fps']:g} "
                                              "frames/s", "met": idle_pct < TARGET_IDLE_PCT},
        "scans": {"value": report["scans"]["handled"], "target": "every scan frame handled", "met": all_scanned},
    }


def print_report(report: dict) -> None:
    m, mem, sc, idle_, rd = (report["machine"], report["memory"], report["scans"], report["idle"], report["ready"])
    s = report["setup"]
    click.echo(f"stempel-kiosk run --simulate, staff screen on; {m['nproc']} CPUs ({m['cpu']}), "
               f"Python {m['python']}")
    click.echo(f"\nmemory (MiB) over {s['scans']} scans of {s['members']} members "
               f"({sc['per_second']:.0f} scans/s, total p50 {sc['total_ms_p50']} ms, p95 {sc['total_ms_p95']} ms; "
               f"outcomes {sc['outcomes']}; tablet polls {sc['tablet_polls']}):")
    click.echo(f"  {'scans':>11} {'VmRSS':>7} {'RssAnon':>8} {'RssFile':>8} {'VmHWM':>7} {'threads':>8} {'FDs':>4}")
    rows = [("first frame", mem["at_first_frame"]), ("signed in", mem["tablet_signed_in"]),
            *((str(r["scans"]), r) for r in mem["checkpoints"]), (str(s["scans"]), mem["after_scans"]),
            ("after idle", mem["at_end"])]
    for label, row in rows:
        click.echo(f"  {label:>11} {row['VmRSS']:>7} {row['RssAnon']:>8} {row['RssFile']:>8} "
                   f"{row['VmHWM']:>7} {row['Threads']:>8} {row['FDs']:>4}")
    click.echo(f"\nidle at {s['fps']:g} frames/s (frames with no code), CPU = utime+stime of the process:")
    for label, key in (("staff screen not looked at", "staff_screen_unwatched"),
                       ("tablet polling the staff screen", "tablet_polling")):
        r = idle_[key]
        click.echo(f"  {label:<32} {r['cpu_ms_per_frame']:>6.2f} CPU ms/frame = {r['pct_core_at_fps']:>5.1f} % "
                   f"of one core at {s['fps']:g}/s (measured {r['pct_core_measured']} % at "
                   f"{r['fps_achieved']} frames/s over {r['seconds']} s)")
    b = idle_["bench_process_breakdown"]
    click.echo(f"  of which, measured in the bench process: decoder {b['decode_ms']} ms/frame, "
               f"replay camera's PNG read {b['png_read_ms']} ms/frame (a Pi camera reads none)")
    click.echo(f"\nstart to READY=1 ({len(rd['starts'])} starts, ledger of {s['scans']}+ events): median "
               f"{rd['median_s']:.2f} s, max {rd['max_s']:.2f} s wall; {rd['median_cpu_s']:.2f} CPU s; "
               f"RSS at READY {rd['starts'][0]['rss_mib']} MiB")
    click.echo("")
    for name, v in report["targets"].items():
        click.echo(f"target {name:<6} {v['target']:<45} {v['value']!s:>8}  {'met' if v['met'] else 'MISSED'}")


@click.command()
@click.option("--scans", default=10_000, show_default=True, help="pass frames shown before memory is read")
@click.option("--members", default=200, show_default=True, help="members whose passes take turns")
@click.option("--fps", default=15.0, show_default=True, help="idle frames per second")
@click.option("--idle-seconds", default=20.0, show_default=True, help="length of each idle measurement")
@click.option("--starts", default=5, show_default=True, help="starts timed to READY=1")
@click.option("--seed", default=20261124, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(scans: int, members: int, fps: float, idle_seconds: float, starts: int, seed: int, as_json: bool) -> None:
    report = measure(scans, members, fps, idle_seconds, starts, seed)
    report["targets"] = verdicts(report)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_report(report)
    sys.exit(0 if all(v["met"] for v in report["targets"].values()) else 1)


if __name__ == "__main__":
    main()
