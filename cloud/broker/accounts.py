"""Broker account names: one per kiosk, one per hub process.

A kiosk's username is ``{merchant}-{kiosk}``; a hub process is ``stempel-hub-{n}``. Every
listener sets ``use_username_as_clientid``, so the username *is* the MQTT client id: no
client can take over (and disconnect) another's session, and each ingest worker needs
its own account to hold its own place in the shared subscription.

Names are ``[a-z0-9-]`` only. A name with ``+``, ``#``, ``/`` or anything else never
reaches the password file, so the broker refuses it at CONNECT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from kiosk.common.errors import ProvisioningError
from kiosk.protocol.ids import check_id

HUB_PREFIX = "stempel-hub"
USERNAME_PATTERN = re.compile(r"\A[a-z0-9](?:[a-z0-9-]{0,63}[a-z0-9])?\Z")  # \Z: no trailing newline

Role = Literal["kiosk", "hub"]


@dataclass(frozen=True)
class Account:
    """What the ACL needs to know about one broker account."""

    username: str
    role: Role
    merchant: str | None = None
    kiosk: str | None = None


def check_username(username: str) -> str:
    """Return *username* if it is safe in a password file, ACL and topic; else raise."""
    if not isinstance(username, str) or not USERNAME_PATTERN.fullmatch(username):
        raise ProvisioningError(f"broker username {username!r} is not [a-z0-9-] (1-65 characters)")
    return username


def kiosk_username(merchant: str, kiosk: str) -> str:
    """``{merchant}-{kiosk}``; refused if it would look like a hub account."""
    username = f"{check_id(merchant, 'merchant')}-{check_id(kiosk, 'kiosk')}"
    if username.startswith(HUB_PREFIX):
        raise ProvisioningError(f"kiosk username {username!r} starts with {HUB_PREFIX!r}, "
                                "which is reserved for the hub: choose another kiosk id")
    return check_username(username)


ADMIN_USERNAME = f"{HUB_PREFIX}-admin"


def hub_username(number: int) -> str:
    """The account of hub process *number* (1-based): ``stempel-hub-1``, ``stempel-hub-2``...

    Number 0 is ``stempel-hub-admin``, the account of the admin commands (config push,
    keys publish, fleet status), so they never kick an ingest worker off the broker.
    """
    if number < 0:
        raise ProvisioningError(f"hub account numbers start at 1 (0 is the admin account), not {number}")
    return ADMIN_USERNAME if number == 0 else f"{HUB_PREFIX}-{number}"


def kiosk_account(merchant: str, kiosk: str) -> Account:
    return Account(kiosk_username(merchant, kiosk), "kiosk", merchant, kiosk)


def hub_account(number: int) -> Account:
    return Account(hub_username(number), "hub")
