"""Reading declarative files: TOML in, and validation errors out as messages a person can act on."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from kiosk.common.errors import ConfigError


def read_toml(path: Path, missing_hint: str) -> dict:
    """Parse a TOML file; raises ConfigError naming the file (and *missing_hint* if it is absent)."""
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file ({missing_hint})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def explain(exc: ValidationError, source: str, whole: str = "document") -> ConfigError:
    """Turn pydantic's errors into one ConfigError that names each field (or *whole*) and the fix."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or whole
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling"
        lines.append(f"{source}: [{where}] {msg}")
    return ConfigError("\n".join(lines))
