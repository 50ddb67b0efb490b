"""The broker files in the hub's data dir (``<data_dir>/broker/``), rewritten whole from the database.

``stempel.passwd`` and ``stempel.acl`` are derived, never edited: every account lives in
the ``broker_accounts`` table, so writing them again gives the same files. cloud/provision.py
reads the table and hands the accounts to ``BrokerFiles.write``: this folder knows nothing of
the database. Each file is written to a temporary name and renamed, so a broker reloading
mid-write never reads half.

Neither is written unless the exact text reads back (cloud/broker/acl.py, passwd.py) into
exactly the accounts and topics in the database: a file Mosquitto misreads at a reload can
switch its ACL off (cloud/broker/conf.py). A refused write leaves the old files in place.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cloud.broker.accounts import Account
from cloud.broker.acl import check_acl, render_acl
from cloud.broker.conf import ACL_NAME, DYNSEC_NAME, PASSWD_NAME
from cloud.broker.passwd import check_passwd, render_passwd
from kiosk.common.atomic import write_atomic
from kiosk.common.errors import ConfigError


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
    def dynsec(self) -> Path:
        return self.root / DYNSEC_NAME

    @property
    def conf(self) -> Path:
        return self.root / "mosquitto-stempel.conf"

    @property
    def hub_settings(self) -> Path:
        return self.root / "hub-mqtt.toml"

    def hub_password(self, username: str) -> Path:
        return self.root / "hub" / f"{username}.password"

    def write(self, accounts: list[Account], hashes: list[tuple[str, str]]) -> None:
        """Write the ACL for *accounts* and the password file for ``(username, hash)`` *hashes*.

        Raises ConfigError or ProvisioningError naming the account, and then writes neither file.
        """
        if sorted(a.username for a in accounts) != sorted(user for user, _ in hashes):
            raise ConfigError("the ACL and the password file would name different accounts: refusing to write them")
        acl, passwd = render_acl(accounts), render_passwd(hashes)
        check_acl(acl, accounts)  # both checked before either is written
        check_passwd(passwd, hashes)
        write_checked(self.acl, acl, lambda text: check_acl(text, accounts))  # ACL first: a new account
        write_checked(self.passwd, passwd, lambda text: check_passwd(text, hashes))  # gets in only with its block


def write_checked(path: Path, text: str, check: Callable[[str], None], mode: int = 0o600) -> None:
    """Atomically replace *path* with *text* after *check* passed on the very bytes written.

    Broker files are ASCII: anything else is refused rather than left to Mosquitto to decode.
    """
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"{path.name}: character {text[exc.start]!r} is not ASCII: refusing to write it") from None
    check(data.decode("ascii"))
    write_private(path, text, mode)


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Atomically replace *path* with *text*, readable by the owner only (secrets, hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, text.encode(), mode)
