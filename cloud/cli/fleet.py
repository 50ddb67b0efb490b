"""``stempel-hub config push``, ``keys publish``, ``fleet status``, ``conflicts``: the fleet.

The admin commands log in to the broker as ``stempel-hub-admin`` (from ``hub-mqtt.toml``;
cloud/mqtt.py), so they never take an ingest worker's client id; ``--host``/``--port`` etc.
override it (a private test broker needs no account at all).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from cloud.app import Hub
from cloud.cli.context import HubContext, given, pass_hub, run
from cloud.link import documents, state


def broker_options(command):
    """Click options shared by the admin commands; they reach the command as ``**broker``."""
    options = [
        click.option("--mqtt-config", type=click.Path(dir_okay=False, path_type=Path),
                     help="hub-mqtt.toml from `stempel-hub broker-config` (uses the stempel-hub-admin account)."),
        click.option("--host", help="Broker host. [from --mqtt-config, else 127.0.0.1]"),
        click.option("--port", type=int, help="Broker port. [from --mqtt-config, else 1883]"),
        click.option("--username", help="Broker username."),
        click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path)),
        click.option("--ca-file", type=click.Path(dir_okay=False, path_type=Path), help="CA for TLS."),
        click.option("--connect-timeout", type=float, default=10.0, show_default=True,
                     help="Seconds to keep trying the broker."),
    ]
    return functools.reduce(lambda cmd, option: option(cmd), reversed(options), command)


def open_admin(ctx: HubContext, broker: dict) -> Hub:
    """The hub, with the broker options of the command line over the config's."""
    return ctx.open(mqtt__settings_file=broker["mqtt_config"], mqtt__host=broker["host"], mqtt__port=broker["port"],
                    mqtt__username=broker["username"], mqtt__password_file=broker["password_file"],
                    mqtt__ca_file=broker["ca_file"],
                    mqtt__connect_timeout=given("connect_timeout", broker["connect_timeout"]))


@click.group()
def config() -> None:
    """Fleet configuration: push a programme to every kiosk of a merchant (or one kiosk)."""


@config.command("push")
@click.argument("program_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--merchant", required=True)
@click.option("--kiosk", help="Only this kiosk (an override that takes precedence over the merchant-wide one).")
@click.option("--wait", "wait_seconds", type=float, default=0, help="Wait up to this long for kiosks to report.")
@broker_options
@pass_hub
def config_push(ctx: HubContext, program_file, merchant, kiosk, wait_seconds, **broker) -> None:
    """Validate, version, sign and publish PROGRAM_FILE (TOML) as the desired programme."""
    from kiosk.rules import load_program

    hub = open_admin(ctx, broker)
    program = run(lambda: load_program(program_file))
    bus = run(hub.connect)
    try:
        source = program_file.read_text()
        doc = run(lambda: documents.prepare(hub.engine, hub.data_dir, merchant, program, kiosk, source=source))
        topic = run(lambda: documents.publish(bus, doc))
        click.echo(f"programme {program.name!r} is version {doc['version']} on {topic}")
        if wait_seconds > 0:
            rows = state.collect(bus, merchant, settle=min(wait_seconds, 2.0), timeout=wait_seconds)
            click.echo("\n".join(state.render(rows, doc["version"] if not kiosk else 0)))
    finally:
        bus.stop()


@click.group()
def keys() -> None:
    """Pass-verification keys and revocations for the kiosks."""


@keys.command("publish")
@click.option("--merchant", required=True)
@broker_options
@pass_hub
def keys_publish(ctx: HubContext, merchant, **broker) -> None:
    """Sign and publish the merchant's public keys and revoked passes (retained) to its kiosks."""
    hub = open_admin(ctx, broker)
    bus = run(hub.connect)
    try:
        doc = run(lambda: documents.build_keys_document(hub.engine, hub.data_dir, merchant))
        topic = run(lambda: documents.publish_keys(bus, doc))
    finally:
        bus.stop()
    revoked = len(doc.get("revoked_passes", [])) + len(doc["revoked_members"])
    click.echo(f"keys version {doc['version']} ({len(doc['keys'])} keys, {revoked} revoked passes) on {topic}")


@click.command()
@click.option("--merchant", required=True)
@click.option("--json", "as_json", is_flag=True)
@pass_hub
def conflicts(ctx: HubContext, merchant, as_json) -> None:
    """Members whose balance went below zero when offline kiosks' ledgers merged."""
    rows = ctx.open().events().conflicts(merchant)
    if as_json:
        click.echo(json.dumps([{"member": c.member_id, "balance": c.balance, "kiosks": c.kiosks,
                                "event_ids": c.event_ids, "detected_at": c.detected_at.isoformat(),
                                "resolved": c.resolved_at is not None} for c in rows], indent=2))
        return
    for c in rows:
        click.echo(f"{c.detected_at:%Y-%m-%d %H:%M}  member {c.member_id}: balance went to {c.balance} "
                   f"(redeemed at {', '.join(c.kiosks)} while offline)")
    if not rows:
        click.echo(f"no conflicts for {merchant}")


@click.group()
def fleet() -> None:
    """The merchant's kiosks as the broker sees them."""


@fleet.command("status")
@click.option("--merchant", required=True)
@click.option("--json", "as_json", is_flag=True)
@broker_options
@pass_hub
def fleet_status(ctx: HubContext, merchant, as_json, **broker) -> None:
    """Presence, software and config versions, outbox depth, and whether each kiosk is up to date."""
    hub = open_admin(ctx, broker)
    latest = documents.latest_version(hub.engine, merchant)
    bus = run(hub.connect)
    try:
        rows = state.collect(bus, merchant)
    finally:
        bus.stop()
    if as_json:
        click.echo(json.dumps({"merchant": merchant, "latest_config": latest, "kiosks": {
            k: {"state": r.state, "reported": r.reported, "up_to_date": r.up_to_date(latest)} for k, r in rows.items()}},
            indent=2))
    else:
        click.echo("\n".join(state.render(rows, latest)))


COMMANDS = [config, keys, conflicts, fleet]
