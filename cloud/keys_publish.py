"""The ``keys`` document for kiosks: the merchant's pass keys and revocations, versioned, signed.

Built from ``cloud.passes.export_keys`` (the ``stempel.keys.v1`` key list), given the next
version for the merchant (kept in ``keys_revisions``, so a version never repeats even if
the broker forgets the retained copy) and signed with the hub key whose public half each
kiosk got in its bundle. A kiosk ignores a version at or below the one it holds, so a
stale retained copy cannot bring back a revoked pass or a retired key.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from cloud.hubkey import hub_signing_key
from cloud.passes import export_keys
from cloud.store import Base, Merchant, create_tables, utcnow
from kiosk.common.bus import Bus
from kiosk.common.errors import BusError
from kiosk.protocol import signed, topics

PUBLISH_TIMEOUT = 10.0


class KeysRevision(Base):
    """Every keys document the hub has signed; the newest per merchant is the one retained."""

    __tablename__ = "keys_revisions"
    __table_args__ = (UniqueConstraint("merchant_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(32), index=True)
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def build_keys_document(engine: Engine, data_dir: Path, merchant: str) -> dict:
    """Record and sign the next keys document of *merchant*; raises ConfigError for an unknown merchant."""
    create_tables(engine)
    keys = export_keys(engine, merchant)
    key = hub_signing_key(data_dir)
    with Session(engine) as session, session.begin():
        # Lock the merchant row (FOR UPDATE is not allowed on an aggregate in PostgreSQL), so two
        # publishers cannot hand out the same version.
        session.execute(select(Merchant.id).where(Merchant.id == merchant).with_for_update())
        current = session.scalar(select(func.coalesce(func.max(KeysRevision.version), 0))
                                 .where(KeysRevision.merchant_id == merchant))
        doc = signed.sign({**keys.model_dump(mode="json", by_alias=True), "version": (current or 0) + 1,
                           "issued_at": utcnow().isoformat()}, key)
        session.add(KeysRevision(merchant_id=merchant, version=doc["version"], document=json.dumps(doc)))
    return doc


def publish_keys(bus: Bus, doc: dict, timeout: float = PUBLISH_TIMEOUT) -> str:
    """Publish retained (QoS 1) on the merchant's ``keys`` topic and wait for the PUBACK; returns the topic."""
    topic = topics.keys(doc["merchant"])
    if not bus.publish(topic, json.dumps(doc).encode(), qos=1, retain=True).wait(timeout):
        raise BusError(f"the broker did not confirm {topic} within {timeout:.0f} s; publish the keys again")
    return topic
