"""Hub-side pass work: enrol a member and sign their pass, export the public keys."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cloud.keys import KeyStore
from cloud.store import Member, Merchant, SigningKey, active_keys, get_merchant
from kiosk.errors import ConfigError
from kiosk.protocol import qr
from kiosk.protocol.ids import check_id
from kiosk.protocol.passes import KeysDocument, PassSigner, public_key_entry


def new_member_id() -> str:
    """'m' + 9 random base32 characters (45 bits): short in the QR, unguessable enough."""
    return "m" + base64.b32encode(os.urandom(6)).decode("ascii")[:9].lower()


def init_merchant(engine: Engine, keys: KeyStore, merchant: str, name: str, base_url: str) -> tuple[bool, str]:
    """Create the merchant and its first signing key; returns (created, kid). Idempotent."""
    check_id(merchant, "merchant")
    with Session(engine) as session, session.begin():
        existing = get_merchant(session, merchant)
        if existing is not None:
            return False, active_keys(session, merchant)[0].kid
        key = keys.create(merchant)
        entry = public_key_entry(merchant, key.public_key())
        session.add(Merchant(id=merchant, name=name, base_url=base_url))
        session.add(SigningKey(kid=entry.kid, merchant_id=merchant, public_key=entry.public_key))
        return True, entry.kid


@dataclass(frozen=True)
class IssuedPass:
    member: str
    url: str
    path: Path
    qr_version: int


def issue_pass(engine: Engine, keys: KeyStore, merchant: str, member_name: str, out: Path,
               member_id: str | None = None) -> IssuedPass:
    """Enrol a member (or reuse *member_id*) and write their pass QR to *out* (.png or .svg)."""
    with Session(engine) as session, session.begin():
        shop = _merchant_or_fail(session, merchant)
        member = member_id or new_member_id()
        check_id(member, "member")
        if session.get(Member, member) is None:
            session.add(Member(id=member, merchant_id=merchant, name=member_name))
        signer = PassSigner(merchant, keys.load(merchant, active_keys(session, merchant)[0].kid))
        url = signer.url(shop.base_url, member)
    qr.save(url, out)
    return IssuedPass(member, url, Path(out), qr.make_qr(url).version)


def revoke_member(engine: Engine, merchant: str, member: str) -> bool:
    """Mark *member*'s pass revoked (lost phone, abuse); False if it already was."""
    with Session(engine) as session, session.begin():
        _merchant_or_fail(session, merchant)
        row = session.get(Member, member)
        if row is None or row.merchant_id != merchant:
            raise ConfigError(f"merchant {merchant!r} has no member {member!r}")
        if row.revoked:
            return False
        row.revoked = True
        return True


def export_keys(engine: Engine, merchant: str) -> KeysDocument:
    """The public keys and revocations a kiosk of *merchant* needs."""
    with Session(engine) as session:
        _merchant_or_fail(session, merchant)
        from sqlalchemy import select

        entries = [{"kid": k.kid, "merchant": merchant, "public_key": k.public_key}
                   for k in active_keys(session, merchant)]
        revoked = list(session.scalars(select(Member.id).where(Member.merchant_id == merchant,
                                                               Member.revoked.is_(True))))
    return KeysDocument.model_validate({"merchant": merchant, "keys": entries, "revoked_members": revoked})


def _merchant_or_fail(session: Session, merchant: str) -> Merchant:
    shop = get_merchant(session, merchant)
    if shop is None:
        raise ConfigError(f"unknown merchant {merchant!r}: run `stempel-hub init --merchant {merchant} --name ...` first")
    return shop
