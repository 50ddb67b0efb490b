"""The fleet's broker accounts in the hub database: the source the broker files are made from.

A row per kiosk (its merchant and kiosk id) and per hub process. Only the ``$7$`` hash is
kept; the plaintext exists once, in the kiosk's bundle or the hub's 0600 password file.
Because every account is here, the password and ACL files can be regenerated whole.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, UniqueConstraint, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from cloud.broker.accounts import Account
from cloud.store import Base, create_tables, utcnow


class BrokerAccount(Base):
    __tablename__ = "broker_accounts"
    __table_args__ = (UniqueConstraint("merchant_id", "kiosk_id"),)
    username: Mapped[str] = mapped_column(String(80), primary_key=True)
    role: Mapped[str] = mapped_column(String(8))  # "kiosk" | "hub"
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), nullable=True)
    kiosk_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    rotated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def account(self) -> Account:
        return Account(self.username, self.role, self.merchant_id, self.kiosk_id)  # type: ignore[arg-type]


def ensure_tables(engine: Engine) -> None:
    """Create the fleet table if this database predates it (open_store ran before our import)."""
    create_tables(engine)


def all_accounts(session: Session) -> list[BrokerAccount]:
    return list(session.scalars(select(BrokerAccount).order_by(BrokerAccount.username)))


def find_kiosk(session: Session, merchant: str, kiosk: str) -> BrokerAccount | None:
    return session.scalars(select(BrokerAccount).where(BrokerAccount.merchant_id == merchant,
                                                       BrokerAccount.kiosk_id == kiosk)).first()
