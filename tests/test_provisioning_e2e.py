"""From `add-kiosk` to a stored stamp: the bundle's kiosk.toml drives the real hub link, the hub's
hub-mqtt.toml drives a real `stempel-hub ingest` process, and the broker runs only the
generated password file and ACL. If the ACL lacks a topic either side needs, this stalls."""

from __future__ import annotations

import subprocess

import pytest
from broker_fleet import Fleet
from cloud.broker.conf import Listener
from cloud.events import EventStore
from cloud.provision import Endpoint
from cloud.db import default_url
from kiosk.config import load_config
from kiosk.ledger import Ledger
from kiosk.link.hub_link import open_hub_link
from kiosk.wiring import ledger_path
from mosquitto import free_port
from syncrig import HUB, append_events, wait_until


@pytest.mark.slow  # Mosquitto and stempel-hub ingest
def test_a_provisioned_kiosk_syncs_through_the_acl_broker_to_an_ingest_worker(tmp_path):
    fleet = Fleet(tmp_path / "hub")
    port = free_port()
    endpoint = Endpoint("127.0.0.1", port)
    fleet.configure([Listener(port, "127.0.0.1")], endpoint, hub_workers=1)
    bundle = fleet.add_kiosk("cafe-rosa", "counter-1", endpoint)
    fleet.start()
    log = (tmp_path / "ingest.log").open("w")
    ingest = subprocess.Popen([HUB, "--data-dir", str(fleet.data_dir), "ingest", "--mqtt-config",
                               str(fleet.files.hub_settings), "--worker", "1", "-v"],
                              stdout=subprocess.DEVNULL, stderr=log)
    # A batch sent before the worker subscribed waits out ack_timeout before its re-send: keep it short.
    config = load_config(bundle / "kiosk.toml", env={"STEMPEL_DATA_DIR": str(tmp_path / "kiosk")},
                         mqtt__ack_timeout_seconds=1.0)
    ledger = Ledger(ledger_path(config))
    link = open_hub_link(config, "boot-1")
    store = EventStore.open(default_url(fleet.data_dir))
    try:
        append_events(ledger, 5)
        link.start()
        wait_until(lambda: store.acked_through("cafe-rosa", "counter-1") == 5 and link.sender.acked_through_seq == 5,
                   20, "the hub to store and acknowledge 5 events")
        assert len(store.events("cafe-rosa", "counter-1")) == 5
    finally:
        link.stop()
        ledger.close()
        ingest.terminate()
        ingest.wait(10)
        log.close()
        store.close()
        fleet.close()


def test_bundle_carries_the_hub_key_the_kiosk_trusts(tmp_path):
    """The kiosk verifies hub documents with the key from its bundle, not one from the broker."""
    from cloud.hubkey import hub_signing_key, hub_keys_json
    from kiosk.config import load_config
    from kiosk.protocol.signed import sign, verify
    from kiosk.wiring import load_hub_keys

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "hub-keys.json").write_text(hub_keys_json(tmp_path / "hub"))
    (bundle / "kiosk.toml").write_text('[kiosk]\nhub_keys_file = "hub-keys.json"\n')
    trusted = load_hub_keys(load_config(bundle / "kiosk.toml", env={}))
    verify(sign({"version": 1}, hub_signing_key(tmp_path / "hub")), trusted)  # same key on the next call
    assert len(trusted) == 1
