"""The broker files in the hub's data dir (``<data_dir>/broker/``), rewritten whole from the database.

``stempel.passwd`` and ``stempel.acl`` are derived, never edited: every account lives in
the ``broker_accounts`` table, so writing them again gives the same files. Each file is
written to a temporary name and renamed, so a broker reloading mid-write never reads half.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cloud.broker.acl import render_acl
from cloud.broker.conf import ACL_NAME, PASSWD_NAME
from cloud.broker.passwd import render_passwd
from cloud.fleet_store import all_accounts
from kiosk.atomic import write_atomic


class BrokerFiles:
    """Where the hub keeps what the broker host needs, and the hub's own MQTT credentials."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir).absolute() / "broker"  # hub-mqtt.toml names files by this path

    @property
    def passwd(self) -> Path:
        return self.root / PASSWD_NAME

    @property
    def acl(self) -> Path:
        return self.root / ACL_NAME

    @property
    def conf(self) -> Path:
        return self.root / "mosquitto-stempel.conf"

    @property
    def hub_settings(self) -> Path:
        return self.root / "hub-mqtt.toml"

    def hub_password(self, username: str) -> Path:
        return self.root / "hub" / f"{username}.password"

    def regenerate(self, engine: Engine) -> None:
        """Rewrite the password and ACL files from every account in the database."""
        with Session(engine) as session:
            rows = all_accounts(session)
            passwd = render_passwd((row.username, row.password_hash) for row in rows)
            acl = render_acl(row.account() for row in rows)
        write_private(self.passwd, passwd)
        write_private(self.acl, acl)


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Atomically replace *path* with *text*, readable by the owner only (secrets, hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, text.encode(), mode)
