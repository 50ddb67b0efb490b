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

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError, CSRFProtect

from cloud.app import Hub
from cloud.models import utcnow
from cloud.web.secret import secret_key

csrf = CSRFProtect()
MAX_REQUEST_BYTES = 256 * 1024  # the largest form is the programme editor's TOML


def create_app(hub: Hub, clock: Callable[[], datetime] = utcnow, publisher: Any = None,
               test_config: dict | None = None) -> Flask:
    """The web app for *hub*; *clock* and *publisher* are injected by tests."""
    from cloud.web import api, fleet, members, owner, programme, public
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
    for module in (public, owner, members, programme, fleet, api):
        app.register_blueprint(module.bp)
    csrf.exempt(api.bp)  # bearer tokens, no cookies: nothing for a forged form to ride on

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        return render_template("error.html", title="Form expired",
                               message="This form is out of date or was not sent by this site. "
                                       "Go back, reload the page and try again."), 400

    @app.errorhandler(404)
    def _missing(exc):
        return render_template("error.html", title="Not found", message="There is nothing here."), 404

    @app.errorhandler(413)
    def _too_large(exc):
        return render_template("error.html", title="Too large", message="That was more than this page takes."), 413

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                    "frame-ancestors 'none'")
        return response

    return app
