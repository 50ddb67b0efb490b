"""Kiosks' ``state`` and ``config/reported`` in: ``stempel-hub fleet status``, read live.

Kiosks keep their ``state`` and ``config/reported`` retained on the broker, so a fresh
subscription hands the hub the latest of each at once; nothing needs to be stored.
"""

from __future__ import annotations

import json
import queue
import time
from dataclasses import dataclass, field

from kiosk.common.bus import Message, MqttBus
from kiosk.protocol import topics


@dataclass
class KioskRow:
    kiosk: str
    state: dict = field(default_factory=dict)
    reported: dict = field(default_factory=dict)
    seen_at: float | None = None  # when the hub received the retained state (not the kiosk's clock)

    def up_to_date(self, latest: int) -> bool:
        return latest == 0 or (self.reported.get("status") == "applied" and self.reported.get("version") == latest)


def collect(bus: MqttBus, merchant: str, settle: float = 1.0, timeout: float = 5.0) -> dict[str, KioskRow]:
    """Subscribe to the merchant's retained kiosk topics; return once nothing new came for *settle* s."""
    inbox: queue.Queue[Message] = queue.Queue()
    base = f"{topics.ROOT}/{merchant}/kiosks/+"
    bus.subscribe(f"{base}/state", inbox.put)
    bus.subscribe(f"{base}/config/reported", inbox.put)
    rows: dict[str, KioskRow] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = inbox.get(timeout=settle)
        except queue.Empty:
            break
        parsed = topics.parse_kiosk_topic(message.topic)
        if parsed is None:
            continue
        row = rows.setdefault(parsed.kiosk, KioskRow(parsed.kiosk))
        try:
            doc = json.loads(message.payload)
        except ValueError:
            continue
        if parsed.leaf == "state":
            row.state, row.seen_at = doc, time.time()
        elif parsed.leaf == "config/reported":
            row.reported = doc
    return rows


def render(rows: dict[str, KioskRow], latest: int) -> list[str]:
    """A table an owner can read; one line per kiosk."""
    lines = [f"{'kiosk':<16} {'status':<8} {'software':<9} {'config':<12} {'outbox':>6}  up to date  last error"]
    for kiosk in sorted(rows):
        row = rows[kiosk]
        state, rep = row.state, row.reported
        config = f"v{rep.get('version')} {rep.get('status', '?')}" if rep else "-"
        fresh = "yes" if row.up_to_date(latest) else f"no (latest v{latest})"
        lines.append(f"{kiosk:<16} {state.get('status', 'unknown'):<8} {str(state.get('software_version') or '-'):<9} "
                     f"{config:<12} {str(state.get('outbox_depth', '-')):>6}  {fresh:<10}  {state.get('last_error') or ''}")
    if not rows:
        lines.append("(no kiosk has reported to this broker yet)")
    return lines
