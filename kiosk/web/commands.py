"""``stempel-kiosk staff ...``: make the secrets of ``[staff]`` at install time.

Attached to the kiosk's CLI with ``main.add_command(staff)``. Each command prints the line
to put in kiosk.toml; only hashes go there, the PIN and the token themselves are never stored.
"""

from __future__ import annotations

import sys

import click

from kiosk.common.errors import ConfigError
from kiosk.web.auth import hash_pin, new_pos_token


@click.group()
def staff() -> None:
    """The staff screen's PIN and the till's token."""


@staff.command("hash-pin")
@click.option("--pin", prompt="Staff PIN (4-12 digits)", hide_input=True, confirmation_prompt=True,
              help="The PIN; asked for (twice, hidden) when not given.")
def hash_pin_command(pin: str) -> None:
    """Print the [staff] pin_hash line for a PIN."""
    try:
        click.echo(f'pin_hash = "{hash_pin(pin)}"')
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@staff.command("pos-token")
def pos_token_command() -> None:
    """Make a bearer token for the till: the token once (for the till), the line for kiosk.toml."""
    token, digest = new_pos_token()
    click.echo(f"token for the till (shown once, keep it in the till's settings): {token}", err=True)
    click.echo(f'pos_token_sha256 = "{digest}"')
