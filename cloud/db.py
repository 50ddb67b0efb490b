"""The hub's one engine factory, and the schema brought up to date once per engine.

Every hub process (a command, an ingest worker, a test) opens the database here, so all of
them get the same settings: SQLite in WAL with ``BEGIN IMMEDIATE`` and a busy timeout
(several processes may write), ``synchronous=FULL`` (an acked event must survive a power
cut); PostgreSQL with pre-ping (a restarted server is noticed).
"""

from __future__ import annotations

import sqlite3
import time
import weakref
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

_UPGRADED: "weakref.WeakSet[Engine]" = weakref.WeakSet()
READ_ONLY = "stempel_read_only"
"""Execution option of a connection that only reads: on SQLite its transactions take no write
lock (a WAL reader sees one consistent snapshot and never blocks a writer)."""


def default_url(data_dir: Path) -> str:
    """The SQLite database in the hub's data dir, used when no URL is configured."""
    return f"sqlite:///{data_dir / 'hub.sqlite3'}"


def make_engine(url: str) -> Engine:
    """An engine for *url*; nothing is connected until it is used."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, record) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN below, not the driver
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        _wal(dbapi_conn)
        dbapi_conn.execute("PRAGMA synchronous=FULL")

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")  # a reader (the dashboard) must not hold up ingest
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front: no upgrade deadlocks

    return engine


def _wal(dbapi_conn, patience: float = 30.0) -> None:
    """Switch a new database to WAL. The switch takes an exclusive lock, and SQLite answers
    "database is locked" at once, without its busy handler, while several processes open a
    fresh database together (``stempel-hub ingest@1`` and ``@2`` on first start): so wait here."""
    deadline = time.monotonic() + patience
    while True:
        try:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def open_store(url: str) -> Engine:
    """An engine for *url* whose database is at the current schema revision."""
    engine = make_engine(url)
    create_tables(engine)
    return engine


def create_tables(engine: Engine) -> None:
    """Bring *engine*'s database to the current schema through Alembic (cloud/schema.py), once
    per engine: a new database gets every table, an older one its migrations."""
    if engine in _UPGRADED:
        return
    from cloud.schema import upgrade  # Alembic and the migrations load only when a database is opened

    upgrade(engine)
    _UPGRADED.add(engine)
