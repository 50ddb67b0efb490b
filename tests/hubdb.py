"""Hub databases for tests: a fresh SQLite file, or a PostgreSQL database made for this session.

``hub_url`` runs a test once per backend. PostgreSQL must be reachable at 127.0.0.1:5432
(trust auth, user postgres, database ``test``); if it is not, the test fails with the fix —
it never skips, because a hub test that silently ran on SQLite only proves half the claim.
Import the fixtures into a test module: ``from hubdb import hub_url, pg_database  # noqa: F401``.
"""

from __future__ import annotations

import os
import secrets

import psycopg
import pytest

PG_ADMIN = "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=5"


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable ({PG_ADMIN}): {exc}\n"
                    "Start a server at 127.0.0.1:5432 with a `test` database (e.g. `service postgresql start`); "
                    "the PostgreSQL hub tests fail rather than skip.", pytrace=False)


@pytest.fixture(scope="session")
def pg_database():
    """A uniquely named database for this test session, dropped at the end."""
    name = f"stempel_test_{os.getpid()}_{secrets.token_hex(4)}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reset(name: str) -> None:
    """An empty schema, whatever tables earlier tests (or other modules' models) created."""
    with psycopg.connect(f"host=127.0.0.1 port=5432 dbname={name} user=postgres", autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", "postgresql"])
def hub_url(request, tmp_path) -> str:
    """A SQLAlchemy URL of an empty hub database, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    name = request.getfixturevalue("pg_database")
    _reset(name)
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


@pytest.fixture
def store(hub_url):
    """An EventStore on an empty hub database, once per backend."""
    from cloud.events import EventStore

    s = EventStore.open(hub_url)
    yield s
    s.close()
