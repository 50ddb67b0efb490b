"""``stempel-hub serve``: the web app under gunicorn (pre-fork workers; never Flask's dev server).

The schema is brought up to date once, in the master, before any worker forks (``db upgrade``
at start, as the ingest worker does); each worker then builds its own app and engine, since a
database connection must not cross a fork.
"""

from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication

from cloud.config import HubConfig

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
    log.info("web.serve", extra={"bind": options["bind"], "workers": web.workers})
    HubServer(config, options).run()
