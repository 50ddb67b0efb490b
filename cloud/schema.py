"""The hub's schema through Alembic: one place that brings any hub database to the current revision.

A new, empty database gets ``create_all`` and is stamped at the head (Alembic's recipe:
replaying every migration on each fresh test database would cost more than it proves); a
database made by release 0.1.0 (tables, no ``alembic_version``) runs every migration from the
baseline ``0001``, which creates only the tables that release had not made yet (it made some
on first use); any other is upgraded from where it stands. Every process that opens
the store runs this under the schema lock, so two workers starting together on a fresh
database don't race.
"""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, inspect, text
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

RELEASE_0_1_0 = "0.1.0 (before 0001)"  # what ``upgrade`` reports for such a database
_SCHEMA_LOCK = 0x5354_4D50  # PostgreSQL advisory lock around schema changes ("STMP")


def target_metadata() -> MetaData:
    """The hub's full metadata: every table is in cloud/models.py."""
    from cloud.models import Base

    return Base.metadata


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "cloud:migrations")
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Bring the database at *engine* to the head revision; return the revision it was at
    (``"new"`` for an empty database)."""
    with engine.begin() as conn:
        _lock(conn)
        was = MigrationContext.configure(conn).get_current_revision()
        cfg = alembic_config(conn)
        if was is None and not _has_hub_tables(conn):
            target_metadata().create_all(conn)
            command.stamp(cfg, "head")
            return "new"
        if was != head_revision():  # from None (release 0.1.0) Alembic starts at the baseline
            log.info("schema.upgrade", extra={"from": was or "0.1.0", "to": head_revision()})
            command.upgrade(cfg, "head")
        return was or RELEASE_0_1_0


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
    elif conn.dialect.name == "sqlite" and not conn.connection.driver_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # pysqlite runs DDL outside a transaction by default


def _has_hub_tables(conn: Connection) -> bool:
    return inspect(conn).has_table("merchants")
