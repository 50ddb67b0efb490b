"""Provisioning: give a kiosk (or a hub process) broker credentials and the files to use them.

``add_kiosk`` records the kiosk's account, writes its bundle (kiosk.toml, the plaintext
password, keys.json, the CA) and regenerates the broker's password and ACL files.
``broker_config`` makes the hub's own accounts, the secret ingest group and the Mosquitto
snippet. Both are idempotent: run again, they rewrite the same derived files.

An account is committed only after the broker files that include it were checked and
written (cloud/broker/files.py): a refused file leaves the database and the old files as
they were, so one bad name can never block the next ``add-kiosk``.
"""

from __future__ import annotations

import json
import logging
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cloud.broker.accounts import Account, hub_username, kiosk_account
from cloud.broker.conf import (
    DEFAULT_INSTALL_DIR,
    EMPTY_DYNSEC,
    Listener,
    find_dynsec_plugin,
    is_loopback,
    plain_listeners,
    render_conf,
)
from cloud.broker.files import BrokerFiles, write_private
from cloud.broker.passwd import hash_password, new_password
from cloud.hubkey import hub_keys_json
from cloud.models import BrokerAccount, utcnow
from cloud.passes import export_keys
from cloud.members import HUB_KIOSK
from cloud.store import all_accounts, find_kiosk, get_merchant
from kiosk.common.errors import ConfigError, ProvisioningError
from kiosk.protocol.joinurl import check_join_url
from kiosk.protocol import topics

log = logging.getLogger(__name__)

BUNDLE_OPTIONAL = ("ca.crt", "client.crt", "client.key")


@dataclass(frozen=True)
class Endpoint:
    """How a client reaches the broker; TLS when *ca_file* is set (a file on the hub machine)."""

    host: str
    port: int
    ca_file: Path | None = None
    cert_file: Path | None = None  # client certificate, for listeners with require_certificate
    key_file: Path | None = None


@dataclass(frozen=True)
class Provisioned:
    username: str
    bundle: Path
    rotated: bool
    join_url: str | None = None  # the join page the kiosk's idle screen shows (None: too long for it)


def add_kiosk(engine: Engine, data_dir: Path, merchant: str, kiosk: str, endpoint: Endpoint,
              out: Path | None = None, rotate: bool = False) -> Provisioned:
    """Create kiosk credentials and bundle; raises ConfigError (bad id, unknown merchant) or
    ProvisioningError (already provisioned without *rotate*, username taken)."""
    if kiosk == HUB_KIOSK:
        raise ConfigError(f"kiosk id {HUB_KIOSK!r} is reserved for the hub's own ledger entries "
                          "(the owner's adjustments); choose another kiosk id")
    account = kiosk_account(merchant, kiosk)
    keys_json = export_keys(engine, merchant).to_json()  # fails early for an unknown merchant
    _check_files(endpoint)
    _check_reachable(BrokerFiles(data_dir), endpoint)
    password = new_password()
    bundle = out or Path(data_dir) / "bundles" / account.username
    with Session(engine) as session, session.begin():
        row = find_kiosk(session, merchant, kiosk)
        if row is not None and not rotate:
            raise ProvisioningError(f"kiosk {kiosk} of {merchant} already has broker credentials: pass "
                                    "--rotate-password for a new password and bundle (the old one stops working)")
        taken = session.get(BrokerAccount, account.username)
        if taken is not None and taken is not row:
            raise ProvisioningError(f"broker username {account.username!r} already belongs to "
                                    f"{taken.role} {taken.kiosk_id or ''} of {taken.merchant_id or 'the hub'}: "
                                    "choose another kiosk id")
        existed = row is not None
        if row is None:
            row = BrokerAccount(username=account.username, role="kiosk", merchant_id=merchant, kiosk_id=kiosk)
            session.add(row)
        row.password_hash, row.rotated_at = hash_password(password), utcnow()
        join = kiosk_join_url(get_merchant(session, merchant).base_url, merchant, kiosk)
        write_broker_files(session, BrokerFiles(data_dir))
        write_bundle(bundle, merchant, kiosk, account.username, password, endpoint, keys_json,
                     hub_keys_json(data_dir), join_url=join)
    return Provisioned(account.username, bundle, rotated=existed, join_url=join)


def kiosk_join_url(base_url: str, merchant: str, kiosk: str) -> str | None:
    """The join page the kiosk's idle screen shows as a QR: ``<base>/j/<merchant>.<kiosk>``, so
    sign-ups show which kiosk they came from (cloud/web/public.py). If that is too long for the
    display's code (version 3), the shop's ``<base>/j/<merchant>``; if that is too, None (the
    idle screen then shows the shop's name; logged)."""
    base = base_url.rstrip("/")
    for url in (f"{base}/j/{merchant}.{kiosk}", f"{base}/j/{merchant}"):
        try:
            return check_join_url(url)
        except ConfigError:
            continue
    log.warning("provision.join_url_too_long", extra={"merchant": merchant, "kiosk": kiosk, "base_url": base})
    return None


def regenerate_broker_files(engine: Engine, files: BrokerFiles) -> None:
    """Rewrite the password and ACL files from every account in the database."""
    with Session(engine) as session:
        write_broker_files(session, files)


def write_broker_files(session: Session, files: BrokerFiles) -> None:
    """Rewrite both files from the accounts *session* sees (inside a caller's transaction, so a
    refused file rolls back the account that caused it)."""
    rows = all_accounts(session)
    files.write([Account(r.username, r.role, r.merchant_id, r.kiosk_id) for r in rows],  # type: ignore[arg-type]
                [(r.username, r.password_hash) for r in rows])


def write_bundle(bundle: Path, merchant: str, kiosk: str, username: str, password: str,
                 endpoint: Endpoint, keys_json: str, hub_keys: str, join_url: str | None = None) -> None:
    """Everything the kiosk needs in /etc/stempel/; paths in kiosk.toml are relative to it.
    *join_url*, when given, goes into ``[kiosk]`` (the idle screen shows it as a QR)."""
    bundle.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in BUNDLE_OPTIONAL:
        (bundle / name).unlink(missing_ok=True)
    mqtt = {"host": endpoint.host, "port": endpoint.port, "username": username,
            "password_file": "mqtt.password", "tls": endpoint.ca_file is not None}
    copies = {"ca_file": (endpoint.ca_file, "ca.crt"), "cert_file": (endpoint.cert_file, "client.crt"),
              "key_file": (endpoint.key_file, "client.key")}
    for key, (source, name) in copies.items():
        if source is not None:
            write_private(bundle / name, Path(source).read_text())
            mqtt[key] = name
    lines = [f"# Stempel kiosk {kiosk} of merchant {merchant}, written by `stempel-hub add-kiosk`.",
             "# Copy this folder's files to /etc/stempel/ on the kiosk (`install -m 0640 -g stempel`),",
             "# then `systemctl restart stempel-kiosk`. Paths are relative to this file.",
             "[kiosk]", f"id = {json.dumps(kiosk)}", f"merchant = {json.dumps(merchant)}",
             'keys_file = "keys.json"', 'hub_keys_file = "hub-keys.json"']
    if join_url is not None:
        lines.append(f"join_url = {json.dumps(join_url)}  # the idle screen's QR: the hub's join page")
    lines += ["", "[mqtt]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in mqtt.items()]
    write_private(bundle / "mqtt.password", password + "\n")
    write_private(bundle / "keys.json", keys_json + "\n", mode=0o644)
    write_private(bundle / "hub-keys.json", hub_keys + "\n", mode=0o644)
    write_private(bundle / "kiosk.toml", "\n".join(lines) + "\n")


@dataclass(frozen=True)
class HubSetup:
    files: BrokerFiles
    new_accounts: list[str]
    ingest_group: str


FIND = Path("<find>")  # broker_config's acl_backstop: the plugin where this machine has it


def broker_config(engine: Engine, data_dir: Path, listeners: list[Listener], hub: Endpoint,
                  hub_workers: int = 1, install_dir: Path = DEFAULT_INSTALL_DIR,
                  acl_backstop: Path | None = FIND) -> HubSetup:
    """Ensure hub accounts ``stempel-hub-1..N`` (+ ``stempel-hub-admin``) and write every broker file.

    *acl_backstop* is Mosquitto's dynamic-security plugin as a path on the broker host (see
    cloud/broker/conf.py); by default where this machine has it; None leaves it out.
    """
    if hub_workers < 1:
        raise ProvisioningError("--hub-workers must be at least 1 (one account per hub process)")
    if acl_backstop == FIND:
        acl_backstop = _local_backstop()
    conf = render_conf(listeners, install_dir, backstop=acl_backstop)  # refuses bad paths before any write
    files = BrokerFiles(data_dir)
    files.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    new = [hub_username(n) for n in range(0, hub_workers + 1) if _ensure_hub_account(engine, files, n)]
    group = _existing_ingest_group(files) or f"{topics.INGEST_GROUP}-{secrets.token_hex(8)}"
    write_private(files.hub_settings, _hub_settings(files, hub, group, hub_workers))
    if acl_backstop is not None:
        write_private(files.dynsec, EMPTY_DYNSEC, mode=0o644)
    else:
        files.dynsec.unlink(missing_ok=True)
    write_private(files.conf, conf, mode=0o644)
    regenerate_broker_files(engine, files)
    return HubSetup(files, new, group)


def _local_backstop() -> Path:
    found = find_dynsec_plugin()
    if found is None:
        raise ProvisioningError("Mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so) is not on this "
                                "machine: give its path on the broker host with --acl-backstop (without it a "
                                "broken ACL file lets every client read everything after a reload), or "
                                "--acl-backstop none to go without")
    return found


def _ensure_hub_account(engine: Engine, files: BrokerFiles, number: int) -> bool:
    """Create account *number* (or re-issue it if its password file is lost); True if new."""
    username = hub_username(number)
    path = files.hub_password(username)
    with Session(engine) as session, session.begin():
        row = session.get(BrokerAccount, username)
        if row is not None and path.exists():
            return False
        password = new_password()
        if row is None:
            row = BrokerAccount(username=username, role="hub")
            session.add(row)
        row.password_hash, row.rotated_at = hash_password(password), utcnow()
        write_private(path, password + "\n")
    return True


def _existing_ingest_group(files: BrokerFiles) -> str | None:
    try:
        return tomllib.loads(files.hub_settings.read_text())["mqtt"]["ingest_group"]
    except (FileNotFoundError, KeyError, tomllib.TOMLDecodeError):
        return None


def _hub_settings(files: BrokerFiles, hub: Endpoint, group: str, workers: int) -> str:
    lines = ["# MQTT settings of the hub's processes, written by `stempel-hub broker-config`.",
             "# ingest_group is a secret: a kiosk that knew it could join the shared subscription",
             "# and make the broker drop every n-th event (see cloud/broker/acl.py).",
             "[mqtt]", f"host = {json.dumps(hub.host)}", f"port = {hub.port}",
             f"ingest_group = {json.dumps(group)}", f"tls = {'true' if hub.ca_file else 'false'}"]
    if hub.ca_file:
        lines.append(f"ca_file = {json.dumps(str(hub.ca_file))}")
    lines += ["", "# One account per hub process (client id = username): worker N uses stempel-hub-N,",
              "# the admin commands (config push, keys publish, fleet status) stempel-hub-admin.",
              "[accounts]"]
    for n in range(0, workers + 1):
        lines.append(f"{json.dumps(hub_username(n))} = {json.dumps(str(files.hub_password(hub_username(n))))}")
    return "\n".join(lines) + "\n"


def _check_reachable(files: BrokerFiles, endpoint: Endpoint) -> None:
    """Refuse a plaintext bundle for a broker whose plain listener serves its own host only."""
    if endpoint.ca_file is not None or is_loopback(endpoint.host) or not files.conf.exists():
        return
    plain = plain_listeners(files.conf.read_text())
    if not any(port == endpoint.port and (bind is None or not is_loopback(bind)) for port, bind in plain):
        raise ProvisioningError(f"the broker has no plain listener on port {endpoint.port} for {endpoint.host} "
                                "(with TLS configured, plain MQTT serves the broker's own host only): "
                                "give --ca-file (and the TLS port) for this kiosk")


def _check_files(endpoint: Endpoint) -> None:
    for path in (endpoint.ca_file, endpoint.cert_file, endpoint.key_file):
        if path is not None and not Path(path).is_file():
            raise ProvisioningError(f"{path}: no such file (give the PEM file to copy into the bundle)")
    if (endpoint.cert_file is None) != (endpoint.key_file is None):
        raise ProvisioningError("--client-cert and --client-key go together")

