"""``stempel-hub db upgrade``: the hub database's schema (Alembic migrations, cloud/schema.py)."""

from __future__ import annotations

import sys

import click

from cloud.cli.context import HubContext, pass_hub, run


@click.group()
def db() -> None:
    """The hub database's schema (Alembic migrations)."""


@db.command("upgrade")
@pass_hub
def db_upgrade(ctx: HubContext) -> None:
    """Bring the database to the current schema (every hub command also does this at start)."""
    from sqlalchemy.exc import OperationalError

    from cloud import schema

    engine = ctx.open(database=False).unopened_engine()
    try:
        was = run(lambda: schema.upgrade(engine))
        head = schema.head_revision()
    except OperationalError as exc:
        click.echo(f"error: cannot reach the hub database: {exc.orig}", err=True)
        sys.exit(2)
    else:
        click.echo(f"database was at {was}, now at {head}" if was != head else f"database already at {head}")
    finally:
        engine.dispose()


COMMANDS = [db]
