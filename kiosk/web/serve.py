"""Serving the staff screen from inside the kiosk process, on a background thread.

The server is werkzeug's threaded WSGI server, on purpose and within bounds. The staff screen
is part of the kiosk process (it calls the same ``Kiosk`` object the scan loop uses, so it
cannot live in gunicorn's forked workers, and gunicorn's arbiter wants the main thread and its
signals, which belong to the scan loop). It answers a tablet or two and a till on the shop's
LAN, never the internet. What a production server adds that matters at that scale is bounded
here: idle keep-alive connections are closed after ``IDLE_SECONDS``, at most
``MAX_CONNECTIONS`` are served at once (more are closed at once), request bodies are capped by
the app (``MAX_CONTENT_LENGTH``), and request lines are logged through our logging at debug.
Should the kiosk ever face an untrusted network, put it behind a TLS proxy or swap in waitress
(``waitress.create_server``) here: nothing else changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from kiosk.common.errors import ConfigError

if TYPE_CHECKING:
    from kiosk.app import Kiosk
    from kiosk.config import KioskConfig
    from kiosk.link.hub_link import HubLink

log = logging.getLogger(__name__)

IDLE_SECONDS = 15  # a connection with no request for this long is closed (a tablet reopens it)
MAX_CONNECTIONS = 16


class _Handler(WSGIRequestHandler):
    timeout = IDLE_SECONDS

    def log(self, type: str, message: str, *args) -> None:  # noqa: A002 - werkzeug's signature
        level = logging.DEBUG if type == "info" else logging.WARNING
        log.log(level, "staff.http", extra={"client": self.address_string(), "line": message % args})


class _BindFailed(Exception):
    """The address could not be bound (werkzeug would print and ``sys.exit`` on an OSError here)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _Server(ThreadedWSGIServer):
    """werkzeug's threaded server with a cap on concurrent connections."""

    def __init__(self, *args, **kwargs) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        try:
            super().server_bind()
        except OSError as exc:
            raise _BindFailed(exc) from exc

    def server_activate(self) -> None:
        try:
            super().server_activate()
        except OSError as exc:
            raise _BindFailed(exc) from exc

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("staff.too_many_connections", extra={"client": client_address[0]})
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


@dataclass
class StaffServer:
    """A running staff screen: ``url`` to open, ``stop()`` to end it (idempotent)."""

    server: _Server
    thread: threading.Thread
    url: str

    @property
    def port(self) -> int:
        return self.server.server_port

    def stop(self, timeout: float = 5.0) -> None:
        if not self.thread.is_alive():
            return
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout)
        log.info("staff.stopped", extra={"url": self.url})


def serve_staff(kiosk: Kiosk, config: KioskConfig, *, link: HubLink | None = None,
                names: Callable[[str], str | None] | None = None,
                host: str | None = None, port: int | None = None) -> StaffServer:
    """Serve the staff screen of *kiosk* on ``[staff] bind``:``port`` (or *host*/*port*; port 0
    takes a free one) until ``stop()``. Raises ConfigError without ``[staff]`` or when the
    address cannot be bound (the message names the setting to change)."""
    from kiosk.web import create_staff_app

    app = create_staff_app(kiosk, config, link=link, names=names)
    host = host if host is not None else config.staff.bind
    port = port if port is not None else config.staff.port
    try:
        server = _Server(host, port, app, handler=_Handler)
    except (_BindFailed, OSError) as exc:  # OSError: a host name that does not resolve
        error = exc.error if isinstance(exc, _BindFailed) else exc
        raise ConfigError(f"cannot serve the staff screen on {host}:{port}: {error.strerror or error}; "
                          "set another [staff] port or bind in kiosk.toml") from exc
    thread = threading.Thread(target=server.serve_forever, name="staff-web", daemon=True)
    thread.start()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{server.server_port}/"
    log.info("staff.serving", extra={"bind": host, "port": server.server_port})
    return StaffServer(server, thread, url)
