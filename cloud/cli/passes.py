"""``stempel-hub init``, ``issue-pass``, ``revoke-pass``, ``export-keys``: merchants, members, passes."""

from __future__ import annotations

from pathlib import Path

import click

from cloud import passes
from cloud.cli.context import HubContext, pass_hub, run

DEFAULT_BASE_URL = "https://stempel.example"


@click.command()
@click.option("--merchant", required=True, help="Merchant id, a-z 0-9 '-' (e.g. cafe-rosa).")
@click.option("--name", required=True, help="Shop name shown to customers.")
@click.option("--base-url", default=DEFAULT_BASE_URL, show_default=True,
              help="Public URL of the hub, http(s)://HOST[:PORT][/PATH] (in pass QRs).")
@pass_hub
def init(ctx: HubContext, merchant: str, name: str, base_url: str) -> None:
    """Create a merchant and its signing key (idempotent)."""
    hub = ctx.open()
    created, kid = run(lambda: passes.init_merchant(hub.engine, hub.keys, merchant, name, base_url))
    verb = "created" if created else "already exists"
    click.echo(f"merchant {merchant} {verb}; signing key {kid}; data in {hub.data_dir}")


@click.command("issue-pass")
@click.option("--merchant", required=True)
@click.option("--member-name", help="The customer's name, for the owner's records (needed for a new member).")
@click.option("--member", "member_id", help="A new pass for this existing member: a new serial, the same balance.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="FILE.png or FILE.svg")
@pass_hub
def issue_pass(ctx: HubContext, merchant: str, member_name: str | None, member_id: str | None, out: str) -> None:
    """Enrol a member (or give an existing one a new pass) and write the pass QR.

    \b
    A lost phone: `revoke-pass --member ID`, then `issue-pass --member ID --out new.png`,
    then `keys publish`: the old pass is refused, the new one carries the balance on.
    """
    hub = ctx.open()
    if member_id is None and member_name is None:
        raise click.UsageError("a new member needs --member-name (or give --member ID for a new pass)")
    if member_id is not None:
        issued = run(lambda: passes.reissue_pass(hub.engine, hub.keys, merchant, member_id, Path(out)))
    else:
        issued = run(lambda: passes.issue_pass(hub.engine, hub.keys, merchant, member_name, Path(out)))
    click.echo(f"member {issued.member}: pass {issued.serial} written to {issued.path} (QR version {issued.qr_version})")
    if issued.qr_version > passes.qr.MAX_VERSION:
        click.echo(f"warning: QR version {issued.qr_version} is too dense for some phone screens", err=True)
    click.echo(issued.url)


@click.command("revoke-pass")
@click.option("--merchant", required=True)
@click.option("--member", help="Revoke every pass of this member (the id issue-pass printed).")
@click.option("--serial", help="Revoke only this pass (the serial issue-pass printed).")
@pass_hub
def revoke_pass(ctx: HubContext, merchant: str, member: str | None, serial: str | None) -> None:
    """Refuse a pass from now on; the member and their balance stay (then publish the keys)."""
    if (member is None) == (serial is None):
        raise click.UsageError("give exactly one of --member and --serial")
    hub = ctx.open()
    if serial is not None:
        label, done = f"pass {serial}", run(lambda: passes.revoke_serial(hub.engine, merchant, serial))
    else:
        label, done = f"member {member}", run(lambda: passes.revoke_member(hub.engine, merchant, member))
    if not done:
        click.echo(f"{label}: already revoked, nothing changed")
        return
    click.echo(f"{label}: revoked {', '.join(done.names())}; kiosks refuse it once they have the new key list "
               f"(`stempel-hub keys publish --merchant {merchant}`)")


@click.command("export-keys")
@click.option("--merchant", required=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
@pass_hub
def export_keys(ctx: HubContext, merchant: str, out: str | None) -> None:
    """Write the public keys a kiosk needs (JSON)."""
    hub = ctx.open()
    text = run(lambda: passes.export_keys(hub.engine, merchant)).to_json()
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
        click.echo(f"keys for {merchant} written to {out}", err=True)
    else:
        click.echo(text)


COMMANDS = [init, issue_pass, revoke_pass, export_keys]
