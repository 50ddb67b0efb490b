"""The hub's one config (issue 8): ``hub.toml``, ``STEMPEL_*`` variables and flags, in that order,
and the broker settings merged once from ``hub-mqtt.toml`` for the admin commands and each worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.app import create_hub
from cloud.config import load_hub_config
from kiosk.common.errors import ConfigError

HUB_MQTT = """[mqtt]
host = "broker.example"
port = 8883
ingest_group = "stempel-ingest-secret"
tls = true
ca_file = "/etc/ssl/stempel-ca.crt"

[accounts]
"stempel-hub-admin" = "{dir}/hub/stempel-hub-admin.password"
"stempel-hub-1" = "{dir}/hub/stempel-hub-1.password"
"""


@pytest.fixture
def settings_file(tmp_path) -> Path:
    (tmp_path / "hub").mkdir()
    for name in ("stempel-hub-admin", "stempel-hub-1"):
        (tmp_path / "hub" / f"{name}.password").write_text(f"secret-of-{name}\n")
    path = tmp_path / "hub-mqtt.toml"
    path.write_text(HUB_MQTT.format(dir=tmp_path))
    return path


def test_file_then_environment_then_flags(tmp_path):
    (tmp_path / "hub.toml").write_text('[hub]\ndata_dir = "data"\ndb_url = "sqlite:///file.db"\n'
                                       "[ingest]\nmax_event_ahead_minutes = 7\nmax_event_age_days = 30\n")
    env = {"STEMPEL_HUB_DB": "sqlite:///env.db", "STEMPEL_HUB_MAX_EVENT_AGE_DAYS": "40"}
    config = load_hub_config(tmp_path / "hub.toml", env=env, ingest__max_event_age_days=50)
    assert config.hub.data_dir == tmp_path / "data"  # relative to the file
    assert config.hub.db_url == "sqlite:///env.db"
    assert (config.ingest.max_event_ahead_minutes, config.ingest.max_event_age_days) == (7, 50)


def test_without_a_file_the_old_variables_and_defaults_apply(tmp_path, monkeypatch):
    monkeypatch.setattr("cloud.config.DEFAULT_PATH", tmp_path / "absent.toml")
    config = load_hub_config(env={"XDG_DATA_HOME": str(tmp_path)})
    assert config.hub.data_dir == tmp_path / "stempel-hub" and config.hub.db_url is None
    assert load_hub_config(env={"STEMPEL_HUB_DIR": "/srv/hub"}).hub.data_dir == Path("/srv/hub")
    hub = create_hub(load_hub_config(env={}, hub__data_dir=tmp_path / "d"))
    assert hub.db_url == f"sqlite:///{tmp_path / 'd' / 'hub.sqlite3'}" and (tmp_path / "d").is_dir()


@pytest.mark.parametrize("text, env, message", [
    ("[hub]\ndata_dri = 'x'\n", {}, r"\[hub.data_dri\] unknown field; remove it or check its spelling"),
    ("[ingest]\nmax_event_ahead_minutes = 5000\n", {}, r"\[ingest.max_event_ahead_minutes\]"),
    ("", {"STEMPEL_HUB_MAX_EVENT_AGE_DAYS": "soon"}, r"\[ingest.max_event_age_days\]"),
    ("[mqtt]\nport = 0\n", {}, r"\[mqtt.port\]"),
])
def test_a_bad_field_is_named_with_its_fix(tmp_path, text, env, message):
    (tmp_path / "hub.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_hub_config(tmp_path / "hub.toml", env=env)


def test_the_admin_commands_and_each_worker_get_their_own_account(tmp_path, settings_file):
    hub = create_hub(load_hub_config(env={"STEMPEL_HUB_MQTT": str(settings_file)}, hub__data_dir=tmp_path))
    admin, worker = hub.bus("admin"), hub.bus(1, hub.broker.worker_id(1))
    assert (admin.client_id, admin.username, admin.password) == ("stempel-hub-admin",) * 2 + ("secret-of-stempel-hub-admin",)
    assert (admin.host, admin.port, str(admin.tls.ca_file)) == ("broker.example", 8883, "/etc/ssl/stempel-ca.crt")
    assert not admin.manual_ack and admin.session_expiry == 0
    assert (worker.client_id, worker.password) == ("stempel-hub-1", "secret-of-stempel-hub-1")
    assert worker.manual_ack and worker.session_expiry == 3600
    assert hub.broker.group == "stempel-ingest-secret"
    with pytest.raises(ConfigError, match=r"no account stempel-hub-2; rerun `stempel-hub broker-config --hub-workers 2`"):
        hub.bus(2)


def test_flags_override_the_settings_file(tmp_path, settings_file):
    config = load_hub_config(env={}, hub__data_dir=tmp_path, mqtt__settings_file=settings_file,
                             mqtt__host="127.0.0.1", mqtt__port=1884, mqtt__ingest_group="g")
    hub = create_hub(config)
    settings = hub.bus(1, hub.broker.worker_id(1, "w-fixed"))
    assert (settings.host, settings.port, settings.client_id, hub.broker.group) == ("127.0.0.1", 1884,
                                                                                    "stempel-hub-1", "g")
    assert hub.broker.worker_id(1, "w-fixed") == "w-fixed"


def test_without_a_settings_file_a_worker_connects_anonymously(tmp_path):
    hub = create_hub(load_hub_config(env={}, hub__data_dir=tmp_path))
    settings = hub.bus(3, hub.broker.worker_id(3))
    assert (settings.host, settings.port, settings.client_id, settings.username) == ("127.0.0.1", 1883,
                                                                                     "stempel-ingest-3", None)
    assert hub.bus("admin").client_id == "stempel-hub-admin"


def test_a_broken_settings_file_is_named(tmp_path):
    broken = tmp_path / "hub-mqtt.toml"
    broken.write_text("[mqtt]\nport = 1883\n")
    hub = create_hub(load_hub_config(env={}, hub__data_dir=tmp_path, mqtt__settings_file=broken))
    with pytest.raises(ConfigError, match="not a hub MQTT settings file"):
        hub.bus("admin")


def test_stempel_hub_reads_its_config_file(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cloud import cli

    for name in ("STEMPEL_HUB_DIR", "STEMPEL_HUB_DB", "STEMPEL_HUB_CONFIG", "STEMPEL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "hub.toml").write_text('[hub]\ndata_dir = "shop-data"\n')
    done = CliRunner().invoke(cli.main, ["--config", str(tmp_path / "hub.toml"), "init", "--merchant", "cafe-rosa",
                                         "--name", "Cafe Rosa"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "shop-data" / "hub.sqlite3").exists() and f"data in {tmp_path / 'shop-data'}" in done.output
    (tmp_path / "bad.toml").write_text("[hub]\ndb = 'x'\n")
    done = CliRunner().invoke(cli.main, ["--config", str(tmp_path / "bad.toml"), "export-keys", "--merchant", "x"])
    assert done.exit_code == 2 and "[hub.db] unknown field" in done.output
