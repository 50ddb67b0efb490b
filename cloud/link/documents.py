"""Signed documents out: programmes on ``config/desired`` and pass keys on ``keys``.

Each document gets the next version for its scope (a merchant's programme, one kiosk's
override, a merchant's keys), is signed with the hub key whose public half each kiosk got in
its bundle (cloud/hubkey.py), recorded (``config_revisions``, ``keys_revisions``: a version
never repeats even if the broker forgets the retained copy) and published retained (QoS 1),
so kiosks that are offline now get it when they connect. A kiosk ignores a version at or
below the one it holds, so a stale retained copy cannot bring back an old programme, a
revoked pass or a retired key. A programme is validated with the kiosk's own schema first:
an invalid one never leaves the hub.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cloud.hubkey import hub_signing_key
from cloud.models import ConfigRevision, KeysRevision, Merchant, utcnow
from cloud.passes import export_keys
from kiosk.common.bus import Bus
from kiosk.common.errors import BusError, ConfigError
from kiosk.protocol import signed, topics
from kiosk.protocol.ids import check_id
from kiosk.rules.program import Program

PUBLISH_TIMEOUT = 10.0


# -- programmes: config/desired ------------------------------------------------------------------
def latest_version(engine: Engine, merchant: str, kiosk: str | None = None) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.coalesce(func.max(ConfigRevision.version), 0)).where(
            ConfigRevision.merchant_id == merchant, ConfigRevision.kiosk_id == (kiosk or ""))) or 0


def prepare(engine: Engine, data_dir: Path, merchant: str, program: Program, kiosk: str | None = None,
            source: str | None = None, by: str | None = None) -> dict:
    """Record and sign the next version of *merchant*'s (or *kiosk*'s) programme; *source* is
    its TOML as written (the owner's editor shows it again), *by* who published it."""
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
                                   document=json.dumps(doc), source=source, created_by=by))
    return doc


def topic_for(doc: dict) -> str:
    if doc.get("kiosk"):
        return topics.kiosk_config_desired(doc["merchant"], doc["kiosk"])
    return topics.config_desired(doc["merchant"])


def publish(bus: Bus, doc: dict) -> str:
    """Publish retained (QoS 1) and wait for the broker's PUBACK; returns the topic."""
    topic = topic_for(doc)
    delivery = bus.publish(topic, json.dumps(doc).encode(), qos=1, retain=True)
    if not delivery.wait(PUBLISH_TIMEOUT):
        raise ConfigError(f"the broker did not confirm {topic} within {PUBLISH_TIMEOUT:.0f} s; "
                          "nothing reached the kiosks; push again (it issues the next version)")
    return topic


# -- pass keys and revocations: keys ---------------------------------------------------------------
def build_keys_document(engine: Engine, data_dir: Path, merchant: str) -> dict:
    """Record and sign the next keys document of *merchant* (``cloud.passes.export_keys``, the
    ``stempel.keys.v1`` key list); raises ConfigError for an unknown merchant."""
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
