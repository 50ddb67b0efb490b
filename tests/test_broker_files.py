"""The broker files and bundles the hub writes: formats, idempotence, refusals, the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cloud.broker.acl import render_acl
from cloud.broker.accounts import Account, kiosk_account
from cloud.broker.conf import Listener, TlsFiles, render_conf
from cloud.broker.passwd import hash_password, verify_password
from cloud.passes import export_keys
from cloud.provision import Endpoint, add_kiosk, broker_config
from kiosk.config import load_config
from kiosk.common.errors import ConfigError, ProvisioningError

BIN = Path(sys.executable).parent
SNIPPET = Path(__file__).parent.parent / "systemd" / "mosquitto-stempel.conf"


@pytest.mark.slow  # spawns a process
def test_our_hashes_and_mosquitto_passwd_hashes_are_the_same_format(tmp_path):
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "anna", "s3cret"], check=True)
    theirs = passwd.read_text().strip().split(":", 1)[1]
    assert verify_password("s3cret", theirs) and not verify_password("s3cret!", theirs)
    ours = hash_password("s3cret")
    assert re.fullmatch(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", ours)
    assert verify_password("s3cret", ours) and not verify_password("other", ours)
    assert not verify_password("s3cret", "$6$old$sha512") and not verify_password("x", "garbage")


def test_the_acl_names_each_kiosks_own_merchant_and_id_literally():
    acl = render_acl([Account("stempel-hub-1", "hub"), kiosk_account("cafe-rosa", "k-a"),
                      kiosk_account("baeckerei-kurz", "k-a")])
    lines = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert lines[0].startswith("user ")  # nothing for anonymous clients
    assert not any(line.startswith("pattern") for line in lines)
    blocks = dict(re.findall(r"^user (\S+)\n((?:topic .*\n?)+)", acl, re.M))
    for username, merchant, kiosk in (("cafe-rosa-k-a", "cafe-rosa", "k-a"), ("baeckerei-kurz-k-a", "baeckerei-kurz", "k-a")):
        for access, topic in re.findall(r"^topic (\w+) (\S+)$", blocks[username], re.M):
            assert "+" not in topic and "#" not in topic and topic.startswith(f"stempel/v1/{merchant}/")
            assert access == "read" or topic.startswith(f"stempel/v1/{merchant}/kiosks/{kiosk}/")
    assert "topic read stempel/v1/+/kiosks/+/events" in blocks["stempel-hub-1"]


@pytest.mark.parametrize("merchant, kiosk", [("cafe-rosa", "k+1"), ("cafe-rosa", "#"), ("cafe/rosa", "k1"),
                                             ("cafe-rosa", "K1"), ("cafe-rosa", "k 1"), ("cafe-rosa", "")])
def test_account_names_outside_the_id_alphabet_are_refused(merchant, kiosk):
    with pytest.raises(ConfigError):
        kiosk_account(merchant, kiosk)
    with pytest.raises(ProvisioningError):
        render_acl([Account(f"{merchant}-{kiosk}", "hub")])


def test_the_installed_snippet_is_what_broker_config_writes_by_default():
    certs = Path("/etc/mosquitto/certs")
    rendered = render_conf([Listener(1883, "127.0.0.1"),
                            Listener(8883, tls=TlsFiles(certs / "stempel-ca.crt", certs / "broker.crt",
                                                        certs / "broker.key"))],
                           backstop=Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"))

    def settings(text: str) -> list[str]:
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    assert settings(SNIPPET.read_text()) == settings(rendered)


@pytest.fixture
def hub(hub):
    """The conftest hub, plus a second merchant whose kiosk username would collide."""
    hub.init("cafe")
    return hub


def test_broker_files_are_regenerated_identically(hub):
    endpoint = Endpoint("broker.lan", 1883)
    first = broker_config(hub.engine, hub.data_dir, [Listener(1883)], endpoint, hub_workers=2)
    add_kiosk(hub.engine, hub.data_dir, "cafe-rosa", "counter-1", endpoint)
    files = first.files
    before = {path: path.read_text() for path in (files.passwd, files.acl, files.conf, files.hub_settings,
                                                   files.hub_password("stempel-hub-1"))}
    again = broker_config(hub.engine, hub.data_dir, [Listener(1883)], endpoint, hub_workers=2)
    assert again.new_accounts == [] and again.ingest_group == first.ingest_group
    assert {path: path.read_text() for path in before} == before
    assert files.passwd.stat().st_mode & 0o077 == 0 and files.hub_password("stempel-hub-2").stat().st_mode & 0o077 == 0


def test_a_bundle_is_a_kiosk_config_that_loads(hub, tmp_path):
    bundle = add_kiosk(hub.engine, hub.data_dir, "cafe-rosa", "counter-1", Endpoint("broker.lan", 1883)).bundle
    config = load_config(bundle / "kiosk.toml", env={})
    assert (config.kiosk.id, config.kiosk.merchant) == ("counter-1", "cafe-rosa")
    assert config.mqtt.username == "cafe-rosa-counter-1" and not config.mqtt.uses_tls()
    password = config.mqtt.password_file.read_text().strip()
    row_hash = (hub.data_dir / "broker" / "stempel.passwd").read_text().split("cafe-rosa-counter-1:")[1].split()[0]
    assert verify_password(password, row_hash) and password not in (hub.data_dir / "hub.sqlite3").read_bytes().decode("latin-1")
    assert json.loads(config.keys_path().read_text()) == json.loads(export_keys(hub.engine, "cafe-rosa").to_json())
    assert {p.name: p.stat().st_mode & 0o777 for p in bundle.iterdir()}["mqtt.password"] == 0o600


def test_add_kiosk_refuses_duplicates_collisions_and_hub_names_but_rotates_on_request(hub):
    endpoint = Endpoint("broker.lan", 1883)
    first = add_kiosk(hub.engine, hub.data_dir, "cafe-rosa", "counter-1", endpoint)
    old = (first.bundle / "mqtt.password").read_text()
    with pytest.raises(ProvisioningError, match="--rotate-password"):
        add_kiosk(hub.engine, hub.data_dir, "cafe-rosa", "counter-1", endpoint)
    with pytest.raises(ProvisioningError, match="already belongs"):
        add_kiosk(hub.engine, hub.data_dir, "cafe", "rosa-counter-1", endpoint)  # same username
    with pytest.raises(ConfigError, match="unknown merchant"):
        add_kiosk(hub.engine, hub.data_dir, "nobody", "k1", endpoint)
    hub.init("stempel")
    with pytest.raises(ProvisioningError, match="reserved for the hub"):
        add_kiosk(hub.engine, hub.data_dir, "stempel", "hub-1", endpoint)
    rotated = add_kiosk(hub.engine, hub.data_dir, "cafe-rosa", "counter-1", endpoint, rotate=True)
    assert rotated.rotated and (rotated.bundle / "mqtt.password").read_text() != old
    assert (hub.data_dir / "broker" / "stempel.passwd").read_text().count("cafe-rosa-counter-1:") == 1


def run_hub(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "stempel-hub"), "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # spawns a process
def test_the_cli_provisions_a_tls_kiosk_and_refuses_bad_names(tmp_path):
    data, ca = tmp_path / "hub", tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n(test)\n-----END CERTIFICATE-----\n")
    assert run_hub(data, "init", "--merchant", "cafe-rosa", "--name", "Cafe Rosa").returncode == 0
    done = run_hub(data, "broker-config", "--certfile", "/etc/mosquitto/certs/broker.crt", "--keyfile",
                   "/etc/mosquitto/certs/broker.key", "--cafile", "/etc/mosquitto/certs/ca.crt", "--require-certificate")
    assert done.returncode == 0, done.stderr
    assert "require_certificate true" in (data / "broker" / "mosquitto-stempel.conf").read_text()
    passwd_before = (data / "broker" / "stempel.passwd").read_text()
    for bad in ("k+1", "#", "a/b"):
        refused = run_hub(data, "add-kiosk", "--merchant", "cafe-rosa", "--kiosk", bad, "--broker-host", "b.lan")
        assert refused.returncode == 2 and "not a valid id" in refused.stderr, bad
    assert (data / "broker" / "stempel.passwd").read_text() == passwd_before
    made = run_hub(data, "add-kiosk", "--merchant", "cafe-rosa", "--kiosk", "counter-1", "--broker-host", "b.lan",
                   "--ca-file", str(ca))
    assert made.returncode == 0, made.stderr
    bundle = data / "bundles" / "cafe-rosa-counter-1"
    mqtt = tomllib.loads((bundle / "kiosk.toml").read_text())["mqtt"]
    assert (mqtt["port"], mqtt["tls"], mqtt["ca_file"]) == (8883, True, "ca.crt")
    assert (bundle / "ca.crt").read_text() == ca.read_text()
    assert "/etc/stempel/" in made.stdout and "reload mosquitto" in made.stdout
    helptext = run_hub(data, "add-kiosk", "--help").stdout
    assert "/etc/stempel/" in helptext and "SIGHUP" in helptext
