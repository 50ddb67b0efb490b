"""Hub databases for tests: a fresh SQLite file, or a PostgreSQL database made for this session.

``hub_url`` runs a test once per backend. The PostgreSQL server is ``pg_server`` (one per test
session, see tests/postgres.py): ``$STEMPEL_TEST_PG`` if set, else 127.0.0.1:5432 when it answers,
else a private cluster started for the session. A server that cannot be had fails the test with
the fix — it never skips, because a hub test that silently ran on SQLite only proves half the claim.
Import the fixtures into a test module: ``from hubdb import hub_url, pg_database  # noqa: F401``
(``pg_server`` comes from conftest.py, so the whole session shares one server).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest

from postgres import PostgresUnavailable, Server, session_server

PG_USED = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def pg_server(request) -> Iterator[Server]:
    """The session's PostgreSQL server, started on first use and stopped (if private) at the end."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(session_server())
        except PostgresUnavailable as exc:
            error = str(exc)
        else:
            request.config.stash[PG_USED] = server.label
            yield server
            return
        pytest.fail(error, pytrace=False)  # outside the except: the message alone, no chained traceback


def _admin(server: Server) -> psycopg.Connection:
    try:
        return psycopg.connect(server.dsn(), autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL ({server.label}) is not reachable: {exc}\n"
                    "The PostgreSQL hub tests fail rather than skip.", pytrace=False)


_SESSION_DB: dict[str, int] = {}  # the session's database name -> how many pg_database instances hold it


@pytest.fixture(scope="session")
def pg_database(pg_server: Server):
    """A uniquely named database for this test session, dropped at the end.

    Each module that imports this fixture gets its own session-scoped instance (pytest keys a
    fixture by where it is defined), so the instances share one database: a CREATE and a DROP
    DATABASE per module cost seconds on a busy server. ``hub_url`` empties it before each test."""
    if not _SESSION_DB:
        name = f"stempel_test_{os.getpid()}_{secrets.token_hex(4)}"
        with _admin(pg_server) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        _SESSION_DB[name] = 0
    name = next(iter(_SESSION_DB))
    _SESSION_DB[name] += 1
    try:
        yield name
    finally:
        _SESSION_DB[name] -= 1
        if not _SESSION_DB[name]:
            del _SESSION_DB[name]
            with _admin(pg_server) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reset(server: Server, name: str) -> None:
    """An empty schema, whatever tables earlier tests (or other modules' models) created."""
    with psycopg.connect(server.dsn(name), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


# The PostgreSQL variant is ``slow`` (a database emptied per test, a server round trip per
# statement): `make test-fast` runs the hub tests on SQLite, `make test` on both.
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def hub_url(request, tmp_path) -> str:
    """A SQLAlchemy URL of an empty hub database, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    name = request.getfixturevalue("pg_database")
    server = request.getfixturevalue("pg_server")
    _reset(server, name)
    return server.url(name)


@pytest.fixture
def store(hub_url):
    """An EventStore on an empty hub database, once per backend."""
    from cloud.events import EventStore

    s = EventStore.open(hub_url)
    yield s
    s.close()
