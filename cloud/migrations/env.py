"""Alembic environment: run on the connection ``cloud.schema`` hands over, never on a URL of its own."""

from __future__ import annotations

from alembic import context

from cloud.schema import target_metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=target_metadata(),
                  render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
with context.begin_transaction():
    context.run_migrations()
