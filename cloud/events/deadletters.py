"""Dead letters: what the hub refused, kept (capped) with the reason for the owner to inspect.

A refused payload is kept up to ``DEAD_LETTER_KEEP`` bytes, its length and sha256 in the
reason. The same refusal is written once per process: a kiosk re-sending a refused event
must not fill the table (``DeadLetters`` remembers the keys of committed letters).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from datetime import datetime
from typing import Any

from kiosk.protocol.event_schema import printable
from kiosk.protocol.messages import LEDGER_ID_PATTERN, MAX_PAYLOAD_BYTES

DEAD_LETTER_KEEP = 4096  # bytes of a refused payload kept; its length and sha256 go in the reason
REMEMBERED = 10_000  # message keys kept in memory (dead letters written, attempts counted)

Letter = tuple[str, dict[str, Any]]  # a message key and its ``dead_letters`` row


def message_key(topic: str, payload: bytes) -> str:
    """What identifies a message across redeliveries: sha256 of its topic and payload."""
    return hashlib.sha256(topic.encode("utf-8", "surrogatepass") + b"\0" + bytes(payload)).hexdigest()


class DeadLetters:
    """Makes ``dead_letters`` rows, and remembers (bounded) the ones already committed."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()

    def letter(self, topic: str, payload: bytes, reason: str, now: datetime) -> Letter | None:
        """The key and row of a refusal: the first DEAD_LETTER_KEEP bytes, the length and sha256
        in the reason, text cleaned for the column; None if this process wrote the same one already."""
        key = message_key(topic, payload)
        if key in self._seen:
            self._seen.move_to_end(key)
            return None
        note = f" ({len(payload)} bytes, sha256 {hashlib.sha256(payload).hexdigest()})"
        return key, {"topic": printable(topic)[:300], "payload": bytes(payload[:DEAD_LETTER_KEEP]),
                     "reason": printable(reason)[:500 - len(note)] + note, "received_at": now}

    def written(self, keys: Any) -> None:
        """Remember committed dead letters (only after the commit: a rolled back one is written again)."""
        for key in keys:
            remember(self._seen, key)


def remember(seen: OrderedDict, key: str) -> bool:
    """Add *key* to the bounded set *seen*; True if it was there already."""
    if key in seen:
        seen.move_to_end(key)
        return True
    seen[key] = None
    while len(seen) > REMEMBERED:
        seen.popitem(last=False)
    return False


def item_json(item: Any) -> bytes:
    """A refused batch item as JSON bytes, for its dead letter."""
    try:
        return json.dumps(item, separators=(",", ":")).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError, RecursionError):
        return repr(item).encode("utf-8", "surrogatepass")


def envelope(payload: bytes) -> dict:
    """A message's top-level fields, for a dead letter's ack (best effort: {} if unreadable)."""
    try:
        doc = json.loads(payload) if len(payload) <= MAX_PAYLOAD_BYTES else None
    except (ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def ledger_id_of(fields: dict) -> str | None:
    """The batch's ``ledger_id`` ("" when absent, from a kiosk before incarnations), or None if invalid."""
    value = fields.get("ledger_id", "")
    return value if isinstance(value, str) and re.fullmatch(LEDGER_ID_PATTERN, value) else None
