"""scripts/install-kiosk.sh and scripts/install-hub.sh, run for real in a scratch root (--root).

There every file lands under the root and every command that would change the system
(apt-get, useradd, chown, systemctl, raspi-config, the venv's pip) is printed as a plan. The
tests read what landed (modes, symlinks, the unit files, the bundle, Mosquitto's files), the
plan, a second run that changes nothing, and an uninstall that keeps the ledger. The hub's own
commands (init, broker-config, user add) really run there, against the root's data dir.
Every script in scripts/ also passes `bash -n`, and shellcheck where it is installed
(`scripts/system-deps.sh test` installs it).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cloud.accounts import authenticate
from cloud.db import default_url, make_engine
from cloud.provision import Endpoint, write_bundle
from kiosk.config import load_config

pytestmark = pytest.mark.slow  # each test runs the scripts (and the hub's CLI) as processes

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # stempel-hub
PASSWORD = "correct horse battery"


def run(script: str, *args: object, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", str(SCRIPTS / script), *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=180)
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def plan(done: subprocess.CompletedProcess) -> list[str]:
    return [line.removeprefix("  plan: ") for line in done.stdout.splitlines() if line.startswith("  plan: ")]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under *root*: its mode and its content or link target (the hub's SQLite aside:
    opening a database may touch it)."""
    seen = {}
    for path in sorted(root.rglob("*")):
        if path.name.startswith("hub.sqlite3"):
            continue
        body = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else None
        seen[str(path.relative_to(root))] = (path.lstat().st_mode, body)
    return seen


def source(folder: Path, version: str) -> Path:
    """A Stempel source tree as far as the installer looks at it: the version and a package."""
    (folder / "kiosk").mkdir(parents=True, exist_ok=True)
    (folder / "kiosk" / "__init__.py").write_text("")
    (folder / "pyproject.toml").write_text(f'[project]\nname = "stempel"\nversion = "{version}"\n')
    return folder


# --- the kiosk --------------------------------------------------------------------------------

@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A bundle as `stempel-hub add-kiosk` writes it, with TLS and a client certificate."""
    pem = tmp_path / "pem"
    pem.mkdir()
    for name in ("ca.crt", "client.crt", "client.key"):
        (pem / name).write_text(f"-----BEGIN {name}-----\n")
    folder = tmp_path / "bundle"
    write_bundle(folder, "cafe-rosa", "counter-1", "cafe-rosa-counter-1", "s3cret-password",
                 Endpoint("hub.example", 8883, pem / "ca.crt", pem / "client.crt", pem / "client.key"),
                 '{"merchant": "cafe-rosa"}', '{"keys": []}')
    return folder


@pytest.fixture
def kiosk_args(tmp_path: Path, bundle: Path) -> list:
    return ["--root", tmp_path / "root", "--source", source(tmp_path / "src", "9.9.9"), bundle]


def test_the_kiosk_lands_with_its_release_bundle_state_and_unit(tmp_path, bundle, kiosk_args):
    done = run("install-kiosk.sh", *kiosk_args)
    root, etc = tmp_path / "root", tmp_path / "root/etc/stempel"

    assert os.readlink(root / "opt/stempel/current") == "releases/9.9.9"
    assert os.readlink(root / "opt/stempel/venv") == "current"  # what the unit's ExecStart names
    assert os.readlink(root / "usr/local/bin/stempel-kiosk") == "/opt/stempel/current/bin/stempel-kiosk"
    assert "version=9.9.9" in (root / "opt/stempel/releases/9.9.9/.stempel-release").read_text().splitlines()
    assert (root / "opt/stempel/releases/9.9.9/constraints.txt").read_text() == "numpy<2\n"

    assert mode(etc) == 0o750 and mode(root / "var/lib/stempel") == 0o700
    expected = {"kiosk.toml": 0o640, "mqtt.password": 0o640, "client.key": 0o640,
                "keys.json": 0o644, "hub-keys.json": 0o644, "ca.crt": 0o644, "client.crt": 0o644}
    assert {p.name: mode(p) for p in etc.iterdir()} == expected
    for name in expected:
        if name != "kiosk.toml":
            assert (etc / name).read_bytes() == (bundle / name).read_bytes()
    installed = (etc / "kiosk.toml").read_text()
    assert installed.startswith((bundle / "kiosk.toml").read_text())  # the bundle's, plus the backend
    assert tomllib.loads(installed)["hardware"] == {"backend": "pi"}
    config = load_config(etc / "kiosk.toml", env={})
    assert (config.hardware.backend, config.mqtt.password_file) == ("pi", etc / "mqtt.password")

    unit = root / "etc/systemd/system/stempel-kiosk.service"
    assert mode(unit) == 0o644 and unit.read_bytes() == (REPO / "systemd/stempel-kiosk.service").read_bytes()

    planned = plan(done)
    assert "apt-get install -y --no-install-recommends python3-picamera2 libzbar0 python3-lgpio i2c-tools " \
           "python3-venv" in planned
    assert "useradd --system --user-group --home-dir /var/lib/stempel --no-create-home --shell /usr/sbin/nologin " \
           "stempel" in planned
    assert "usermod --append --groups video,gpio,i2c stempel" in planned
    assert "raspi-config nonint do_i2c 0" in planned
    assert "/usr/bin/python3 -m venv --system-site-packages /opt/stempel/releases/9.9.9" in planned
    for secret in ("kiosk.toml", "mqtt.password", "client.key"):
        assert f"chown root:stempel /etc/stempel/{secret}" in planned
    assert {"chown root:stempel /etc/stempel", "chown stempel:stempel /var/lib/stempel", "systemctl daemon-reload",
            "systemctl enable stempel-kiosk", "systemctl restart stempel-kiosk"} <= set(planned)
    assert planned[-1] == "runuser -u stempel -- /opt/stempel/current/bin/python -m kiosk.check " \
                          "--config /etc/stempel/kiosk.toml"


def test_a_second_kiosk_run_changes_nothing_and_says_so(tmp_path, kiosk_args):
    run("install-kiosk.sh", *kiosk_args)
    before = snapshot(tmp_path / "root")
    again = run("install-kiosk.sh", *kiosk_args)
    assert snapshot(tmp_path / "root") == before
    assert "no changes: everything was already in place" in again.stdout and "changed:" not in again.stdout


def test_a_new_password_in_the_bundle_is_one_change(tmp_path, bundle, kiosk_args):
    run("install-kiosk.sh", *kiosk_args)
    (bundle / "mqtt.password").write_text("rotated\n")
    done = run("install-kiosk.sh", *kiosk_args)
    assert [line for line in done.stdout.splitlines() if "change" in line] == [
        "  changed: /etc/stempel/mqtt.password", "1 change"]
    assert "systemctl restart stempel-kiosk" in plan(done)
    assert (tmp_path / "root/etc/stempel/mqtt.password").read_text() == "rotated\n"
    assert mode(tmp_path / "root/etc/stempel/mqtt.password") == 0o640


def test_an_update_without_the_bundle_makes_the_new_version_current_and_keeps_the_old(tmp_path, kiosk_args):
    root = tmp_path / "root"
    run("install-kiosk.sh", *kiosk_args)
    etc = snapshot(root / "etc/stempel")
    source(tmp_path / "src", "9.9.10")
    done = run("install-kiosk.sh", "--root", root, "--source", tmp_path / "src")  # the bundle is long deleted
    assert os.readlink(root / "opt/stempel/current") == "releases/9.9.10"
    assert (root / "opt/stempel/releases/9.9.9/.stempel-release").exists()  # the way back
    assert "/usr/bin/python3 -m venv --system-site-packages /opt/stempel/releases/9.9.10" in plan(done)
    assert "systemctl restart stempel-kiosk" in plan(done) and snapshot(root / "etc/stempel") == etc


def test_a_release_is_never_rebuilt_in_place(tmp_path, kiosk_args):
    run("install-kiosk.sh", *kiosk_args)
    (tmp_path / "src/kiosk/__init__.py").write_text("# changed, same version\n")
    done = run("install-kiosk.sh", *kiosk_args)
    assert "raise the version in pyproject.toml" in done.stderr
    assert "no changes" in done.stdout and not any("-m venv" in line for line in plan(done))


@pytest.mark.parametrize("hardware, expected", [
    ('[hardware]\ndisplay = "sh1106"\n', {"display": "sh1106", "backend": "pi"}),
    ('[hardware]\nbackend = "sim"\n', {"backend": "sim"}),  # the owner's choice stays
])
def test_the_backend_is_set_only_where_the_bundle_names_none(tmp_path, bundle, kiosk_args, hardware, expected):
    with (bundle / "kiosk.toml").open("a") as toml:
        toml.write("\n" + hardware)
    run("install-kiosk.sh", *kiosk_args)
    assert tomllib.loads((tmp_path / "root/etc/stempel/kiosk.toml").read_text())["hardware"] == expected


def test_a_folder_that_is_not_a_bundle_is_refused(tmp_path):
    done = run("install-kiosk.sh", "--root", tmp_path / "root", tmp_path, ok=False)
    assert done.returncode != 0 and "has no kiosk.toml" in done.stderr
    first = run("install-kiosk.sh", "--root", tmp_path / "root", ok=False)  # no bundle, none installed
    assert first.returncode == 2 and "give the bundle folder" in first.stderr
    assert not (tmp_path / "root/opt").exists()


def test_uninstall_keeps_the_ledger_and_the_bundle_unless_purged(tmp_path, kiosk_args):
    root = tmp_path / "root"
    run("install-kiosk.sh", *kiosk_args)
    (root / "var/lib/stempel/ledger.sqlite3").write_bytes(b"the ledger")
    done = run("install-kiosk.sh", "--root", root, "--uninstall")
    assert "systemctl disable --now stempel-kiosk" in plan(done)
    for gone in ("etc/systemd/system/stempel-kiosk.service", "opt/stempel", "usr/local/bin/stempel-kiosk"):
        assert not (root / gone).exists() and not (root / gone).is_symlink()
    assert (root / "var/lib/stempel/ledger.sqlite3").read_bytes() == b"the ledger"
    assert (root / "etc/stempel/mqtt.password").exists()
    assert "  kept: /var/lib/stempel" in done.stdout

    again = run("install-kiosk.sh", "--root", root, "--uninstall")
    assert "no changes: nothing left to remove" in again.stdout and plan(again) == []

    purged = run("install-kiosk.sh", "--root", root, "--uninstall", "--purge")
    assert not (root / "var/lib/stempel").exists() and not (root / "etc/stempel").exists()
    assert "userdel stempel" in plan(purged)


# --- the hub ----------------------------------------------------------------------------------

def hub_args(tmp_path: Path, *more: object) -> list:
    password = tmp_path / "owner.pw"
    password.write_text(PASSWORD + "\n")
    return ["--root", tmp_path / "root", "--source", source(tmp_path / "src", "9.9.9"),
            "--merchant", "cafe-rosa", "--name", "Cafe Rosa", "--base-url", "https://stempel.example",
            "--owner", "owner@cafe-rosa.example", "--owner-password-file", password, *more]


def test_the_hub_lands_with_mosquitto_units_and_its_first_owner(tmp_path):
    done = run("install-hub.sh", *hub_args(tmp_path))
    root = tmp_path / "root"
    data, etc, mosquitto = root / "var/lib/stempel-hub", root / "etc/stempel", root / "etc/mosquitto"

    assert os.readlink(root / "opt/stempel/current") == "releases/9.9.9"
    assert os.readlink(root / "usr/local/bin/stempel-hub") == "/opt/stempel/current/bin/stempel-hub"
    assert mode(data) == 0o700 and mode(etc) == 0o750 and mode(etc / "hub.toml") == 0o640
    hub_toml = tomllib.loads((etc / "hub.toml").read_text())
    assert hub_toml["hub"] == {"data_dir": "/var/lib/stempel-hub"}
    assert hub_toml["mqtt"]["settings_file"] == "/var/lib/stempel-hub/broker/hub-mqtt.toml"

    conf = mosquitto / "conf.d/stempel.conf"
    assert mode(conf) == 0o644 and conf.read_bytes() == (data / "broker/mosquitto-stempel.conf").read_bytes()
    assert "password_file /etc/mosquitto/stempel/stempel.passwd" in conf.read_text()
    assert mode(mosquitto / "stempel") == 0o750
    for name in ("stempel.passwd", "stempel.acl", "stempel-dynsec.json"):
        assert mode(mosquitto / "stempel" / name) == 0o640
        assert (mosquitto / "stempel" / name).read_bytes() == (data / "broker" / name).read_bytes()
    accounts = [line.split(":")[0] for line in (mosquitto / "stempel/stempel.passwd").read_text().splitlines()]
    assert sorted(accounts) == ["stempel-hub-1", "stempel-hub-admin"]
    for unit in ("stempel-hub-ingest@.service", "stempel-hub-web.service"):
        installed = root / "etc/systemd/system" / unit
        assert mode(installed) == 0o644 and installed.read_bytes() == (REPO / "systemd" / unit).read_bytes()

    engine = make_engine(default_url(data))
    try:
        assert authenticate(engine, "owner@cafe-rosa.example", PASSWORD) is not None
    finally:
        engine.dispose()
    assert "  changed: owner login owner@cafe-rosa.example" in done.stdout

    planned = plan(done)
    assert "apt-get install -y --no-install-recommends mosquitto python3-venv" in planned
    assert "useradd --system --user-group --home-dir /var/lib/stempel-hub --no-create-home " \
           "--shell /usr/sbin/nologin stempel-hub" in planned
    assert {"chown stempel-hub:stempel-hub /var/lib/stempel-hub", "chown root:stempel-hub /etc/stempel/hub.toml",
            "chown root:mosquitto /etc/mosquitto/stempel/stempel.passwd", "systemctl restart mosquitto",
            "systemctl enable stempel-hub-ingest@1", "systemctl enable stempel-hub-web"} <= set(planned)

    before = snapshot(root)
    again = run("install-hub.sh", *hub_args(tmp_path))
    assert snapshot(root) == before
    assert "no changes: everything was already in place" in again.stdout and "changed:" not in again.stdout


def test_the_hub_after_add_kiosk_more_workers_and_uninstall(tmp_path):
    root = tmp_path / "root"
    data = root / "var/lib/stempel-hub"
    run("install-hub.sh", *hub_args(tmp_path, "--hub-workers", "2"))
    subprocess.run(["stempel-hub", "--data-dir", data, "add-kiosk", "--merchant", "cafe-rosa", "--kiosk", "counter-1",
                    "--broker-host", "127.0.0.1"], env=ENV, check=True, capture_output=True, timeout=120)

    again = run("install-hub.sh", "--root", root, "--source", tmp_path / "src")  # no options: as after add-kiosk
    assert "  changed: /etc/mosquitto/stempel/stempel.passwd" in again.stdout
    assert "cafe-rosa-counter-1:" in (root / "etc/mosquitto/stempel/stempel.passwd").read_text()
    assert {"systemctl enable stempel-hub-ingest@1", "systemctl enable stempel-hub-ingest@2"} <= set(plan(again))

    gone = run("install-hub.sh", "--root", root, "--uninstall")
    assert {"systemctl disable --now stempel-hub-web", "systemctl disable --now stempel-hub-ingest@2"} <= set(plan(gone))
    for path in ("etc/systemd/system/stempel-hub-web.service", "etc/mosquitto/stempel", "etc/mosquitto/conf.d/stempel.conf",
                 "opt/stempel"):
        assert not (root / path).exists()
    assert (data / "hub.sqlite3").exists() and (data / "keys/cafe-rosa").is_dir()  # the ledger and the keys
    assert (root / "etc/stempel/hub.toml").exists()


def test_the_hub_on_postgresql_plans_its_database(tmp_path):
    done = run("install-hub.sh", *hub_args(tmp_path, "--postgres"))
    hub_toml = tomllib.loads((tmp_path / "root/etc/stempel/hub.toml").read_text())
    assert hub_toml["hub"]["db_url"] == "postgresql+psycopg://stempel-hub@/stempel?host=/var/run/postgresql"
    planned = plan(done)
    assert "apt-get install -y --no-install-recommends mosquitto python3-venv postgresql" in planned
    assert "runuser -u postgres -- createdb --owner stempel-hub stempel" in planned
    assert any(line.endswith("--constraint /opt/stempel/releases/9.9.9/constraints.txt "
                             f"{tmp_path / 'src'}[postgres]") for line in planned)


def test_postgres_is_refused_for_a_hub_already_on_sqlite(tmp_path):
    run("install-hub.sh", "--root", tmp_path / "root", "--source", source(tmp_path / "src", "9.9.9"), "--no-check")
    done = run("install-hub.sh", "--root", tmp_path / "root", "--source", tmp_path / "src", "--postgres", ok=False)
    assert done.returncode != 0 and "keeps its data in SQLite" in done.stderr


# --- every script -----------------------------------------------------------------------------

SHELL_SCRIPTS = sorted(SCRIPTS.glob("*.sh"))


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_every_script_parses(script):
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (scripts/system-deps.sh test)")
@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_every_script_passes_shellcheck(script):
    done = subprocess.run(["shellcheck", "-x", str(script.relative_to(REPO))], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout
