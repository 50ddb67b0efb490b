"""Shop and member names, base URLs and pass serials on SQLite and PostgreSQL, through the CLI.

What must hold: a name the database would refuse (too long, NUL, control characters) or a
base URL that cannot prefix a pass is refused with the field named, before anything touches
the database or the disk: no traceback, no row, no orphan key file, no pass image. A key
file whose row does not commit is removed. Serials count up per merchant on both backends.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.keys import KeyStore
from cloud.models import PassRecord
from cloud.passes import init_merchant, issue_pass
from cloud.db import open_store
from cloud.models import Member, Merchant
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from kiosk.common.errors import ConfigError
from kiosk.protocol.passes import key_id

HUB = str(Path(sys.executable).parent / "stempel-hub")
LONG = "Café " + "x" * 196  # 201 characters


def cli(data: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HUB, "--data-dir", str(data), "--db-url", url, *args], capture_output=True, text=True,
                          timeout=60)


def rows(url: str, model) -> int:
    engine = open_store(url)
    try:
        with Session(engine) as session:
            return session.scalar(select(func.count()).select_from(model))
    finally:
        engine.dispose()


@pytest.mark.slow  # the stempel-hub CLI
@pytest.mark.parametrize("args, error", [
    (["--name", LONG], "shop name has 201 characters; at most 200"),
    (["--name", "Cafe\x1b[2JRosa"], "control character U+001B"),
    (["--name", "Cafe\nRosa"], "control character U+000A"),
    (["--name", "   "], "shop name must not be empty"),
    (["--name", "Cafe Rosa", "--base-url", "ftp://stempel.example"], "base URL"),
    (["--name", "Cafe Rosa", "--base-url", "https://stempel.example/?card="], "base URL"),
    (["--name", "Cafe Rosa", "--base-url", "https://a-very-long-host-name-for-a-loyalty-hub.example"],
     "would need QR version 8"),
])
def test_init_refuses_bad_input_before_the_database_or_the_disk(tmp_path, hub_url, args, error):
    merchant = "cafe-rosa-" + "x" * 19  # 29 characters: the longest that fits at https://stempel.example
    done = cli(tmp_path, hub_url, "init", "--merchant", merchant, *args)
    assert done.returncode == 2 and error in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "keys").exists() or not any((tmp_path / "keys").rglob("*.pem"))
    assert rows(hub_url, Merchant) == 0
    ok = cli(tmp_path, hub_url, "init", "--merchant", merchant, "--name", "Café " + "x" * 195)  # 200 is fine
    assert ok.returncode == 0, ok.stderr


@pytest.mark.slow  # the stempel-hub CLI
def test_member_names_are_checked_before_a_member_or_an_image_exists(tmp_path, hub_url):
    assert cli(tmp_path, hub_url, "init", "--merchant", "cafe-rosa", "--name", "Cafe Rosa").returncode == 0
    for name, error in [(LONG, "member name has 201 characters"), ("Anna\x7f", "U+007F"), ("", "must not be empty")]:
        done = cli(tmp_path, hub_url, "issue-pass", "--merchant", "cafe-rosa", "--member-name", name,
                   "--out", str(tmp_path / "p.png"))
        assert done.returncode == 2 and error in done.stderr and "Traceback" not in done.stderr, done.stderr
    wrong_type = cli(tmp_path, hub_url, "issue-pass", "--merchant", "cafe-rosa", "--member-name", "Anna",
                     "--out", str(tmp_path / "p.jpg"))
    assert wrong_type.returncode == 2 and ".png or .svg" in wrong_type.stderr
    assert not list(tmp_path.glob("p.*"))
    assert (rows(hub_url, Member), rows(hub_url, PassRecord)) == (0, 0)
    with pytest.raises(ConfigError, match="U\\+0000"):  # NUL cannot come through argv; it can through the API
        engine = open_store(hub_url)
        try:
            issue_pass(engine, KeyStore(tmp_path), "cafe-rosa", "Anna\x00", tmp_path / "p.png")
        finally:
            engine.dispose()


class FixedKeyStore(KeyStore):
    """Hands out the same key every time: the second merchant's key row then clashes with the first's."""

    KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))

    def create(self, merchant: str) -> Ed25519PrivateKey:
        folder = self.root / merchant
        folder.mkdir(parents=True, exist_ok=True)
        pem = self.KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        (folder / f"{key_id(self.KEY.public_key())}.pem").write_bytes(pem)
        return self.KEY


def test_a_key_whose_row_does_not_commit_is_removed(tmp_path, hub_url):
    engine = open_store(hub_url)
    keys = FixedKeyStore(tmp_path)
    try:
        init_merchant(engine, keys, "cafe-rosa", "Cafe Rosa", "https://stempel.example")
        with pytest.raises(IntegrityError):
            init_merchant(engine, keys, "other-shop", "Other", "https://stempel.example")
        assert not (tmp_path / "keys" / "other-shop").exists()  # no orphan key, not even its folder
        assert [p.parent.name for p in (tmp_path / "keys").rglob("*.pem")] == ["cafe-rosa"]
        with Session(engine) as session:
            assert session.get(Merchant, "other-shop") is None
    finally:
        engine.dispose()


@pytest.mark.slow  # the stempel-hub CLI
def test_serials_count_up_per_merchant_and_revocations_name_serials(tmp_path, hub_url):
    for merchant in ("cafe-rosa", "other-shop"):
        assert cli(tmp_path, hub_url, "init", "--merchant", merchant, "--name", merchant).returncode == 0

    def issue(merchant: str, *who: str) -> tuple[str, str]:
        out = cli(tmp_path, hub_url, "issue-pass", "--merchant", merchant, *who, "--out", str(tmp_path / "p.png"))
        assert out.returncode == 0, out.stderr
        words = out.stdout.split()
        return words[1].rstrip(":"), words[3]

    anna, first = issue("cafe-rosa", "--member-name", "Anna")
    _, second = issue("cafe-rosa", "--member", anna)
    _, other = issue("other-shop", "--member-name", "Zoe")
    assert (first, second, other) == ("b", "c", "b")  # numbered per merchant
    assert cli(tmp_path, hub_url, "revoke-pass", "--merchant", "cafe-rosa", "--serial", "b").returncode == 0
    keys = json.loads(cli(tmp_path, hub_url, "export-keys", "--merchant", "cafe-rosa").stdout)
    assert (keys["revoked_passes"], keys["revoked_members"]) == (["b"], [])
    keys = json.loads(cli(tmp_path, hub_url, "export-keys", "--merchant", "other-shop").stdout)
    assert keys["revoked_passes"] == []  # the other shop's pass "b" is another pass
