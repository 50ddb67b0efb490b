"""Merchant signing keys on the hub's disk: Ed25519 private keys as PEM files, mode 0600."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.common.errors import KeyStoreError
from kiosk.protocol.passes import key_id


class KeyStore:
    """``<data_dir>/keys/<merchant>/<kid>.pem``; the directory is 0700, each file 0600."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "keys"

    def create(self, merchant: str) -> Ed25519PrivateKey:
        key = Ed25519PrivateKey.generate()
        folder = self.root / merchant
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"{key_id(key.public_key())}.pem"
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        return key

    def discard(self, merchant: str, kid: str) -> None:
        """Remove a key file whose database row was never committed (and its folder, if now empty)."""
        folder = self.root / merchant
        (folder / f"{kid}.pem").unlink(missing_ok=True)
        if folder.is_dir() and not any(folder.iterdir()):  # other keys of the merchant stay
            folder.rmdir()

    def load(self, merchant: str, kid: str) -> Ed25519PrivateKey:
        path = self.root / merchant / f"{kid}.pem"
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise KeyStoreError(f"{path}: signing key missing; restore it from backup or run `stempel-hub init`") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyStoreError(f"{path}: not an Ed25519 key")
        return key
