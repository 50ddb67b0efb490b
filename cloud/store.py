"""The hub database through SQLAlchemy: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import DateTime, ForeignKey, String, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Merchant(Base):
    __tablename__ = "merchants"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    base_url: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SigningKey(Base):
    """A merchant's pass-signing key; the private half lives in a 0600 file, never in the DB."""

    __tablename__ = "signing_keys"
    kid: Mapped[str] = mapped_column(String(16), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    public_key: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Member(Base):
    __tablename__ = "members"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    revoked: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'hub.sqlite3'}"


def open_store(url: str) -> Engine:
    """Create the engine and the tables (Alembic takes over once the schema is in use)."""
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    return engine


def get_merchant(session: Session, merchant_id: str) -> Merchant | None:
    return session.get(Merchant, merchant_id)


def active_keys(session: Session, merchant_id: str) -> list[SigningKey]:
    return list(session.scalars(select(SigningKey).where(SigningKey.merchant_id == merchant_id,
                                                         SigningKey.active.is_(True))))
