"""The unit files in systemd/: `systemd-analyze verify` has nothing to say about them, they are
``Type=notify`` with a watchdog exactly where the program pings one, and the hardening stays.

verify checks that ExecStart's program exists, and /opt/stempel/venv is not there on a test
machine: each unit is verified as a copy whose ExecStart names this venv's console script (the
same command, arguments and all). verify reports most mistakes (a misspelt key, a bad value)
as warnings with exit status 0, so the test reads what it prints, and proves it would notice.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "systemd"
BIN = Path(sys.executable).parent
INSTALLED_BIN = "/opt/stempel/venv/bin/"
NAMES = ["stempel-kiosk.service", "stempel-hub-ingest@.service", "stempel-hub-web.service",
         "stempel-hub-automations.service"]
# The programs that ping a watchdog: the kiosk's camera loop (kiosk/loop.py), the ingest worker (cloud/link/events.py),
# the automations loop (cloud/automations/worker.py serve).
WATCHED = {"stempel-kiosk.service", "stempel-hub-ingest@.service", "stempel-hub-automations.service"}


def directives(path: Path) -> dict[str, dict[str, list[str]]]:
    """Section → key → values, in order (a key such as Environment= may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def service(name: str) -> dict[str, list[str]]:
    return directives(UNITS / name)["Service"]


def test_every_unit_file_is_listed():
    assert sorted(p.name for p in UNITS.glob("*.service")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notify_and_the_hardening(name):
    s = service(name)
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["Restart"] == ["always"]  # a watchdog kill, a failed start, a crash: started afresh
    assert (s["NoNewPrivileges"], s["ProtectSystem"]) == (["yes"], ["strict"])
    assert s["StateDirectory"] and s["StateDirectoryMode"] == ["0700"]
    assert ("WatchdogSec" in s) == (name in WATCHED)  # a WatchdogSec= nobody pings would kill a healthy service
    assert s["ExecStart"][0].startswith(INSTALLED_BIN)


def test_the_kiosk_may_use_the_camera_gpio_and_i2c_and_nothing_else_privileged():
    s = service("stempel-kiosk.service")
    assert set(s["SupplementaryGroups"][0].split()) == {"video", "gpio", "i2c"}
    assert "PrivateDevices" not in s  # the camera, GPIO and I2C are devices
    assert s["User"] == ["stempel"]


@pytest.mark.parametrize("name", NAMES)
def test_execstart_is_a_command_the_program_knows(name):
    """ExecStart's options exist: the same command with --help (click answers it before converting)."""
    argv = shlex.split(service(name)["ExecStart"][0].replace("%i", "1"))
    program = BIN / Path(argv[0]).name
    result = subprocess.run([str(program), *argv[1:], "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage:")


@pytest.fixture(scope="module")
def analyze() -> str:
    """systemd-analyze, or a failure naming the fix (never a skip: an unverified unit fails on a Pi)."""
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze not found: the unit tests verify the files with it; install the Debian "
                    "package `systemd` with `scripts/system-deps.sh test` (nothing is started)")
    return found


def verifiable_copy(name: str, folder: Path, text: str | None = None) -> Path:
    """The unit with ExecStart on this venv's console script; same name, same everything else."""
    text = (UNITS / name).read_text() if text is None else text
    assert INSTALLED_BIN in text
    copy = folder / name
    copy.write_text(text.replace(INSTALLED_BIN, f"{BIN}/"))
    return copy


def verify(analyze: str, *units: Path) -> tuple[int, list[str]]:
    """Exit status and the lines that mention one of *units* (what verify says about them)."""
    result = subprocess.run([analyze, "verify", *map(str, units)], capture_output=True, text=True, timeout=120)
    stems = [u.name.replace("@.service", "@") for u in units] + [str(units[0].parent)]
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, [line for line in lines if any(stem in line for stem in stems)]


def test_systemd_analyze_verify_has_nothing_to_say(analyze, tmp_path):
    copies = [verifiable_copy(name, tmp_path) for name in NAMES]
    for copy in copies:
        program = shlex.split(service(copy.name)["ExecStart"][0])[0]
        assert (BIN / Path(program).name).exists()
    status, said = verify(analyze, *copies)
    assert (status, said) == (0, [])


def test_verify_would_notice_a_mistake(analyze, tmp_path):
    """The check above is live: a misspelt key and a bad value are reported (with exit status 0)."""
    text = (UNITS / "stempel-kiosk.service").read_text()
    broken = text.replace("WatchdogSec=", "WatchdogSecs=").replace("NotifyAccess=main", "NotifyAccess=anyone")
    status, said = verify(analyze, verifiable_copy("stempel-kiosk.service", tmp_path, broken))
    assert any("WatchdogSecs" in line for line in said), said
    assert any("notify access" in line.lower() for line in said), said
