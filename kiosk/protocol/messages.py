"""Wire payloads of MQTT protocol v1 (see DESIGN.md): pydantic models, JSON with a ``schema`` field.

Both ends import these, so the kiosk and the hub cannot drift apart. Unknown fields are
ignored (a newer peer may add some); a wrong ``schema`` or an invalid field is a
``MessageError`` that the receiver reports (the hub dead-letters it), never a crash.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from kiosk.errors import MessageError
from kiosk.protocol.ids import ID_PATTERN

EVENT_BATCH = "stempel.events.v1"
EVENTS_ACK = "stempel.events-ack.v1"
KIOSK_STATE = "stempel.kiosk-state.v1"
LEDGER_BATCH = "stempel.ledger.v1"
SYNC_REQUEST = "stempel.sync-request.v1"
SYNC_RESPONSE = "stempel.sync-response.v1"

MAX_BATCH = 1000
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_KIND = r"^[a-z][a-z0-9_]{0,39}$"
_MEMBER = ID_PATTERN.pattern


class _Message(BaseModel):
    # ``schema`` would shadow a BaseModel attribute, so the field is ``schema_`` aliased on the wire.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class WireEvent(_Message):
    """One kiosk ledger event as sent to the hub; ``event_id`` is the idempotency key."""

    event_id: str = Field(pattern=_UUID)
    kiosk_seq: int = Field(gt=0)
    occurred_at: AwareDatetime
    mono_ns: int = Field(ge=0)
    boot_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(pattern=_KIND)
    member: str | None = Field(None, pattern=_MEMBER)
    delta: int = Field(0, ge=-1_000_000, le=1_000_000)
    rule: str | None = Field(None, max_length=64)
    reward: str | None = Field(None, max_length=64)
    reason: str | None = Field(None, max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict)


class EventBatch(_Message):
    """``kiosks/{kiosk}/events``: consecutive (or re-sent) events of one kiosk, oldest first."""

    schema_: Literal["stempel.events.v1"] = Field(EVENT_BATCH, alias="schema")
    events: list[WireEvent] = Field(min_length=1, max_length=MAX_BATCH)


class EventsAck(_Message):
    """``kiosks/{kiosk}/events/ack`` (retained): the hub has stored every event 1..acked_through_seq."""

    schema_: Literal["stempel.events-ack.v1"] = Field(EVENTS_ACK, alias="schema")
    acked_through_seq: int = Field(ge=0)


class KioskState(_Message):
    """``kiosks/{kiosk}/state`` (retained; the last will says ``lost``).

    ``boot_id`` lets the hub ignore a late ``lost`` left by an older connection.
    """

    schema_: Literal["stempel.kiosk-state.v1"] = Field(KIOSK_STATE, alias="schema")
    status: Literal["online", "offline", "lost"]
    boot_id: str = Field(min_length=1, max_length=64)
    software_version: str | None = None
    outbox_depth: int | None = Field(None, ge=0)
    last_seq: int | None = Field(None, ge=0)
    acked_through_seq: int | None = Field(None, ge=0)
    last_error: str | None = None
    applied_config: dict[str, int] = Field(default_factory=dict, description="config document → applied version")


class LedgerEntry(WireEvent):
    """An accepted event as the hub streams it: which kiosk made it and its place ``hub_seq``."""

    kiosk: str = Field(pattern=_MEMBER)
    hub_seq: int = Field(gt=0)


class LedgerBatch(_Message):
    """``ledger``: accepted events of one merchant with the hub's per-merchant, gapless ``hub_seq``.

    Delivery is at least once; a receiver applies each ``hub_seq`` once and asks to catch up on a gap.
    """

    schema_: Literal["stempel.ledger.v1"] = Field(LEDGER_BATCH, alias="schema")
    entries: list[LedgerEntry] = Field(min_length=1, max_length=MAX_BATCH)


class SyncRequest(_Message):
    """``kiosks/{kiosk}/sync/request``: "send me the merchant's ledger entries after this ``hub_seq``"."""

    schema_: Literal["stempel.sync-request.v1"] = Field(SYNC_REQUEST, alias="schema")
    after_hub_seq: int = Field(ge=0)


class SyncResponse(_Message):
    """``kiosks/{kiosk}/sync/response``: one batch of the answer, oldest first.

    ``head_hub_seq`` is the hub's last ``hub_seq`` for the merchant when it answered; a
    kiosk still below it asks again from where this batch ended (so the kiosk paces it).
    """

    schema_: Literal["stempel.sync-response.v1"] = Field(SYNC_RESPONSE, alias="schema")
    after_hub_seq: int = Field(ge=0)
    entries: list[LedgerEntry] = Field(default_factory=list, max_length=MAX_BATCH)
    head_hub_seq: int = Field(ge=0)


M = TypeVar("M", bound=_Message)


def encode(message: _Message) -> bytes:
    """Serialise with the wire names (``schema``), compact JSON."""
    return message.model_dump_json(by_alias=True, exclude_none=False).encode()


def decode(model: type[M], payload: bytes | str) -> M:
    """Parse *payload* as *model*; raises MessageError with a short reason a human can act on."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MessageError("not a JSON object")
    expected = model.model_fields["schema_"].default
    if doc.get("schema") != expected:
        raise MessageError(f"schema {doc.get('schema')!r} is not {expected!r}")
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        shown = [f"[{'.'.join(str(p) for p in e['loc'])}] {e['msg']}" for e in exc.errors()[:3]]
        more = f" (+{exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
        raise MessageError("; ".join(shown) + more) from None
