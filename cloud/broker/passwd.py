"""Mosquitto password files, written in Python rather than by shelling out to ``mosquitto_passwd``.

The hub may run on a machine without Mosquitto, and regenerating the whole file from the
database must give the same file each time; so hashes are made here, once, and stored.
The format is Mosquitto 2's ``$7$``: PBKDF2-HMAC-SHA512 over a 12-byte salt, written as
``user:$7$<iterations>$<base64 salt>$<base64 64-byte hash>`` (what ``mosquitto_passwd``
writes; ``tests/test_broker_acl.py`` checks both directions against the real tools).

Passwords are 32 random URL-safe characters (192 bits), so the iteration count guards
nothing that guessing could reach; Mosquitto's default of 101 keeps CONNECT cheap on a Pi.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable

from cloud.broker.accounts import USERNAME_PATTERN
from kiosk.common.errors import ConfigError

ITERATIONS = 101
SALT_BYTES = 12
HASH_PATTERN = re.compile(r"\$7\$[1-9][0-9]{0,8}\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}")


def new_password() -> str:
    """A fresh random broker password (plaintext goes only into a kiosk bundle or a 0600 file)."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The ``$7$`` hash Mosquitto 2 accepts in a ``password_file``."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """True if *password* matches a ``$7$`` hash (False for any other or malformed format)."""
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, actual)


def render_passwd(entries: Iterable[tuple[str, str]]) -> str:
    """The password file for ``(username, hash)`` pairs, sorted so regeneration is stable."""
    return "".join(f"{user}:{hashed}\n" for user, hashed in sorted(entries))


def parse_passwd(text: str) -> dict[str, str]:
    """``{username: hash}`` of a password file in the form we write, one ``name:$7$...`` a line.

    A line Mosquitto would read differently (a ``:`` or newline in a name, a control
    character, a second line for one name) raises ConfigError naming the line.
    """
    if text and not text.endswith("\n"):
        raise ConfigError("password file: does not end with a newline")
    found: dict[str, str] = {}
    for number, line in enumerate(text.split("\n")[:-1], 1):
        user, sep, hashed = line.partition(":")
        if not (sep and USERNAME_PATTERN.fullmatch(user) and HASH_PATTERN.fullmatch(hashed)):
            raise ConfigError(f"password file line {number}: {line[:40]!r} is not 'name:$7$...'")
        if user in found:
            raise ConfigError(f"password file line {number}: a second line for {user}")
        found[user] = hashed
    return found


def check_passwd(text: str, entries: Iterable[tuple[str, str]]) -> None:
    """Raise ConfigError unless *text* reads back as exactly these ``(username, hash)`` pairs."""
    pairs = list(entries)
    intended = dict(pairs)
    if len(intended) != len(pairs):
        raise ConfigError("two accounts share a broker username: refusing to write the password file")
    found = parse_passwd(text)
    if found != intended:
        users = sorted(u for u in set(found) | set(intended) if found.get(u) != intended.get(u))
        raise ConfigError(f"the password file would not hold exactly the hub's accounts (accounts {users[:3]}): "
                          "refusing to write it")
