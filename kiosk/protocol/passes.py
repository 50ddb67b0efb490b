"""Member passes: Ed25519-signed tokens carried in a QR code as a URL to the member's card.

A token reads ``1.KID.MERCHANT.MEMBER.SIGNATURE`` (uppercase, base32 signature), so the
whole URL stays in the QR alphanumeric mode and fits version 7 at error level M. The hub
signs; a kiosk holds only public keys (by key id, so keys can rotate) and verifies offline.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kiosk.errors import ConfigError, PassError
from kiosk.protocol.ids import ID_PATTERN, check_id

TOKEN_VERSION = "1"
SIGNATURE_BYTES = 64
_DOMAIN = b"stempel-pass/1\n"
_URL_TOKEN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/\s]+/P/(?P<token>\S*)$", re.IGNORECASE)
_BASE32 = re.compile(r"^[A-Z2-7]*$")


class Reason:
    """Why a code was rejected; stable strings used in events, JSON output and screen texts."""

    NOT_A_PASS = "not_a_pass"
    GARBLED = "garbled"
    TRUNCATED = "truncated"
    WRONG_MERCHANT = "wrong_merchant"
    UNKNOWN_KEY = "unknown_key"
    FORGED = "forged"
    REVOKED = "revoked"
    MULTIPLE_CODES = "multiple_codes"


class PassRejected(PassError):
    """A scanned code is not a valid pass for this kiosk; ``reason`` is one of :class:`Reason`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class PassClaims:
    """What a verified pass says: this member of this merchant, signed with key ``kid``."""

    kid: str
    merchant: str
    member: str


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable key id derived from the public key (6 base32 characters, lowercase)."""
    digest = hashlib.sha256(_raw_public(public_key)).digest()
    return base64.b32encode(digest[:5]).decode("ascii")[:6].lower()


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _signed_bytes(kid: str, merchant: str, member: str) -> bytes:
    return _DOMAIN + f"{kid}\n{merchant}\n{member}".encode("ascii")


class PassSigner:
    """Signs passes for one merchant with one private key (hub side only)."""

    def __init__(self, merchant: str, private_key: Ed25519PrivateKey) -> None:
        self.merchant = check_id(merchant, "merchant")
        self._key = private_key
        self.kid = key_id(private_key.public_key())

    def token(self, member: str) -> str:
        """Return the token text for *member* (uppercase, QR alphanumeric mode)."""
        check_id(member, "member")
        signature = self._key.sign(_signed_bytes(self.kid, self.merchant, member))
        sig = base64.b32encode(signature).decode("ascii").rstrip("=")
        return ".".join([TOKEN_VERSION, self.kid, self.merchant, member, sig]).upper()

    def url(self, base_url: str, member: str) -> str:
        """The URL a pass QR carries: the member's card page with the token in its path."""
        return f"{base_url.rstrip('/').upper()}/P/{self.token(member)}"


class PublicKeyEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")
    kid: str
    merchant: str
    algorithm: str = "ed25519"
    public_key: str  # base64 of the 32 raw bytes


class KeysDocument(BaseModel):
    """The public keys a kiosk needs; written by ``stempel-hub export-keys`` and the ``keys`` topic."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    schema_: str = Field("stempel.keys.v1", alias="schema")
    merchant: str
    keys: list[PublicKeyEntry]
    revoked_members: list[str] = []

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)


def public_key_entry(merchant: str, public_key: Ed25519PublicKey) -> PublicKeyEntry:
    raw = base64.b64encode(_raw_public(public_key)).decode("ascii")
    return PublicKeyEntry(kid=key_id(public_key), merchant=merchant, public_key=raw)


@dataclass
class KeyRing:
    """Public keys by key id, and the members whose passes are revoked."""

    keys: dict[str, tuple[str, Ed25519PublicKey]] = field(default_factory=dict)
    revoked_members: frozenset[str] = frozenset()

    @classmethod
    def from_json(cls, text: str | bytes) -> "KeyRing":
        """Parse a keys document; raises ConfigError naming what is wrong."""
        try:
            doc = KeysDocument.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "document"
            raise ConfigError(f"keys document: {where}: {first['msg']} (re-run `stempel-hub export-keys`)") from exc
        ring = cls(revoked_members=frozenset(doc.revoked_members))
        for entry in doc.keys:
            if entry.algorithm != "ed25519":
                raise ConfigError(f"keys document: key {entry.kid}: algorithm {entry.algorithm!r} is not supported; use ed25519")
            try:
                public = Ed25519PublicKey.from_public_bytes(base64.b64decode(entry.public_key, validate=True))
            except ValueError as exc:
                raise ConfigError(f"keys document: key {entry.kid}: public_key is not 32 base64-encoded bytes") from exc
            ring.keys[entry.kid] = (entry.merchant, public)
        return ring


def extract_token(text: str | bytes) -> str:
    """Find the token in a QR text (a pass URL or a bare token); raise PassRejected otherwise."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise PassRejected(Reason.NOT_A_PASS, "the code holds binary data, not a Stempel pass") from None
    text = text.strip()
    match = _URL_TOKEN.match(text)
    if match:
        return match.group("token")
    if text.upper().startswith(TOKEN_VERSION + ".") and "." in text[2:]:
        return text
    raise PassRejected(Reason.NOT_A_PASS, "the code is not a Stempel pass")


def parse_token(token: str) -> tuple[PassClaims, bytes]:
    """Split a token into claims and signature; raise PassRejected if it is malformed."""
    parts = token.upper().split(".")
    if not parts or parts[0] != TOKEN_VERSION:
        raise PassRejected(Reason.GARBLED, f"unsupported pass version {parts[0][:8]!r}")
    if len(parts) < 5:
        raise PassRejected(Reason.TRUNCATED, f"the pass has {len(parts)} of 5 fields")
    if len(parts) > 5:
        raise PassRejected(Reason.GARBLED, "the pass has too many fields")
    _, kid, merchant, member, sig = (p.lower() if i < 4 else p for i, p in enumerate(parts))
    for value in (kid, merchant, member):
        if not ID_PATTERN.match(value):
            raise PassRejected(Reason.GARBLED, "the pass holds an invalid id")
    if not _BASE32.match(sig):
        raise PassRejected(Reason.GARBLED, "the signature is not base32")
    try:
        signature = base64.b32decode(sig + "=" * (-len(sig) % 8))
    except ValueError:
        raise PassRejected(Reason.TRUNCATED, "the signature is cut short") from None
    if len(signature) < SIGNATURE_BYTES:
        raise PassRejected(Reason.TRUNCATED, f"the signature has {len(signature)} of {SIGNATURE_BYTES} bytes")
    if len(signature) > SIGNATURE_BYTES:
        raise PassRejected(Reason.GARBLED, "the signature is too long")
    return PassClaims(kid=kid, merchant=merchant, member=member), signature


class PassVerifier:
    """Verifies scanned codes for one merchant against a key ring, offline."""

    def __init__(self, merchant: str, keyring: KeyRing) -> None:
        self.merchant = merchant
        self.keyring = keyring

    def verify(self, text: str | bytes) -> PassClaims:
        """Return the claims of a valid pass, or raise PassRejected with a specific reason."""
        claims, signature = parse_token(extract_token(text))
        if claims.merchant != self.merchant:
            raise PassRejected(Reason.WRONG_MERCHANT, f"this pass belongs to merchant {claims.merchant!r}")
        known = self.keyring.keys.get(claims.kid)
        if known is None:
            raise PassRejected(Reason.UNKNOWN_KEY, f"key {claims.kid!r} is not known to this kiosk")
        key_merchant, public = known
        if key_merchant != claims.merchant:
            raise PassRejected(Reason.FORGED, f"key {claims.kid!r} does not sign for {claims.merchant!r}")
        try:
            public.verify(signature, _signed_bytes(claims.kid, claims.merchant, claims.member))
        except InvalidSignature:
            raise PassRejected(Reason.FORGED, "the signature does not match") from None
        if claims.member in self.keyring.revoked_members:
            raise PassRejected(Reason.REVOKED, "this pass has been revoked")
        return claims
