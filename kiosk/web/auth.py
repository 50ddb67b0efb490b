"""The staff PIN, its lockout, and the till's bearer token.

The PIN is short (a cashier types it on a tablet), so what protects it is the lockout: after
``lockout_after`` wrong PINs in a row, every PIN — the right one too — is refused for
``lockout_seconds``. The count is one for the whole kiosk, not per address (a guesser on the
shop's Wi-Fi could change address at will), and kept in memory: a restart clears it, and
restarting the kiosk needs the owner's hands on the Pi, not the network. The ledger file is
left alone (a wrong PIN is not a loyalty event and should cost no fsync). The clock is the
kiosk's monotonic one, so tests move it by hand.

The PIN is stored as an argon2id hash (argon2-cffi, as the hub's logins) with parameters a
Pi verifies in a fraction of a second; the POS token as SHA-256: it is a long random string,
so a slow hash adds nothing (as the hub's API tokens).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Blueprint, redirect, render_template, request, session, url_for

from kiosk.common.errors import ConfigError
from kiosk.web import context

PIN = re.compile(r"[0-9]{4,12}")
# OWASP's argon2id floor (19 MiB, 2 passes): a Pi 4 verifies it in ~0.1 s; the hub's default
# (64 MiB) would make each try cost a noticeable share of the kiosk's memory.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

bp = Blueprint("auth", __name__)


def hash_pin(pin: str) -> str:
    """The argon2id hash of a staff PIN for ``[staff] pin_hash``; raises ConfigError for a bad PIN."""
    if not PIN.fullmatch(pin or ""):
        raise ConfigError("the staff PIN is 4 to 12 digits")
    return _hasher.hash(pin)


def new_pos_token() -> tuple[str, str]:
    """A new bearer token for the till and its SHA-256 for ``[staff] pos_token_sha256``.
    Show the token once (to whoever sets up the till); keep only the hash."""
    token = "pos_" + secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Verdict:
    ok: bool
    locked_for: float = 0.0  # seconds the screen stays locked (0: not locked)
    tries_left: int = 0


class PinGate:
    """Checks PINs; after *attempts* wrong ones in a row, refuses every PIN for *seconds*."""

    def __init__(self, pin_hash: str, attempts: int, seconds: float, monotonic: Callable[[], float]) -> None:
        self._hash = pin_hash
        self._attempts, self._seconds, self._now = attempts, seconds, monotonic
        self._lock = threading.Lock()
        self._failures = 0
        self._locked_until: float | None = None

    def locked_for(self) -> float:
        with self._lock:
            return self._locked_for()

    def _locked_for(self) -> float:
        if self._locked_until is None:
            return 0.0
        left = self._locked_until - self._now()
        if left <= 0:
            self._locked_until, self._failures = None, 0
            return 0.0
        return left

    def check(self, pin: str) -> Verdict:
        """Whether *pin* opens the screen now (one argon2 verification, held under the lock:
        concurrent guesses queue up and count one by one)."""
        with self._lock:
            left = self._locked_for()
            if left:
                return Verdict(False, locked_for=left)
            if _verify(self._hash, pin):
                self._failures = 0
                return Verdict(True)
            self._failures += 1
            if self._failures >= self._attempts:
                self._locked_until = self._now() + self._seconds
                return Verdict(False, locked_for=self._seconds)
            return Verdict(False, tries_left=self._attempts - self._failures)


def _verify(pin_hash: str, pin: str) -> bool:
    try:
        return _hasher.verify(pin_hash, pin or "")
    except (VerificationError, InvalidHashError):
        return False


def pin_required(view: Callable) -> Callable:
    """Staff pages: without a signed-in session, to the PIN page."""

    @functools.wraps(view)
    def guarded(*args, **kwargs):
        if not session.get("staff"):
            return redirect(url_for("auth.login"))
        return view(*args, **kwargs)

    return guarded


def minutes(seconds: float) -> str:
    whole = max(1, round(seconds))
    return f"{whole // 60} min {whole % 60:02d} s" if whole >= 60 else f"{whole} s"


@bp.route("/login", methods=["GET", "POST"])
def login():
    gate = context.gate()
    error, status = None, 200
    if request.method == "POST":
        verdict = gate.check(request.form.get("pin", "")[:64])
        if verdict.ok:
            session.clear()
            session["staff"] = True
            session.permanent = True
            return redirect(url_for("counter.index"))
        if verdict.locked_for:
            error, status = f"Too many wrong PINs. The staff screen is locked for {minutes(verdict.locked_for)}.", 429
        else:
            error, status = f"Wrong PIN. {verdict.tries_left} more tries before the screen locks.", 401
    elif gate.locked_for():
        error, status = f"Too many wrong PINs. The staff screen is locked for {minutes(gate.locked_for())}.", 429
    return render_template("login.html", error=error, locked=bool(gate.locked_for())), status


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    return redirect(url_for("auth.login"))


def bearer_ok(expected_sha256: str, header: str) -> bool:
    """Whether an ``Authorization`` header carries the till's token (compared in constant time)."""
    if not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(token_digest(header.removeprefix("Bearer ").strip()), expected_sha256)
