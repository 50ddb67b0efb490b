"""What every Stempel web app does the same way: error pages a person can read, and the
security headers. The hub's pages (cloud/web/) and the kiosk's staff screen (kiosk/web/) each
have an ``error.html`` taking ``title`` and ``message``."""

from __future__ import annotations

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError

CSRF_MESSAGE = "This form is out of date or was not sent by this page. Go back, reload the page and try again."


def install_error_pages(app: Flask) -> None:
    """400 for a missing or stale CSRF token, 404 and 413, as pages rather than Werkzeug's."""

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        return render_template("error.html", title="Form expired", message=CSRF_MESSAGE), 400

    @app.errorhandler(404)
    def _missing(exc):
        return render_template("error.html", title="Not found", message="There is nothing here."), 404

    @app.errorhandler(413)
    def _too_large(exc):
        return render_template("error.html", title="Too large", message="That was more than this page takes."), 413


def install_security_headers(app: Flask, csp: str, *, no_store: bool = False) -> None:
    """nosniff, no framing, same-origin referrers and the Content-Security-Policy *csp* on every
    response; *no_store* for pages that must never come from a cache (the staff screen)."""

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if no_store:
            response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("Content-Security-Policy", csp)
        return response
