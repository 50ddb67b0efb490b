"""Reading merchants, their pass keys and the fleet's broker accounts (the tables: cloud/models.py)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.models import BrokerAccount, Merchant, SigningKey


def get_merchant(session: Session, merchant_id: str) -> Merchant | None:
    return session.get(Merchant, merchant_id)


def active_keys(session: Session, merchant_id: str) -> list[SigningKey]:
    return list(session.scalars(select(SigningKey).where(SigningKey.merchant_id == merchant_id,
                                                         SigningKey.active.is_(True))))


def all_accounts(session: Session) -> list[BrokerAccount]:
    """Every broker account, by username: what the password and ACL files are made from."""
    return list(session.scalars(select(BrokerAccount).order_by(BrokerAccount.username)))


def find_kiosk(session: Session, merchant: str, kiosk: str) -> BrokerAccount | None:
    return session.scalars(select(BrokerAccount).where(BrokerAccount.merchant_id == merchant,
                                                       BrokerAccount.kiosk_id == kiosk)).first()
