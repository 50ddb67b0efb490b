"""``stempel-hub``: the hub's admin commands, one module per group of them.

The root options choose the config (``--config``, ``--data-dir``, ``--db-url``); every
command receives the hub built from it (cloud/cli/context.py, ``create_hub``) and never
reads the environment itself.
"""

from __future__ import annotations

import click

from cloud.cli import automations, broker, db, fleet, ingest, passes, web
from cloud.cli.context import HubContext


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="hub.toml. [$STEMPEL_HUB_CONFIG, $STEMPEL_CONFIG, else /etc/stempel/hub.toml if present]")
@click.option("--data-dir", help="Hub data (keys, SQLite). [~/.local/share/stempel-hub]")
@click.option("--db-url", help="SQLAlchemy URL; PostgreSQL for fleets. [SQLite in data dir]")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, data_dir: str | None, db_url: str | None) -> None:
    """Stempel hub: merchants, signing keys and member passes."""
    ctx.obj = HubContext(config_path, data_dir, db_url)


for _module in (passes, broker, ingest, fleet, db, web, automations):
    for _command in _module.COMMANDS:
        main.add_command(_command)
