"""What the staff screen mirrors: the OLED, the LED and buzzer, the counter, the link to the hub.

Plain functions of the kiosk's objects, no Flask: the blueprints render them. Everything
that touches the ledger runs under ``kiosk.lock`` (the scan loop owns the same connection).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from kiosk.common.errors import LedgerError
from kiosk.rules import Program, ready_rewards
from kiosk.rules.calendar import local
from kiosk.rules.engine import next_goal

if TYPE_CHECKING:
    from PIL import Image

    from kiosk.app import Kiosk, Recent
    from kiosk.link.hub_link import HubLink


def display_image(kiosk: Kiosk) -> Image.Image | None:
    """What the OLED shows now: the simulated display's own pixels, else the last screen drawn
    again (a real OLED keeps no copy; screens are pure functions of their state)."""
    display = kiosk.display
    if display is None:
        return None
    image = getattr(display, "image", None)
    if image is not None:
        return image
    if not display.shown:
        return None
    from kiosk.display import screens

    return screens.render(display.shown[-1])


def png(image: Image.Image, scale: int = 1) -> bytes:
    if scale != 1:
        from PIL import Image as PILImage

        image = image.resize((image.width * scale, image.height * scale), PILImage.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def image_tag(image: Image.Image | None) -> str:
    """A short fingerprint of *image*: the page reloads the mirror only when it changes."""
    if image is None:
        return "none"
    return hashlib.sha256(image.tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class PanelView:
    led: bool | None        # lit now (None: no panel in this process)
    buzzer: bool | None     # sounding now
    button: bool | None     # pressed now
    played: tuple[str, ...]  # the last signals played, newest first


def panel_view(kiosk: Kiosk, last: int = 5) -> PanelView:
    panel = kiosk.panel
    if panel is None:
        return PanelView(None, None, None, ())
    state = [_value(panel, name) for name in ("led", "buzzer", "button")]
    history = list(panel.history)[-last:]
    played = tuple(f"{p.signal.value} (LED {_pulses(p.led)}, buzzer {_pulses(p.buzzer)})" for p in reversed(history))
    return PanelView(*state, played)


def _value(panel, name: str) -> bool | None:
    device = getattr(panel, name, None)
    if device is None:
        return None
    return bool(device.is_pressed if name == "button" else device.is_active)


def _pulses(p) -> str:
    return f"{p.n}×{p.on:g}s" if p.n else "off"


@dataclass(frozen=True)
class StatusView:
    hub: str                       # online, offline, or standalone
    outbox: int | None             # events the hub has not acknowledged yet
    versions: dict[str, int]       # document versions in force (merchant, kiosk, keys)
    last_error: str | None
    out_of_order: str | None


def status_view(kiosk: Kiosk, link: HubLink | None) -> StatusView:
    board = link.status if link is not None else kiosk.status
    error = board.last_error() if board is not None else None
    if link is None:
        return StatusView("standalone", None, {}, error, kiosk.out_of_order)
    try:
        with kiosk.lock:
            depth = max(0, kiosk.ledger.last_seq() - link.sender.acked_through_seq)
    except LedgerError:
        depth = None
    return StatusView("online" if link.bus.connected else "offline", depth, link.status.applied(), error,
                      kiosk.out_of_order)


@dataclass(frozen=True)
class CounterView:
    member: str | None             # at the counter now
    name: str | None
    balance: int | None
    goal: int | None
    unit: str
    ready: tuple[str, ...]         # reward names ready to redeem
    pending: Decimal | None        # an amount held for the next scan
    pending_left: int              # its seconds left
    awaiting: str | None           # a member who scanned without an amount
    undo: str | None               # what "undo" would take back now, with its seconds left
    undo_refusal: str | None


def counter_view(kiosk: Kiosk, names, undo_seconds: float) -> CounterView:
    program = kiosk.program
    with kiosk.lock:
        now = kiosk.clock.monotonic()
        member = kiosk.session.member()
        state = kiosk.ledger.member_state(member, program) if member else None
        held = kiosk.session.pending_amount()
        awaiting = kiosk.session.awaiting()
        candidate = kiosk.undoable()
    ready = tuple(program.reward(r).name for r in ready_rewards(state, kiosk.clock.now(), program)) if state else ()
    undo, refusal = None, None
    if candidate is not None:
        refusal = candidate.refusal(undo_seconds)
        who = label(candidate.target.member, names)
        undo = f"{candidate.what} of {who}, {candidate.seconds_left(undo_seconds):.0f} s left" if refusal is None else None
    return CounterView(member, names(member) if member else None, state.balance if state else None,
                       next_goal(state, program, kiosk.clock.now()) if state else None, program.unit, ready,
                       held.amount if held else None, round(held.expires - now) if held else 0,
                       awaiting.member if awaiting else None, undo, refusal)


@dataclass(frozen=True)
class ScanLine:
    at: datetime
    source: str
    who: str
    outcome: str
    amount: str | None
    balance: str
    note: str


def scan_lines(recent: list[Recent], names, program: Program, last: int = 12) -> list[ScanLine]:
    """The last results, newest first, at the shop's local time."""
    unit, lines = program.unit, []
    for item in reversed(recent[-last:]):
        r = item.result
        balance = "" if r.balance is None else f"{r.balance} {r.unit or unit}"
        if r.earned and r.balance is not None:
            balance += f" ({r.earned:+d})"
        reward = program.reward(r.reward) if r.reward else None
        note = reward.name if reward else (r.reason or "")
        lines.append(ScanLine(local(item.at, program.zone), SOURCES.get(r.image, "camera"),
                              label(r.member, names) if r.member else "—", r.outcome, r.amount, balance, note))
    return lines


SOURCES = {"amount": "keypad", "pos": "till", "button": "button", "undo": "staff screen"}
"""Where a result came from, in words (anything else is a frame from the camera)."""


def label(member: str | None, names) -> str:
    """The member's first name if the kiosk knows it, else the member id."""
    if not member:
        return "—"
    name = names(member)
    return name.split()[0] if name else member
