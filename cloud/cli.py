"""``stempel-hub``: the hub's admin commands (keys and passes for now)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from cloud import passes, provision
from cloud.broker_client import admin_settings, broker_options, connect
from cloud.broker import conf as broker_conf
from cloud.keys import KeyStore
from cloud.store import default_url, open_store
from kiosk.common.errors import StempelError

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
@click.option("--base-url", default=DEFAULT_BASE_URL, show_default=True,
              help="Public URL of the hub, http(s)://HOST[:PORT][/PATH] (in pass QRs).")
@click.pass_obj
def init(hub, merchant: str, name: str, base_url: str) -> None:
    """Create a merchant and its signing key (idempotent)."""
    hub = _open(hub)
    created, kid = _run(lambda: passes.init_merchant(hub.engine, hub.keys, merchant, name, base_url))
    verb = "created" if created else "already exists"
    click.echo(f"merchant {merchant} {verb}; signing key {kid}; data in {hub.data_dir}")


@main.command("issue-pass")
@click.option("--merchant", required=True)
@click.option("--member-name", help="The customer's name, for the owner's records (needed for a new member).")
@click.option("--member", "member_id", help="A new pass for this existing member: a new serial, the same balance.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="FILE.png or FILE.svg")
@click.pass_obj
def issue_pass(hub, merchant: str, member_name: str | None, member_id: str | None, out: str) -> None:
    """Enrol a member (or give an existing one a new pass) and write the pass QR.

    \b
    A lost phone: `revoke-pass --member ID`, then `issue-pass --member ID --out new.png`,
    then `keys publish`: the old pass is refused, the new one carries the balance on.
    """
    hub = _open(hub)
    if member_id is None and member_name is None:
        raise click.UsageError("a new member needs --member-name (or give --member ID for a new pass)")
    if member_id is not None:
        issued = _run(lambda: passes.reissue_pass(hub.engine, hub.keys, merchant, member_id, Path(out)))
    else:
        issued = _run(lambda: passes.issue_pass(hub.engine, hub.keys, merchant, member_name, Path(out)))
    click.echo(f"member {issued.member}: pass {issued.serial} written to {issued.path} (QR version {issued.qr_version})")
    if issued.qr_version > passes.qr.MAX_VERSION:
        click.echo(f"warning: QR version {issued.qr_version} is too dense for some phone screens", err=True)
    click.echo(issued.url)


@main.command("revoke-pass")
@click.option("--merchant", required=True)
@click.option("--member", help="Revoke every pass of this member (the id issue-pass printed).")
@click.option("--serial", help="Revoke only this pass (the serial issue-pass printed).")
@click.pass_obj
def revoke_pass(hub, merchant: str, member: str | None, serial: str | None) -> None:
    """Refuse a pass from now on; the member and their balance stay (then publish the keys)."""
    if (member is None) == (serial is None):
        raise click.UsageError("give exactly one of --member and --serial")
    hub = _open(hub)
    if serial is not None:
        label, done = f"pass {serial}", _run(lambda: passes.revoke_serial(hub.engine, merchant, serial))
    else:
        label, done = f"member {member}", _run(lambda: passes.revoke_member(hub.engine, merchant, member))
    if not done:
        click.echo(f"{label}: already revoked, nothing changed")
        return
    click.echo(f"{label}: revoked {', '.join(done.names())}; kiosks refuse it once they have the new key list "
               f"(`stempel-hub keys publish --merchant {merchant}`)")


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


@main.command("broker-config")
@click.option("--port", default=1883, show_default=True, help="Plain MQTT listener; 0 for none (TLS only).")
@click.option("--bind", help="Address the plain listener binds to. [every interface; 127.0.0.1 with TLS]")
@click.option("--tls-port", default=8883, show_default=True, help="TLS listener, when --certfile is given.")
@click.option("--cafile", help="CA certificate (PEM) as a path on the broker host (and on the hub, for its TLS).")
@click.option("--certfile", help="Server certificate (PEM) on the broker host; enables the TLS listener.")
@click.option("--keyfile", help="Server key (PEM) on the broker host.")
@click.option("--require-certificate", is_flag=True, help="TLS clients must also show a certificate signed by --cafile.")
@click.option("--install-dir", default=str(broker_conf.DEFAULT_INSTALL_DIR), show_default=True,
              help="Where the password and ACL files will live on the broker host.")
@click.option("--acl-backstop", help="Mosquitto's dynamic-security plugin on the broker host, loaded with no "
              "accounts so that a broken ACL file denies everything; 'none' to leave it out. [found on this machine]")
@click.option("--hub-workers", default=1, show_default=True, help="Hub accounts stempel-hub-1..N, one per ingest worker.")
@click.option("--hub-host", default="127.0.0.1", show_default=True, help="The broker's address as the hub reaches it.")
@click.pass_obj
def broker_config(hub, port: int, bind: str | None, tls_port: int, cafile: str | None, certfile: str | None,
                  keyfile: str | None, require_certificate: bool, install_dir: str, acl_backstop: str | None,
                  hub_workers: int, hub_host: str) -> None:
    """Write the Mosquitto files for the fleet and the hub's own credentials (idempotent).

    \b
    Writes <data-dir>/broker/: mosquitto-stempel.conf, stempel.passwd, stempel.acl,
    stempel-dynsec.json, hub-mqtt.toml (how the hub connects; its ingest_group is secret)
    and hub/*.password. Then, on the broker host:
      sudo install -d -m 0750 -g mosquitto INSTALL_DIR
      sudo install -m 0640 -g mosquitto stempel.passwd stempel.acl stempel-dynsec.json INSTALL_DIR/
      sudo install -m 0644 mosquitto-stempel.conf /etc/mosquitto/conf.d/
      sudo systemctl restart mosquitto
    and start worker N with systemd/stempel-hub-ingest@.service: `systemctl enable --now stempel-hub-ingest@N`.
    With TLS (--certfile), the plain listener is bound to 127.0.0.1: it serves only a hub on
    the broker host; a hub elsewhere (--hub-host) connects over TLS and needs --cafile.
    """
    hub = _open(hub)
    listeners, endpoint = _broker_listeners(port, bind, tls_port, cafile, certfile, keyfile, require_certificate,
                                            hub_host)
    backstop = provision.FIND if acl_backstop is None else None if acl_backstop == "none" else Path(acl_backstop)
    setup = _run(lambda: provision.broker_config(hub.engine, hub.data_dir, listeners, endpoint, hub_workers,
                                                 Path(install_dir), backstop))
    for name in setup.new_accounts:
        click.echo(f"hub account {name}: password in {setup.files.hub_password(name)}")
    click.echo(f"broker files written to {setup.files.root}; install them as `stempel-hub broker-config --help` shows")
    if backstop is None:
        click.echo("warning: no --acl-backstop: if the ACL file is ever broken, a reload lets every client "
                   "read and write every topic", err=True)


def _broker_listeners(port: int, bind: str | None, tls_port: int, cafile: str | None, certfile: str | None,
                      keyfile: str | None, require_certificate: bool, hub_host: str):
    """The listeners and how the hub reaches them: plaintext leaves the broker host only without TLS."""
    if (certfile is None) != (keyfile is None) or (require_certificate and not cafile):
        raise click.UsageError("TLS needs --certfile and --keyfile (and --cafile for --require-certificate)")
    if port == 0 and certfile is None:
        raise click.UsageError("--port 0 leaves no listener: give --certfile/--keyfile for TLS")
    if certfile is None:
        return [broker_conf.Listener(port, bind)], provision.Endpoint(hub_host, port)
    bind = bind or "127.0.0.1"
    if port and not broker_conf.is_loopback(bind):
        raise click.UsageError(f"with TLS the plain listener is for the broker's own host: --bind {bind} is not a "
                               "loopback address (use 127.0.0.1 or ::1, or --port 0 for no plain listener)")
    tls = broker_conf.TlsFiles(Path(cafile) if cafile else None, Path(certfile), Path(keyfile), require_certificate)
    listeners = ([broker_conf.Listener(port, bind)] if port else []) + [broker_conf.Listener(tls_port, None, tls)]
    if port and broker_conf.is_loopback(hub_host):
        return listeners, provision.Endpoint(hub_host, port)
    if not cafile:
        raise click.UsageError(f"the hub reaches the broker at {hub_host} over TLS: give --cafile (the CA that "
                               "signed the broker's certificate; the hub reads it at the same path)")
    return listeners, provision.Endpoint(hub_host, tls_port, Path(cafile))


@main.command("add-kiosk")
@click.option("--merchant", required=True, help="Merchant id (created by `stempel-hub init`).")
@click.option("--kiosk", required=True, help="Kiosk id, a-z 0-9 '-' (e.g. counter-1).")
@click.option("--broker-host", required=True, help="The broker's address as the kiosk reaches it.")
@click.option("--broker-port", type=int, help="[8883 with --ca-file, else 1883]")
@click.option("--ca-file", type=click.Path(dir_okay=False), help="CA certificate (PEM) of the TLS listener; turns TLS on.")
@click.option("--client-cert", type=click.Path(dir_okay=False), help="Kiosk certificate, for require_certificate.")
@click.option("--client-key", type=click.Path(dir_okay=False), help="Its private key.")
@click.option("--out", type=click.Path(file_okay=False), help="Bundle folder. [<data-dir>/bundles/<merchant>-<kiosk>]")
@click.option("--rotate-password", is_flag=True, help="Re-provision a known kiosk with a new password.")
@click.pass_obj
def add_kiosk(hub, merchant: str, kiosk: str, broker_host: str, broker_port: int | None, ca_file: str | None,
              client_cert: str | None, client_key: str | None, out: str | None, rotate_password: bool) -> None:
    """Give a kiosk its broker account and write its config bundle.

    \b
    The broker password and ACL files in <data-dir>/broker/ are rewritten. Then:
      1. copy the bundle's files to /etc/stempel/ on the kiosk
         (`sudo install -m 0640 -g stempel BUNDLE/* /etc/stempel/`)
         and run `systemctl restart stempel-kiosk` there;
      2. on the broker host, install stempel.passwd and stempel.acl as
         `stempel-hub broker-config --help` shows, and `systemctl reload mosquitto`
         (SIGHUP: the files are re-read, connected clients stay connected).
    """
    hub = _open(hub)
    port = broker_port or (8883 if ca_file else 1883)
    endpoint = provision.Endpoint(broker_host, port, *(Path(p) if p else None for p in (ca_file, client_cert, client_key)))
    done = _run(lambda: provision.add_kiosk(hub.engine, hub.data_dir, merchant, kiosk, endpoint,
                                            Path(out) if out else None, rotate_password))
    verb = "new password for" if done.rotated else "created"
    click.echo(f"broker account {done.username} {verb} kiosk {kiosk} of {merchant}; bundle in {done.bundle}")
    click.echo(f"next: copy {done.bundle}/* to /etc/stempel/ on the kiosk; install {hub.data_dir / 'broker'}"
               "/stempel.{passwd,acl} on the broker host and `systemctl reload mosquitto`")
    if not (hub.data_dir / "broker" / "hub-mqtt.toml").exists():
        click.echo("note: the hub has no broker account yet: run `stempel-hub broker-config`", err=True)


@main.command()
@click.option("--mqtt-config", type=click.Path(dir_okay=False, path_type=Path),
              help="hub-mqtt.toml from `stempel-hub broker-config`: broker, ingest group, accounts.")
@click.option("--worker", default=1, show_default=True, help="With --mqtt-config: use account stempel-hub-N.")
@click.option("--host", help="Broker host. [127.0.0.1]")
@click.option("--port", type=int, help="Broker port. [1883]")
@click.option("--username", help="Broker account of this worker.")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--ca-file", type=click.Path(dir_okay=False, path_type=Path), help="CA (PEM) of a TLS listener.")
@click.option("--cert-file", type=click.Path(dir_okay=False, path_type=Path), help="Client certificate (PEM).")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), help="Client key (PEM).")
@click.option("--worker-id", help="MQTT client id; keep it stable per worker. [the username, else stempel-ingest-1]")
@click.option("--group", envvar="STEMPEL_INGEST_GROUP", help="Shared subscription group. [stempel-ingest]")
@click.option("--session-expiry", default=3600, show_default=True,
              help="Seconds the broker keeps an absent worker's unacknowledged messages.")
@click.option("--max-event-ahead", "ahead_minutes", type=click.IntRange(0, 24 * 60), default=5, show_default=True,
              envvar="STEMPEL_HUB_MAX_EVENT_AHEAD_MINUTES", help="Refuse events dated more minutes ahead of the hub.")
@click.option("--max-event-age", "age_days", type=click.IntRange(1, 36500), default=3650, show_default=True,
              envvar="STEMPEL_HUB_MAX_EVENT_AGE_DAYS", help="Refuse events dated more days before the hub's clock.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--crash-after-commits", type=int, hidden=True, envvar="STEMPEL_TEST_CRASH_AFTER_COMMITS")
@click.pass_obj
def ingest(hub, mqtt_config, worker, host, port, username, password_file, ca_file, cert_file, key_file,
           worker_id, group, session_expiry, ahead_minutes, age_days, verbose, crash_after_commits) -> None:
    """Store kiosk events from MQTT (shared subscription; run several for more throughput)."""
    from datetime import timedelta

    from cloud.events import EventStore
    from cloud.ingest import bus_settings, hub_mqtt_settings, serve
    from kiosk.common import logs
    from kiosk.protocol.event_schema import ClockWindow
    from kiosk.protocol.topics import INGEST_GROUP

    logs.setup(verbose)
    hub = _open(hub)
    url = hub.engine.url.render_as_string(hide_password=False)
    hub.engine.dispose()
    base = _run(lambda: hub_mqtt_settings(mqtt_config, worker)) if mqtt_config else {}
    given = {"host": host, "port": port, "username": username, "password_file": password_file,
             "ca_file": ca_file, "group": group}
    opts = {**{"host": "127.0.0.1", "port": 1883, "group": INGEST_GROUP, "tls": False, "username": None,
               "password_file": None, "ca_file": None}, **base, **{k: v for k, v in given.items() if v is not None}}
    group = opts.pop("group")
    worker_id = worker_id or opts["username"] or f"stempel-ingest-{worker}"
    settings = _run(lambda: bus_settings(**opts, worker_id=worker_id, cert_file=cert_file, key_file=key_file,
                                         session_expiry=session_expiry))
    window = ClockWindow(future=timedelta(minutes=ahead_minutes), past=timedelta(days=age_days))
    store = _run(lambda: EventStore.open(url, window=window))
    click.echo(f"ingest worker {worker_id} on {settings.host}:{settings.port}, database {hub.engine.url!r}; "
               "Ctrl-C stops", err=True)
    serve(store, settings, worker_id=worker_id, group=group, crash_after_commits=crash_after_commits)


@main.group()
def config() -> None:
    """Fleet configuration: push a programme to every kiosk of a merchant (or one kiosk)."""


@config.command("push")
@click.argument("program_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--merchant", required=True)
@click.option("--kiosk", help="Only this kiosk (an override that takes precedence over the merchant-wide one).")
@click.option("--wait", "wait_seconds", type=float, default=0, help="Wait up to this long for kiosks to report.")
@broker_options
@click.pass_obj
def config_push(hub, program_file, merchant, kiosk, wait_seconds, mqtt_config, host, port, username,
                password_file, ca_file, connect_timeout) -> None:
    """Validate, version, sign and publish PROGRAM_FILE (TOML) as the desired programme."""
    from cloud import fleet_config
    from kiosk.rules import load_program

    hub = _open(hub)
    program = _run(lambda: load_program(program_file))
    settings = _run(lambda: admin_settings(mqtt_config, host, port, username, password_file, ca_file,
                                           "stempel-hub-admin"))
    bus = _run(lambda: connect(settings, connect_timeout))
    try:
        doc = _run(lambda: fleet_config.prepare(hub.engine, hub.data_dir, merchant, program, kiosk))
        topic = _run(lambda: fleet_config.publish(bus, doc))
        click.echo(f"programme {program.name!r} is version {doc['version']} on {topic}")
        if wait_seconds > 0:
            from cloud.fleet_status import collect, render

            rows = collect(bus, merchant, settle=min(wait_seconds, 2.0), timeout=wait_seconds)
            click.echo("\n".join(render(rows, doc["version"] if not kiosk else 0)))
    finally:
        bus.stop()


@main.group()
def keys() -> None:
    """Pass-verification keys and revocations for the kiosks."""


@keys.command("publish")
@click.option("--merchant", required=True)
@broker_options
@click.pass_obj
def keys_publish(hub, merchant, mqtt_config, host, port, username, password_file, ca_file, connect_timeout) -> None:
    """Sign and publish the merchant's public keys and revoked passes (retained) to its kiosks."""
    from cloud.keys_publish import build_keys_document, publish_keys

    hub = _open(hub)
    settings = _run(lambda: admin_settings(mqtt_config, host, port, username, password_file, ca_file,
                                           "stempel-hub-admin"))
    bus = _run(lambda: connect(settings, connect_timeout))
    try:
        doc = _run(lambda: build_keys_document(hub.engine, hub.data_dir, merchant))
        topic = _run(lambda: publish_keys(bus, doc))
    finally:
        bus.stop()
    revoked = len(doc.get("revoked_passes", [])) + len(doc["revoked_members"])
    click.echo(f"keys version {doc['version']} ({len(doc['keys'])} keys, {revoked} revoked passes) on {topic}")


@main.command()
@click.option("--merchant", required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def conflicts(hub, merchant, as_json) -> None:
    """Members whose balance went below zero when offline kiosks' ledgers merged."""
    from cloud.events import EventStore

    hub = _open(hub)
    url = hub.engine.url.render_as_string(hide_password=False)
    store = _run(lambda: EventStore.open(url))
    try:
        rows = store.conflicts(merchant)
    finally:
        store.close()
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


@main.group()
def fleet() -> None:
    """The merchant's kiosks as the broker sees them."""


@fleet.command("status")
@click.option("--merchant", required=True)
@click.option("--json", "as_json", is_flag=True)
@broker_options
@click.pass_obj
def fleet_status(hub, merchant, as_json, mqtt_config, host, port, username, password_file, ca_file,
                 connect_timeout) -> None:
    """Presence, software and config versions, outbox depth, and whether each kiosk is up to date."""
    from cloud.fleet_config import latest_version
    from cloud.fleet_status import collect, render

    hub = _open(hub)
    latest = latest_version(hub.engine, merchant) if _has_table(hub.engine, "config_revisions") else 0
    settings = _run(lambda: admin_settings(mqtt_config, host, port, username, password_file, ca_file,
                                           "stempel-hub-admin"))
    bus = _run(lambda: connect(settings, connect_timeout))
    try:
        rows = collect(bus, merchant)
    finally:
        bus.stop()
    if as_json:
        click.echo(json.dumps({"merchant": merchant, "latest_config": latest, "kiosks": {
            k: {"state": r.state, "reported": r.reported, "up_to_date": r.up_to_date(latest)} for k, r in rows.items()}},
            indent=2))
    else:
        click.echo("\n".join(render(rows, latest)))


@main.group()
def db() -> None:
    """The hub database's schema (Alembic migrations)."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Bring the database to the current schema (every hub command also does this at start)."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from cloud import schema

    params = ctx.find_root().params
    data_dir = _data_dir(params.get("data_dir"))
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = create_engine(params.get("db_url") or default_url(data_dir))
    try:
        was = _run(lambda: schema.upgrade(engine))
        head = schema.head_revision()
    except OperationalError as exc:
        click.echo(f"error: cannot reach the hub database: {exc.orig}", err=True)
        sys.exit(2)
    else:
        click.echo(f"database was at {was}, now at {head}" if was != head else f"database already at {head}")
    finally:
        engine.dispose()


def _has_table(engine, name: str) -> bool:
    from sqlalchemy import inspect

    return inspect(engine).has_table(name)


def _open(factory) -> Hub:
    return _run(factory)


def _run(fn):
    try:
        return fn()
    except StempelError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
