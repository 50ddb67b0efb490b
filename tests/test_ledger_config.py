"""The ledger's durability settings and append-only rule; config loading and its messages."""

import sqlite3
from datetime import datetime, timezone

import pytest

from kiosk.config import load_config
from kiosk.common.errors import ConfigError
from kiosk.hardware.factory import hardware_factory
from kiosk.ledger import Ledger
from kiosk.rules import Entry, Program

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_ledger_is_wal_with_full_sync_and_append_only(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    events = ledger.append([Entry("earn", "m1", 1, "base-rate", "e1")], AT, 1.0, "boot")
    assert ledger._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert ledger._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        ledger._db.execute("UPDATE events SET delta = 5")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        ledger._db.execute("DELETE FROM events")
    assert ledger.member_state("m1", Program()).balance == 1 and events[0].kiosk_seq == 1
    ledger.close()


def test_event_ids_are_unique_and_time_ordered(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    for _ in range(50):
        ledger.append([Entry("earn", "m1", 1, "base-rate", "e1")], AT, 1.0, "boot")
    ids = [e.event_id for e in ledger.events()]
    assert ids == sorted(ids) and len(set(ids)) == 50 and all(i[14] == "7" for i in ids)
    ledger.close()


def test_config_file_env_and_overrides(tmp_path):
    path = tmp_path / "kiosk.toml"
    path.write_text('[kiosk]\nid = "counter-2"\ndata_dir = "data"\n[hardware]\nbackend = "pi"\n')
    config = load_config(path, env={"STEMPEL_HARDWARE": "sim"})
    assert config.kiosk.id == "counter-2"
    assert config.kiosk.data_dir == tmp_path / "data"  # relative to the file
    assert hardware_factory(config.hardware).camera_kind == "virtual"  # STEMPEL_HARDWARE=sim
    assert hardware_factory(load_config(path, env={}).hardware).camera_kind == "picamera2"
    assert load_config(path, env={}, kiosk__data_dir="/x").kiosk.data_dir.as_posix() == "/x"


@pytest.mark.parametrize("text, message", [
    ('[kiosk]\nid = "Counter 1"\n', "[kiosk.id]"),
    ('[hardware]\ncamera = "webcam"\n', "[hardware.camera]"),
    ('[hardwre]\n', "[hardwre] unknown field; remove it or check its spelling"),
    ('[program]\ncooldown_minutes = -5\n', "[program.cooldown_minutes]"),
    ("[kiosk\n", "not valid TOML"),
])
def test_bad_config_names_the_field(tmp_path, text, message):
    path = tmp_path / "kiosk.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert message in str(info.value)


def test_missing_config_file_says_how_to_point_at_one(tmp_path):
    with pytest.raises(ConfigError, match="STEMPEL_CONFIG"):
        load_config(tmp_path / "nope.toml", env={})


def test_mqtt_paths_in_a_bundle_are_relative_to_the_config_file(tmp_path):
    path = tmp_path / "bundle" / "kiosk.toml"
    path.parent.mkdir()
    path.write_text('[mqtt]\nhost = "hub"\npassword_file = "mqtt.password"\nca_file = "ca.crt"\n')
    config = load_config(path, env={})
    assert config.mqtt.password_file == tmp_path / "bundle" / "mqtt.password"
    assert config.mqtt.ca_file == tmp_path / "bundle" / "ca.crt"
