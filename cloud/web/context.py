"""What a request handler needs: the hub, its clock, the signed-in account, the limiter."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime

from flask import abort, current_app, flash, g, redirect, request, session, url_for

from cloud.accounts import Account, load_account
from cloud.app import Hub
from cloud.members import get_member
from cloud.models import Member
from cloud.ratelimit import RateLimiter


def hub() -> Hub:
    return current_app.extensions["stempel"]["hub"]


def now() -> datetime:
    return current_app.extensions["stempel"]["clock"]()


def publisher():
    return current_app.extensions["stempel"]["publisher"]


def limiter() -> RateLimiter:
    return RateLimiter(hub().engine, clock=lambda: now().timestamp())


def client_ip() -> str:
    """The client's address (set ``--forwarded-allow-ips`` in gunicorn behind a proxy)."""
    return request.remote_addr or "unknown"


def account() -> Account | None:
    """The signed-in account of this request, or None."""
    if "account" not in g:
        user_id = session.get("user_id")
        g.account = load_account(hub().engine, user_id) if isinstance(user_id, int) else None
    return g.account


def login_required(roles: tuple[str, ...] = ("owner", "staff")) -> Callable:
    """Owner pages: signed-out visitors go to the login page; a role not in *roles* gets 403."""

    def wrap(view: Callable) -> Callable:
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            who = account()
            if who is None:
                return redirect(url_for("owner.login", next=request.path))
            if who.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return guarded

    return wrap


def preview_member(merchant: str) -> Member | None:
    """The member a preview is written for: ``?member=`` / the form's ``member``, if one of
    *merchant*'s and not erased (else None, with a message flashed)."""
    member_id = (request.values.get("member") or "").strip()[:40]
    if not member_id:
        return None
    row = get_member(hub().engine, merchant, member_id)
    if row is None or row.erased_at is not None:
        flash(f"No member {member_id!r} here: give the id of one of your members (Members page).", "error")
        return None
    return row
