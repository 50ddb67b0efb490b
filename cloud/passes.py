"""Hub-side pass work: enrol a member and sign their pass, revoke a pass, export the public keys.

Everything a command is given (ids, names, the base URL, the output file's type) is checked
before anything touches the database or the disk, so a bad argument leaves neither a row
nor a file behind. A pass is one serial (``cloud.pass_store``); a member keeps their id, and
so their balance, across every pass they are given.
"""

from __future__ import annotations

import base64
import logging
import os
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cloud import balanced_ids, pass_store
from cloud.keys import KeyStore
from cloud.models import Member, Merchant, PassRecord, SigningKey
from cloud.programs import program_of
from cloud.store import active_keys, get_merchant
from kiosk.common.errors import ConfigError
from kiosk.protocol import qr
from kiosk.protocol.ids import check_id
from kiosk.protocol.passes import (SIGNATURE_DIGITS, TOKEN_VERSION, KeysDocument, PassSigner, check_base_url,
                                   check_serial, pass_url, public_key_entry)

log = logging.getLogger(__name__)

MAX_NAME = 200  # the column width of shop and member names
MEMBER_ID_CHARS = 10  # what new_member_id makes
SERIAL_BUDGET = 4  # serial characters a merchant's QR must leave room for: its first 1,048,575 passes


def new_member_id() -> str:
    """'m' + 9 random base32 characters (45 bits): short in the QR, unguessable enough."""
    return "m" + base64.b32encode(os.urandom(6)).decode("ascii")[:9].lower()


def check_name(value: str, what: str) -> str:
    """Return *value* if it is a printable name of 1-200 characters; ConfigError otherwise.

    Control characters (NUL among them: PostgreSQL refuses it in text) and line breaks have
    no place in a name on a screen or a card.
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must not be empty")
    if len(value) > MAX_NAME:
        raise ConfigError(f"{what} has {len(value)} characters; at most {MAX_NAME} are allowed")
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")), None)
    if bad is not None:
        raise ConfigError(f"{what} contains the control character U+{ord(bad):04X}; use printable characters only")
    return value


def check_pass_fits(base_url: str, merchant: str) -> None:
    """Refuse a merchant whose passes could not fit QR version 7 at level M.

    The longest pass of the merchant has a generated member id and a 4-character serial;
    past version 7 the modules get too small for a phone screen at the counter.
    """
    token = ".".join([TOKEN_VERSION, "x" * 6, merchant, "m" * MEMBER_ID_CHARS, "7" * SERIAL_BUDGET]).upper()
    version = qr.make_qr(pass_url(base_url, f"{token}.{'9' * SIGNATURE_DIGITS}"), warn=False).version
    if version > qr.MAX_VERSION:
        raise ConfigError(f"passes of merchant {merchant!r} at {base_url} would need QR version {version} "
                          f"(at most {qr.MAX_VERSION} reads reliably): use a shorter merchant id or base URL")


def init_merchant(engine: Engine, keys: KeyStore, merchant: str, name: str, base_url: str) -> tuple[bool, str]:
    """Create the merchant and its first signing key; returns (created, kid). Idempotent.

    The key file is written only once the merchant's row is in the transaction, and removed
    again if the commit fails, so a refused merchant leaves no orphan key behind.
    """
    check_id(merchant, "merchant")
    check_name(name, "shop name")
    base_url = check_base_url(base_url)
    check_pass_fits(base_url, merchant)
    written: str | None = None
    try:
        with Session(engine) as session, session.begin():
            if get_merchant(session, merchant) is not None:
                return False, active_keys(session, merchant)[0].kid
            session.add(Merchant(id=merchant, name=name, base_url=base_url))
            session.flush()
            entry = public_key_entry(merchant, keys.create(merchant).public_key())
            written = entry.kid
            session.add(SigningKey(kid=entry.kid, merchant_id=merchant, public_key=entry.public_key))
    except BaseException:
        if written is not None:
            keys.discard(merchant, written)
        raise
    log.info("passes.merchant_created", extra={"merchant": merchant, "kid": written})
    return True, written


@dataclass(frozen=True)
class IssuedPass:
    member: str
    url: str
    path: Path | None
    qr_version: int
    serial: str | None = None


def issue_pass(engine: Engine, keys: KeyStore, merchant: str, member_name: str | None, out: Path,
               member_id: str | None = None) -> IssuedPass:
    """Enrol a member (with *member_id*, or a new id) and write their pass QR to *out* (.png or .svg).

    If *member_id* is already a member of *merchant*, this is a new pass for them (see
    :func:`reissue_pass`); a member of another merchant is refused.
    """
    check_id(merchant, "merchant")
    if member_name is not None:
        check_name(member_name, "member name")
    member = check_id(member_id, "member") if member_id is not None else _balanced_id(engine, merchant, None)
    return _issue(engine, keys, merchant, member, member_name, Path(out), must_exist=False)


def _balanced_id(engine: Engine, merchant: str, now: datetime | None) -> str:
    """A new member id that keeps the running A/B tests balanced at *now* (cloud/balanced_ids.py)."""
    with Session(engine) as session:
        return balanced_ids.member_id(session, merchant, program_of(engine, merchant),
                                      now or datetime.now(timezone.utc), new_member_id)


def reissue_pass(engine: Engine, keys: KeyStore, merchant: str, member: str, out: Path) -> IssuedPass:
    """A new pass (a new serial) for an existing member of *merchant*: same member id, so the
    balance carries over. The member's older passes stay valid until revoked."""
    check_id(merchant, "merchant")
    return _issue(engine, keys, merchant, check_id(member, "member"), None, Path(out), must_exist=True)


def _issue(engine: Engine, keys: KeyStore, merchant: str, member: str, name: str | None, out: Path | None,
           must_exist: bool, profile: dict | None = None) -> IssuedPass:
    """Sign the next pass of *member* (enrolled with *name* and *profile* columns if new) and,
    with *out*, write its QR image inside the transaction."""
    if out is not None:
        qr.check_suffix(out)
    written = False
    try:
        with Session(engine) as session, session.begin():
            shop = _merchant_or_fail(session, merchant)
            row = _member(session, merchant, member, name, must_exist, profile)
            serial = pass_store.new_pass(session, row, enrolled=row in session.new).serial
            signer = PassSigner(merchant, keys.load(merchant, active_keys(session, merchant)[0].kid))
            url = signer.url(shop.base_url, member, serial)
            if out is not None:
                qr.save(url, out)  # inside the transaction: a failed write leaves no pass behind
                written = True
    except BaseException:
        if written and out is not None:
            out.unlink(missing_ok=True)  # the commit failed: no image of a pass the hub does not know
        raise
    log.info("passes.issued", extra={"merchant": merchant, "member": member, "serial": serial})
    return IssuedPass(member, url, out, qr.make_qr(url).version, serial)


def enrol(engine: Engine, keys: KeyStore, merchant: str, name: str, profile: dict,
          now: datetime | None = None) -> IssuedPass:
    """Enrol a new member from the join page with *profile* (``Member`` columns: email,
    birthday, consents, ...) and sign their first pass; no image is written (the card page
    draws the QR). The id keeps the programme's running A/B tests balanced at *now*
    (cloud/balanced_ids.py)."""
    check_id(merchant, "merchant")
    check_name(name, "first name")
    return _issue(engine, keys, merchant, _balanced_id(engine, merchant, now), name, None, must_exist=False, profile=profile)


def reissue_url(engine: Engine, keys: KeyStore, merchant: str, member: str) -> IssuedPass:
    """A new pass for an existing member, as a URL only (the owner pages show its card)."""
    check_id(merchant, "merchant")
    return _issue(engine, keys, merchant, check_id(member, "member"), None, None, must_exist=True)


def _member(session: Session, merchant: str, member: str, name: str | None, must_exist: bool,
            profile: dict | None = None) -> Member:
    row = session.get(Member, member)
    if row is not None and row.merchant_id != merchant:
        raise ConfigError(f"member {member!r} is not a member of {merchant!r}; a pass is issued only by the "
                          "member's own merchant")
    if row is None and must_exist:
        raise ConfigError(f"merchant {merchant!r} has no member {member!r}; leave out --member to enrol a new one")
    if row is not None and row.erased_at is not None:
        raise ConfigError(f"member {member!r} was erased; enrol them again as a new member")
    if row is None:
        if name is None:
            raise ConfigError("a new member needs a name (--member-name)")
        row = Member(id=member, merchant_id=merchant, name=name, **(profile or {}))
        session.add(row)
    return row


@dataclass(frozen=True)
class Revoked:
    """What a revocation changed: the serials now revoked, and whether the version-1 pass was."""

    serials: list[str]
    legacy: bool

    def __bool__(self) -> bool:
        return bool(self.serials) or self.legacy

    def names(self) -> list[str]:
        return [f"pass {s}" for s in self.serials] + (["the version-1 pass"] if self.legacy else [])


def revoke_member(engine: Engine, merchant: str, member: str) -> Revoked:
    """Revoke every valid pass of *member* (lost phone, abuse); the member and their balance
    stay, so a pass issued afterwards works. Empty if every pass already was revoked."""
    check_id(merchant, "merchant")
    check_id(member, "member")
    with Session(engine) as session, session.begin():
        _merchant_or_fail(session, merchant)
        row = session.get(Member, member)
        if row is None or row.merchant_id != merchant:
            raise ConfigError(f"merchant {merchant!r} has no member {member!r}")
        done = pass_store.revoke_member_passes(session, row)
        return Revoked([r.serial for r in done if r.serial], any(r.version == 1 for r in done))


def revoke_serial(engine: Engine, merchant: str, serial: str) -> Revoked:
    """Revoke the one pass *serial* of *merchant*; empty if it already was revoked."""
    check_id(merchant, "merchant")
    serial = check_serial(serial.lower())
    with Session(engine) as session, session.begin():
        _merchant_or_fail(session, merchant)
        before = session.scalar(select(PassRecord.revoked_at).where(
            PassRecord.merchant_id == merchant, PassRecord.serial == serial))
        if pass_store.revoke_serial(session, merchant, serial) is None:
            raise ConfigError(f"merchant {merchant!r} has no pass {serial!r}")
        return Revoked([] if before is not None else [serial], False)


def export_keys(engine: Engine, merchant: str) -> KeysDocument:
    """The public keys, revocations and base URL a kiosk of *merchant* needs."""
    with Session(engine) as session:
        shop = _merchant_or_fail(session, merchant)
        entries = [{"kid": k.kid, "merchant": merchant, "public_key": k.public_key}
                   for k in active_keys(session, merchant)]
        legacy = list(session.scalars(select(Member.id).where(Member.merchant_id == merchant,
                                                              Member.revoked.is_(True)).order_by(Member.id)))
        serials = pass_store.revoked_serials(session, merchant)
    return KeysDocument.model_validate({"merchant": merchant, "keys": entries, "revoked_members": legacy,
                                        "revoked_passes": serials, "base_url": _kiosk_base_url(shop)})


def _kiosk_base_url(shop: Merchant) -> str | None:
    """The base URL kiosks match passes against; None (any host) for one stored before base
    URLs were checked that is not in the canonical form."""
    try:
        return check_base_url(shop.base_url)
    except ConfigError:
        log.warning("passes.base_url_unchecked", extra={"merchant": shop.id, "base_url": shop.base_url})
        return None


def _merchant_or_fail(session: Session, merchant: str) -> Merchant:
    shop = get_merchant(session, merchant)
    if shop is None:
        raise ConfigError(f"unknown merchant {merchant!r}: run `stempel-hub init --merchant {merchant} --name ...` first")
    return shop
