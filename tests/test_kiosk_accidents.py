"""What an installer or a shop runs into, done the way they do it: the console script, files on
disk, a disk that fills up, a ledger page that rots. Each test asserts what must survive."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from mosquitto import Mosquitto
from PIL import Image
from syncrig import IngestProc, append_events, wait_until

from cloud.events import EventStore
from kiosk.clock import FakeClock
from kiosk.config import load_config
from kiosk.display import screens
from kiosk.display.texts import reason
from kiosk.hardware import scenes
from kiosk.hardware.panel import Signal
from kiosk.ledger import Ledger
from kiosk.loop import run as run_loop
from kiosk.link.state import StatusBoard
from kiosk.wiring import build_kiosk

BIN = Path(sys.executable).parent
START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def kiosk_cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "stempel-kiosk"), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)


def save_pass(path: Path, url: str, seed: int) -> Path:
    Image.fromarray(scenes.render(url, np.random.default_rng(seed), scenes.Look())).save(path)
    return path


# -- (a) a relative --config naming a relative password_file --------------------------------------
@pytest.mark.slow  # spawns a process
def test_a_relative_config_with_a_relative_password_file_loads(tmp_path, kiosk_dir, monkeypatch):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "mqtt.password").write_text("secret\n")
    shutil.copy(kiosk_dir / "keys.json", bundle / "keys.json")
    (bundle / "kiosk.toml").write_text('[kiosk]\nid = "counter-1"\ndata_dir = "."\n'
                                       '[mqtt]\nhost = "127.0.0.1"\npassword_file = "mqtt.password"\n'
                                       'ca_file = "ca.crt"\n')
    result = kiosk_cli("redeem", "--config", "bundle/kiosk.toml", "--json", cwd=tmp_path)  # used to be NameError
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outcome"] == "nothing_to_redeem"
    monkeypatch.chdir(tmp_path)
    config = load_config("bundle/kiosk.toml", env={})
    assert config.mqtt.password_file == bundle / "mqtt.password"  # absolute: a later chdir cannot break it
    assert config.mqtt.ca_file == bundle / "ca.crt" and config.kiosk.data_dir == bundle


# -- (b) `run` on a data dir without keys -------------------------------------------------------
@pytest.mark.slow  # spawns a process
def test_run_without_keys_gives_the_same_message_as_scan_image(tmp_path):
    empty = tmp_path / "empty"
    frame = save_pass(tmp_path / "f.png", "https://example.com/x", 1)
    scan = kiosk_cli("scan-image", str(frame), "--data-dir", str(empty))
    run = kiosk_cli("run", "--simulate", "--replay", str(tmp_path), "--data-dir", str(empty))
    assert run.returncode == scan.returncode == 2
    assert "Traceback" not in run.stderr
    message = f"error: {empty / 'keys.json'}: no keys file; copy the output of `stempel-hub export-keys` there"
    assert message in scan.stderr and message in run.stderr


# -- (c) `run` ends without a gpiozero thread traceback -----------------------------------------
@pytest.mark.slow  # spawns a process
def test_run_exits_cleanly_while_the_led_still_blinks(hub, kiosk_dir, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, name in enumerate(["Anna", "Ben", "Carl"]):  # each stamps: LED and buzzer patterns run at exit
        save_pass(frames / f"{i:02d}.png", hub.issue(name).url, i)
    for _ in range(3):  # it used to happen at every exit; be sure
        result = kiosk_cli("run", "--simulate", "--replay", str(frames), "--data-dir", str(kiosk_dir), "--json")
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
        assert len(result.stdout.splitlines()) == 3


# -- (d) a clean stop waits for the outbox -----------------------------------------------------
@pytest.mark.slow  # spawns a process
def test_replay_stops_only_after_the_hub_acked_its_last_events(hub, kiosk_dir, tmp_path):
    """The last frame's events are written just before the replay ends: the stop must wait for them."""
    broker = Mosquitto(tmp_path / "broker").start()
    url = f"sqlite:///{tmp_path / 'hub-events.sqlite3'}"
    store = EventStore.open(url)
    worker = IngestProc(tmp_path, url, broker.port, "w1").start()
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[kiosk]\nid = "counter-1"\ndata_dir = "{kiosk_dir}"\n'
                      f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nack_timeout_seconds = 1\n')
    try:
        wait_until(lambda: bool(worker.records("bus.connected")), 10, "ingest to connect")
        for run_no in range(3):  # it lost the race about half the time
            frames = tmp_path / f"frames-{run_no}"
            frames.mkdir()
            for i in range(3):
                save_pass(frames / f"{i:02d}.png", hub.issue(f"Member {run_no}-{i}").url, 10 * run_no + i)
            result = kiosk_cli("run", "--simulate", "--replay", str(frames), "--config", str(config), "--json")
            assert result.returncode == 0, result.stderr
            assert "outbox: every event acknowledged by the hub" in result.stderr, result.stderr
            ledger = Ledger(kiosk_dir / "ledger.sqlite3")
            last = ledger.last_seq()
            ledger.close()
            assert last >= 6 * (run_no + 1)  # each first visit writes at least two events (visit, stamp)
            assert store.acked_through("cafe-rosa", "counter-1") == last
            assert len(store.events("cafe-rosa", "counter-1")) == last
    finally:
        worker.stop()
        broker.stop()
        store.close()


@pytest.mark.slow  # spawns a process
def test_a_stop_without_a_broker_says_what_is_left(hub, kiosk_dir, tmp_path):
    from mosquitto import free_port

    frames = tmp_path / "frames"
    frames.mkdir()
    save_pass(frames / "01.png", hub.issue("Anna").url, 1)
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[kiosk]\nid = "counter-1"\ndata_dir = "{kiosk_dir}"\n'
                      f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n')
    proc = subprocess.Popen([str(BIN / "stempel-kiosk"), "run", "--simulate", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "running" in proc.stderr.readline()  # signals are handled from here on
        ledger = Ledger(kiosk_dir / "ledger.sqlite3")  # stamps written while the hub is away
        append_events(ledger, 4)
        ledger.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "outbox: 4 event(s) not yet acknowledged by the hub; they stay in the ledger" in err


# -- (e) a full disk and a corrupt ledger page: out of order, reported, the loop lives on ----------
@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB tmpfs: a disk that can really fill up (needs root, as the test machine is)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Fill *disk* to the last byte; returns the filler to delete when space is needed again."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return filler


class LiveKiosk:
    """The live loop in a thread, on simulated hardware, with a virtual camera the test holds passes to."""

    def __init__(self, data_dir: Path) -> None:
        config = load_config(None, env={}, kiosk__data_dir=str(data_dir), kiosk__shop_name="Cafe Rosa")
        self.kiosk = build_kiosk(config, clock=FakeClock(START))
        self.kiosk.status = self.status = StatusBoard()
        self.camera = self.kiosk.camera  # the simulated backend's VirtualCamera
        self.results: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=run_loop, args=(self.kiosk, self.camera, self.stop, self.results.put))
        self.thread.start()

    def scan(self, url: str, seed: int):
        self.camera.present(scenes.render(url, np.random.default_rng(seed), scenes.Look()))
        return self.results.get(timeout=20)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.kiosk.close()


OUT_OF_ORDER = screens.Rejected("out_of_order", "en")


@pytest.mark.slow  # spawns a process
def test_a_full_disk_shows_out_of_order_and_the_loop_lives_on(hub, tmp_path, tiny_disk):
    data = tiny_disk / "kiosk"
    hub.export("cafe-rosa", data / "keys.json")
    anna, ben, carl = hub.issue("Anna"), hub.issue("Ben"), hub.issue("Carl")
    live = LiveKiosk(data)
    try:
        assert live.scan(anna.url, 1).outcome == "stamped"
        filler = fill(tiny_disk)
        refused = live.scan(ben.url, 2)
        assert refused.outcome == "out_of_order" and "database or disk is full" in refused.reason
        assert live.kiosk.display.shown[-1] == OUT_OF_ORDER
        assert live.kiosk.panel.history[-1].signal == Signal.REJECTED
        assert reason("en", "out_of_order") == ("Out of order", "call staff")
        assert live.kiosk.display.image.tobytes() == screens.render(OUT_OF_ORDER).tobytes()
        assert "database or disk is full" in live.status.last_error()
        assert live.thread.is_alive()
        live.kiosk.show_idle()  # the idle screen keeps saying so while the ledger fails
        assert live.kiosk.display.shown[-1] == OUT_OF_ORDER
        filler.unlink()  # staff free some space: the next scan works again, nothing restarted
        assert (live.scan(carl.url, 3).outcome, live.status.last_error()) == ("stamped", None)
        assert live.scan(ben.url, 4).outcome == "stamped"
    finally:
        live.close()
    ledger = Ledger(data / "ledger.sqlite3")
    members = {e.member for e in ledger.events()}
    ledger.close()
    assert members == {anna.member, ben.member, carl.member}  # Anna's stamp from before survived


def test_a_corrupt_ledger_page_shows_out_of_order_and_keeps_the_earlier_stamps(hub, kiosk_dir):
    anna, ben = hub.issue("Anna"), hub.issue("Ben")
    live = LiveKiosk(kiosk_dir)
    try:
        assert live.scan(anna.url, 1).outcome == "stamped"
        assert live.scan(ben.url, 2).outcome == "stamped"
    finally:
        live.close()
    path = kiosk_dir / "ledger.sqlite3"
    before = [(e.kiosk_seq, e.event_id) for e in Ledger(path).events()]
    db = sqlite3.connect(path)
    page = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events_member'").fetchone()[0]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with path.open("r+b") as f:  # the member index rots; the events themselves are intact
        f.seek((page - 1) * size)
        f.write(b"\xa5" * size)
    live = LiveKiosk(kiosk_dir)
    try:
        broken = live.scan(anna.url, 3)
        assert broken.outcome == "out_of_order" and "malformed" in broken.reason
        assert live.kiosk.display.shown[-1] == OUT_OF_ORDER and "malformed" in live.status.last_error()
        assert live.scan(ben.url, 4).outcome == "out_of_order"  # and again: the loop did not die
        assert live.thread.is_alive()
    finally:
        live.close()
    ledger = Ledger(path)
    assert [(e.kiosk_seq, e.event_id) for e in ledger.events()] == before  # the stamps are all there
    ledger.close()


def test_out_of_order_is_in_both_languages():
    assert reason("de", "out_of_order") == ("Außer Betrieb", "Personal rufen")
