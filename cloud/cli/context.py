"""What every ``stempel-hub`` command shares: the hub, built once from the config, and errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from cloud.app import Hub, create_hub
from cloud.config import load_hub_config
from kiosk.common.errors import StempelError

T = TypeVar("T")


class HubContext:
    """The root options; ``open(**overrides)`` loads the config (file, ``STEMPEL_*``, these
    options, then the command's own *overrides*) and builds the hub, on first use only, so a
    command that refuses its arguments touches nothing."""

    def __init__(self, config: str | None, data_dir: str | None, db_url: str | None) -> None:
        self.path, self.root = config, {"hub__data_dir": data_dir, "hub__db_url": db_url}
        self.hub: Hub | None = None

    def open(self, database: bool = True, **overrides: Any) -> Hub:
        """The hub; with *database*, its database opened (and upgraded) now, as every command
        but ``db upgrade`` wants before it does anything."""
        if self.hub is None:
            config = run(lambda: load_hub_config(self.path, **self.root, **overrides))
            self.hub = run(lambda: create_hub(config))
        if database:
            run(lambda: self.hub.engine)
        return self.hub


pass_hub = click.make_pass_decorator(HubContext)


def given(name: str, value: T) -> T | None:
    """*value* if the option *name* was given (or set by its variable), None if it is click's
    default: then the config file's value, or the config's default, applies."""
    source = click.get_current_context().get_parameter_source(name)
    return None if source in (ParameterSource.DEFAULT, None) else value


def run(fn: Callable[[], T]) -> T:
    """Call *fn*; a StempelError becomes ``error: ...`` on stderr and exit status 2."""
    try:
        return fn()
    except StempelError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
