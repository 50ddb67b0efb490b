"""``stempel-kiosk update``: install a release beside the running one, switch, and go back if it fails.

An update never replaces what runs. ``update --wheel FILE [--sha256 HEX]``:

1. checks the wheel whole (name, sha256, CRCs, metadata, the ``stempel-kiosk`` script);
2. builds ``/opt/stempel/releases/<version>`` as its own venv (``--system-site-packages``, so
   picamera2 and lgpio from apt are seen) unless that version is already there from the same
   wheel (then it only switches: running the same update twice is harmless);
3. points ``/opt/stempel/current`` at it in one rename, and ``systemctl restart stempel-kiosk``:
   the unit is ``Type=notify``, so systemctl returns only once the new kiosk sent ``READY=1``
   (camera, display and ledger up) and fails if that does not come within ``TimeoutStartSec``;
4. waits until the unit is active (``--deadline``) and stays so (``--settle``: a kiosk that
   crashes just after READY would otherwise flap under ``Restart=always``);
5. if not, **rolls back**: ``current`` back to the release before, restart again, exit 3 (4 if
   the old release does not come up either: then a person must look at the journal);
6. on success ``previous`` names the release it came from, and releases beyond the last
   ``--keep`` are deleted, failed ones first, never ``current`` or ``previous``.

``update --to VERSION`` switches to an installed release the same way (going back by hand),
``update --list`` shows them. Exit codes: 0 done or nothing to do, 1 refused (nothing
changed), 3 rolled back, 4 rolled back but the service is not active, 5 the new release failed
but the one before cannot read the ledger (the new release stays current; a person must look).

**Offline by default.** The dependencies come from the wheel's own folder and the current
release's ``wheelhouse/`` (each release keeps the wheels it was installed from), with pip's
``--no-index``; ``--allow-index`` lets pip use its configured indexes (PyPI, piwheels). A kiosk
at a counter often reaches only the hub, a shop's line drops, and an index may have published
a dependency nobody tested on a Pi since the last release: offline, an update installs exactly
what was shipped, or stops before anything changed with the name of the missing wheel.

**The ledger is never written.** An update changes ``/opt/stempel`` and restarts the unit;
``/var/lib/stempel`` (ledger, outbox, keys) is the kiosk's own, and only the kiosk migrates its
ledger forward when it starts (kiosk/ledger_schema.py). So a release switched back to may meet
a ledger the newer one migrated. Before pointing ``current`` at any release (an update, ``--to``,
a rollback) the updater reads the ledger's schema version through a read-only connection
(``--ledger``, by default the unit's ``/var/lib/stempel/ledger.sqlite3``) and the versions the
release reads (``release_ledger_schema``), and refuses a release that cannot use it: the
release would refuse the ledger on start, or, if made before ledger versions, write to a layout
it does not know. A refused rollback leaves the new release current and running (exit 5).

The version that runs is what ``state`` reports (``software_version``, read from the
release's installed metadata), so the hub sees an update or a rollback land.

``--root DIR`` puts every path under DIR (tests, the installer's ``--root`` mode); with it the
restart is printed as a plan, not run. The updater must not run inside the kiosk's own unit
(restarting the unit would kill it): run it from a shell, or a unit of its own.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import click

from kiosk.common.errors import LedgerError
from kiosk.ledger_schema import UNVERSIONED_READS, declared_schema, read_version
from kiosk.releases import (
    Builder,
    Layout,
    NoPermission,
    NoSpace,
    UpdateError,
    VenvBuilder,
    WheelInfo,
    check_wheel,
    folder_size,
    share_wheels,
    translate_os_error,
)

log = logging.getLogger(__name__)

UNIT = "stempel-kiosk"
MIN_RELEASE_BYTES = 64 << 20  # room a release needs when there is no current one to measure
LEDGER_FILE = Path("var/lib/stempel/ledger.sqlite3")  # under --root: the unit's STEMPEL_DATA_DIR
LEDGER_MODULE = "kiosk/ledger_schema.py"


class RolledBack(UpdateError):
    """The new release did not become ready; ``current`` is back on the old one, which runs."""

    def __init__(self, message: str, version: str, back_to: str) -> None:
        super().__init__(message)
        self.version, self.back_to = version, back_to


class RollbackFailed(UpdateError):
    """The new release failed and the old one, switched back to, is not active either."""


class LedgerAhead(UpdateError):
    """The release to switch to cannot read the ledger (a newer release migrated it); nothing changed."""


class RollbackRefused(UpdateError):
    """The new release failed, but the one before cannot read the ledger the new one migrated:
    ``current`` stays on the new release, which systemd keeps restarting."""

    def __init__(self, message: str, version: str, back_to: str) -> None:
        super().__init__(message)
        self.version, self.back_to = version, back_to


def release_ledger_schema(release: Path) -> int:
    """The newest ledger schema version the code in *release* reads: ``LEDGER_SCHEMA`` of its
    installed ``kiosk/ledger_schema.py``, parsed, never run.

    Read from the file rather than asked of the release (``bin/python -c 'from kiosk... import
    LEDGER_SCHEMA'``): the answer must not depend on that code running well, since it is asked
    just when a release failed; importing would run the release's package code and take
    ``sys.path`` from the current directory unless isolated; and it costs no interpreter start
    on a Pi. The file is what pip installed from the release's wheel, and a release is never
    rebuilt in place, so its literal stays the release's answer. The same reading works for
    every release however it was built (installer, updater) and for those made before ledger
    versions: they have no such file and read the unversioned layout, version 1.
    Raises UpdateError when the release holds no kiosk package, or an unreadable module.
    """
    packages = sorted(release.glob("lib/python*/site-packages/kiosk"))
    if len(packages) != 1:
        found = ", ".join(str(p) for p in packages) or "none"
        raise UpdateError(f"cannot tell which ledger versions release {release.name} reads: expected one kiosk "
                          f"package under {release}/lib/python*/site-packages, found {found}")
    module = packages[0] / "ledger_schema.py"
    if not module.is_file():
        return UNVERSIONED_READS
    try:
        return declared_schema(module.read_text(encoding="utf-8"), str(module))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UpdateError(f"cannot tell which ledger versions release {release.name} reads: {exc}") from exc


def wheel_ledger_schema(wheel: WheelInfo) -> int:
    """What :func:`release_ledger_schema` will say of the release built from *wheel* (checked
    before building, so a refused downgrade builds nothing). Raises UpdateError."""
    try:
        with zipfile.ZipFile(wheel.path) as archive:
            if LEDGER_MODULE not in archive.namelist():
                return UNVERSIONED_READS
            return declared_schema(archive.read(LEDGER_MODULE).decode("utf-8"), f"{wheel.path.name}:{LEDGER_MODULE}")
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError, ValueError) as exc:
        raise UpdateError(f"cannot tell which ledger versions {wheel.path.name} reads: {exc}") from exc


@runtime_checkable
class Services(Protocol):
    """The service manager, as the updater needs it."""

    def restart(self, unit: str) -> bool:
        """Restart *unit* and wait until it started (``Type=notify``: sent READY=1); False if not."""

    def is_active(self, unit: str) -> bool:
        """Whether *unit* is running and started."""


class Systemctl:
    """The real :class:`Services`: ``systemctl``, bounded by *timeout* seconds per restart."""

    def __init__(self, timeout: float = 120.0, command: str = "systemctl") -> None:
        self.timeout, self.command = timeout, command

    def restart(self, unit: str) -> bool:
        try:
            done = subprocess.run([self.command, "restart", unit], capture_output=True, text=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired:
            log.warning("update.restart_timeout", extra={"unit": unit, "seconds": self.timeout})
            return False
        except FileNotFoundError as exc:
            raise UpdateError(f"{self.command} not found: is this a systemd system? "
                              "Pass --no-restart to only switch the release") from exc
        if done.returncode != 0:
            if "Access denied" in done.stderr or "authentication" in done.stderr.lower():
                raise NoPermission(f"{self.command} restart {unit}: {done.stderr.strip()}; run the update as root")
            log.warning("update.restart_failed", extra={"unit": unit, "stderr": done.stderr.strip()})
        return done.returncode == 0

    def is_active(self, unit: str) -> bool:
        try:
            done = subprocess.run([self.command, "is-active", "--quiet", unit], capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:  # a systemd too busy to answer has not seen it come up either
            return False
        return done.returncode == 0


@dataclass
class Outcome:
    version: str
    previous: str | None
    action: str  # "unchanged", "switched", "switched, not restarted"
    built: bool = False
    removed: list[str] = field(default_factory=list)


class Updater:
    """Builds, switches, checks and rolls back; *services* None switches without a restart.

    *ledger* is the kiosk's ledger (default: ``var/lib/stempel/ledger.sqlite3`` under the
    layout's root), only ever read. *disk_free*, *clock* and *sleep* are the system's unless a
    test passes its own.
    """

    def __init__(self, layout: Layout, services: Services | None, builder: Builder | None = None, *,
                 unit: str = UNIT, deadline: float = 120.0, settle: float = 10.0, keep: int = 3,
                 allow_index: bool = False, say: Callable[[str], None] = lambda _: None,
                 ledger: Path | None = None,
                 disk_free: Callable[[Path], int] = lambda p: shutil.disk_usage(p).free,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if keep < 2:
            raise ValueError("keep at least 2 releases: the running one and the one to go back to")
        self.layout, self.services, self.builder = layout, services, builder or VenvBuilder()
        self.unit, self.deadline, self.settle, self.keep = unit, deadline, settle, keep
        self.allow_index, self.say = allow_index, say
        self.ledger = ledger if ledger is not None else layout.root / LEDGER_FILE
        self._disk_free, self._clock, self._sleep = disk_free, clock, sleep

    def install(self, wheel_file: Path, sha256: str | None = None) -> Outcome:
        """Check, build (if new), switch to and verify the release in *wheel_file*."""
        wheel = check_wheel(wheel_file, sha256)
        self.say(f"stempel {wheel.version}: wheel checked (sha256 {wheel.sha256})")
        self._refuse_if_ledger_ahead(wheel.version, lambda: wheel_ledger_schema(wheel))
        with self._locked():
            built = self._ensure_release(wheel)
            return self._switch(wheel.version, built)

    def switch_to(self, version: str) -> Outcome:
        """Switch to an installed release (going back by hand), with the same check and rollback."""
        with self._locked():
            if self.layout.release(version) is None:
                have = ", ".join(r.version for r in self.layout.all()) or "none"
                raise UpdateError(f"no complete release {version} in {self.layout.releases} (installed: {have})")
            return self._switch(version, built=False)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One update at a time (a person and the hub could start one together)."""
        try:
            self.layout.releases.mkdir(parents=True, exist_ok=True)
            handle = open(self.layout.lock, "a+")
        except OSError as exc:
            raise translate_os_error(exc, f"write {self.layout.base}") from exc
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise UpdateError(f"another update is running ({self.layout.lock} is locked); "
                                  "wait for it to finish") from exc
            yield

    def _ensure_release(self, wheel: WheelInfo) -> bool:
        """Build ``releases/<version>`` unless it is complete from the same wheel; True if built."""
        layout, version = self.layout, wheel.version
        have = layout.release(version)
        if have is not None:
            if have.fingerprint == wheel.fingerprint:
                self.say(f"stempel {version}: already installed in {have.path}")
                return False
            raise UpdateError(f"release {version} in {have.path} was built from another wheel or source "
                              f"(fingerprint {have.fingerprint}, this wheel {wheel.fingerprint}); a release is "
                              "never rebuilt in place: raise the version and build the wheel again")
        dest = layout.release_dir(version)
        current = layout.target(layout.current)
        if version in {current, layout.target(layout.previous)}:
            raise UpdateError(f"{dest} is half-built but {'current' if version == current else 'previous'} "
                              "points at it; point the link at a complete release first")
        self._check_space(wheel, current)
        self.say(f"stempel {version}: building {dest}")
        umask = os.umask(0o022)  # the service's user must read what root builds
        try:
            if dest.exists():
                shutil.rmtree(dest)  # an interrupted build: never complete, never run
            dest.mkdir(parents=True)
            if current is not None and (layout.release_dir(current) / "constraints.txt").is_file():
                shutil.copy2(layout.release_dir(current) / "constraints.txt", dest / "constraints.txt")
            old_wheels = layout.release_dir(current) / "wheelhouse" if current else None
            links = [wheel.path.parent] + ([old_wheels] if old_wheels else [])
            self.builder.build(wheel, dest, links, self.allow_index)
            if old_wheels is not None and (dest / "wheelhouse").is_dir():
                share_wheels(dest / "wheelhouse", old_wheels)
            layout.mark_complete(wheel)
        except BaseException as exc:
            shutil.rmtree(dest, ignore_errors=True)
            if isinstance(exc, OSError) and not isinstance(exc, UpdateError):
                raise translate_os_error(exc, f"build {dest}") from exc
            raise
        finally:
            os.umask(umask)
        log.info("update.built", extra={"version": version, "path": str(dest)})
        return True

    def _check_space(self, wheel: WheelInfo, current: str | None) -> None:
        """Refuse before building when a release clearly will not fit (about the size of the current one)."""
        need = max(folder_size(self.layout.release_dir(current)) if current else 0, MIN_RELEASE_BYTES)
        need += 2 * wheel.size
        free = self._disk_free(self.layout.releases)
        if free < need:
            others = [r.version for r in self.layout.all()
                      if r.version not in {current, self.layout.target(self.layout.previous)}]
            hint = f"delete old releases ({', '.join(others)}) from {self.layout.releases}" if others else \
                "free space on that file system"
            raise NoSpace(f"{free >> 20} MB free in {self.layout.releases}, a release needs about "
                          f"{need >> 20} MB: {hint}, then run the update again")

    def _switch(self, version: str, built: bool) -> Outcome:
        layout, services = self.layout, self.services
        before = layout.target(layout.current)
        if before == version:
            self.say(f"stempel {version}: already the current release; nothing to do")
            return Outcome(version, layout.target(layout.previous), "unchanged", built)
        self._refuse_if_ledger_ahead(version, lambda: release_ledger_schema(layout.release_dir(version)))
        self._point(layout.current, version)
        if services is None:
            if before is not None:
                self._point(layout.previous, before)
            self.say(f"plan: systemctl restart {self.unit}  (not run: --root or --no-restart, so no rollback either)")
            return Outcome(version, before, "switched, not restarted", built)
        self.say(f"stempel {version}: current -> releases/{version}; restarting {self.unit}")
        try:
            ok, why = self._comes_up(services)
        except UpdateError:  # systemctl missing or refused: put back what ran, then say why
            if before is not None:
                self._point(layout.current, before)
            else:
                layout.current.unlink()
            raise
        if not ok:
            self._roll_back(services, version, before, why)
        layout.mark_health(version, "ok")
        if before is not None:
            self._point(layout.previous, before)
        try:
            removed = layout.prune(self.keep)
        except OSError as exc:  # the update itself succeeded; old releases just stay for now
            log.warning("update.prune_failed", extra={"error": str(exc)})
            removed = []
        log.info("update.switched", extra={"version": version, "previous": before, "removed": removed})
        return Outcome(version, before, "switched", built, removed)

    def _roll_back(self, services: Services, version: str, before: str | None, why: str) -> None:
        """Point ``current`` back at *before* and restart it; raises RolledBack or RollbackFailed."""
        self.layout.mark_health(version, "failed", why)
        log.warning("update.failed", extra={"version": version, "why": why, "back_to": before})
        if before is None:
            raise RollbackFailed(f"release {version} {why}, and there is no earlier release to go back to; "
                                 f"see journalctl -u {self.unit}")
        ahead = self._ledger_ahead(before, lambda: release_ledger_schema(self.layout.release_dir(before)))
        if ahead is not None:
            log.error("update.rollback_refused", extra={"version": version, "back_to": before, "why": ahead})
            raise RollbackRefused(f"release {version} {why}, but it cannot be rolled back to {before}: {ahead}. "
                                  f"{version} stays current (systemd keeps restarting it): see journalctl -u "
                                  f"{self.unit}, then install a release that reads this ledger", version, before)
        self.say(f"stempel {version}: {why}; rolling back to {before}")
        self._point(self.layout.current, before)
        back, back_why = self._comes_up(services)
        if not back:
            raise RollbackFailed(f"release {version} {why}; switched back to {before}, but it {back_why} "
                                 f"either: see journalctl -u {self.unit}")
        raise RolledBack(f"release {version} {why}; rolled back to {before}, which is running again "
                         f"(journalctl -u {self.unit} says why {version} failed)", version, before)

    def _ledger_ahead(self, version: str, reads: Callable[[], int]) -> str | None:
        """Why release *version* (which reads ledger versions up to ``reads()``) must not run on
        the ledger, or None. Every release, also one made before ledger versions, can use a
        ledger that version 1 code can use, so *reads* is only asked for a ledger beyond that."""
        try:
            found = read_version(self.ledger)
        except LedgerError as exc:  # no release can use it then; the one switched to will say so itself
            log.warning("update.ledger_unreadable", extra={"ledger": str(self.ledger), "error": str(exc)})
            self.say(f"warning: {exc}; switching without knowing the ledger's version")
            return None
        if found is None or found.readable_from <= UNVERSIONED_READS:
            return None
        try:
            supports = reads()
        except UpdateError as exc:  # refused as well: going back blind could hand it to code that does not know it
            return f"the ledger {self.ledger} is at {found.words()}, and {exc}"
        if found.readable_from <= supports:
            return None
        return (f"the ledger {self.ledger} is at {found.words()}, migrated by a newer release, and release "
                f"{version} reads ledger versions up to {supports}")

    def _refuse_if_ledger_ahead(self, version: str, reads: Callable[[], int]) -> None:
        ahead = self._ledger_ahead(version, reads)
        if ahead is not None:
            raise LedgerAhead(f"not switching to {version}: {ahead}; switch to a release that reads it "
                              "(update --list), or restore a backup of the ledger made by that release")

    def _point(self, link: Path, version: str) -> None:
        try:
            self.layout.point(link, version)
        except OSError as exc:
            raise translate_os_error(exc, f"switch {link}") from exc

    def _comes_up(self, services: Services) -> tuple[bool, str]:
        """Restart and watch the unit: (True, "") or (False, what went wrong)."""
        start = self._clock()
        if not services.restart(self.unit):
            return False, "did not start (no READY=1 in time, or it exited)"
        while not services.is_active(self.unit):
            if self._clock() - start >= self.deadline:
                return False, f"was not active within {self.deadline:g} s"
            self._sleep(0.2)
        settled = self._clock() + self.settle
        while self._clock() < settled:
            self._sleep(min(0.5, max(0.01, settled - self._clock())))
            if not services.is_active(self.unit):
                return False, f"stopped within {self.settle:g} s of starting"
        return True, ""


EXIT_REFUSED, EXIT_ROLLED_BACK, EXIT_ROLLBACK_FAILED, EXIT_ROLLBACK_REFUSED = 1, 3, 4, 5


@click.command("update")
@click.option("--wheel", "wheel_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The Stempel wheel to install and switch to.")
@click.option("--sha256", help="Expected sha256 of the wheel (hex); refused if it differs.")
@click.option("--to", "to_version", metavar="VERSION", help="Switch to an installed release instead.")
@click.option("--list", "list_only", is_flag=True, help="List the installed releases.")
@click.option("--allow-index", is_flag=True, help="Let pip fetch missing dependencies from its indexes.")
@click.option("--keep", type=click.IntRange(min=2), default=3, show_default=True, help="Releases to keep.")
@click.option("--deadline", type=click.FloatRange(min=1), default=120.0, show_default=True,
              help="Seconds for the service to become active before rolling back.")
@click.option("--settle", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds it must then stay active.")
@click.option("--unit", default=UNIT, show_default=True, help="The systemd unit to restart.")
@click.option("--no-restart", is_flag=True, help="Only switch `current`; restart (and check) by hand.")
@click.option("--python", "python", help="Interpreter for new venvs [the one this runs on].")
@click.option("--ledger", type=click.Path(dir_okay=False, path_type=Path),
              help="The kiosk's ledger, only read [ROOT/var/lib/stempel/ledger.sqlite3].")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"), show_default=True,
              help="Put every path under this folder (tests, the installer's --root mode); implies no restart.")
@click.pass_context
def update(ctx: click.Context, wheel_file, sha256, to_version, list_only, allow_index, keep, deadline, settle,
           unit, no_restart, python, ledger, root) -> None:
    """Install a release beside the running one, switch to it, roll back if it does not come up."""
    if sum(map(bool, (wheel_file, to_version, list_only))) != 1:
        raise click.UsageError("give one of --wheel FILE, --to VERSION or --list")
    layout = Layout(root)
    if list_only:
        _list(layout)
        return
    services: Services | None = ctx.obj if isinstance(ctx.obj, Services) else None  # a test's supervisor
    if services is None and not no_restart and root == Path("/"):
        services = Systemctl(timeout=deadline)
    updater = Updater(layout, services, VenvBuilder(python), unit=unit, deadline=deadline, settle=settle,
                      keep=keep, allow_index=allow_index, say=lambda line: click.echo(line, err=True), ledger=ledger)
    try:
        outcome = updater.install(wheel_file, sha256) if wheel_file else updater.switch_to(to_version)
    except RolledBack as exc:
        click.echo(f"rolled back: {exc}", err=True)
        sys.exit(EXIT_ROLLED_BACK)
    except RollbackFailed as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ROLLBACK_FAILED)
    except RollbackRefused as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ROLLBACK_REFUSED)
    except UpdateError as exc:
        click.echo(f"error: {exc}; nothing was changed", err=True)
        sys.exit(EXIT_REFUSED)
    removed = f"; removed {', '.join(outcome.removed)}" if outcome.removed else ""
    click.echo(f"stempel {outcome.version}: {outcome.action} (previous: {outcome.previous or 'none'}){removed}")


def _list(layout: Layout) -> None:
    current, previous = layout.target(layout.current), layout.target(layout.previous)
    for release in layout.all():
        role = "current" if release.version == current else "previous" if release.version == previous else ""
        click.echo(f"{release.version:<20} {role:<9} {release.health or '-':<7} "
                   f"{release.marker.get('installed', '')}")


if __name__ == "__main__":  # PYTHONPATH=stempel-X.whl python3 -m kiosk.update ... (before any release)
    update()
