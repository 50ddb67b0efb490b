"""The hub's web application: ``create_app(hub)``, one blueprint per audience.

- ``public``: the join page (``/j/<code>``) and the member's card at the URL inside every
  pass (``/P/<token>``), installable and readable offline;
- ``owner``: sign-in and the dashboard; ``members``, ``programme`` and ``fleet``: the owner's
  pages (login, CSRF on every form, a merchant's users see only that merchant);
- ``api``: ``/api/v1/`` with per-merchant bearer tokens.

The app receives the ``Hub`` (cloud/app.py) and never reads the environment itself; Flask's
tutorial shape (STYLE.md). Served by gunicorn (cloud/web/serve.py), never Flask's dev server.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from cloud.app import Hub
from cloud.models import utcnow
from cloud.web.secret import secret_key
from kiosk.common.webpages import install_error_pages, install_security_headers

csrf = CSRFProtect()
MAX_REQUEST_BYTES = 256 * 1024  # the largest form is the programme editor's TOML


def create_app(hub: Hub, clock: Callable[[], datetime] = utcnow, publisher: Any = None,
               test_config: dict | None = None) -> Flask:
    """The web app for *hub*; *clock* and *publisher* are injected by tests."""
    from cloud.web import api, campaigns, experiments, fleet, members, nps, owner, programme, public, unsubscribe
    from cloud.web import texts
    from cloud.web.publish import BrokerPublisher

    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=secret_key(hub.data_dir),
        SESSION_COOKIE_SECURE=hub.config.web.secure_cookies,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="stempel_session",
        PERMANENT_SESSION_LIFETIME=12 * 3600,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_SSL_STRICT=hub.config.web.secure_cookies,
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["stempel"] = {"hub": hub, "clock": clock,
                                 "publisher": publisher or BrokerPublisher(hub)}
    csrf.init_app(app)
    for module in (public, nps, owner, members, programme, experiments, campaigns, texts, fleet, api, unsubscribe):
        app.register_blueprint(module.bp)
    csrf.exempt(api.bp)  # bearer tokens, no cookies: nothing for a forged form to ride on

    install_error_pages(app)
    # inline styles: the charts' SVG and the cohort grid's shading (cloud/web/charts.py)
    install_security_headers(app, "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                  "frame-ancestors 'none'")
    return app
