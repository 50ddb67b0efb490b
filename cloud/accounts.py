"""Owner logins and API tokens of the hub's web.

Passwords are hashed with argon2id (argon2-cffi's defaults); a failed login costs the same
whether or not the login exists (a dummy hash is verified), so the login form does not tell
who has an account. API tokens are shown once and stored as SHA-256: they are long random
strings, so a slow hash adds nothing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cloud.models import ApiToken, User, utcnow
from cloud.store import get_merchant
from kiosk.common.errors import ConfigError
from kiosk.protocol.ids import check_id

ROLES = ("owner", "staff")
MIN_PASSWORD = 10
LOGIN = re.compile(r"[A-Za-z0-9._+@-]{3,254}")
TOKEN_PREFIX = "stp_"

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("not a password of anyone")


@dataclass(frozen=True)
class Account:
    """Who is signed in: what the web keeps in the session and checks on every owner page."""

    id: int
    login: str
    merchant: str
    role: str


def add_user(engine: Engine, merchant: str, login: str, role: str, password: str) -> Account:
    """Create a login for *merchant*; raises ConfigError naming what is wrong."""
    check_id(merchant, "merchant")
    if not LOGIN.fullmatch(login or ""):
        raise ConfigError("the login is 3-254 characters: letters, digits and . _ + @ -")
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password needs at least {MIN_PASSWORD} characters")
    with Session(engine) as session, session.begin():
        if get_merchant(session, merchant) is None:
            raise ConfigError(f"unknown merchant {merchant!r}: run `stempel-hub init` first")
        if session.scalar(select(User.id).where(User.login == login.lower())) is not None:
            raise ConfigError(f"the login {login!r} exists already")
        user = User(merchant_id=merchant, login=login.lower(), role=role, password_hash=_hasher.hash(password))
        session.add(user)
        session.flush()
        return Account(user.id, user.login, merchant, role)


def authenticate(engine: Engine, login: str, password: str) -> Account | None:
    """The account for *login* and *password*, or None; equal work either way."""
    with Session(engine) as session:
        user = session.scalars(select(User).where(User.login == (login or "").strip().lower())).first()
        try:
            _hasher.verify(user.password_hash if user else _DUMMY, password or "")
        except (VerificationError, InvalidHashError):
            return None
        if user is None:
            return None
        if _hasher.check_needs_rehash(user.password_hash):
            with session.begin():
                user.password_hash = _hasher.hash(password)
        return Account(user.id, user.login, user.merchant_id, user.role)


def load_account(engine: Engine, user_id: int) -> Account | None:
    """The account behind a session (None if the user was removed since)."""
    with Session(engine) as session:
        user = session.get(User, user_id)
        return Account(user.id, user.login, user.merchant_id, user.role) if user else None


def create_token(engine: Engine, merchant: str, name: str, by: str) -> str:
    """A new API token for *merchant*; the plain token is returned once, only its hash kept."""
    name = (name or "").strip()
    if not 1 <= len(name) <= 80:
        raise ConfigError("name the token (1-80 characters), e.g. 'till' or 'export script'")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with Session(engine) as session, session.begin():
        session.add(ApiToken(merchant_id=merchant, name=name, token_hash=_digest(token), created_by=by))
    return token


def tokens(engine: Engine, merchant: str) -> list[ApiToken]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(select(ApiToken).where(ApiToken.merchant_id == merchant)
                                    .order_by(ApiToken.id)))


def revoke_token(engine: Engine, merchant: str, token_id: int) -> bool:
    with Session(engine) as session, session.begin():
        row = session.get(ApiToken, token_id)
        if row is None or row.merchant_id != merchant:
            return False
        row.revoked_at = row.revoked_at or utcnow()
        return True


def token_merchant(engine: Engine, token: str) -> str | None:
    """The merchant a bearer *token* belongs to, or None (unknown, revoked or malformed)."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    with Session(engine) as session:
        row = session.scalars(select(ApiToken).where(ApiToken.token_hash == _digest(token))).first()
        return row.merchant_id if row is not None and row.revoked_at is None else None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
