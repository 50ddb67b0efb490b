"""Wire payloads of MQTT protocol v1 (see DESIGN.md): pydantic models, JSON with a ``schema`` field.

Both ends import these, so the kiosk and the hub cannot drift apart. Unknown fields are
ignored (a newer peer may add some); a wrong ``schema`` or an invalid field is a
``MessageError`` that the receiver reports (the hub dead-letters it), never a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from kiosk.common.errors import MessageError
from kiosk.protocol.event_schema import DELTA_MAX, INT64_MAX, Text, check_detail, check_plausible_time
from kiosk.protocol.ids import WIRE_ID_PATTERN

EVENT_BATCH = "stempel.events.v1"
EVENTS_ACK = "stempel.events-ack.v1"
KIOSK_STATE = "stempel.kiosk-state.v1"
LEDGER_BATCH = "stempel.ledger.v1"
SYNC_REQUEST = "stempel.sync-request.v1"
SYNC_RESPONSE = "stempel.sync-response.v1"

MAX_BATCH = 1000
# The largest payload either end accepts (and the broker's ``message_size_limit``): checked
# before JSON parsing, so a huge message costs little. MAX_BATCH ledger entries with every
# field at its bound (four-byte characters, escaped quotes) need 2.2 MiB and must fit
# (tests/test_event_schema.py); typical entries are ~350 bytes, a 100-event batch ~35 KiB.
MAX_PAYLOAD_BYTES = 3 * 1024 * 1024
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_KIND = r"^[a-z][a-z0-9_]{0,39}$"
# A kiosk ledger's incarnation: 32 hex digits made when the ledger file is created, so an ack
# for a wiped and reinstalled ledger's numbers can't release the new one's. "" is a ledger
# made before incarnations existed (its kiosk_seq numbering is the one the hub knew).
# (pydantic's regex engine is Rust's, whose ``$`` is the end of the text; Python callers fullmatch.)
LEDGER_ID_PATTERN = r"^(?:[0-9a-f]{32})?$"
_MEMBER = WIRE_ID_PATTERN  # Rust-regex '$': no trailing newline (see ids.py)


class _Message(BaseModel):
    # ``schema`` would shadow a BaseModel attribute, so the field is ``schema_`` aliased on the wire.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class WireEvent(_Message):
    """One kiosk ledger event as sent to the hub; ``event_id`` is the idempotency key.

    Every field is bounded to what the hub's columns and the kiosks' fold accept, and
    ``detail`` must match its kind's schema (kiosk/protocol/event_schema.py): the hub stores
    and relays only events that pass, and a kiosk refuses a ledger entry that does not.
    """

    event_id: str = Field(pattern=_UUID)
    kiosk_seq: int = Field(gt=0, le=INT64_MAX)
    occurred_at: AwareDatetime  # the hub also holds it to a window around its clock (event_schema.check_time)
    mono_ns: int = Field(ge=0, le=INT64_MAX)
    boot_id: Text(64, 1)
    kind: str = Field(pattern=_KIND)
    member: str | None = Field(None, pattern=_MEMBER)
    delta: int = Field(0, ge=-DELTA_MAX, le=DELTA_MAX)
    rule: Text(64) | None = None
    reward: Text(64) | None = None
    reason: Text(64) | None = None
    detail: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _detail_fits_kind(self) -> "WireEvent":
        check_plausible_time(self.occurred_at)
        check_detail(self.kind, self.rule, self.detail)
        return self


class EventBatch(_Message):
    """``kiosks/{kiosk}/events``: consecutive (or re-sent) events of one kiosk, oldest first."""

    schema_: Literal["stempel.events.v1"] = Field(EVENT_BATCH, alias="schema")
    ledger_id: str = Field("", pattern=LEDGER_ID_PATTERN)
    events: list[WireEvent] = Field(min_length=1, max_length=MAX_BATCH)


class EventsAck(_Message):
    """``kiosks/{kiosk}/events/ack`` (retained): the hub has settled every event 1..acked_through_seq
    of the kiosk's ledger ``ledger_id`` (stored, or refused for good and dead-lettered). A kiosk
    releases nothing on an ack for another ledger (an older incarnation's, still retained)."""

    schema_: Literal["stempel.events-ack.v1"] = Field(EVENTS_ACK, alias="schema")
    ledger_id: str = Field("", pattern=LEDGER_ID_PATTERN)
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
    hub_seq: int = Field(gt=0, le=INT64_MAX)


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
    return _validate(model, _load(model, payload))


@dataclass(frozen=True)
class Refused:
    """One item of a batch that failed its schema: where it was, what it said, and why."""

    index: int
    item: Any
    reason: str


class ItemsRefused(MessageError):
    """Every item of a batch failed its schema; ``refused`` says which and why."""

    def __init__(self, refused: list[Refused], envelope: dict | None = None) -> None:
        more = f" (+{len(refused) - 3} more)" if len(refused) > 3 else ""
        super().__init__("; ".join(r.reason for r in refused[:3]) + more)
        self.refused = refused
        self.envelope = envelope or {}  # the message's other top-level fields, unvalidated


def decode_items(model: type[M], payload: bytes | str, field: str) -> tuple[M, list[Refused]]:
    """Parse a batch message, refusing invalid items of its list *field* one by one.

    One bad event must not cost the good ones beside it (a kiosk re-sends its batches from
    the first unacknowledged event, so a whole-message refusal would block it for good).
    Raises MessageError if the envelope is invalid, ItemsRefused (a MessageError) if the batch
    had items and none was valid.
    """
    doc = _load(model, payload)
    items = doc.get(field)
    item_model = model.model_fields[field].annotation.__args__[0]  # list[X] -> X
    if not isinstance(items, list) or len(items) > MAX_BATCH:
        return _validate(model, doc), []
    good, refused = [], []
    for index, item in enumerate(items):
        try:
            good.append(item_model.model_validate(item))
        except ValidationError as exc:
            refused.append(Refused(index, item, _reason(exc, prefix=(field, index))))
    try:
        # The envelope is checked with one item (pydantic would run each item's model validator
        # again), then given all of them: every item was validated just above.
        envelope = model.model_validate({**doc, field: good[:1]})
        return envelope.model_copy(update={field: good}), refused
    except ValidationError as exc:
        if refused and not good:  # e.g. a batch must hold one event: say why each was refused
            raise ItemsRefused(refused, {k: v for k, v in doc.items() if k != field}) from None
        raise MessageError(_reason(exc)) from None


def _load(model: type[_Message], payload: bytes | str) -> dict:
    """The JSON object of *payload*, bounded in size before parsing, with the right ``schema``."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MessageError(f"payload of {len(payload)} bytes is over the limit of {MAX_PAYLOAD_BYTES}")
    try:
        doc = json.loads(payload)
    except RecursionError:
        raise MessageError("not JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        raise MessageError(f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise MessageError("not a JSON object")
    expected = model.model_fields["schema_"].default
    if doc.get("schema") != expected:
        raise MessageError(f"schema {str(doc.get('schema'))[:60]!r} is not {expected!r}")
    return doc


def _validate(model: type[M], doc: dict) -> M:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise MessageError(_reason(exc)) from None
    except RecursionError:  # a validator walking a deeply nested value
        raise MessageError("nested too deeply") from None


def _reason(exc: ValidationError, prefix: tuple = ()) -> str:
    """The first three errors, each with its place (``[events.0.kiosk_seq]``), inputs cut short."""
    shown = [f"[{'.'.join(str(p) for p in (*prefix, *e['loc']))}] {e['msg'][:200]}" for e in exc.errors()[:3]]
    more = f" (+{exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return "; ".join(shown) + more
