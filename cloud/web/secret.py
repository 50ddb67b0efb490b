"""The web's secret key (it signs session cookies): made on first start, kept in the data dir."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from kiosk.common.errors import ConfigError

FILE = "web-secret.key"


def secret_key(data_dir: Path) -> bytes:
    """The key in ``<data_dir>/web-secret.key`` (0600), created once; every process reads the same.

    Written whole to a temporary file and linked into place, so a process starting at the same
    moment (a web worker, ``automations run``) sees either no key or the whole key, and the
    first link wins."""
    path = Path(data_dir) / FILE
    if not path.exists():
        tmp = path.with_name(f".{FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_hex(32).encode())
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, path)  # fails if another process got there first: then theirs is the key
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_bytes().strip()
    if len(key) < 32:
        raise ConfigError(f"{path}: the web secret key is too short; delete the file to make a new one "
                          "(everyone is signed out)")
    return key
