"""Member passes: Ed25519-signed tokens carried in a QR code as a URL to the member's card.

The canonical pass is the URL ``HTTPS://HOST[/PATH]/P/2.KID.MERCHANT.MEMBER.SERIAL.SIGNATURE``:
the merchant's base URL, uppercased so the text before the signature stays in the QR
alphanumeric mode, and the signature as 155 decimal digits in a numeric segment of the
same QR (denser than base32, so a version-2 pass is smaller than a version-1 pass and fits
version 7 at level M). ``SERIAL`` names this one pass, so a lost phone's pass can be revoked
while the member, and their balance, keep a new pass. Version-1 tokens
(``1.KID.MERCHANT.MEMBER.BASE32SIG``, no serial) are the passes issued before; they stay
valid unless the member's version-1 pass is revoked.

What a kiosk accepts, deliberately: the URL in any letter case (QR alphanumeric mode has no
lowercase, a host is case-insensitive, ids are lowercase and the signature is digits or
base32, so a re-cased copy is the same pass with the same member and serial, and gains
nothing); only the ``http`` and ``https`` schemes; and, when the keys document names the
merchant's base URL, only that host and path before ``/P/``. A bare token without the URL
is not a pass. The hub signs; a kiosk holds only public keys (by key id, so keys can rotate)
and verifies offline.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import Annotated

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kiosk.common.errors import ConfigError, PassError
from kiosk.protocol.ids import ID_PATTERN, WIRE_ID_PATTERN, check_id

TOKEN_VERSION = "2"
LEGACY_VERSION = "1"
SIGNATURE_BYTES = 64
SIGNATURE_DIGITS = 155  # 2**512 < 10**155
SERIAL_PATTERN = re.compile(r"[a-z2-7]{1,8}")
_SERIAL_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_DOMAINS = {LEGACY_VERSION: b"stempel-pass/1\n", TOKEN_VERSION: b"stempel-pass/2\n"}
_FIELDS = {LEGACY_VERSION: 5, TOKEN_VERSION: 6}
_PASS_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<base>\S+)/P/(?P<token>[^/\s]+)", re.IGNORECASE)
_BASE_URL = re.compile(r"(?P<scheme>https?)://(?P<host>[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?)(?::(?P<port>[0-9]{1,5}))?"
                       r"(?P<path>(?:/[a-z0-9.-]+)*)/?")
_BASE32 = re.compile(r"[A-Z2-7]*")
_DIGITS = re.compile(r"[0-9]*")


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
    """What a verified pass says: this member of this merchant, signed with key ``kid``;
    ``serial`` names the pass (``None`` for a version-1 pass, which has none)."""

    kid: str
    merchant: str
    member: str
    serial: str | None = None
    version: int = 2


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable key id derived from the public key (6 base32 characters, lowercase)."""
    digest = hashlib.sha256(_raw_public(public_key)).digest()
    return base64.b32encode(digest[:5]).decode("ascii")[:6].lower()


def serial_text(number: int) -> str:
    """The serial of a merchant's *number*-th pass: base32 digits (a=0 … 7=31), lowercase, no padding."""
    if number < 1:
        raise ValueError("pass numbers start at 1")
    digits = ""
    while number:
        number, rest = divmod(number, 32)
        digits = _SERIAL_ALPHABET[rest] + digits
    return digits


def check_serial(value: str) -> str:
    """Return *value* if it is a pass serial, else raise ConfigError with the expected form."""
    if not isinstance(value, str) or not SERIAL_PATTERN.fullmatch(value):
        raise ConfigError(f"pass serial {value!r} is not valid: 1-8 characters of a-z and 2-7 (as issue-pass prints it)")
    return value


def check_base_url(value: str) -> str:
    """The canonical form of a merchant's base URL (lowercase, no trailing slash); ConfigError otherwise.

    Only http(s), a host, an optional port and a path of a-z 0-9 '.' '-': every character
    must survive uppercasing in the QR alphanumeric mode, and nothing (query, fragment,
    user info) may come between the base and ``/P/``.
    """
    text = value.lower() if isinstance(value, str) else ""
    match = _BASE_URL.fullmatch(text)
    if not match or len(text) > 120 or (match["port"] and not 0 < int(match["port"]) < 65536):
        raise ConfigError(f"base URL {value!r} is not valid: use http(s)://HOST[:PORT][/PATH] with a-z 0-9 '.' '-' "
                          "in host and path, at most 120 characters (e.g. https://stempel.example)")
    return text.rstrip("/")


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _signed_bytes(claims: PassClaims) -> bytes:
    fields = [claims.kid, claims.merchant, claims.member]
    if claims.version == 2:
        fields.append(claims.serial or "")
    return _DOMAINS[str(claims.version)] + "\n".join(fields).encode("ascii")


def pass_url(base_url: str, token: str) -> str:
    """The URL a pass QR carries: the member's card page with the token in its path, uppercased."""
    return f"{base_url.rstrip('/').upper()}/P/{token}"


class PassSigner:
    """Signs passes for one merchant with one private key (hub side only)."""

    def __init__(self, merchant: str, private_key: Ed25519PrivateKey) -> None:
        self.merchant = check_id(merchant, "merchant")
        self._key = private_key
        self.kid = key_id(private_key.public_key())

    def token(self, member: str, serial: str) -> str:
        """The version-2 token for pass *serial* of *member*: uppercase ids, decimal signature."""
        claims = PassClaims(self.kid, self.merchant, check_id(member, "member"), check_serial(serial), 2)
        sig = str(int.from_bytes(self._key.sign(_signed_bytes(claims)), "big")).zfill(SIGNATURE_DIGITS)
        return ".".join([TOKEN_VERSION, self.kid, self.merchant, member, serial]).upper() + "." + sig

    def url(self, base_url: str, member: str, serial: str) -> str:
        """The URL of pass *serial* of *member* (what ``stempel-hub issue-pass`` writes into the QR)."""
        return pass_url(base_url, self.token(member, serial))

    def legacy_token(self, member: str) -> str:
        """A version-1 token, as the hub issued before passes had serials (for tests of old passes)."""
        claims = PassClaims(self.kid, self.merchant, check_id(member, "member"), None, 1)
        sig = base64.b32encode(self._key.sign(_signed_bytes(claims))).decode("ascii").rstrip("=")
        return ".".join([LEGACY_VERSION, self.kid, self.merchant, member, sig]).upper()

    def legacy_url(self, base_url: str, member: str) -> str:
        return pass_url(base_url, self.legacy_token(member))


class PublicKeyEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")
    kid: str = Field(pattern=WIRE_ID_PATTERN)
    merchant: str = Field(pattern=WIRE_ID_PATTERN)
    algorithm: str = Field("ed25519", max_length=32)
    public_key: str = Field(max_length=64)  # base64 of the 32 raw bytes


MAX_KEYS = 64  # a merchant's keys, rotated ones included
MAX_REVOKED = 100_000  # per list; a pushed document is held to 256 KiB anyway (kiosk/protocol/documents.py)
_Member = Annotated[str, Field(pattern=WIRE_ID_PATTERN)]
_Serial = Annotated[str, Field(pattern=rf"^{SERIAL_PATTERN.pattern}$")]


class KeysDocument(BaseModel):
    """The public keys a kiosk needs; written by ``stempel-hub export-keys`` and the ``keys`` topic.

    ``revoked_passes`` lists the serials of revoked passes; ``revoked_members`` the members
    whose version-1 pass (which has no serial) is revoked: a member listed there can still
    use a version-2 pass. ``base_url`` is the merchant's base URL, the one host (and path) a
    kiosk accepts before ``/P/``; documents from before it existed leave it out.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    schema_: str = Field("stempel.keys.v1", alias="schema", max_length=64)
    merchant: str = Field(pattern=WIRE_ID_PATTERN)
    keys: list[PublicKeyEntry] = Field(max_length=MAX_KEYS)
    revoked_members: list[_Member] = Field([], max_length=MAX_REVOKED)
    revoked_passes: list[_Serial] = Field([], max_length=MAX_REVOKED)
    base_url: str | None = Field(None, max_length=200)

    @field_validator("base_url")
    @classmethod
    def _canonical_base_url(cls, value: str | None) -> str | None:
        return None if value is None else check_base_url(value)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)


def public_key_entry(merchant: str, public_key: Ed25519PublicKey) -> PublicKeyEntry:
    raw = base64.b64encode(_raw_public(public_key)).decode("ascii")
    return PublicKeyEntry(kid=key_id(public_key), merchant=merchant, public_key=raw)


@dataclass
class KeyRing:
    """Public keys by key id, the revoked passes, and the merchant's base URL when known."""

    keys: dict[str, tuple[str, Ed25519PublicKey]] = field(default_factory=dict)
    revoked_members: frozenset[str] = frozenset()  # their version-1 pass only
    revoked_serials: frozenset[str] = frozenset()
    base_url: str | None = None

    @classmethod
    def from_json(cls, text: str | bytes) -> "KeyRing":
        """Parse a keys document; raises ConfigError naming what is wrong."""
        try:
            doc = KeysDocument.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "document"
            raise ConfigError(f"keys document: {where}: {first['msg']} (re-run `stempel-hub export-keys`)") from exc
        return cls.from_document(doc)

    @classmethod
    def from_document(cls, doc: KeysDocument) -> "KeyRing":
        """The ring of a validated keys document; raises ConfigError for a key it cannot use."""
        ring = cls(revoked_members=frozenset(doc.revoked_members), revoked_serials=frozenset(doc.revoked_passes),
                   base_url=doc.base_url)
        for entry in doc.keys:
            if entry.algorithm != "ed25519":
                raise ConfigError(f"keys document: key {entry.kid}: algorithm {entry.algorithm!r} is not supported; use ed25519")
            try:
                public = Ed25519PublicKey.from_public_bytes(base64.b64decode(entry.public_key, validate=True))
            except ValueError as exc:
                raise ConfigError(f"keys document: key {entry.kid}: public_key is not 32 base64-encoded bytes") from exc
            ring.keys[entry.kid] = (entry.merchant, public)
        return ring

    def is_revoked(self, claims: PassClaims) -> bool:
        if claims.version == 1:
            return claims.member in self.revoked_members
        return claims.serial in self.revoked_serials


def extract_token(text: str | bytes, base_url: str | None = None) -> str:
    """The token of a pass URL; raise PassRejected for anything else.

    The scheme must be http or https; when *base_url* (the merchant's, from the keys
    document) is given, the host and path before ``/P/`` must be its own, in any case.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise PassRejected(Reason.NOT_A_PASS, "the code holds binary data, not a Stempel pass") from None
    match = _PASS_URL.fullmatch(text.strip())
    if match is None or match["scheme"].lower() not in ("http", "https"):
        raise PassRejected(Reason.NOT_A_PASS, "the code is not a Stempel pass")
    if base_url is not None:
        expected = base_url.split("://", 1)[1].lower()
        if match["base"].lower() != expected:
            raise PassRejected(Reason.WRONG_MERCHANT,
                               f"the pass points to {match['base'].lower()!r}, not to this shop's {expected!r}")
    return match["token"]


def parse_token(token: str) -> tuple[PassClaims, bytes]:
    """Split a token into claims and signature; raise PassRejected if it is malformed."""
    parts = token.upper().split(".")
    version = parts[0]
    if version not in _FIELDS:
        raise PassRejected(Reason.GARBLED, f"unsupported pass version {version[:8]!r}")
    if len(parts) < _FIELDS[version]:
        raise PassRejected(Reason.TRUNCATED, f"the pass has {len(parts)} of {_FIELDS[version]} fields")
    if len(parts) > _FIELDS[version]:
        raise PassRejected(Reason.GARBLED, "the pass has too many fields")
    kid, merchant, member = (p.lower() for p in parts[1:4])
    for value in (kid, merchant, member):
        if not ID_PATTERN.fullmatch(value):
            raise PassRejected(Reason.GARBLED, "the pass holds an invalid id")
    if version == LEGACY_VERSION:
        return PassClaims(kid, merchant, member, None, 1), _base32_signature(parts[4])
    serial = parts[4].lower()
    if not SERIAL_PATTERN.fullmatch(serial):
        raise PassRejected(Reason.GARBLED, "the pass holds an invalid serial")
    return PassClaims(kid, merchant, member, serial, 2), _decimal_signature(parts[5])


def _base32_signature(sig: str) -> bytes:
    if not _BASE32.fullmatch(sig):
        raise PassRejected(Reason.GARBLED, "the signature is not base32")
    try:
        signature = base64.b32decode(sig + "=" * (-len(sig) % 8))
    except ValueError:
        raise PassRejected(Reason.TRUNCATED, "the signature is cut short") from None
    if len(signature) < SIGNATURE_BYTES:
        raise PassRejected(Reason.TRUNCATED, f"the signature has {len(signature)} of {SIGNATURE_BYTES} bytes")
    if len(signature) > SIGNATURE_BYTES:
        raise PassRejected(Reason.GARBLED, "the signature is too long")
    return signature


def _decimal_signature(sig: str) -> bytes:
    if not _DIGITS.fullmatch(sig):
        raise PassRejected(Reason.GARBLED, "the signature is not decimal digits")
    if len(sig) < SIGNATURE_DIGITS:
        raise PassRejected(Reason.TRUNCATED, f"the signature has {len(sig)} of {SIGNATURE_DIGITS} digits")
    if len(sig) > SIGNATURE_DIGITS or int(sig) >> (8 * SIGNATURE_BYTES):
        raise PassRejected(Reason.GARBLED, "the signature is too long")
    return int(sig).to_bytes(SIGNATURE_BYTES, "big")


class PassVerifier:
    """Verifies scanned codes for one merchant against a key ring, offline."""

    def __init__(self, merchant: str, keyring: KeyRing) -> None:
        self.merchant = merchant
        self.keyring = keyring

    def verify(self, text: str | bytes) -> PassClaims:
        """Return the claims of a valid pass, or raise PassRejected with a specific reason."""
        claims, signature = parse_token(extract_token(text, self.keyring.base_url))
        if claims.merchant != self.merchant:
            raise PassRejected(Reason.WRONG_MERCHANT, f"this pass belongs to merchant {claims.merchant!r}")
        known = self.keyring.keys.get(claims.kid)
        if known is None:
            raise PassRejected(Reason.UNKNOWN_KEY, f"key {claims.kid!r} is not known to this kiosk")
        key_merchant, public = known
        if key_merchant != claims.merchant:
            raise PassRejected(Reason.FORGED, f"key {claims.kid!r} does not sign for {claims.merchant!r}")
        try:
            public.verify(signature, _signed_bytes(claims))
        except InvalidSignature:
            raise PassRejected(Reason.FORGED, "the signature does not match") from None
        if self.keyring.is_revoked(claims):
            raise PassRejected(Reason.REVOKED, "this pass has been revoked")
        return claims
