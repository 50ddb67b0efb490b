"""Fleet configuration on the hub: versioned, signed ``config/desired`` documents.

``prepare`` validates the programme with the kiosk's own schema (an invalid one never
leaves the hub), gives it the next version for its scope (merchant-wide, or one kiosk),
signs it with the hub key and records it; ``publish`` puts it on the retained topic, so
kiosks that are offline now get it when they connect.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from cloud.hubkey import hub_signing_key
from cloud.store import Base, Merchant, create_tables, utcnow
from kiosk.common.bus import MqttBus
from kiosk.common.errors import ConfigError
from kiosk.protocol import signed, topics
from kiosk.protocol.ids import check_id
from kiosk.rules.program import Program

PUBLISH_TIMEOUT = 10.0


class ConfigRevision(Base):
    """Every document the hub has issued; the newest per (merchant, kiosk) is the desired one."""

    __tablename__ = "config_revisions"
    __table_args__ = (UniqueConstraint("merchant_id", "kiosk_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(32), index=True)
    kiosk_id: Mapped[str] = mapped_column(String(32), default="")  # "" = merchant-wide
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def latest_version(engine: Engine, merchant: str, kiosk: str | None = None) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.coalesce(func.max(ConfigRevision.version), 0)).where(
            ConfigRevision.merchant_id == merchant, ConfigRevision.kiosk_id == (kiosk or ""))) or 0


def prepare(engine: Engine, data_dir: Path, merchant: str, program: Program, kiosk: str | None = None) -> dict:
    """Record and sign the next version of *merchant*'s (or *kiosk*'s) programme."""
    create_tables(engine)
    if kiosk is not None:
        check_id(kiosk, "kiosk")
    key = hub_signing_key(data_dir)
    with Session(engine) as session, session.begin():
        # Lock the merchant row so two pushes at once cannot take the same version.
        if session.get(Merchant, merchant, with_for_update=True) is None:
            raise ConfigError(f"unknown merchant {merchant!r}: run `stempel-hub init --merchant {merchant}` first")
        current = session.scalar(select(func.coalesce(func.max(ConfigRevision.version), 0)).where(
            ConfigRevision.merchant_id == merchant, ConfigRevision.kiosk_id == (kiosk or "")))
        doc = signed.sign({"schema": signed.CONFIG_SCHEMA, "merchant": merchant, "kiosk": kiosk,
                           "version": (current or 0) + 1,
                           "issued_at": utcnow().isoformat(), "program": program.model_dump(mode="json")}, key)
        session.add(ConfigRevision(merchant_id=merchant, kiosk_id=kiosk or "", version=doc["version"],
                                   document=json.dumps(doc)))
    return doc


def topic_for(doc: dict) -> str:
    if doc.get("kiosk"):
        return topics.kiosk_config_desired(doc["merchant"], doc["kiosk"])
    return topics.config_desired(doc["merchant"])


def publish(bus: MqttBus, doc: dict) -> str:
    """Publish retained (QoS 1) and wait for the broker's PUBACK; returns the topic."""
    topic = topic_for(doc)
    delivery = bus.publish(topic, json.dumps(doc).encode(), qos=1, retain=True)
    if not delivery.wait(PUBLISH_TIMEOUT):
        raise ConfigError(f"the broker did not confirm {topic} within {PUBLISH_TIMEOUT:.0f} s; "
                          "nothing reached the kiosks; push again (it issues the next version)")
    return topic
