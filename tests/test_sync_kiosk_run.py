"""`stempel-kiosk run` with an [mqtt] section: the sender starts, drains the ledger to the hub
and says goodbye with a retained ``offline`` state."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mosquitto import Mosquitto
from PIL import Image
from syncrig import IngestProc, Watcher, append_events, converged, wait_until

from cloud.events import EventStore
from kiosk.ledger import Ledger
from kiosk.protocol import topics
from kiosk.protocol.messages import KioskState, decode

pytestmark = pytest.mark.slow  # Mosquitto, stempel-kiosk and ingest processes

KIOSK = str(Path(sys.executable).parent / "stempel-kiosk")


def test_run_syncs_the_ledger_when_mqtt_is_configured(tmp_path, kiosk_dir):
    broker = Mosquitto(tmp_path / "broker").start()
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    store = EventStore.open(url)
    worker = IngestProc(tmp_path, url, broker.port, "w1").start()
    watcher = Watcher(broker.port, topics.state("cafe-rosa", "counter-1"))
    ledger = Ledger(kiosk_dir / "ledger.sqlite3")
    append_events(ledger, 25)  # stamped while the kiosk had no broker
    ledger.close()
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(np.full((480, 640), 255, np.uint8)).save(frames / "blank.png")
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[kiosk]\nid = "counter-1"\ndata_dir = "{kiosk_dir}"\n'
                      f'[hardware]\nbackend = "sim"\nreplay_dir = "{frames}"\n'
                      f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nack_timeout_seconds = 1\n')
    try:
        wait_until(lambda: bool(worker.records("bus.connected")), 10, "ingest to connect")
        run = subprocess.run([KIOSK, "run", "--config", str(config), "--json"], capture_output=True, text=True,
                             timeout=30)
        assert run.returncode == 0, run.stderr
        ledgers = {"counter-1": kiosk_dir / "ledger.sqlite3"}
        assert converged(store, ledgers)  # `run` waited for the hub's ack before leaving
        assert len(store.events("cafe-rosa", "counter-1")) == 25
        wait_until(lambda: any(decode(KioskState, m.payload).status == "offline" for m in watcher.drain()), 5,
                   "the retained goodbye")
        goodbye = decode(KioskState, watcher.drain()[-1].payload)
        assert (goodbye.status, goodbye.outbox_depth, goodbye.acked_through_seq) == ("offline", 0, 25)
    finally:
        watcher.stop()
        worker.stop()
        broker.stop()
        store.close()


def test_a_late_last_will_does_not_leave_a_live_kiosk_marked_lost(tmp_path):
    """The broker may deliver an old connection's will after the kiosk came back: it says online again."""
    from kiosk.protocol.messages import encode
    from mqtt_peer import Peer
    from syncrig import SimKiosk

    broker = Mosquitto(tmp_path / "broker").start()
    kiosk = SimKiosk(tmp_path, "counter-1", broker.port).start()
    watcher = Watcher(broker.port, topics.state("cafe-rosa", "counter-1"))
    old = Peer(broker.port, None, None)
    try:
        seen: list[str] = []

        def statuses() -> list[str]:
            seen.extend(decode(KioskState, m.payload).status for m in watcher.drain())
            return seen

        wait_until(lambda: "online" in statuses(), 10, "the kiosk to say online")
        old.connect()
        old.publish(topics.state("cafe-rosa", "counter-1"),
                    encode(KioskState(status="lost", boot_id="boot-of-an-old-connection")), retain=True)
        seen.clear()
        wait_until(lambda: "lost" in statuses() and seen[-1] == "online", 10, "the kiosk to put online back")
    finally:
        old.close()
        watcher.stop()
        kiosk.stop()
        broker.stop()


def test_run_loads_and_verifies_the_stored_documents_once(tmp_path, hub, kiosk_dir):
    """`run` builds the kiosk and its hub link from one load of what the hub pushed before (it was
    read and verified once per part): a damaged stored document is refused, and logged, once."""
    from mosquitto import free_port

    from cloud.hubkey import hub_keys_json

    (kiosk_dir / "hub-keys.json").write_text(hub_keys_json(hub.data_dir))
    (kiosk_dir / "applied-kiosk-config.json").write_text('{"version": 9, "program": {}}')  # unsigned, damaged
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(np.full((480, 640), 255, np.uint8)).save(frames / "blank.png")
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[kiosk]\nid = "counter-1"\ndata_dir = "{kiosk_dir}"\n'
                      f'[hardware]\nbackend = "sim"\nreplay_dir = "{frames}"\n'
                      f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n')  # no broker: the kiosk runs anyway
    run = subprocess.run([KIOSK, "run", "--config", str(config), "--json"], capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count('"event": "config.restore_failed"') == 1, run.stderr
