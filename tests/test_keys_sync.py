"""Pass keys from the ``keys`` topic: only a hub-signed, newer document for this merchant
replaces keys.json (atomically); anything else leaves the kiosk verifying as before."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.link.documents import build_keys_document
from cloud.hubkey import hub_signing_key
from cloud.passes import revoke_member
from kiosk.link.documents import KEYS, DocumentFollower
from kiosk.protocol.passes import KeyRing, key_id
from kiosk.protocol.signed import sign
from kiosk.wiring import load_keyring

MERCHANT = "cafe-rosa"


@pytest.fixture
def follower(hub, kiosk_dir):
    public = hub_signing_key(hub.data_dir).public_key()
    return DocumentFollower(MERCHANT, "counter-1", {key_id(public): public}, kiosk_dir).restore()


def send(follower, document) -> object:
    return follower.handle(KEYS, document if isinstance(document, bytes) else json.dumps(document).encode())


def test_the_bundle_file_is_version_0_and_a_signed_newer_document_replaces_it(hub, follower, kiosk_dir):
    assert follower.version(KEYS) == 0
    bob = hub.issue("Bob")
    first = build_keys_document(hub.engine, hub.data_dir, MERCHANT)
    revoke_member(hub.engine, MERCHANT, bob.member)
    second = build_keys_document(hub.engine, hub.data_dir, MERCHANT)
    assert (first["version"], second["version"]) == (1, 2)  # versions come from the hub database
    outcome = send(follower, second)
    assert (outcome.status, outcome.version) == ("applied", 2) and bob.serial in outcome.keyring.revoked_serials
    assert outcome.keyring.base_url == "https://stempel.example"  # the one host its passes may name
    assert send(follower, first).status == "ignored"  # a stale retained copy cannot lift the revocation
    assert DocumentFollower(MERCHANT, "counter-1", follower.trusted, kiosk_dir).restore().version(KEYS) == 2
    assert not list(kiosk_dir.glob(".*.tmp"))
    from kiosk.config import load_config

    ring = load_keyring(load_config(None, env={}, kiosk__data_dir=str(kiosk_dir)))  # what a restart reads
    assert isinstance(ring, KeyRing) and bob.serial in ring.revoked_serials and not ring.revoked_members


def _with(doc: dict, **changes) -> dict:
    return {k: v for k, v in {**doc, **changes}.items() if v is not None}


@pytest.mark.parametrize("make, error", [
    (lambda good, hub: b"\xff\xfe", "not JSON"),
    (lambda good, hub: _with(good, signature=None), "not signed"),
    (lambda good, hub: sign(_with(good, signature=None), Ed25519PrivateKey.generate()), "does not trust"),
    (lambda good, hub: _with(good, revoked_members=["mallory"]), "altered or forged"),
    (lambda good, hub: sign(_with(good, signature=None, merchant="other-shop"), hub_signing_key(hub.data_dir)),
     "for merchant 'other-shop'"),
    (lambda good, hub: sign(_with(good, signature=None, keys=[]), hub_signing_key(hub.data_dir)), "no key"),
    (lambda good, hub: sign(_with(good, signature=None, version=0), hub_signing_key(hub.data_dir)), "version"),
    (lambda good, hub: sign(_with(good, signature=None, schema="x"), hub_signing_key(hub.data_dir)), "schema"),
    (lambda good, hub: _with(good, revoked_passes=["b"]), "altered or forged"),
    (lambda good, hub: _with(good, base_url="https://evil.example"), "altered or forged"),
    (lambda good, hub: sign(_with(good, signature=None, base_url="javascript://x"), hub_signing_key(hub.data_dir)),
     "base URL"),
    (lambda good, hub: sign(_with(good, signature=None, revoked_passes=["B!"]), hub_signing_key(hub.data_dir)),
     "[revoked_passes.0]"),
    (lambda good, hub: sign(_with(good, signature=None, merchant="Cafe Rosa"), hub_signing_key(hub.data_dir)),
     "[merchant]"),
])
def test_refused_documents_keep_the_old_keys(hub, follower, kiosk_dir, make, error):
    before = (kiosk_dir / "keys.json").read_text()
    outcome = send(follower, make(build_keys_document(hub.engine, hub.data_dir, MERCHANT), hub))
    assert outcome.status == "rejected" and error in outcome.error, outcome
    assert (kiosk_dir / "keys.json").read_text() == before and follower.version(KEYS) == 0
