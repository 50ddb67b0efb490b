"""Every pass the hub has issued, by serial: what a lost phone's pass is revoked by.

A member may hold several passes over time (a new phone, a printed card); each has its own
serial, numbered per merchant (``serial_text(number)``: 1-4 base32 characters for the first
million passes, so the QR stays small). Revoking a pass revokes its serial only; the member,
and their balance (folded from the events of the member id), carry on with the next pass.

Passes issued before serials existed (token version 1) are one per member and identical on
every re-issue, so they are revoked per member: ``members.revoked`` now means "the member's
version-1 pass is revoked". Such a pass gets a row here (``version`` 1, no serial) the first
time the hub touches its member again, so a later ``revoke-pass --member`` still finds it.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.models import Member, Merchant, PassRecord, utcnow
from kiosk.protocol.passes import serial_text


def new_pass(session: Session, member: Member, enrolled: bool) -> PassRecord:
    """Record the next version-2 pass of *member*'s merchant (*enrolled*: the member is new in
    this transaction, so holds no older pass); the caller commits.

    The merchant row is locked first, so two issuers cannot take the same number (on
    SQLite the write transaction serialises them, and the unique constraint backs it up).
    """
    merchant = member.merchant_id
    session.execute(select(Merchant.id).where(Merchant.id == merchant).with_for_update())
    if not enrolled:
        _remember_legacy_pass(session, member)
    last = session.scalar(select(func.coalesce(func.max(PassRecord.number), 0))
                          .where(PassRecord.merchant_id == merchant))
    row = PassRecord(merchant_id=merchant, member_id=member.id, version=2, number=(last or 0) + 1,
                     serial=serial_text((last or 0) + 1))
    session.add(row)
    session.flush()
    return row


def revoke_serial(session: Session, merchant: str, serial: str) -> PassRecord | None:
    """Revoke the pass *serial* of *merchant*; None if there is no such pass. Idempotent."""
    row = session.scalars(select(PassRecord).where(PassRecord.merchant_id == merchant,
                                                   PassRecord.serial == serial)).first()
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def revoke_member_passes(session: Session, member: Member) -> list[PassRecord]:
    """Revoke every pass of *member* that is still valid (its version-1 pass included);
    returns the passes this call revoked."""
    _remember_legacy_pass(session, member)
    rows = list(session.scalars(select(PassRecord).where(PassRecord.member_id == member.id,
                                                         PassRecord.revoked_at.is_(None))))
    for row in rows:
        row.revoked_at = utcnow()
        if row.version == 1:
            member.revoked = True
    return rows


def revoked_serials(session: Session, merchant: str) -> list[str]:
    """The serials of *merchant*'s revoked passes, oldest pass first."""
    return list(session.scalars(select(PassRecord.serial).where(
        PassRecord.merchant_id == merchant, PassRecord.version == 2, PassRecord.revoked_at.is_not(None))
        .order_by(PassRecord.number)))


def _remember_legacy_pass(session: Session, member: Member) -> None:
    """A member the hub enrolled before passes had serials holds a version-1 pass: record it
    (revoked if the old ``revoke-pass`` revoked the member) the first time we see the member."""
    if session.scalar(select(PassRecord.id).where(PassRecord.member_id == member.id).limit(1)) is not None:
        return
    session.add(PassRecord(merchant_id=member.merchant_id, member_id=member.id, version=1,
                           revoked_at=utcnow() if member.revoked else None))
    session.flush()
