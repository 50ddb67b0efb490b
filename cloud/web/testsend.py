"""A test message to the signed-in owner: a campaign's or a trigger's words written with a real
member's card (cloud/web/campaigns.py, cloud/web/texts.py) and sent to the owner's own login
address; the outcome is flashed, never raised."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr

from flask import flash

from cloud.automations.mailer import DeliveryError, send_test
from cloud.models import Member
from cloud.web import context
from kiosk.common.errors import ConfigError


def to_owner(member: Member | None, write: Callable[[str, datetime], EmailMessage]) -> None:
    """Send ``write(sender address, now)`` — the message *member* would get — to the owner."""
    login = context.account().login
    address = parseaddr(login)[1]
    if member is None:
        flash("Choose a member to write the test with.", "error")
        return
    if "@" not in address or not address.partition("@")[2]:
        flash(f"Your login {login!r} is no e-mail address; sign in with one to get test messages.", "error")
        return
    hub = context.hub()
    try:
        send_test(hub.config.smtp, write(hub.config.smtp.sender or address, context.now()), address)
    except (ConfigError, DeliveryError) as exc:
        flash(f"The test was not sent: {exc}", "error")
    else:
        flash(f"Test sent to {address} with {member.name or member.id}'s card.", "ok")
