"""The documents the hub signs and pushes to its kiosks (retained), as pydantic models.

Two kinds travel today, each on its own topic (kiosk/protocol/topics.py):

- ``stempel.config.v1`` (:class:`ConfigDocument`): a programme for every kiosk of a merchant
  (``config/desired``, no ``kiosk``), or one kiosk's own document (``kiosks/{kiosk}/config/desired``)
  that may override the programme and set hardware and the join URL its idle screen shows;
- ``stempel.keys.v1`` (:class:`SignedKeysDocument`): the merchant's pass keys and revocations,
  the :class:`~kiosk.protocol.passes.KeysDocument` that ``stempel-hub export-keys`` writes, with a
  version and the hub's signature.

Both carry a positive ``version`` (each document has its own version space; a kiosk never
goes back to a lower one) and a ``signature`` over the canonical JSON of everything else
(kiosk/protocol/signed.py). The models only say what a well-formed document is: unknown fields
are ignored (a newer hub may add some; the signature still covers them), ids are whole ids and
every field is bounded. Whether the signature is the hub's, and whether the document is for
this kiosk, the receiver checks (kiosk/link/documents.py). The hub builds a document with the
model and signs ``model.unsigned()``.

The programme and the hardware settings stay plain objects here: the kiosk validates them with
its own schemas (kiosk/rules/program.py, ``[hardware]`` in kiosk/config.py), which name the
field and the fix in the report the hub shows.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kiosk.protocol.event_schema import INT64_MAX
from kiosk.protocol.ids import WIRE_ID_PATTERN
from kiosk.protocol.passes import KeysDocument
from kiosk.protocol.signed import CONFIG_SCHEMA, KEYS_SCHEMA

# The largest document a kiosk takes (checked before JSON parsing): a programme or a key list
# with its revocations is a few KiB; 256 KiB leaves room for tens of thousands of revoked passes.
MAX_DOCUMENT_BYTES = 256 * 1024
_KID = r"^[a-z0-9]{1,32}$"

__all__ = ["CONFIG_SCHEMA", "KEYS_SCHEMA", "MAX_DOCUMENT_BYTES", "ConfigDocument", "KeysDocument", "Signature",
           "SignedKeysDocument", "field_errors"]


class Signature(BaseModel):
    """``{kid, sig}``: which hub key signed, and the base64 Ed25519 signature (signed.verify checks it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    kid: str = Field(pattern=_KID)
    sig: str = Field(min_length=1, max_length=128)


class _Signed(BaseModel):
    """What every signed document carries besides its body."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    merchant: str = Field(pattern=WIRE_ID_PATTERN)
    version: int = Field(strict=True, ge=1, le=INT64_MAX)
    issued_at: str | None = Field(None, max_length=64)
    signature: Signature | None = None  # None until signed; a receiver refuses an unsigned document

    def unsigned(self) -> dict[str, Any]:
        """The JSON object the hub signs (``signed.sign``): every field but ``signature``, nulls left out."""
        return self.model_dump(mode="json", by_alias=True, exclude={"signature"}, exclude_none=True)


class ConfigDocument(_Signed):
    """A programme / kiosk configuration. ``kiosk`` names the one kiosk it is for (its own
    version space), or is absent for the merchant-wide document; only a kiosk's own document
    may set ``hardware`` and ``join_url``, and the merchant-wide one must carry a ``program``
    (the receiver checks both against the topic it came on)."""

    schema_: Literal["stempel.config.v1"] = Field(alias="schema")  # signed.CONFIG_SCHEMA
    kiosk: str | None = Field(None, pattern=WIRE_ID_PATTERN)
    program: dict[str, Any] | None = None  # validated by the kiosk's programme schema
    hardware: dict[str, Any] | None = None  # validated by the kiosk's [hardware] schema
    join_url: str | None = Field(None, max_length=200)  # validated as [kiosk] join_url is


class SignedKeysDocument(KeysDocument, _Signed):
    """The keys document as the hub pushes it on ``keys``: the key list, a version, the signature."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    schema_: Literal["stempel.keys.v1"] = Field(alias="schema")  # signed.KEYS_SCHEMA


def field_errors(exc: ValidationError, limit: int = 10) -> list[str]:
    """A pydantic error as ``[loc] message`` lines (the form the hub's reports show)."""
    return [f"[{'.'.join(str(p) for p in e['loc'])}] {e['msg']}" for e in exc.errors()[:limit]]
