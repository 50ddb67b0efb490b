"""Documents signed by the hub (programme configs, key lists), verified by every kiosk.

The signature covers the canonical JSON of the document without its ``signature`` field
(sorted keys, no spaces), so any broker-side edit, or a document published by something
that is not the hub, is refused. The hub's public key reaches a kiosk out of band, in
the bundle ``stempel-hub add-kiosk`` writes, never over MQTT.
"""

from __future__ import annotations

import base64
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kiosk.common.errors import PassError
from kiosk.protocol.passes import key_id


CONFIG_SCHEMA = "stempel.config.v1"  # a programme / kiosk config document
KEYS_SCHEMA = "stempel.keys.v1"  # the merchant's public pass keys and revocations


class SignatureInvalid(PassError):
    """A hub document is unsigned, signed by an unknown key, or altered."""


def canonical(doc: dict) -> bytes:
    body = {k: v for k, v in doc.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(doc: dict, key: Ed25519PrivateKey) -> dict:
    """Return *doc* with a ``signature`` field ``{kid, sig}`` added."""
    signature = base64.b64encode(key.sign(canonical(doc))).decode("ascii")
    return {**doc, "signature": {"kid": key_id(key.public_key()), "sig": signature}}


def verify(doc: dict, trusted: dict[str, Ed25519PublicKey]) -> None:
    """Raise SignatureInvalid unless *doc* is signed by one of the *trusted* keys (by kid)."""
    sig = doc.get("signature")
    if not isinstance(sig, dict) or not isinstance(sig.get("kid"), str) or not isinstance(sig.get("sig"), str):
        raise SignatureInvalid("the document is not signed by the hub")
    public = trusted.get(sig["kid"])
    if public is None:
        raise SignatureInvalid(f"signed with key {sig['kid']!r}, which this kiosk does not trust")
    try:
        public.verify(base64.b64decode(sig["sig"], validate=True), canonical(doc))
    except (InvalidSignature, ValueError):
        raise SignatureInvalid("the signature does not match the document (altered or forged)") from None


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
