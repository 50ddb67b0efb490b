"""``stempel-hub serve``: the web app under gunicorn (pre-fork workers; never Flask's dev server).

The schema is brought up to date once, in the master, before any worker forks (``db upgrade``
at start, as the ingest worker does); each worker then builds its own app and engine, since a
database connection must not cross a fork.

Under systemd (``Type=notify``) the master says ``READY=1`` with a ``STATUS=`` line from
gunicorn's ``when_ready`` hook, once it listens; no watchdog: gunicorn's master already
replaces a worker that stops answering (``timeout``), and its loop does nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gunicorn.app.base import BaseApplication

from cloud.config import HubConfig
from kiosk.common.sdnotify import Notifier

log = logging.getLogger(__name__)


class HubServer(BaseApplication):
    def __init__(self, config: HubConfig, options: dict) -> None:
        self.config_ = config
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from cloud.app import create_hub
        from cloud.web import create_app

        return create_app(create_hub(self.config_))


def ready_hook(status: str, notifier: Callable[[], Notifier] = Notifier.from_environ) -> Callable[[object], None]:
    """gunicorn's ``when_ready(server)``: ``READY=1`` and *status*, from the master, on a socket
    closed at once (the workers fork after this and must not inherit it)."""
    def when_ready(server) -> None:
        with notifier() as systemd:
            systemd.ready(status)
        log.info("web.ready", extra={"status": status})
    return when_ready


def serve(config: HubConfig) -> None:
    """Run until stopped (SIGTERM/SIGINT); raises on a port that is taken."""
    from cloud.app import create_hub

    hub = create_hub(config)
    hub.engine  # upgrade the schema once, before the workers fork
    hub.close()
    web = config.web
    options = {"bind": f"{web.host}:{web.port}", "workers": web.workers, "worker_class": "gthread", "threads": 4,
               "timeout": 60, "graceful_timeout": 10, "accesslog": None, "errorlog": "-", "loglevel": "warning",
               "preload_app": False, "proc_name": "stempel-hub-web"}
    options["when_ready"] = ready_hook(f"listening on {options['bind']}, {web.workers} worker(s)")
    log.info("web.serve", extra={"bind": options["bind"], "workers": web.workers})
    HubServer(config, options).run()
