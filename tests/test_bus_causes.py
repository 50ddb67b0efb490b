"""A kiosk that cannot connect says why: certificate, refused, not authorised, unreachable.

Each cause is logged once at WARNING (the unit's default level) however often paho retries,
again only when the cause changes, and it is reported in the retained ``state`` as soon as
the kiosk is connected again.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mosquitto import Mosquitto, free_port
from syncrig import Watcher, wait_until
from testca import Authority

from kiosk.common.bus import CERTIFICATE, NOT_AUTHORISED, REFUSED, BusSettings, MqttBus, Tls
from kiosk.protocol import topics
from kiosk.protocol.messages import KioskState, decode

pytestmark = pytest.mark.slow  # Mosquitto brokers and a stempel-kiosk process


def bus(port: int, **kw) -> MqttBus:
    return MqttBus(BusSettings(host="127.0.0.1", port=port, client_id="counter-1", reconnect_min=0.1,
                               reconnect_max=0.2, **kw))


def failures(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "bus.connect_failed"]


def keep_failing(client: MqttBus, attempts: int = 4, timeout: float = 10) -> None:
    wait_until(lambda: client._outage is not None and client._outage.attempts >= attempts, timeout,
               f"{attempts} failed attempts")


def test_an_unreachable_broker_is_logged_once_and_reported_when_it_comes(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="kiosk.common.bus")
    port = free_port()
    client = bus(port)
    client.start()
    broker = None
    try:
        keep_failing(client)
        [record] = failures(caplog)  # once, not once per attempt
        assert record.levelno == logging.WARNING and record.cause == REFUSED
        assert f"127.0.0.1:{port}" in record.error and "is the broker running" in record.error
        assert client.connect_report() is None  # nothing to report while still away
        broker = Mosquitto(tmp_path / "broker", port=port).start()
        client.wait_connected(10)
        report = client.connect_report()
        assert report.startswith(f"could not connect to the broker 127.0.0.1:{port} from ") and REFUSED in report
        assert client.connect_report() is None  # reported once
    finally:
        client.stop()
        if broker is not None:
            broker.stop()


def test_a_wrong_password_is_logged_once_as_not_authorised(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="kiosk.common.bus")
    locked = Mosquitto(tmp_path / "locked", anonymous=False).start()
    client = bus(locked.port, username="counter-1", password="wrong")
    client.start()
    try:
        keep_failing(client)
        [record] = failures(caplog)
        assert record.cause == NOT_AUTHORISED and "check the username, password file" in record.error
    finally:
        client.stop()
        locked.stop()


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # paho leaves a failed TLS socket unclosed (cf. mqtt_peer)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_wrong_ca_is_logged_once_as_certificate_verification(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="kiosk.common.bus")
    ca, rogue = Authority(tmp_path, "stempel-ca"), Authority(tmp_path, "rogue-ca")
    cert, key = ca.issue("broker", server=True)
    tls_port = free_port()
    broker = Mosquitto(tmp_path / "broker", extra=f"listener {tls_port} 127.0.0.1\ncafile {ca.ca_file}\n"
                                                   f"certfile {cert}\nkeyfile {key}\n").start()
    client = bus(tls_port, tls=Tls(ca_file=rogue.ca_file))  # the installer copied the wrong CA
    client.start()
    try:
        keep_failing(client)
        [record] = failures(caplog)
        assert record.cause == CERTIFICATE and "check [mqtt] ca_file" in record.error
        assert record.error.startswith("certificate verify failed (")
    finally:
        client.stop()
        broker.stop()


def test_a_change_of_cause_is_logged_again(tmp_path, caplog):
    """Unreachable, then a broker that refuses us: two causes, two warnings."""
    caplog.set_level(logging.WARNING, logger="kiosk.common.bus")
    port = free_port()
    client = bus(port, username="counter-1", password="wrong")
    client.start()
    locked = None
    try:
        keep_failing(client, 2)
        locked = Mosquitto(tmp_path / "locked", anonymous=False, port=port).start()
        wait_until(lambda: len(failures(caplog)) == 2, 10, "the second cause")
        keep_failing(client, client._outage.attempts + 3)
        assert [r.cause for r in failures(caplog)] == [REFUSED, NOT_AUTHORISED]
    finally:
        client.stop()
        if locked is not None:
            locked.stop()


def test_run_logs_why_it_cannot_connect_and_reports_it_in_state_once_connected(tmp_path, kiosk_dir):
    """`stempel-kiosk run` at its default log level, started before the broker is reachable."""
    port = free_port()
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[kiosk]\nid = "counter-1"\ndata_dir = "{kiosk_dir}"\n[hardware]\nbackend = "sim"\n'
                      f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n')
    err = tmp_path / "kiosk.err"
    with err.open("w") as sink:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "stempel-kiosk"), "run", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=sink)
    broker = watcher = None
    try:
        def warnings() -> list[dict]:
            return [json.loads(line) for line in err.read_text().splitlines() if line.startswith("{")]

        wait_until(lambda: any(w["event"] == "bus.connect_failed" for w in warnings()), 15, "the warning")
        time.sleep(2.5)  # paho retries meanwhile (1 s, 2 s, ...): still one line
        failed = [w for w in warnings() if w["event"] == "bus.connect_failed"]
        assert len(failed) == 1 and failed[0]["level"] == "warning" and failed[0]["cause"] == REFUSED
        broker = Mosquitto(tmp_path / "broker", port=port).start()
        watcher = Watcher(port, topics.state("cafe-rosa", "counter-1"))
        seen: list[KioskState] = []

        def online() -> list[KioskState]:
            seen.extend(decode(KioskState, m.payload) for m in watcher.drain()[len(seen):])
            return [s for s in seen if s.status == "online"]

        wait_until(lambda: bool(online()), 40, "the kiosk to connect and say online")
        state = online()[0]
        assert "could not connect to the broker" in state.last_error and REFUSED in state.last_error
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        if watcher is not None:
            watcher.stop()
        if broker is not None:
            broker.stop()
    assert proc.returncode == 0, err.read_text()
