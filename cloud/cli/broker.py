"""``stempel-hub broker-config`` and ``add-kiosk``: the broker's files and the kiosks' bundles."""

from __future__ import annotations

from pathlib import Path

import click

from cloud import provision
from cloud.broker import conf as broker_conf
from cloud.cli.context import HubContext, pass_hub, run


@click.command("broker-config")
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
@pass_hub
def broker_config(ctx: HubContext, port: int, bind: str | None, tls_port: int, cafile: str | None, certfile: str | None,
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
    hub = ctx.open()
    listeners, endpoint = _broker_listeners(port, bind, tls_port, cafile, certfile, keyfile, require_certificate,
                                            hub_host)
    backstop = provision.FIND if acl_backstop is None else None if acl_backstop == "none" else Path(acl_backstop)
    setup = run(lambda: provision.broker_config(hub.engine, hub.data_dir, listeners, endpoint, hub_workers,
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


@click.command("add-kiosk")
@click.option("--merchant", required=True, help="Merchant id (created by `stempel-hub init`).")
@click.option("--kiosk", required=True, help="Kiosk id, a-z 0-9 '-' (e.g. counter-1).")
@click.option("--broker-host", required=True, help="The broker's address as the kiosk reaches it.")
@click.option("--broker-port", type=int, help="[8883 with --ca-file, else 1883]")
@click.option("--ca-file", type=click.Path(dir_okay=False), help="CA certificate (PEM) of the TLS listener; turns TLS on.")
@click.option("--client-cert", type=click.Path(dir_okay=False), help="Kiosk certificate, for require_certificate.")
@click.option("--client-key", type=click.Path(dir_okay=False), help="Its private key.")
@click.option("--out", type=click.Path(file_okay=False), help="Bundle folder. [<data-dir>/bundles/<merchant>-<kiosk>]")
@click.option("--rotate-password", is_flag=True, help="Re-provision a known kiosk with a new password.")
@pass_hub
def add_kiosk(ctx: HubContext, merchant: str, kiosk: str, broker_host: str, broker_port: int | None, ca_file: str | None,
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
    hub = ctx.open()
    port = broker_port or (8883 if ca_file else 1883)
    endpoint = provision.Endpoint(broker_host, port, *(Path(p) if p else None for p in (ca_file, client_cert, client_key)))
    done = run(lambda: provision.add_kiosk(hub.engine, hub.data_dir, merchant, kiosk, endpoint,
                                            Path(out) if out else None, rotate_password))
    verb = "new password for" if done.rotated else "created"
    click.echo(f"broker account {done.username} {verb} kiosk {kiosk} of {merchant}; bundle in {done.bundle}")
    click.echo(f"next: copy {done.bundle}/* to /etc/stempel/ on the kiosk; install {hub.data_dir / 'broker'}"
               "/stempel.{passwd,acl} on the broker host and `systemctl reload mosquitto`")
    if not (hub.data_dir / "broker" / "hub-mqtt.toml").exists():
        click.echo("note: the hub has no broker account yet: run `stempel-hub broker-config`", err=True)


COMMANDS = [broker_config, add_kiosk]
