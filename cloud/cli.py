"""``stempel-hub``: the hub's admin commands (keys and passes for now)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cloud import passes
from cloud.keys import KeyStore
from cloud.store import default_url, open_store
from kiosk.errors import StempelError

DEFAULT_BASE_URL = "https://stempel.example"


def _data_dir(value: str | None) -> Path:
    if value:
        return Path(value)
    if os.environ.get("STEMPEL_HUB_DIR"):
        return Path(os.environ["STEMPEL_HUB_DIR"])
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "stempel-hub"


class Hub:
    def __init__(self, data_dir: Path, db_url: str | None) -> None:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir = data_dir
        self.engine = open_store(db_url or default_url(data_dir))
        self.keys = KeyStore(data_dir)


@click.group()
@click.option("--data-dir", envvar="STEMPEL_HUB_DIR", help="Hub data (keys, SQLite). [~/.local/share/stempel-hub]")
@click.option("--db-url", envvar="STEMPEL_HUB_DB", help="SQLAlchemy URL; PostgreSQL for fleets. [SQLite in data dir]")
@click.pass_context
def main(ctx: click.Context, data_dir: str | None, db_url: str | None) -> None:
    """Stempel hub: merchants, signing keys and member passes."""
    ctx.obj = lambda: Hub(_data_dir(data_dir), db_url)


@main.command()
@click.option("--merchant", required=True, help="Merchant id, a-z 0-9 '-' (e.g. cafe-rosa).")
@click.option("--name", required=True, help="Shop name shown to customers.")
@click.option("--base-url", default=DEFAULT_BASE_URL, show_default=True, help="Public URL of the hub (in pass QRs).")
@click.pass_obj
def init(hub, merchant: str, name: str, base_url: str) -> None:
    """Create a merchant and its signing key (idempotent)."""
    hub = _open(hub)
    created, kid = _run(lambda: passes.init_merchant(hub.engine, hub.keys, merchant, name, base_url))
    verb = "created" if created else "already exists"
    click.echo(f"merchant {merchant} {verb}; signing key {kid}; data in {hub.data_dir}")


@main.command("issue-pass")
@click.option("--merchant", required=True)
@click.option("--member-name", required=True, help="The customer's name, for the owner's records.")
@click.option("--member", "member_id", help="Re-issue the pass of an existing member id.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="FILE.png or FILE.svg")
@click.pass_obj
def issue_pass(hub, merchant: str, member_name: str, member_id: str | None, out: str) -> None:
    """Enrol a member and write their pass QR."""
    hub = _open(hub)
    issued = _run(lambda: passes.issue_pass(hub.engine, hub.keys, merchant, member_name, Path(out), member_id))
    click.echo(f"member {issued.member}: pass written to {issued.path} (QR version {issued.qr_version})")
    click.echo(issued.url)


@main.command("export-keys")
@click.option("--merchant", required=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
@click.pass_obj
def export_keys(hub, merchant: str, out: str | None) -> None:
    """Write the public keys a kiosk needs (JSON)."""
    hub = _open(hub)
    text = _run(lambda: passes.export_keys(hub.engine, merchant)).to_json()
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
        click.echo(f"keys for {merchant} written to {out}", err=True)
    else:
        click.echo(text)


def _open(factory) -> Hub:
    return _run(factory)


def _run(fn):
    try:
        return fn()
    except StempelError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
