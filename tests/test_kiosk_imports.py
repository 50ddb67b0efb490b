"""The running kiosk loads what its configuration uses, and nothing it does not.

Why: the kiosk's memory target (bench/kiosk_footprint.py, BENCHMARKS.md "The appliance") is met
partly by imports made lazy: the hub link's MQTT stack only with ``[mqtt]``, Flask only with
``[staff]``, segno only with a join URL, the ``check`` and ``update`` commands only when run. One
top-level import anywhere on the way brings a module back without a word, so these tests run
``stempel-kiosk run --simulate`` for real (a fresh interpreter replaying one pass, which gets
stamped) and read ``sys.modules`` when it has finished. Memory itself is the benchmark's business.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from argon2 import PasswordHasher
from mosquitto import free_port
from PIL import Image

from kiosk.hardware import scenes

RUN = """
import json, sys
from kiosk.cli import main
main(sys.argv[2:], standalone_mode=False)
with open(sys.argv[1], "w") as out:
    json.dump(sorted(sys.modules), out)
"""

HUB_LINK = ("paho", "kiosk.common.bus", "kiosk.link.hub_link", "kiosk.link.events", "kiosk.protocol.messages")
STAFF_SCREEN = ("flask", "werkzeug", "jinja2", "flask_wtf", "wtforms", "argon2", "kiosk.web")
JOIN_QR = ("segno", "xml.sax", "urllib.request")
OTHER_COMMANDS = ("kiosk.check", "kiosk.update", "kiosk.releases")
NEVER = ("cv2", "picamera2", "kiosk.hardware.scenes", "sqlalchemy")
"""Never on this run path: the webcam's and the Pi camera's libraries (the replay camera is in use),
the scene renderer (for tests and the staff screen's simulated camera, on demand) and the hub's
database layer. (``pyzbar`` is loaded on purpose: the ``auto`` decoder opens ZBar at start, so that
a missing libzbar fails there, loudly, not at the first hard frame.)"""


def run_kiosk(tmp_path: Path, kiosk_dir: Path, url: str, config: str = "") -> set[str]:
    """``stempel-kiosk run --simulate`` over one frame showing the pass at *url*: the modules it loaded."""
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(scenes.render(url, np.random.default_rng(1), scenes.Look())).save(frames / "0.png")
    toml = tmp_path / "kiosk.toml"
    toml.write_text(f'[kiosk]\nid = "counter-1"\ndata_dir = "{kiosk_dir}"\n{config}')
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", RUN, str(out), "run", "--simulate", "--replay", str(frames),
                           "--config", str(toml), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["outcome"] == "stamped"  # the whole scan path ran
    return set(json.loads(out.read_text()))


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Those of *names* (packages with their submodules) that are in *modules*."""
    return sorted(m for m in modules if any(m == n or m.startswith(f"{n}.") for n in names))


@pytest.mark.slow  # spawns a process
def test_a_kiosk_without_hub_or_staff_screen_loads_neither(hub, kiosk_dir, tmp_path):
    modules = run_kiosk(tmp_path, kiosk_dir, hub.issue("Anna").url)
    assert loaded(modules, HUB_LINK + STAFF_SCREEN + JOIN_QR + OTHER_COMMANDS + NEVER) == []
    assert loaded(modules, ("cloud",)) == []  # the kiosk never imports hub code
    assert "kiosk.ledger" in modules and "zxingcpp" in modules  # it did read the modules of a scan


@pytest.mark.slow  # spawns a process
def test_the_staff_screen_and_the_join_qr_load_what_they_need_and_no_more(hub, kiosk_dir, tmp_path):
    pin_hash = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("2468")
    config = (f'join_url = "https://stempel.example/j/cafe-rosa.counter-1"\n'
              f'[staff]\nbind = "127.0.0.1"\nport = {free_port()}\npin_hash = "{pin_hash}"\n')
    modules = run_kiosk(tmp_path, kiosk_dir, hub.issue("Anna").url, config)
    assert loaded(modules, ("flask", "kiosk.web", "segno")) != []  # loaded where needed: the test sees imports
    assert loaded(modules, HUB_LINK + OTHER_COMMANDS + NEVER) == []
    assert loaded(modules, ("cloud",)) == []
