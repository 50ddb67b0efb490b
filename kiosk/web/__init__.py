"""The staff screen: a small web app the kiosk serves on the shop's LAN, for a tablet by the till.

``create_staff_app(kiosk, config)`` is Flask's factory (the hub's web has the same shape),
one blueprint per concern:

- ``auth``: the staff PIN (argon2) with a lockout after wrong tries (kiosk/web/auth.py);
- ``counter``: the keypad for the purchase amount, the last scans, redeem, undo, and the
  live mirror of the OLED, LED, buzzer and the link to the hub;
- ``device``: the hardware self-test and, on simulated hardware, the virtual camera and button;
- ``pos``: ``POST /api/v1/purchase`` for a till, with a bearer token (no cookies, no CSRF).

Every form carries a CSRF token (Flask-WTF). Templates and static files live in the package;
nothing is loaded from a CDN. ``serve_staff`` (kiosk/web/serve.py) runs it in the kiosk process.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from kiosk.common.webpages import install_error_pages, install_security_headers

if TYPE_CHECKING:
    from kiosk.app import Kiosk
    from kiosk.config import KioskConfig
    from kiosk.link.hub_link import HubLink
    from kiosk.web.selftest import Check

MAX_REQUEST_BYTES = 4 * 1024 * 1024  # a camera image uploaded to the simulated camera


def create_staff_app(kiosk: Kiosk, config: KioskConfig, *, link: HubLink | None = None,
                     names: Callable[[str], str | None] | None = None,
                     selftest: Callable[[Kiosk], list[Check]] | None = None,
                     test_config: dict | None = None) -> Flask:
    """The staff screen for *kiosk*, configured by ``config.staff`` (ConfigError without it).

    *link* (the running hub link, if any) feeds the status; *names* gives a member's name when
    the kiosk knows it (else the member id is shown); *selftest* replaces the hardware
    self-test (tests). The kiosk's clock times the lockout and undo.
    """
    from kiosk.common.errors import ConfigError
    from kiosk.web import auth, context, counter, device, pos
    from kiosk.web.selftest import run_selftest

    if config.staff is None:
        raise ConfigError("no [staff] section in kiosk.toml: set at least pin_hash to serve the staff screen")
    settings = config.staff
    app = Flask(__name__)
    app.config.from_mapping(
        # A key per process: staff type the PIN again after a restart, and no key file needs guarding.
        SECRET_KEY=secrets.token_bytes(32),
        SESSION_COOKIE_NAME="stempel_staff",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=False,  # plain HTTP on the shop's LAN (see serve.py)
        PERMANENT_SESSION_LIFETIME=12 * 3600,  # a shift
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_SSL_STRICT=False,
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["stempel_staff"] = context.Staff(
        kiosk=kiosk, settings=settings,
        gate=auth.PinGate(settings.pin_hash, settings.lockout_after, settings.lockout_seconds,
                          kiosk.clock.monotonic),
        link=link, names=names or (lambda member: None), kiosk_id=config.kiosk.id,
        selftest=selftest or run_selftest)
    csrf = CSRFProtect(app)
    for module in (auth, counter, device, pos):
        app.register_blueprint(module.bp)
    csrf.exempt(pos.bp)  # a bearer token, no cookies: nothing for a forged form to ride on

    install_error_pages(app)
    install_security_headers(app, "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                  "frame-ancestors 'none'; form-action 'self'", no_store=True)
    return app


def serve_staff(*args, **kwargs):
    """Serve the staff screen in a background thread; see kiosk/web/serve.py."""
    from kiosk.web.serve import serve_staff as serve

    return serve(*args, **kwargs)
