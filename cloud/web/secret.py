"""The web's secret key (it signs session cookies): made on first start, kept in the data dir."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from kiosk.common.errors import ConfigError

FILE = "web-secret.key"


def secret_key(data_dir: Path) -> bytes:
    """The key in ``<data_dir>/web-secret.key`` (0600), created once; every worker reads the same."""
    path = Path(data_dir) / FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes().strip()
        if len(key) < 32:
            raise ConfigError(f"{path}: the web secret key is too short; delete the file to make a new one "
                              "(everyone is signed out)") from None
        return key
    key = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    return key
