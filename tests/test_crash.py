"""Power-cut safety: SIGKILL the kiosk between scans and mid-burst, then restart it.

What must survive: every scan the kiosk reported as stamped (it reports only after the
commit) is in the ledger after restart, the SQLite file passes its integrity check, and
the restarted kiosk carries on with the next sequence number.
"""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kiosk.hardware import scenes

pytestmark = pytest.mark.slow  # stempel-kiosk processes, SIGKILLed

KIOSK = str(Path(sys.executable).parent / "stempel-kiosk")
LOOK = scenes.Look(rotation_deg=10, blur=0.4, noise=3)


@pytest.fixture
def burst(hub, tmp_path) -> list[Path]:
    """24 frames of 24 different members, so every scan is a fresh stamp."""
    rng = np.random.default_rng(5)
    frames = []
    for i in range(24):
        url = hub.issue(f"Member {i}").url
        path = tmp_path / f"frame{i:02d}.png"
        Image.fromarray(scenes.render(url, rng, LOOK)).save(path)
        frames.append(path)
    return frames


def start(frames, kiosk_dir) -> subprocess.Popen:
    return subprocess.Popen([KIOSK, "scan-image", *map(str, frames), "--data-dir", str(kiosk_dir), "--json"],
                            stdout=subprocess.PIPE, text=True)


def shown_stamps(lines: list[str]) -> set[str]:
    rows = [json.loads(line) for line in lines if line.strip()]
    return {eid for r in rows if r["outcome"] in ("stamped", "reward_ready") for eid in r["event_ids"]}


def ledger_rows(kiosk_dir: Path) -> list[tuple[int, str]]:
    db = sqlite3.connect(kiosk_dir / "ledger.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return db.execute("SELECT kiosk_seq, event_id FROM events ORDER BY kiosk_seq").fetchall()
    finally:
        db.close()


def test_sigkill_between_scans_loses_nothing(burst, kiosk_dir):
    proc = start(burst[:12], kiosk_dir)
    lines = [proc.stdout.readline() for _ in range(5)]  # five scans shown to customers
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    stored = {eid for _, eid in ledger_rows(kiosk_dir)}
    assert [json.loads(line)["outcome"] for line in lines] == ["stamped"] * 5
    assert shown_stamps(lines) <= stored

    after = subprocess.run([KIOSK, "scan-image", *map(str, burst[12:]), "--data-dir", str(kiosk_dir), "--json"],
                           capture_output=True, text=True, check=True, timeout=120)
    rows = ledger_rows(kiosk_dir)
    assert shown_stamps(after.stdout.splitlines()) <= {eid for _, eid in rows}
    assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))  # no gap, no reuse


@pytest.mark.parametrize("delay", [0.0, 0.03, 0.08])
def test_sigkill_during_a_burst_loses_no_shown_stamp(burst, kiosk_dir, delay):
    proc = start(burst, kiosk_dir)
    lines = [proc.stdout.readline()]  # the burst has begun: one scan was shown
    time.sleep(delay)  # then somewhere inside the burst (a scan takes ~10-20 ms)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines += proc.stdout.read().splitlines()
    proc.stdout.close()
    rows = ledger_rows(kiosk_dir)
    assert shown_stamps(lines) <= {eid for _, eid in rows}
    assert len(rows) >= len(shown_stamps(lines))
    # The restarted kiosk stamps the rest; each member at most once (cooldown), none lost.
    subprocess.run([KIOSK, "scan-image", *map(str, burst), "--data-dir", str(kiosk_dir), "--json"],
                   capture_output=True, text=True, check=True, timeout=120)
    db = sqlite3.connect(kiosk_dir / "ledger.sqlite3")
    per_member = db.execute("SELECT member, SUM(delta) FROM events GROUP BY member").fetchall()
    db.close()
    assert len(per_member) == 24 and all(total == 1 for _, total in per_member)
