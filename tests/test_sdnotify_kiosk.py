"""The kiosk under systemd: READY once the camera answers, a status line, and watchdog pings
from the camera loop that stop when the camera hangs or fails; heard on a real NOTIFY_SOCKET."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from notifysock import NotifySocket, pings
from syncrig import append_events

from kiosk.common.bus import BusSettings
from kiosk.common.errors import CameraError, CameraExhausted
from kiosk.common.membus import MemoryBroker, MemoryBus
from kiosk.common.sdnotify import Notifier
from kiosk.hardware.camera import Frame
from kiosk.link.documents import KIOSK, MERCHANT, DocumentFollower
from kiosk.link.hub_link import HubLink
from kiosk.link.state import StatusBoard
from kiosk.loop import run as run_loop
from kiosk.protocol import signed
from kiosk.protocol.passes import key_id
from kiosk.rules.program import Program
from kiosk.service import KioskService, programme_label, status_line

KIOSK_BIN = Path(sys.executable).parent / "stempel-kiosk"
BLANK = np.full((120, 160), 255, dtype=np.uint8)


class CounterCamera:
    """A camera at the counter whose test can make it hang (``stall``) or fail (``fail``).

    Until then every capture waits out its timeout and returns a blank frame or nothing, in
    turn, advancing *clock* (if given) by *step* seconds of camera time.
    """

    name = "counter"

    def __init__(self, clock=None, step: float = 0.0, stall_at: int | None = None) -> None:
        self.clock, self.step, self.stall_at = clock, step, stall_at
        self.captures = 0
        self.stalled = threading.Event()  # set when a capture hangs
        self.failures = 0
        self.failed = threading.Event()
        self._stall = threading.Event()
        self._fail = False
        self._release = threading.Event()

    def stall(self) -> None:
        self._stall.set()

    def fail(self) -> None:
        self._fail = True

    def release(self) -> None:
        """A hung capture returns (as the end of the replay), so the loop can be stopped."""
        self._release.set()

    def capture(self, timeout: float | None = None) -> Frame | None:
        self.captures += 1
        if self._stall.is_set() or self.captures == self.stall_at:
            self.stalled.set()
            self._release.wait()
            raise CameraExhausted("released")
        if self._fail:
            self.failures += 1
            self.failed.set()
            raise CameraError("the camera stopped answering (test)")
        if self.clock is not None:
            self.clock.advance(self.step)
        else:
            self._release.wait(timeout)
        return Frame(BLANK, source=f"frame-{self.captures}") if self.captures % 2 else None

    def close(self) -> None:
        self.release()


@pytest.fixture
def systemd(tmp_path):
    sock = NotifySocket(tmp_path)
    yield sock
    sock.close()


class Running:
    """The scan loop on its own thread, as `stempel-kiosk run` runs it on its main thread."""

    def __init__(self, kiosk, camera: CounterCamera, service: KioskService) -> None:
        self.camera, self.stop = camera, threading.Event()
        self.thread = threading.Thread(target=run_loop, args=(kiosk, camera, self.stop),
                                       kwargs={"service": service}, daemon=True)

    def __enter__(self) -> "Running":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.camera.release()
        self.thread.join(20)
        assert not self.thread.is_alive()


def standalone_service(kiosk, notifier: Notifier, **kw) -> KioskService:
    board = StatusBoard()
    return KioskService(notifier, lambda: status_line(kiosk, None, board, None), **kw)


WATCHDOG_USEC = 200_000  # WatchdogSec=0.2s: a ping every 0.1 s


def test_ready_then_pings_while_frames_flow_and_none_once_the_camera_hangs(sim_kiosk, systemd):
    camera = CounterCamera()
    with Notifier.from_environ(systemd.env(watchdog_usec=WATCHDOG_USEC)) as notifier, \
            Running(sim_kiosk, camera, standalone_service(sim_kiosk, notifier)):
        ready = systemd.wait_for("READY", "1")
        assert ready["STATUS"] == "standalone (no [mqtt]), programme from kiosk.toml"
        for _ in range(3):
            systemd.wait_for("WATCHDOG", "1")
        camera.stall()
        assert camera.stalled.wait(20)
        systemd.drain()  # what was sent before the capture hung
        # Nothing more: every message comes from the loop, which now waits on the camera.
        assert systemd.next(timeout=3 * WATCHDOG_USEC / 1e6) is None


def test_a_camera_that_keeps_failing_stops_the_pings(sim_kiosk, systemd):
    camera = CounterCamera()
    with Notifier.from_environ(systemd.env(watchdog_usec=WATCHDOG_USEC)) as notifier, \
            Running(sim_kiosk, camera, standalone_service(sim_kiosk, notifier)):
        systemd.wait_for("READY", "1")
        systemd.wait_for("WATCHDOG", "1")
        camera.fail()
        assert camera.failed.wait(20)
        systemd.drain()
        assert systemd.next(timeout=3 * WATCHDOG_USEC / 1e6) is None
        assert camera.failures >= 1


def test_no_ready_while_the_camera_has_never_answered(sim_kiosk, systemd):
    camera = CounterCamera()
    camera.fail()
    with Notifier.from_environ(systemd.env(watchdog_usec=WATCHDOG_USEC)) as notifier, \
            Running(sim_kiosk, camera, standalone_service(sim_kiosk, notifier)):
        assert camera.failed.wait(20)
        assert systemd.next(timeout=3 * WATCHDOG_USEC / 1e6) is None  # systemd's start times out: a restart


def test_pings_follow_the_camera_loop_by_its_clock(sim_kiosk, clock, systemd):
    """WatchdogSec=0.5 s and a frame every 0.125 s of camera time: a ping every second frame, the
    last one two frames before the camera hangs at the 11th capture, well within one period."""
    camera = CounterCamera(clock=clock, step=0.125, stall_at=11)
    notifier = Notifier.from_environ(systemd.env(watchdog_usec=500_000), monotonic=clock.monotonic)
    with notifier, Running(sim_kiosk, camera, standalone_service(sim_kiosk, notifier, monotonic=clock.monotonic)):
        assert camera.stalled.wait(20)
        heard = systemd.drain()
    assert heard[0] == {"READY": "1", "STATUS": "standalone (no [mqtt]), programme from kiosk.toml"}
    assert heard[1:] == [{"WATCHDOG": "1"}] * 5  # after captures 1, 3, 5, 7 and 9


def test_the_status_line_follows_the_board_at_once(sim_kiosk, clock, systemd):
    board = StatusBoard()
    camera = CounterCamera()
    with Notifier.from_environ(systemd.env()) as notifier:
        service = KioskService(notifier, lambda: status_line(sim_kiosk, None, board, None), status_every=3600)
        board.on_change(service.refresh)
        with Running(sim_kiosk, camera, service):
            systemd.wait_for("READY", "1")
            board.set_error("config", "merchant config v4 rejected: [earning] unknown field")
            changed = systemd.wait_for("STATUS")
    assert changed["STATUS"] == ("standalone (no [mqtt]), programme from kiosk.toml; "
                                 "last error: merchant config v4 rejected: [earning] unknown field")
    assert pings(systemd.seen) == 0  # no WatchdogSec=: no pings


def test_a_status_line_that_fails_never_stops_ready_or_the_pings(systemd, caplog):
    def broken() -> str:
        raise RuntimeError("the board is gone")

    clock = iter(range(0, 1000, 10)).__next__  # ten seconds per look: every alive() is due
    with Notifier.from_environ(systemd.env(watchdog_usec=1_000_000), monotonic=clock) as notifier:
        service = KioskService(notifier, broken, monotonic=clock)
        service.ready()
        service.alive()
        service.alive()
    assert systemd.drain() == [{"READY": "1", "STATUS": "running; status unavailable (RuntimeError)"},
                               {"WATCHDOG": "1"}, {"WATCHDOG": "1"}]
    assert [r.getMessage() for r in caplog.records if r.name == "kiosk.service"].count("kiosk.status_failed") == 1


# -- the status line -----------------------------------------------------------------------------
@pytest.fixture
def broker():
    b = MemoryBroker()
    yield b
    b.close()


def link_for(kiosk_dir: Path, bus) -> HubLink:
    return HubLink(bus, merchant="cafe-rosa", kiosk="counter-1", boot_id="boot-1",
                   ledger_path=kiosk_dir / "ledger.sqlite3")


def test_the_line_says_online_and_how_many_stamps_wait_for_the_hub(sim_kiosk, kiosk_dir, broker):
    link = link_for(kiosk_dir, MemoryBus(broker, BusSettings(host="memory", client_id="counter-1"))).start()
    try:
        link.bus.wait_connected(10)
        assert status_line(sim_kiosk, link, link.status, None) == "online, 0 waiting, programme from kiosk.toml"
        append_events(sim_kiosk.ledger, 3)  # nobody acknowledges them: no hub on this broker
        assert status_line(sim_kiosk, link, link.status, None) == "online, 3 waiting, programme from kiosk.toml"
    finally:
        link.stop()


def test_the_line_says_offline_and_the_latest_error(sim_kiosk, kiosk_dir):
    gone = MemoryBroker()
    gone.close()
    link = link_for(kiosk_dir, MemoryBus(gone, BusSettings(host="memory", client_id="counter-1"))).start()
    try:
        link.status.set_error("broker", "not authorised: check the password file")
        assert status_line(sim_kiosk, link, link.status, None) == (
            "offline, 0 waiting, programme from kiosk.toml; last error: not authorised: check the password file")
        sim_kiosk.out_of_order = "database or disk is full"
        assert status_line(sim_kiosk, link, link.status, None) == (
            "OUT OF ORDER, offline, 0 waiting, programme from kiosk.toml; last error: database or disk is full")
    finally:
        link.stop()


def test_the_line_names_the_programme_version_the_hub_pushed(tmp_path):
    key = Ed25519PrivateKey.generate()
    documents = DocumentFollower("cafe-rosa", "counter-1", {key_id(key.public_key()): key.public_key()}, tmp_path)

    def push(kind: str, version: int) -> None:
        doc = signed.sign({"schema": signed.CONFIG_SCHEMA, "merchant": "cafe-rosa", "version": version,
                           "kiosk": "counter-1" if kind == KIOSK else None,
                           "program": Program(name="Cafe Rosa").model_dump(mode="json")}, key)
        assert documents.handle(kind, json.dumps(doc).encode()).applied

    assert programme_label(documents) == "programme from kiosk.toml"
    push(MERCHANT, 3)
    assert programme_label(documents) == "programme v3"
    push(KIOSK, 2)
    assert programme_label(documents) == "programme v2 (this kiosk's config)"


# -- the real process ----------------------------------------------------------------------------
@pytest.mark.slow  # spawns the kiosk
def test_stempel_kiosk_run_under_a_notify_socket(kiosk_dir, tmp_path, systemd):
    from mosquitto import free_port

    config = tmp_path / "kiosk.toml"
    config.write_text(f'[kiosk]\nid = "counter-1"\ndata_dir = "{kiosk_dir}"\n'
                      f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n')  # no broker there: offline
    env = {**os.environ, **systemd.env(watchdog_usec=400_000)}
    proc = subprocess.Popen([str(KIOSK_BIN), "run", "--simulate", "--config", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ready = systemd.wait_for("READY", "1", timeout=60)
        assert ready["STATUS"] == "offline, 0 waiting, programme from kiosk.toml"
        for _ in range(3):
            systemd.wait_for("WATCHDOG", "1")
        proc.send_signal(signal.SIGTERM)
        stopping = systemd.wait_for("STOPPING", "1")
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert stopping["STATUS"] == "stopping: handing the outbox to the hub"


@pytest.mark.slow  # spawns the kiosk
def test_a_watchdog_kill_leaves_the_stack_of_every_thread(kiosk_dir, tmp_path, systemd):
    """systemd's watchdog kills with SIGABRT: the journal then shows where the kiosk hung."""
    env = {**os.environ, **systemd.env(watchdog_usec=5_000_000)}
    proc = subprocess.Popen([str(KIOSK_BIN), "run", "--simulate", "--data-dir", str(kiosk_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            preexec_fn=no_core_dump)
    try:
        systemd.wait_for("READY", "1", timeout=60)
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGABRT
    assert "Fatal Python error: Aborted" in err
    assert "kiosk/loop.py" in err  # the main thread's stack: in the scan loop


def no_core_dump() -> None:
    """In the child: an abort leaves no core file behind (the stacks on stderr are what we want)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
