"""MQTT topics of protocol v1, built and parsed in one place (never by counting slashes elsewhere).

All topics start ``stempel/v1/{merchant}/``; see ../shared/DESIGN.md for the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.protocol.ids import check_id

ROOT = "stempel/v1"
INGEST_GROUP = "stempel-ingest"


def _base(merchant: str) -> str:
    return f"{ROOT}/{check_id(merchant, 'merchant')}"


def _kiosk(merchant: str, kiosk: str) -> str:
    return f"{_base(merchant)}/kiosks/{check_id(kiosk, 'kiosk')}"


def events(merchant: str, kiosk: str) -> str:
    return f"{_kiosk(merchant, kiosk)}/events"


def events_ack(merchant: str, kiosk: str) -> str:
    return f"{_kiosk(merchant, kiosk)}/events/ack"


def state(merchant: str, kiosk: str) -> str:
    return f"{_kiosk(merchant, kiosk)}/state"


def config_desired(merchant: str) -> str:
    return f"{_base(merchant)}/config/desired"


def kiosk_config_desired(merchant: str, kiosk: str) -> str:
    return f"{_kiosk(merchant, kiosk)}/config/desired"


def config_reported(merchant: str, kiosk: str) -> str:
    return f"{_kiosk(merchant, kiosk)}/config/reported"


def ledger(merchant: str) -> str:
    return f"{_base(merchant)}/ledger"


def sync_request(merchant: str, kiosk: str) -> str:
    return f"{_kiosk(merchant, kiosk)}/sync/request"


def sync_response(merchant: str, kiosk: str) -> str:
    return f"{_kiosk(merchant, kiosk)}/sync/response"


def keys(merchant: str) -> str:
    return f"{_base(merchant)}/keys"


# Subscriptions of the hub (wildcards over every merchant and kiosk).
ALL_EVENTS = f"{ROOT}/+/kiosks/+/events"
SHARED_EVENTS = f"$share/{INGEST_GROUP}/{ALL_EVENTS}"
ALL_STATES = f"{ROOT}/+/kiosks/+/state"
ALL_REPORTS = f"{ROOT}/+/kiosks/+/config/reported"
ALL_SYNC_REQUESTS = f"{ROOT}/+/kiosks/+/sync/request"


@dataclass(frozen=True)
class KioskTopic:
    """A parsed ``stempel/v1/{merchant}/kiosks/{kiosk}/{leaf...}`` topic."""

    merchant: str
    kiosk: str
    leaf: str  # e.g. "events", "state", "config/reported", "sync/request"


def parse_kiosk_topic(topic: str) -> KioskTopic | None:
    """Split a kiosk topic; None if it is not one (or its ids are invalid)."""
    parts = topic.split("/")
    if len(parts) < 6 or f"{parts[0]}/{parts[1]}" != ROOT or parts[3] != "kiosks":
        return None
    merchant, kiosk, leaf = parts[2], parts[4], "/".join(parts[5:])
    try:
        check_id(merchant, "merchant"), check_id(kiosk, "kiosk")
    except ValueError:
        return None
    return KioskTopic(merchant, kiosk, leaf)


def shared_events(group: str = INGEST_GROUP) -> str:
    """The hub's shared subscription to every kiosk's events; *group* may be a per-install secret."""
    if not group or any(c in group for c in "/+#"):
        raise ValueError(f"shared subscription group {group!r} must be non-empty without '/', '+' or '#'")
    return f"$share/{group}/{ALL_EVENTS}"
