"""Updates with a way back: releases side by side, an atomic switch, rollback when READY=1 never comes.

The rollback tests run real processes: each fake release is a folder whose
``bin/stempel-kiosk`` is a small script, and ``Supervisor`` does systemd's part for a
``Type=notify`` unit: it starts ``current/bin/stempel-kiosk run`` with a real
``$NOTIFY_SOCKET`` and waits for ``READY=1`` up to its ``TimeoutStartSec``. One slow test
builds a real wheel of this project and installs it into real release venvs.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from notifysock import NotifySocket

from kiosk.ledger import Ledger
from kiosk.ledger_schema import LEDGER_SCHEMA, OnDisk, Schema, Step, read_version
from kiosk.releases import (
    BadWheel,
    Layout,
    NoPermission,
    NoSpace,
    UpdateError,
    VenvBuilder,
    WheelInfo,
    check_wheel,
    pip_failure,
)
from kiosk.update import (
    LedgerAhead,
    RollbackFailed,
    RolledBack,
    Systemctl,
    Updater,
    release_ledger_schema,
    update,
)

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 1.5  # the supervisor's TimeoutStartSec: a fake release is READY in well under it


# --- wheels and releases ----------------------------------------------------------------------

def make_wheel(folder: Path, version: str, *, meta_version: str | None = None, console: bool = True,
               name: str = "stempel", ledger_schema: int | str | None = None) -> Path:
    """A minimal but well-formed wheel: METADATA, WHEEL, entry points, RECORD, one module, and
    with *ledger_schema* a ``kiosk/ledger_schema.py`` saying ``LEDGER_SCHEMA = <it>`` (without:
    a release made before ledger versions)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        wheel.writestr("kiosk/__init__.py", f"__version__ = {version!r}\n")
        if ledger_schema is not None:
            wheel.writestr("kiosk/ledger_schema.py", f'"""The ledger\'s version."""\n\nLEDGER_SCHEMA = {ledger_schema}\n')
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {meta_version or version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        if console:
            wheel.writestr(f"{info}/entry_points.txt", "[console_scripts]\nstempel-kiosk = kiosk.cli:main\n")
        wheel.writestr(f"{info}/RECORD", "")
    return path


FAKE_KIOSK = """#!{python}
import os, signal, socket, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with open({runlog!r}, "a") as log:
    log.write({version!r} + "\\n")
behaviour = {behaviour!r}
if behaviour == "crash":
    sys.exit(1)
if behaviour == "migrates-then-crashes":  # a newer release: migrates the ledger, then fails before READY
    from kiosk.ledger import Ledger
    from kiosk.ledger_schema import Schema, Step
    Ledger({ledger!r}, Schema(2, (Step(2, lambda db: db.execute("CREATE TABLE notes (note TEXT)")),))).close()
    with open({ledger!r}, "rb") as src, open({ledger!r} + ".migrated", "wb") as copy:
        copy.write(src.read())  # the ledger as this release left it, for the test to compare
    sys.exit(1)
if behaviour in ("ready", "dies-after-ready"):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.sendto(b"READY=1\\nSTATUS=fake " + {version!r}.encode(), os.environ["NOTIFY_SOCKET"])
if behaviour == "dies-after-ready":
    time.sleep(0.2)
    sys.exit(1)
while True:  # "hang": a kiosk whose camera never comes up and so never says READY=1
    time.sleep(60)
"""


class FakeBuilder:
    """Builds a release in milliseconds: ``bin/stempel-kiosk`` behaves as *behaviours* says
    (``ready`` by default; ``hang``, ``crash``, ``dies-after-ready``, ``migrates-then-crashes``
    the *ledger*), and the wheel's ``kiosk`` files land in ``lib/pythonX.Y/site-packages`` as pip
    puts them. *fail* raises instead."""

    def __init__(self, runlog: Path, behaviours: dict[str, str] | None = None, ledger: Path | None = None) -> None:
        self.runlog, self.behaviours, self.ledger = runlog, behaviours or {}, ledger
        self.built: list[str] = []
        self.calls: list[tuple[list[Path], bool]] = []
        self.fail: OSError | None = None

    def build(self, wheel: WheelInfo, dest: Path, find_links, allow_index: bool) -> None:
        self.calls.append((list(find_links), allow_index))
        (dest / "bin").mkdir()
        if self.fail is not None:
            raise self.fail
        script = dest / "bin" / "stempel-kiosk"
        script.write_text(FAKE_KIOSK.format(python=sys.executable, runlog=str(self.runlog), version=wheel.version,
                                            behaviour=self.behaviours.get(wheel.version, "ready"),
                                            ledger=str(self.ledger)))
        script.chmod(0o755)
        site = dest / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        with zipfile.ZipFile(wheel.path) as archive:
            archive.extractall(site, [n for n in archive.namelist() if n.startswith("kiosk/")])
        (dest / "wheelhouse").mkdir()
        shutil.copy(wheel.path, dest / "wheelhouse")
        self.built.append(wheel.version)


class Supervisor:
    """systemd's side of a ``Type=notify`` unit whose ExecStart is ``current/bin/stempel-kiosk run``:
    a start succeeds when READY=1 arrives, fails when the process exits first, and after
    *start_timeout* (TimeoutStartSec) the process is killed and the start fails."""

    def __init__(self, layout: Layout, notify: NotifySocket, start_timeout: float = START_TIMEOUT) -> None:
        self.exec_start = layout.current / "bin" / "stempel-kiosk"
        self.notify, self.start_timeout = notify, start_timeout
        self.proc: subprocess.Popen | None = None
        self.ready = False
        self.started: list[str] = []  # the release each start ran, resolved as exec(2) does

    def restart(self, unit: str) -> bool:
        assert unit == "stempel-kiosk"
        self.stop()
        self.notify.drain()
        self.started.append(Path(os.path.realpath(self.exec_start)).parents[1].name)
        self.proc = subprocess.Popen([str(self.exec_start), "run"], env={**os.environ, **self.notify.env()})
        deadline = time.monotonic() + self.start_timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.notify.next(timeout=min(left, 0.05))
            if message is not None and message.get("READY") == "1":
                self.ready = True
                return True
            if self.proc.poll() is not None:
                return False  # exited before READY=1
        self.stop()  # TimeoutStartSec passed: systemd kills it and the start job fails
        return False

    def is_active(self, unit: str) -> bool:
        return self.ready and self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.ready = False


class ScriptedServices:
    """A service manager without processes, for the bookkeeping tests: releases in *broken* never start."""

    def __init__(self, layout: Layout, broken: tuple[str, ...] = ()) -> None:
        self.layout, self.broken = layout, set(broken)
        self.running: str | None = None
        self.restarts: list[str | None] = []

    def restart(self, unit: str) -> bool:
        version = self.layout.target(self.layout.current)
        self.restarts.append(version)
        self.running = None if version in self.broken else version
        return self.running is not None

    def is_active(self, unit: str) -> bool:
        return self.running is not None


@pytest.fixture
def layout(tmp_path) -> Layout:
    return Layout(tmp_path / "root")


@pytest.fixture
def wheels(tmp_path) -> Path:
    return tmp_path / "dist"


@pytest.fixture
def runlog(tmp_path) -> Path:
    return tmp_path / "runs.log"


@pytest.fixture
def ledger_file(layout) -> Path:
    """A real kiosk ledger with one event, in the data folder the unit gives the kiosk, as a release
    that reads ledger version 1 made it (the tests' releases then migrate it to a version 2 of theirs)."""
    path = layout.root / "var" / "lib" / "stempel" / "ledger.sqlite3"
    ledger = Ledger(path, Schema(1))
    ledger.reject("bad_signature", {"why": "test"}, datetime(2026, 3, 2, 9, tzinfo=timezone.utc), 1.0, "boot-1")
    ledger.close()
    return path


@pytest.fixture
def supervisor(tmp_path, layout):
    notify = NotifySocket(tmp_path)
    sup = Supervisor(layout, notify)
    yield sup
    sup.stop()
    notify.close()


def runs(runlog: Path) -> list[str]:
    return runlog.read_text().split() if runlog.exists() else []


def updater(layout, services, builder, **kw) -> Updater:
    kw.setdefault("settle", 0.0)
    kw.setdefault("deadline", 5.0)
    return Updater(layout, services, builder, **kw)


# --- the rollback, with real processes and a real NOTIFY_SOCKET ---------------------------------

def test_release_that_never_sends_ready_is_rolled_back_and_the_ledger_is_untouched(
        layout, wheels, runlog, ledger_file, supervisor):
    ledger_before = ledger_file.read_bytes()
    ledger_stat = ledger_file.stat()
    builder = FakeBuilder(runlog, {"1.1.0": "hang"})
    up = updater(layout, supervisor, builder, settle=0.3)

    first = up.install(make_wheel(wheels, "1.0.0"))
    assert (first.action, first.previous) == ("switched", None)
    assert supervisor.is_active("stempel-kiosk") and runs(runlog) == ["1.0.0"]

    started = time.monotonic()
    with pytest.raises(RolledBack) as rolled:
        up.install(make_wheel(wheels, "1.1.0"))
    assert (rolled.value.version, rolled.value.back_to) == ("1.1.0", "1.0.0")
    assert "rolled back to 1.0.0" in str(rolled.value)
    assert time.monotonic() - started < START_TIMEOUT + 5  # no waiting beyond the start deadline
    assert layout.target(layout.current) == "1.0.0" and os.readlink(layout.current) == "releases/1.0.0"
    assert supervisor.started == ["1.0.0", "1.1.0", "1.0.0"] and runs(runlog) == ["1.0.0", "1.1.0", "1.0.0"]
    assert supervisor.is_active("stempel-kiosk")
    assert layout.release("1.1.0").health == "failed" and layout.release("1.0.0").health == "ok"

    good = up.install(make_wheel(wheels, "1.2.0"))
    assert (good.action, good.previous, good.removed) == ("switched", "1.0.0", [])
    assert layout.target(layout.current) == "1.2.0" and layout.target(layout.previous) == "1.0.0"
    assert [r.version for r in layout.all()] == ["1.0.0", "1.1.0", "1.2.0"]
    assert runs(runlog)[-1] == "1.2.0" and supervisor.is_active("stempel-kiosk")

    assert ledger_file.read_bytes() == ledger_before
    assert ledger_file.stat().st_mtime_ns == ledger_stat.st_mtime_ns


@pytest.mark.parametrize("behaviour", ["crash", "dies-after-ready"])
def test_release_that_exits_before_or_just_after_ready_is_rolled_back(layout, wheels, runlog, supervisor, behaviour):
    up = updater(layout, supervisor, FakeBuilder(runlog, {"2.0.0": behaviour}), settle=0.6)
    up.install(make_wheel(wheels, "1.0.0"))
    with pytest.raises(RolledBack, match="did not start" if behaviour == "crash" else "stopped within"):
        up.install(make_wheel(wheels, "2.0.0"))
    assert layout.target(layout.current) == "1.0.0" and supervisor.is_active("stempel-kiosk")


def test_cli_rolls_back_with_exit_3_and_says_so(layout, wheels, runlog, supervisor, monkeypatch):
    builder = FakeBuilder(runlog, {"1.1.0": "hang"})
    monkeypatch.setattr("kiosk.update.VenvBuilder", lambda python=None: builder)
    args = ["--root", str(layout.root), "--settle", "0.3", "--deadline", "5"]
    runner = CliRunner()
    ok = runner.invoke(update, ["--wheel", str(make_wheel(wheels, "1.0.0")), *args], obj=supervisor)
    assert ok.exit_code == 0, ok.output
    assert "stempel 1.0.0: switched (previous: none)" in ok.stdout
    bad = runner.invoke(update, ["--wheel", str(make_wheel(wheels, "1.1.0")), *args], obj=supervisor)
    assert bad.exit_code == 3
    assert "rolled back: release 1.1.0 did not start" in bad.stderr
    assert layout.target(layout.current) == "1.0.0" and runs(runlog) == ["1.0.0", "1.1.0", "1.0.0"]


def test_rollback_to_a_release_that_fails_too_is_reported_as_such(layout, wheels, runlog):
    services = ScriptedServices(layout)
    up = updater(layout, services, FakeBuilder(runlog))
    up.install(make_wheel(wheels, "1.0.0"))
    services.broken = {"1.0.0", "1.1.0"}  # e.g. the hardware died between the two
    with pytest.raises(RollbackFailed, match="switched back to 1.0.0, but it did not start"):
        up.install(make_wheel(wheels, "1.1.0"))
    assert layout.target(layout.current) == "1.0.0"


def test_a_first_release_that_fails_has_nothing_to_go_back_to(layout, wheels, runlog):
    up = updater(layout, ScriptedServices(layout, broken=("1.0.0",)), FakeBuilder(runlog))
    with pytest.raises(RollbackFailed, match="no earlier release"):
        up.install(make_wheel(wheels, "1.0.0"))


# --- the ledger's schema version: never hand a ledger to a release that cannot read it ----------

def migrate_to_2(path: Path, readable_from: int | None = None) -> None:
    """What a release with ledger schema 2 does to the ledger when it starts."""
    step = Step(2, lambda db: db.execute("CREATE TABLE notes (note TEXT)"), readable_from=readable_from)
    Ledger(path, Schema(2, (step,))).close()


def test_a_rollback_to_a_release_that_cannot_read_the_migrated_ledger_is_refused(
        layout, wheels, runlog, ledger_file, tmp_path, monkeypatch):
    """1.1.0 migrates the ledger to version 2 as it starts and then fails; 1.0.0 reads version 1
    only, so going back would hand it a layout it does not know: 1.1.0 stays, exit 5."""
    notify = NotifySocket(tmp_path)
    supervisor = Supervisor(layout, notify, start_timeout=30)  # 1.1.0 exits once migrated: no waiting
    builder = FakeBuilder(runlog, {"1.1.0": "migrates-then-crashes"}, ledger=ledger_file)
    monkeypatch.setattr("kiosk.update.VenvBuilder", lambda python=None: builder)
    args = ["--root", str(layout.root), "--settle", "0.3", "--deadline", "5"]
    runner = CliRunner()
    try:
        ok = runner.invoke(update, ["--wheel", str(make_wheel(wheels, "1.0.0", ledger_schema=1)), *args],
                           obj=supervisor)
        assert ok.exit_code == 0, ok.output
        bad = runner.invoke(update, ["--wheel", str(make_wheel(wheels, "1.1.0", ledger_schema=2)), *args],
                            obj=supervisor)
    finally:
        supervisor.stop()
        notify.close()
    assert bad.exit_code == 5, bad.output
    assert "release 1.1.0 did not start" in bad.stderr and "cannot be rolled back to 1.0.0" in bad.stderr
    assert f"the ledger {ledger_file} is at schema version 2" in bad.stderr
    assert "release 1.0.0 reads ledger versions up to 1" in bad.stderr and "1.1.0 stays current" in bad.stderr
    assert layout.target(layout.current) == "1.1.0" and layout.target(layout.previous) is None
    assert supervisor.started == ["1.0.0", "1.1.0"] and runs(runlog) == ["1.0.0", "1.1.0"]  # 1.0.0 never restarted
    assert layout.release("1.1.0").health == "failed"
    # the updater only read the ledger: byte for byte as 1.1.0 left it, at version 2, its event kept
    assert ledger_file.read_bytes() == Path(f"{ledger_file}.migrated").read_bytes()
    assert read_version(ledger_file) == OnDisk(2, 2)
    ledger = Ledger(ledger_file, Schema(2, (Step(2, lambda db: None),)))
    assert [e.reason for e in ledger.events()] == ["bad_signature"]
    ledger.close()


def test_going_back_by_hand_to_a_release_that_cannot_read_the_ledger_is_refused(layout, wheels, runlog, ledger_file):
    builder, services = FakeBuilder(runlog), ScriptedServices(layout)
    up = updater(layout, services, builder)
    old, new = make_wheel(wheels, "1.0.0"), make_wheel(wheels, "2.0.0", ledger_schema=2)  # 1.0.0: before versions
    up.install(old)
    up.install(new)
    migrate_to_2(ledger_file)
    before = ledger_file.read_bytes()
    with pytest.raises(LedgerAhead, match=r"not switching to 1.0.0: the ledger .* is at schema version 2, .* "
                                          r"release 1.0.0 reads ledger versions up to 1"):
        up.switch_to("1.0.0")
    with pytest.raises(LedgerAhead, match="not switching to 1.0.0"):
        up.install(old)  # the same downgrade through its wheel
    with pytest.raises(LedgerAhead, match="not switching to 0.9.0"):
        up.install(make_wheel(wheels, "0.9.0", ledger_schema=1))  # refused before anything is built
    assert builder.built == ["1.0.0", "2.0.0"] and not layout.release_dir("0.9.0").exists()
    assert layout.target(layout.current) == "2.0.0" and services.restarts == ["1.0.0", "2.0.0"]
    assert ledger_file.read_bytes() == before
    result = CliRunner().invoke(update, ["--to", "1.0.0", "--root", str(layout.root)])
    assert result.exit_code == 1 and "not switching to 1.0.0" in result.stderr
    assert result.stderr.rstrip().endswith("nothing was changed")
    assert layout.target(layout.current) == "2.0.0" and ledger_file.read_bytes() == before


def test_a_release_that_reads_the_ledgers_version_or_a_step_older_code_may_read_is_switched_to(
        layout, wheels, runlog, ledger_file):
    up = updater(layout, ScriptedServices(layout), FakeBuilder(runlog))
    for version, reads in (("1.0.0", 1), ("2.0.0", 2), ("3.0.0", 3)):
        up.install(make_wheel(wheels, version, ledger_schema=reads))
    migrate_to_2(ledger_file)
    assert up.switch_to("2.0.0").action == "switched"  # reads 2 itself
    assert up.switch_to("3.0.0").action == "switched"  # newer: it migrates on start
    added_only = ledger_file.with_name("added-only.sqlite3")
    migrate_to_2(added_only, readable_from=1)  # a step that only adds: version 1 code may still use it
    assert read_version(added_only) == OnDisk(2, 1)
    up.ledger = added_only
    assert up.switch_to("1.0.0").action == "switched"


def test_what_a_release_reads_is_taken_from_its_installed_files(layout, wheels, runlog, ledger_file):
    up = updater(layout, ScriptedServices(layout), FakeBuilder(runlog))
    up.install(make_wheel(wheels, "1.0.0", ledger_schema=2))
    up.install(make_wheel(wheels, "2.0.0", ledger_schema=2))
    up.install(make_wheel(wheels, "3.0.0"))
    assert release_ledger_schema(layout.release_dir("3.0.0")) == 1  # made before ledger versions
    assert release_ledger_schema(layout.release_dir("2.0.0")) == 2
    module = next(layout.release_dir("2.0.0").glob("lib/python*/site-packages/kiosk/ledger_schema.py"))
    module.write_text("LEDGER_SCHEMA = compute()\n")
    with pytest.raises(UpdateError, match="release 2.0.0 reads: .*not a plain positive integer"):
        release_ledger_schema(layout.release_dir("2.0.0"))
    shutil.rmtree(layout.release_dir("1.0.0") / "lib")
    with pytest.raises(UpdateError, match="expected one kiosk package under .*, found none"):
        release_ledger_schema(layout.release_dir("1.0.0"))
    # on a migrated ledger, a release that cannot say what it reads is not switched to either
    migrate_to_2(ledger_file)
    with pytest.raises(LedgerAhead, match="is at schema version 2, and cannot tell which ledger versions release 1.0"):
        up.switch_to("1.0.0")
    assert layout.target(layout.current) == "3.0.0"


# --- idempotence, retention, links ------------------------------------------------------------

def test_the_same_update_twice_builds_once_and_changes_nothing_the_second_time(layout, wheels, runlog):
    builder, services = FakeBuilder(runlog), ScriptedServices(layout)
    up = updater(layout, services, builder)
    wheel = make_wheel(wheels, "1.0.0")
    assert up.install(wheel).action == "switched"
    again = up.install(wheel)
    assert (again.action, again.built) == ("unchanged", False)
    assert builder.built == ["1.0.0"] and services.restarts == ["1.0.0"]


def test_switching_to_an_installed_version_reuses_it(layout, wheels, runlog):
    builder, services = FakeBuilder(runlog), ScriptedServices(layout)
    up = updater(layout, services, builder)
    a, b = make_wheel(wheels, "1.0.0"), make_wheel(wheels, "1.1.0")
    up.install(a)
    up.install(b)
    back = up.install(a)
    assert (back.action, back.built, back.previous) == ("switched", False, "1.1.0")
    assert builder.built == ["1.0.0", "1.1.0"]
    by_hand = up.switch_to("1.1.0")
    assert (by_hand.action, by_hand.previous) == ("switched", "1.0.0")
    with pytest.raises(UpdateError, match=r"no complete release 9.9 .*installed: 1.0.0, 1.1.0"):
        up.switch_to("9.9")


def test_the_same_version_from_another_wheel_is_refused(layout, wheels, runlog, tmp_path):
    builder, services = FakeBuilder(runlog), ScriptedServices(layout)
    up = updater(layout, services, builder)
    up.install(make_wheel(wheels, "1.0.0"))
    other = make_wheel(tmp_path / "other", "1.0.0", meta_version="1.0.0")
    with zipfile.ZipFile(other, "a") as z:
        z.writestr("kiosk/extra.py", "changed = True\n")
    with pytest.raises(UpdateError, match="never rebuilt in place: raise the version"):
        up.install(other)
    assert builder.built == ["1.0.0"] and layout.target(layout.current) == "1.0.0"


def test_a_half_built_release_is_built_again(layout, wheels, runlog):
    leftover = layout.release_dir("1.0.0")
    leftover.mkdir(parents=True)
    (leftover / "junk").write_text("interrupted")
    up = updater(layout, ScriptedServices(layout), FakeBuilder(runlog))
    assert up.install(make_wheel(wheels, "1.0.0")).built
    assert not (leftover / "junk").exists() and (leftover / ".stempel-release").is_file()


def test_old_releases_go_failed_first_never_current_or_previous(layout, wheels, runlog):
    services = ScriptedServices(layout, broken=("2.0.0",))
    up = updater(layout, services, FakeBuilder(runlog), keep=3)
    up.install(make_wheel(wheels, "1.0.0"))
    with pytest.raises(RolledBack):
        up.install(make_wheel(wheels, "2.0.0"))
    up.install(make_wheel(wheels, "2.0.1"))
    assert up.install(make_wheel(wheels, "2.0.2")).removed == ["2.0.0"]
    assert up.install(make_wheel(wheels, "2.0.3")).removed == ["1.0.0"]
    assert [r.version for r in layout.all()] == ["2.0.1", "2.0.2", "2.0.3"]
    up.keep = 2
    up.switch_to("2.0.1")  # going back: 2.0.1 current, 2.0.3 previous, 2.0.2 the only one to go
    assert [r.version for r in layout.all()] == ["2.0.1", "2.0.3"]


def test_links_are_relative_and_replaced_in_one_rename(layout, wheels, runlog):
    up = updater(layout, ScriptedServices(layout), FakeBuilder(runlog))
    up.install(make_wheel(wheels, "1.0.0"))
    stale = layout.current.with_name(".current.stempel-new")
    os.symlink("releases/nowhere", stale)  # left by a power cut mid-switch
    up.install(make_wheel(wheels, "1.1.0"))
    assert os.readlink(layout.current) == "releases/1.1.0" and os.readlink(layout.previous) == "releases/1.0.0"
    assert not os.path.lexists(stale)


def test_a_current_that_is_not_a_link_is_left_alone(layout, wheels, runlog):
    layout.current.mkdir(parents=True)
    up = updater(layout, ScriptedServices(layout), FakeBuilder(runlog))
    with pytest.raises(UpdateError, match="not a symlink .* mv "):
        up.install(make_wheel(wheels, "1.0.0"))


def test_constraints_and_the_wheelhouse_carry_over_to_the_next_release(layout, wheels, runlog):
    builder = FakeBuilder(runlog)
    up = updater(layout, ScriptedServices(layout), builder)
    up.install(make_wheel(wheels, "1.0.0"))
    (layout.release_dir("1.0.0") / "constraints.txt").write_text("numpy<2\n")
    up.install(make_wheel(wheels, "1.1.0"))
    assert (layout.release_dir("1.1.0") / "constraints.txt").read_text() == "numpy<2\n"
    assert builder.calls[-1] == ([wheels.resolve(), layout.release_dir("1.0.0") / "wheelhouse"], False)


def test_a_second_update_waits_for_the_first(layout, wheels, runlog):
    layout.releases.mkdir(parents=True)
    with open(layout.lock, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UpdateError, match="another update is running"):
            updater(layout, ScriptedServices(layout), FakeBuilder(runlog)).install(make_wheel(wheels, "1.0.0"))


# --- refusals: nothing changes ----------------------------------------------------------------

def _truncated(folder: Path) -> Path:
    path = make_wheel(folder, "1.0.0")
    path.write_bytes(path.read_bytes()[:-40])
    return path


def _flipped(folder: Path) -> Path:
    path = make_wheel(folder, "1.0.0")
    data = bytearray(path.read_bytes())
    data[60] ^= 0xFF  # inside the first member's compressed bytes
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d: make_wheel(d, "1.0.0", name="other"), "not a Stempel wheel name"),
    (lambda d: (d.mkdir(parents=True), d / "stempel-1.0.0-py3-none-any.whl")[1], "no such file"),
    (lambda d: (d.mkdir(parents=True), (d / "stempel-1.0.0-py3-none-any.whl").write_text("<html>"),
                d / "stempel-1.0.0-py3-none-any.whl")[2], "not a readable wheel"),
    (_truncated, "not a readable wheel"),
    (_flipped, "damaged|not a readable wheel"),
    (lambda d: make_wheel(d, "1.0.0", meta_version="0.9"), "file name says 1.0.0, its metadata 0.9"),
    (lambda d: make_wheel(d, "1.0.0", console=False), "no stempel-kiosk console script"),
    (lambda d: make_wheel(d, "1!2.0"), "cannot name a release folder"),
])
def test_a_bad_wheel_is_refused_before_anything_is_written(layout, tmp_path, runlog, make, message):
    wheel = make(tmp_path / "dist")
    with pytest.raises(BadWheel, match=message):
        updater(layout, ScriptedServices(layout), FakeBuilder(runlog)).install(wheel)
    assert not layout.base.exists()


def test_sha256_is_checked_when_given(wheels):
    wheel = make_wheel(wheels, "1.0.0")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert check_wheel(wheel, digest.upper()).sha256 == digest
    with pytest.raises(BadWheel, match=f"sha256 is {digest}, expected 00"):
        check_wheel(wheel, "00" * 32)


def test_too_little_room_is_refused_before_building(layout, wheels, runlog):
    builder = FakeBuilder(runlog)
    up = updater(layout, ScriptedServices(layout), builder)
    up.install(make_wheel(wheels, "1.0.0"))
    up.install(make_wheel(wheels, "1.1.0"))
    up.install(make_wheel(wheels, "1.2.0"))
    up._disk_free = lambda path: 10 << 20
    with pytest.raises(NoSpace, match=r"10 MB free .* delete old releases \(1.0.0\)"):
        up.install(make_wheel(wheels, "1.3.0"))
    assert builder.built == ["1.0.0", "1.1.0", "1.2.0"] and not layout.release_dir("1.3.0").exists()


@pytest.mark.parametrize("code, error, message", [
    (errno.ENOSPC, NoSpace, "disk full while trying to build"),
    (errno.EACCES, NoPermission, "run the update as root"),
])
def test_disk_full_or_no_permission_while_building_leaves_no_trace(layout, wheels, runlog, code, error, message):
    builder = FakeBuilder(runlog)
    up = updater(layout, ScriptedServices(layout), builder)
    up.install(make_wheel(wheels, "1.0.0"))
    builder.fail = OSError(code, os.strerror(code))
    with pytest.raises(error, match=message):
        up.install(make_wheel(wheels, "1.1.0"))
    assert not layout.release_dir("1.1.0").exists() and layout.target(layout.current) == "1.0.0"


@pytest.mark.parametrize("output, error, message", [
    ("OSError: [Errno 28] No space left on device", NoSpace, "disk full"),
    ("ERROR: Could not install packages due to an OSError: [Errno 13] Permission denied", NoPermission, "as root"),
    ("ERROR: Could not find a version that satisfies the requirement numpy>=1.26 (from stempel)\n"
     "ERROR: No matching distribution found for numpy>=1.26", UpdateError, "numpy>=1.26 is not available offline"),
    ("Error: Command '['/x/bin/python', '-m', 'ensurepip']' returned non-zero", UpdateError, "python3-venv"),
    ("something\nelse\nentirely", UpdateError, "something | else | entirely"),
])
def test_pip_failures_are_told_in_words(output, error, message):
    failure = pip_failure("gather the wheels", output)
    assert type(failure) is error and message in str(failure)


# --- the system side --------------------------------------------------------------------------

def test_venv_builder_installs_offline_from_the_release_wheelhouse(tmp_path, wheels):
    seen: list[list[str]] = []

    def run(command, **kw):
        seen.append(command)
        if "install" in command:
            (tmp_path / "rel" / "bin").mkdir(parents=True)
            (tmp_path / "rel" / "bin" / "stempel-kiosk").touch()
        return subprocess.CompletedProcess(command, 0, "", "")

    wheel = check_wheel(make_wheel(wheels, "1.0.0"))
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "constraints.txt").write_text("numpy<2\n")
    VenvBuilder("/usr/bin/python3", run=run).build(wheel, tmp_path / "rel", [wheels, tmp_path / "gone"], False)
    venv, download, install = seen
    assert venv == ["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(tmp_path / "rel")]
    assert "--no-index" in download and download.count("--find-links") == 1  # a missing folder is skipped
    assert ["--constraint", str(tmp_path / "rel" / "constraints.txt")] == download[-3:-1]
    assert install[install.index("--find-links") + 1] == str(tmp_path / "rel" / "wheelhouse")
    assert "--no-index" in install


def test_systemctl_restart_and_is_active(tmp_path, monkeypatch):
    stub = tmp_path / "systemctl"
    stub.write_text('#!/bin/sh\necho "$@" >> "$0.log"\n[ "$2" = "$STUB_OK" ] || [ "$3" = "$STUB_OK" ]\n')
    stub.chmod(0o755)
    ctl = Systemctl(timeout=10, command=str(stub))
    monkeypatch.setenv("STUB_OK", "stempel-kiosk")
    assert ctl.restart("stempel-kiosk") and ctl.is_active("stempel-kiosk")
    assert not ctl.restart("other") and not ctl.is_active("other")
    assert (tmp_path / "systemctl.log").read_text().splitlines()[:2] == [
        "restart stempel-kiosk", "is-active --quiet stempel-kiosk"]
    with pytest.raises(UpdateError, match="--no-restart"):
        Systemctl(command=str(tmp_path / "absent")).restart("stempel-kiosk")


def test_cli_with_root_switches_and_prints_the_restart_as_a_plan(layout, wheels, runlog, monkeypatch):
    monkeypatch.setattr("kiosk.update.VenvBuilder", lambda python=None: FakeBuilder(runlog))
    runner = CliRunner()
    result = runner.invoke(update, ["--wheel", str(make_wheel(wheels, "1.0.0")), "--root", str(layout.root)])
    assert result.exit_code == 0, result.output
    assert "plan: systemctl restart stempel-kiosk" in result.stderr
    assert "stempel 1.0.0: switched, not restarted" in result.stdout and runs(runlog) == []
    listing = runner.invoke(update, ["--list", "--root", str(layout.root)])
    assert listing.stdout.split()[:2] == ["1.0.0", "current"]
    bad = runner.invoke(update, ["--wheel", str(wheels / "nope.whl"), "--root", str(layout.root)])
    assert bad.exit_code == 1 and "nothing was changed" in bad.stderr
    assert runner.invoke(update, ["--root", str(layout.root)]).exit_code == 2


# --- a real wheel into real venvs -------------------------------------------------------------

def _source_copy(dest: Path, version: str) -> Path:
    """The project's packaging inputs in a scratch folder (building in the checkout leaves build/)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("kiosk", "cloud"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    shutil.copy(REPO / "README.md", dest)
    text = (REPO / "pyproject.toml").read_text()
    (dest / "pyproject.toml").write_text(text.replace('version = "0.1.0"', f'version = "{version}"', 1))
    return dest


def _build_wheel(src: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(src)],
                   check=True, capture_output=True, timeout=300)
    return next(out.glob("stempel-*.whl"))


@pytest.mark.slow
def test_a_real_wheel_installs_into_a_real_release_venv_and_the_next_one_offline(tmp_path, layout):
    first = _build_wheel(_source_copy(tmp_path / "src1", "0.1.0"), tmp_path / "dist1")
    up = Updater(layout, None, VenvBuilder(), keep=3)
    with pytest.raises(UpdateError, match="not available offline: .* --allow-index"):
        up.install(first)  # its folder holds no dependencies, and no release has a wheelhouse yet
    assert not layout.release_dir("0.1.0").exists()

    up.allow_index = True
    assert up.install(first).action == "switched, not restarted"
    python = layout.current / "bin" / "python"  # run in tmp_path: in the checkout, "" on sys.path finds ./kiosk
    version = subprocess.run([str(python), "-c", "from kiosk.link.state import software_version as v; print(v())"],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert version.stdout.strip() == "0.1.0", version.stderr  # what `state` reports
    assert release_ledger_schema(layout.release_dir("0.1.0")) == LEDGER_SCHEMA  # read from what pip installed
    assert subprocess.run([str(layout.current / "bin" / "stempel-kiosk"), "--help"], capture_output=True,
                          timeout=60, cwd=tmp_path).returncode == 0

    second = _build_wheel(_source_copy(tmp_path / "src2", "0.1.1"), tmp_path / "dist2")
    up.allow_index = False  # the new wheel alone: the dependencies come from 0.1.0's wheelhouse
    assert (up.install(second).action, layout.target(layout.previous)) == ("switched, not restarted", "0.1.0")
    version = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('stempel'))"],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert version.stdout.strip() == "0.1.1"
    shared = [w for w in (layout.release_dir("0.1.1") / "wheelhouse").glob("*.whl") if w.stat().st_nlink > 1]
    assert shared, "unchanged dependency wheels are hard links into the previous release's wheelhouse"

    base = getattr(sys, "_base_executable", sys.executable)
    if subprocess.run([base, "-c", "import click"], capture_output=True).returncode == 0:
        listed = subprocess.run([base, "-m", "kiosk.update", "--list", "--root", str(layout.root)],
                                env={**os.environ, "PYTHONPATH": str(second)}, capture_output=True, text=True,
                                timeout=60, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr  # the updater runs straight from a wheel
        assert [line.split()[:2] for line in listed.stdout.splitlines()] == [["0.1.0", "previous"],
                                                                            ["0.1.1", "current"]]
