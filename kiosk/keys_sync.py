"""Pass keys from the hub's retained ``keys`` topic: verified, versioned, saved atomically.

The document is the ``stempel.keys.v1`` key list (what ``stempel-hub export-keys`` writes:
keys, revoked pass serials, members whose version-1 pass is revoked, the merchant's base
URL) plus a ``version`` and the hub's signature over both. The hub key comes from the kiosk
bundle, never over MQTT, so a broker that is misconfigured or taken over cannot add a key
or lift a revocation. A refused document changes nothing: the kiosk keeps verifying with
the keys it had. A version at or below the one held is ignored, so a stale retained copy
(a broker restored from an old backup) cannot roll back a revocation.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kiosk.common.atomic import write_atomic
from kiosk.common.errors import ConfigError
from kiosk.protocol.passes import KeyRing
from kiosk.protocol.signed import KEYS_SCHEMA, SignatureInvalid, verify

log = logging.getLogger(__name__)

SCHEMA = KEYS_SCHEMA
MAX_BYTES = 256 * 1024
APPLIED, IGNORED, REJECTED = "applied", "ignored", "rejected"


@dataclass(frozen=True)
class KeysOutcome:
    status: str  # applied | ignored | rejected
    version: int | None
    error: str | None = None
    keyring: KeyRing | None = None


class KeysFollower:
    """Checks ``keys`` payloads for one merchant and keeps the newest valid one in ``keys.json``."""

    def __init__(self, merchant: str, trusted: dict[str, Ed25519PublicKey], path: Path) -> None:
        self.merchant, self.trusted, self.path = merchant, trusted, Path(path)
        self.version = stored_version(self.path)

    def handle(self, payload: bytes) -> KeysOutcome:
        """Verify and apply one payload; never raises for bad input (the outcome says why)."""
        try:
            doc, version, ring = self._check(payload)
        except _Refused as exc:
            log.warning("keys.rejected", extra={"version": exc.version, "error": str(exc)})
            return KeysOutcome(REJECTED, exc.version, str(exc))
        if version <= self.version:
            return KeysOutcome(IGNORED, self.version)
        try:
            write_atomic(self.path, json.dumps(doc, indent=2).encode(), mode=0o644)
        except OSError as exc:
            log.error("keys.save_failed", extra={"file": str(self.path), "error": str(exc)})
            return KeysOutcome(REJECTED, version, f"cannot save {self.path}: {exc}")
        self.version = version
        log.info("keys.applied", extra={"version": version, "keys": sorted(ring.keys), "base_url": ring.base_url,
                                        "revoked": len(ring.revoked_serials) + len(ring.revoked_members)})
        return KeysOutcome(APPLIED, version, keyring=ring)

    def _check(self, payload: bytes) -> tuple[dict, int, KeyRing]:
        if len(payload) > MAX_BYTES:
            raise _Refused(None, f"keys document is {len(payload)} bytes; the limit is {MAX_BYTES}")
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Refused(None, f"keys document is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise _Refused(None, "keys document is not a JSON object")
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise _Refused(None, "keys document: version must be a positive integer")
        try:
            verify(doc, self.trusted)
        except SignatureInvalid as exc:
            raise _Refused(version, f"keys document: {exc}") from None
        if doc.get("schema") != SCHEMA:
            raise _Refused(version, f"keys document: schema is not {SCHEMA!r}")
        if doc.get("merchant") != self.merchant:
            raise _Refused(version, f"keys document is for merchant {doc.get('merchant')!r}, not {self.merchant!r}")
        try:
            ring = KeyRing.from_json(payload)
        except ConfigError as exc:
            raise _Refused(version, str(exc)) from None
        if not ring.keys:
            raise _Refused(version, "keys document holds no key; it would refuse every pass")
        if any(merchant != self.merchant for merchant, _ in ring.keys.values()):
            raise _Refused(version, "keys document holds a key of another merchant")
        return doc, version, ring


def stored_version(path: Path) -> int:
    """The version of the keys file on disk; 0 for the unversioned file of the kiosk bundle."""
    try:
        version = json.loads(Path(path).read_text()).get("version", 0)
    except (OSError, ValueError, AttributeError):
        return 0
    return version if isinstance(version, int) and not isinstance(version, bool) else 0


class _Refused(Exception):
    def __init__(self, version: int | None, message: str) -> None:
        super().__init__(message)
        self.version = version
