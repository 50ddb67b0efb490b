"""What a request handler needs, put in ``app.extensions["stempel_staff"]`` by the factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    from kiosk.app import Kiosk
    from kiosk.config import StaffSection
    from kiosk.link.hub_link import HubLink
    from kiosk.web.auth import PinGate
    from kiosk.web.selftest import Check


@dataclass
class Staff:
    kiosk: Kiosk
    settings: StaffSection
    gate: PinGate
    link: HubLink | None
    names: Callable[[str], str | None]
    kiosk_id: str
    selftest: Callable[[Kiosk], list[Check]]


def staff() -> Staff:
    return current_app.extensions["stempel_staff"]


def kiosk() -> Kiosk:
    return staff().kiosk


def settings() -> StaffSection:
    return staff().settings


def gate() -> PinGate:
    return staff().gate
