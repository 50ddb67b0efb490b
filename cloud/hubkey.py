"""The hub's own signing key: it signs fleet documents (programme configs, key lists).

Kept beside the pass keys (``<data_dir>/keys/_hub/<kid>.pem``, mode 0600). Its public half
goes to each kiosk inside the ``add-kiosk`` bundle (``hub-keys.json``), never over MQTT, so
whoever controls the broker still cannot push a programme or a key list.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.keys import KeyStore
from kiosk.protocol.passes import key_id, public_key_entry

FOLDER = "_hub"


def hub_signing_key(data_dir: Path) -> Ed25519PrivateKey:
    """The hub key, created on first use."""
    store = KeyStore(data_dir)
    existing = sorted((store.root / FOLDER).glob("*.pem"))
    if existing:
        return store.load(FOLDER, existing[0].stem)
    return store.create(FOLDER)


def hub_keys_json(data_dir: Path) -> str:
    """The document a kiosk trusts hub signatures by (``stempel.hub-keys.v1``)."""
    public = hub_signing_key(data_dir).public_key()
    entry = public_key_entry("hub", public)
    return json.dumps({"schema": "stempel.hub-keys.v1", "keys": [{"kid": key_id(public), "public_key": entry.public_key}]},
                      indent=2)
