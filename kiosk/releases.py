"""Releases side by side under /opt/stempel: check a wheel, build a release from it, flip the links.

The layout, shared with scripts/install-common.sh (which builds the first release)::

    /opt/stempel/releases/<version>/   a venv (--system-site-packages: picamera2, lgpio from apt)
        .stempel-release               key=value lines, written last: the release is complete
        .stempel-health                what the last switch to it found (ok / failed, when, why)
        wheelhouse/                    every wheel it was installed from: the next update's
                                       offline source for the dependencies that did not change
        constraints.txt                pip constraints, carried from release to release (numpy<2)
    /opt/stempel/current  -> releases/<version>   the release in service
    /opt/stempel/previous -> releases/<version>   the one before it: where a rollback goes
    /opt/stempel/venv     -> current              the installer's; the unit starts venv/bin/...

A venv is not relocatable (its scripts name their python by absolute path), so a release is
built where it stays and marked complete last; a folder without the marker is a half-built
leftover of an interrupted run. Links are relative (a ``--root`` tree stays self-contained)
and replaced by renaming a new link over the old one, so ``current`` always names a whole
release, also after a power cut.

Standard library only (and kiosk.common): the updater must work when the rest of the
package, or the release it runs from, is the thing being replaced.
"""

from __future__ import annotations

import configparser
import email.parser
import errno
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from kiosk.common.atomic import write_atomic
from kiosk.common.errors import StempelError

log = logging.getLogger(__name__)

PROJECT = "stempel"
ENTRY_POINT = "stempel-kiosk"
MARKER = ".stempel-release"
HEALTH = ".stempel-health"
# A directory name and a PEP 440 version at once: digits first, no "/" or "!" (epochs).
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+_]*$")
_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-[0-9][^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


class UpdateError(StempelError, RuntimeError):
    """An update could not be done; unless the class says otherwise, nothing was changed."""


class BadWheel(UpdateError, ValueError):
    """The file is not a complete Stempel wheel (name, zip, metadata, entry point or sha256)."""


class NoSpace(UpdateError):
    """The disk is (or would become) full while building a release."""


class NoPermission(UpdateError, PermissionError):
    """/opt/stempel (or systemctl) needs root."""


@dataclass(frozen=True)
class WheelInfo:
    path: Path
    version: str
    sha256: str
    size: int

    @property
    def fingerprint(self) -> str:
        """What scripts/install-common.sh records for a wheel: the first 16 hex of its sha256."""
        return self.sha256[:16]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_wheel(path: Path, sha256: str | None = None) -> WheelInfo:
    """The version of a Stempel wheel after checking it whole; raises BadWheel saying what is wrong.

    Checked: the file name (``stempel-VERSION-...whl``), the sha256 if given (a truncated or
    swapped download), every member's CRC, the metadata's name and version against the file
    name, and the ``stempel-kiosk`` console script (without it the release could not start).
    """
    path = Path(path)
    match = _WHEEL_NAME.match(path.name)
    if not match or re.sub(r"[-_.]+", "-", match["name"]).lower() != PROJECT:
        raise BadWheel(f"{path.name}: not a Stempel wheel name (stempel-VERSION-py3-none-any.whl); "
                       "build one with `pip wheel . --no-deps`")
    version = match["version"]
    if not _VERSION.match(version):
        raise BadWheel(f"{path.name}: version {version!r} cannot name a release folder; "
                       "use a plain PEP 440 version such as 1.2.0 or 1.2.0+shop1")
    if not path.is_file():
        raise BadWheel(f"{path}: no such file")
    actual = sha256_of(path)
    if sha256 is not None and actual != sha256.strip().lower():
        raise BadWheel(f"{path.name}: sha256 is {actual}, expected {sha256.strip().lower()} "
                       "(a truncated or different download: fetch it again)")
    try:
        with zipfile.ZipFile(path) as wheel:
            bad = wheel.testzip()
            if bad is not None:
                raise BadWheel(f"{path.name}: {bad} is damaged (CRC); fetch the wheel again")
            meta_version, scripts = _read_metadata(wheel, path.name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise BadWheel(f"{path.name}: not a readable wheel ({exc}); fetch it again") from exc
    if meta_version.lower().replace("-", "_") != version.lower().replace("-", "_"):
        raise BadWheel(f"{path.name}: the file name says {version}, its metadata {meta_version}; "
                       "rebuild it with `pip wheel . --no-deps` rather than renaming it")
    if ENTRY_POINT not in scripts:
        raise BadWheel(f"{path.name}: has no {ENTRY_POINT} console script, so the service could not start it")
    return WheelInfo(path.resolve(), version, actual, path.stat().st_size)


def _read_metadata(wheel: zipfile.ZipFile, name: str) -> tuple[str, set[str]]:
    """(the METADATA version, the console scripts) of the project's .dist-info."""
    infos = {n.split("/")[0] for n in wheel.namelist()
             if n.endswith(".dist-info/METADATA") and n.count("/") == 1}
    ours = [d for d in infos if re.sub(r"[-_.]+", "-", d.split("-")[0]).lower() == PROJECT]
    if len(ours) != 1:
        raise BadWheel(f"{name}: no stempel-*.dist-info/METADATA inside; not a wheel built from Stempel")
    meta = email.parser.HeaderParser().parsestr(wheel.read(f"{ours[0]}/METADATA").decode("utf-8", "replace"))
    if re.sub(r"[-_.]+", "-", meta.get("Name", "")).lower() != PROJECT:
        raise BadWheel(f"{name}: its metadata names {meta.get('Name')!r}, not stempel")
    entry_points = configparser.ConfigParser(interpolation=None)
    try:
        entry_points.read_string(wheel.read(f"{ours[0]}/entry_points.txt").decode("utf-8"))
    except KeyError:
        return meta.get("Version", ""), set()
    scripts = set(entry_points["console_scripts"]) if entry_points.has_section("console_scripts") else set()
    return meta.get("Version", ""), scripts


@dataclass(frozen=True)
class Release:
    """A complete release folder: its marker's key=value lines and what the last switch found."""

    version: str
    path: Path
    marker: dict[str, str]
    health: str | None  # "ok", "failed" or None (never switched to by the updater)
    installed: float  # seconds since the epoch: the marker's time, for "the last N"

    @property
    def fingerprint(self) -> str | None:
        return self.marker.get("fingerprint")


class Layout:
    """The paths under ``root`` (``/`` on a kiosk, a scratch folder in tests and ``--root``)."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = Path(root)
        self.base = self.root / "opt" / "stempel"
        self.releases = self.base / "releases"
        self.current = self.base / "current"
        self.previous = self.base / "previous"
        self.lock = self.base / ".update.lock"

    def release_dir(self, version: str) -> Path:
        return self.releases / version

    def release(self, version: str) -> Release | None:
        """The complete release *version*, or None (absent or half-built)."""
        folder = self.release_dir(version)
        marker = folder / MARKER
        if not marker.is_file():
            return None
        fields = _key_values(marker.read_text(encoding="utf-8", errors="replace"))
        installed = _timestamp(fields.get("installed")) or marker.stat().st_mtime
        health_file = folder / HEALTH
        health = _key_values(health_file.read_text()).get("health") if health_file.is_file() else None
        return Release(version, folder, fields, health, installed)

    def all(self) -> list[Release]:
        """Complete releases, oldest first."""
        if not self.releases.is_dir():
            return []
        found = [self.release(p.name) for p in self.releases.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return sorted((r for r in found if r is not None), key=lambda r: (r.installed, r.version))

    def leftovers(self) -> list[Path]:
        """Release folders without a marker: builds that were interrupted."""
        if not self.releases.is_dir():
            return []
        return sorted(p for p in self.releases.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and not (p / MARKER).is_file())

    def target(self, link: Path) -> str | None:
        """The version *link* points at, or None if there is no link; UpdateError if it is not ours."""
        if not link.is_symlink():
            if link.exists():
                raise UpdateError(f"{link} is not a symlink (an earlier manual install?): "
                                  f"move it away, e.g. mv {link} {link}.old, and run the installer")
            return None
        raw = Path(os.readlink(link))
        if raw.parent.name != "releases" or (raw.is_absolute() and raw.parent != self.releases):
            raise UpdateError(f"{link} points at {raw}, not at a release in {self.releases}; "
                              "point it at one (ln -sfn releases/VERSION) or run the installer")
        return raw.name

    def point(self, link: Path, version: str) -> None:
        """Make *link* name ``releases/<version>`` in one rename (it never dangles or goes missing)."""
        tmp = link.with_name(f".{link.name}.stempel-new")
        tmp.unlink(missing_ok=True)
        os.symlink(f"releases/{version}", tmp)
        os.replace(tmp, link)
        _fsync_dir(link.parent)
        log.info("update.link", extra={"link": link.name, "version": version})

    def mark_complete(self, wheel: WheelInfo) -> None:
        """Write the marker last, in the installer's key=value format plus the full sha256."""
        now = datetime.now(timezone.utc).isoformat()  # microseconds: "the last N" even within a second
        text = (f"version={wheel.version}\nfingerprint={wheel.fingerprint}\nsource={wheel.path}\n"
                f"sha256={wheel.sha256}\ninstalled={now}\n")
        write_atomic(self.release_dir(wheel.version) / MARKER, text.encode(), 0o644)

    def mark_health(self, version: str, health: str, why: str = "") -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        text = f"health={health}\nat={now}\n" + (f"why={why}\n" if why else "")
        write_atomic(self.release_dir(version) / HEALTH, text.encode(), 0o644)

    def prune(self, keep: int) -> list[str]:
        """Delete releases beyond the last *keep* (failed ones first) and half-built leftovers;
        never the one ``current`` or ``previous`` names. Returns the versions deleted."""
        protected = {self.target(self.current), self.target(self.previous)} - {None}
        releases = self.all()
        candidates = sorted((r for r in releases if r.version not in protected),
                            key=lambda r: (r.health != "failed", r.installed))
        doomed = [r.path for r in candidates[:max(0, len(releases) - keep)]]
        doomed += [p for p in self.leftovers() if p.name not in protected]
        for path in doomed:
            shutil.rmtree(path)
            log.info("update.pruned", extra={"release": path.name})
        return [p.name for p in doomed]


def _key_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _timestamp(value: str | None) -> float | None:
    try:
        return datetime.fromisoformat(value).timestamp() if value else None
    except ValueError:
        return None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def folder_size(folder: Path) -> int:
    """Bytes in the files under *folder* (links not followed); 0 if it does not exist."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass  # a file that went away while we counted does not need room
    return total


def share_wheels(new: Path, old: Path) -> int:
    """Hard-link wheels of *new* that are byte-identical in *old* (an SD card has little room
    for a second numpy). Returns how many were shared; a failure just leaves the copy."""
    shared = 0
    for wheel in sorted(new.glob("*.whl")):
        twin = old / wheel.name
        try:
            if (not twin.is_file() or twin.stat().st_size != wheel.stat().st_size or os.path.samefile(twin, wheel)
                    or sha256_of(twin) != sha256_of(wheel)):
                continue
            tmp = wheel.with_name(f".{wheel.name}.link")
            os.link(twin, tmp)
            os.replace(tmp, wheel)
            shared += 1
        except OSError as exc:  # another file system, or a wheel that went away: keep the copy
            log.info("update.share_skipped", extra={"wheel": wheel.name, "error": str(exc)})
    return shared


def translate_os_error(exc: OSError, doing: str) -> UpdateError:
    """An OSError from building or switching, as an error a person can act on."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"disk full while trying to {doing}: free space on that file system "
                       "(old releases other than current and previous can be deleted) and run the update again")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return NoPermission(f"no permission to {doing} ({exc.strerror}): run the update as root, "
                            "e.g. sudo stempel-kiosk update --wheel FILE")
    return UpdateError(f"could not {doing}: {exc}")


class Builder(Protocol):
    """Turns a checked wheel into a working release in *dest* (which exists, empty but for
    ``constraints.txt``). Raises UpdateError (or OSError) if it cannot; the caller cleans up."""

    def build(self, wheel: WheelInfo, dest: Path, find_links: Sequence[Path], allow_index: bool) -> None: ...


Runner = Callable[..., subprocess.CompletedProcess]


class VenvBuilder:
    """The real builder: ``python -m venv --system-site-packages``, then pip in two steps.

    ``pip download`` gathers the wheel and every dependency into ``dest/wheelhouse``, from the
    wheel's own folder and the current release's wheelhouse, and with ``allow_index`` from pip's
    configured indexes too; ``pip install --no-index`` then installs from that folder only. So a
    release holds exactly what it was installed from, and the next update needs nothing but the
    new Stempel wheel unless a dependency changed.
    """

    def __init__(self, python: str | None = None, run: Runner = subprocess.run) -> None:
        self.python = python or getattr(sys, "_base_executable", None) or sys.executable
        self._run_process = run

    def build(self, wheel: WheelInfo, dest: Path, find_links: Sequence[Path], allow_index: bool) -> None:
        self._run([self.python, "-m", "venv", "--system-site-packages", str(dest)], "create the release venv")
        pip = [str(dest / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--no-input"]
        constraints = dest / "constraints.txt"
        limit = ["--constraint", str(constraints)] if constraints.is_file() else []
        links = [arg for folder in find_links if folder.is_dir() for arg in ("--find-links", str(folder))]
        index = [] if allow_index else ["--no-index"]
        wheelhouse = dest / "wheelhouse"
        self._run([*pip, "download", "--quiet", "--dest", str(wheelhouse), *index, *links, *limit, str(wheel.path)],
                  "gather the wheels")
        self._run([*pip, "install", "--quiet", "--no-index", "--find-links", str(wheelhouse), *limit,
                   str(wheel.path)], "install the wheel")
        if not (dest / "bin" / ENTRY_POINT).exists():
            raise UpdateError(f"pip installed {wheel.path.name} but {dest}/bin/{ENTRY_POINT} is missing")

    def _run(self, command: list[str], doing: str) -> None:
        started = time.monotonic()
        try:
            done = self._run_process(command, capture_output=True, text=True)
        except FileNotFoundError as exc:
            raise UpdateError(f"cannot {doing}: {command[0]} not found (pass --python /usr/bin/python3)") from exc
        log.info("update.step", extra={"step": doing, "rc": done.returncode,
                                       "seconds": round(time.monotonic() - started, 1)})
        if done.returncode != 0:
            output = f"{done.stdout or ''}\n{done.stderr or ''}"
            log.warning("update.step_failed", extra={"step": doing, "output": output[-4000:]})
            raise pip_failure(doing, output)


def pip_failure(doing: str, output: str) -> UpdateError:
    """What venv's or pip's failure output means for the person running the update."""
    if "No space left on device" in output or "[Errno 28]" in output:
        return NoSpace(f"disk full while trying to {doing}: free space (old releases other than current "
                       "and previous can be deleted) and run the update again")
    if "Permission denied" in output or "[Errno 13]" in output:
        return NoPermission(f"no permission to {doing}: run the update as root (sudo stempel-kiosk update ...)")
    missing = re.search(r"No matching distribution found for (\S+)", output)
    if missing:
        return UpdateError(f"{missing.group(1)} is not available offline: put its wheel next to the Stempel "
                           "wheel, or pass --allow-index to let pip fetch it from the configured index")
    if "ensurepip" in output:
        return UpdateError(f"cannot {doing}: the venv module lacks pip; apt install python3-venv")
    tail = " | ".join(line.strip() for line in output.strip().splitlines()[-3:])
    return UpdateError(f"could not {doing}: {tail}")
