"""The hub's web app for tests: a real hub (SQLite, or PostgreSQL through ``hub_url``), two
merchants with an owner and a staff login each, Flask's test client with a CSRF-aware form
helper, and a broker for what the pages publish.

Adopt with ``from webapp import broker, web, _quick_password_hashes  # noqa: F401`` plus
``from hubdb import hub_url, pg_database  # noqa: F401``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from buses import MemoryBuses

from cloud.accounts import add_user
from cloud.app import Hub, create_hub
from cloud.config import load_hub_config
from cloud.passes import init_merchant
from cloud.web import create_app
from cloud.web.publish import BrokerPublisher

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc)
PASSWORD = "correct horse battery"
BASE = "https://hub.example"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Site:
    hub: Hub
    app: object
    clock: list = field(default_factory=lambda: [NOW])

    def client(self):
        return self.app.test_client()

    def advance(self, **delta) -> None:
        self.clock[0] += timedelta(**delta)

    @staticmethod
    def csrf(client, path: str) -> str:
        page = client.get(path)
        match = _CSRF.search(page.get_data(as_text=True))
        assert match, f"no CSRF token on {path} ({page.status_code})"
        return match.group(1)

    def post(self, client, form_page: str, path: str | None = None, **data):
        """Submit a form the way a browser does: the token from *form_page*, then the POST."""
        return client.post(path or form_page, data={"csrf_token": self.csrf(client, form_page), **data})

    def login(self, login: str = "owner@cafe", password: str = PASSWORD):
        client = self.client()
        done = self.post(client, "/owner/login", login=login, password=password)
        assert done.status_code == 302, done.get_data(as_text=True)[:500]
        return client

    def join(self, client=None, name: str = "Anna", code: str = "cafe", **extra) -> str:
        """Join through the page; returns the card's path (``/P/<token>``)."""
        client = client or self.client()
        done = self.post(client, f"/j/{code}", name=name, program="yes", **extra)
        assert done.status_code == 303, done.get_data(as_text=True)[:800]
        return done.headers["Location"].removeprefix(BASE)


def make_site(tmp_path: Path, url: str, connect=None, **overrides) -> Site:
    """*overrides* are config fields (``web__joins_per_shop=3``)."""
    config = load_hub_config(None, env={}, hub__data_dir=tmp_path / "hub", hub__db_url=url,
                             **{"web__secure_cookies": False, **overrides})
    hub = create_hub(config)
    for merchant, name in (("cafe", "Cafe Rosa"), ("bakery", "Bäckerei Öztürk")):
        init_merchant(hub.engine, hub.keys, merchant, name, BASE)
        add_user(hub.engine, merchant, f"owner@{merchant}", "owner", PASSWORD)
        add_user(hub.engine, merchant, f"staff@{merchant}", "staff", PASSWORD)
    site = Site(hub, None)
    site.app = create_app(hub, clock=lambda: site.clock[0],
                          publisher=BrokerPublisher(hub, connect=connect) if connect else None)
    return site


@pytest.fixture(autouse=True)
def _quick_password_hashes(monkeypatch):
    """argon2 at its lightest: the tests sign in hundreds of times; the hub's defaults are untouched."""
    from argon2 import PasswordHasher

    import cloud.accounts

    monkeypatch.setattr(cloud.accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def broker():
    """The in-memory broker the pages publish to (tests of the broker path itself take
    ``bus_factory`` and build their site with ``make_site``)."""
    buses = MemoryBuses()
    yield buses
    buses.stop()


@pytest.fixture
def web(tmp_path, hub_url, broker):
    """A site on each database backend."""
    site = make_site(tmp_path, hub_url, connect=lambda: broker.connected())
    yield site
    site.hub.close()
