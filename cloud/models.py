"""Every table of the hub, in one module: the schema does not depend on what was imported.

Alembic (cloud/schema.py, cloud/migrations/) compares its head against ``Base.metadata`` as
this module fills it. The functions that read and write these tables live with their job:
cloud/store.py (merchants, keys, broker accounts), cloud/pass_store.py (passes),
cloud/events/ (the event store), cloud/link/documents.py (signed documents).
"""

from __future__ import annotations

from datetime import datetime, timezone

from datetime import date

from sqlalchemy import (JSON, BigInteger, CheckConstraint, Date, DateTime, ForeignKey, Index, Integer, LargeBinary,
                        String, Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


# -- merchants, their pass keys, members and passes ---------------------------------------------

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
    """A member of one merchant. The id is a random pseudonym (``m`` + 9 base32 characters):
    erasure wipes the personal fields and keeps the id, so the ledger and the metrics stay whole."""

    __tablename__ = "members"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    revoked: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    email: Mapped[str | None] = mapped_column(String(254))
    birthday: Mapped[date | None] = mapped_column(Date)
    referred_by: Mapped[str | None] = mapped_column(String(32))
    joined_via: Mapped[str | None] = mapped_column(String(32))  # the kiosk whose join code was used
    language: Mapped[str | None] = mapped_column(String(8))
    consent_program_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    consent_marketing_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PassRecord(Base):
    """One issued pass: ``number`` (and the ``serial`` made from it) is unique per merchant."""

    __tablename__ = "passes"
    __table_args__ = (UniqueConstraint("merchant_id", "number"), UniqueConstraint("merchant_id", "serial"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    member_id: Mapped[str] = mapped_column(ForeignKey("members.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)  # token version: 1 (no serial) or 2
    number: Mapped[int | None] = mapped_column(Integer)
    serial: Mapped[str | None] = mapped_column(String(8))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# -- events from kiosks: the hub's ledger, its stream outbox and what it refused -------------------

_BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements only INTEGER PRIMARY KEY


class HubEvent(Base):
    """An event a kiosk sent, stored once: ``event_id`` is unique, merchant and kiosk come from the topic.

    ``hub_seq`` numbers each merchant's events gaplessly in commit order: the ``ledger`` stream
    carries it so kiosks can spot a gap and ask to catch up.
    """

    __tablename__ = "hub_events"
    __table_args__ = (UniqueConstraint("merchant_id", "kiosk_id", "ledger_id", "kiosk_seq", name="uq_hub_events_kiosk_seq"),
                      UniqueConstraint("merchant_id", "hub_seq"),
                      # a member's events in time order, covering balances (cloud/metrics/queries.py)
                      Index("hub_events_member_time", "merchant_id", "member_id", "occurred_at", "delta"),
                      # one kind over a period (visits per day, redemptions), and per member (the dashboard)
                      Index("hub_events_kind_time", "merchant_id", "kind", "occurred_at"),
                      Index("hub_events_kind_member", "merchant_id", "kind", "member_id", "occurred_at"))
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    merchant_id: Mapped[str] = mapped_column(String(32))
    kiosk_id: Mapped[str] = mapped_column(String(32))
    ledger_id: Mapped[str] = mapped_column(String(32), default="", server_default="")  # the kiosk ledger's incarnation
    kiosk_seq: Mapped[int] = mapped_column(BigInteger)
    hub_seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(40))
    member_id: Mapped[str | None] = mapped_column(String(32))
    delta: Mapped[int] = mapped_column(Integer, default=0)
    rule: Mapped[str | None] = mapped_column(String(64))
    reward: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    mono_ns: Mapped[int] = mapped_column(BigInteger)
    boot_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KioskProgress(Base):
    """Per kiosk ledger (a kiosk and the incarnation ``ledger_id`` of its ledger file): every
    ``kiosk_seq`` 1..acked_through_seq is settled, stored or refused for good (what ``events/ack``
    says). A reinstalled kiosk numbers from 1 again under a new ``ledger_id``; the newest
    ``first_seen`` is the kiosk's current ledger."""

    __tablename__ = "kiosk_progress"
    merchant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kiosk_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ledger_id: Mapped[str] = mapped_column(String(32), primary_key=True, default="", server_default="")
    acked_through_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    first_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class RefusedEvent(Base):
    """A kiosk event the hub refused for good (schema, clock window, a clashing id): its dead
    letter holds the payload; this row lets the kiosk's ack move past it, so one bad row never
    stalls that kiosk's outbox. The kiosk keeps the event in its own ledger."""

    __tablename__ = "refused_events"
    merchant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kiosk_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ledger_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kiosk_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    reason: Mapped[str] = mapped_column(String(500))
    refused_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LedgerStream(Base):
    """Per merchant: the last ``hub_seq`` handed out. Its row is the merchant's ingest lock."""

    __tablename__ = "ledger_streams"
    merchant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_hub_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerOutbox(Base):
    """Accepted events still to be published on ``ledger``: written in the ingest transaction,
    claimed with a lease by one worker, marked published after the broker's PUBACK."""

    __tablename__ = "ledger_outbox"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    event_pk: Mapped[int] = mapped_column(ForeignKey("hub_events.id"))
    merchant_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)


class DeadLetter(Base):
    """A message (or one event of it) the hub refused, with the reason, for the owner to inspect."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(300))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(String(500))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Conflict(Base):
    """A member's balance went below zero when the kiosks' ledgers merged (e.g. two kiosks
    offline at once both redeemed the same reward). Recorded once per member and first
    event that took the balance below zero; the owner sees and settles it."""

    __tablename__ = "conflicts"
    __table_args__ = (UniqueConstraint("merchant_id", "member_id", "first_event_id"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(32), index=True)
    member_id: Mapped[str] = mapped_column(String(32))
    balance: Mapped[int] = mapped_column(Integer)  # the lowest the balance went
    first_event_id: Mapped[str] = mapped_column(String(36))  # the event that took it below zero
    event_ids: Mapped[list] = mapped_column(JSON)  # the spending events that overlapped (oldest first)
    kiosks: Mapped[list] = mapped_column(JSON)  # the kiosks those events came from
    detected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(String(254))
    resolution: Mapped[str | None] = mapped_column(String(500))


# -- the fleet: broker accounts and the signed documents pushed to kiosks ------------------------

class BrokerAccount(Base):
    """A broker login: a kiosk's (``{merchant}-{kiosk}``) or a hub process's; only the ``$7$`` hash is kept."""

    __tablename__ = "broker_accounts"
    __table_args__ = (UniqueConstraint("merchant_id", "kiosk_id"),)
    username: Mapped[str] = mapped_column(String(80), primary_key=True)
    role: Mapped[str] = mapped_column(String(8))  # "kiosk" | "hub"
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), nullable=True)
    kiosk_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    rotated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


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
    source: Mapped[str | None] = mapped_column(Text)  # the programme's TOML as written, when known
    created_by: Mapped[str | None] = mapped_column(String(254))  # the owner's login, or None for the CLI


class KeysRevision(Base):
    """Every keys document the hub has signed; the newest per merchant is the one retained."""

    __tablename__ = "keys_revisions"
    __table_args__ = (UniqueConstraint("merchant_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(32), index=True)
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# -- the web: owner logins, API tokens, rate limits -------------------------------------------------

class User(Base):
    """A login to the owner pages of one merchant; ``role`` is ``owner`` or ``staff``. Only the
    argon2 hash of the password is kept."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    login: Mapped[str] = mapped_column(String(254), unique=True)
    role: Mapped[str] = mapped_column(String(8))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    """A merchant's bearer token for ``/api/v1/``: the SHA-256 of the token is kept, shown once."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RateHit(Base):
    """Requests counted per key (``join-ip:1.2.3.4``, ``login:shop``) and fixed window; shared by
    every web worker through the database, so a limit holds however many workers serve."""

    __tablename__ = "rate_hits"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # start, epoch seconds
    count: Mapped[int] = mapped_column(Integer, default=0)


# -- automations: the messages the hub decided to send (cloud/automations/) -------------------------

class Message(Base):
    """One message the hub decided to send: the unique (merchant, member, trigger, occasion) makes
    the decision once (a birthday's year, a lapse's last visit, ``join``), committed before anything
    is sent. ``status`` moves pending → claimed → sending → sent, or ends failed, suppressed or
    unknown (a worker stopped between sending and marking: never sent again); see
    cloud/automations/outbox.py for who commits what when."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("merchant_id", "member_id", "trigger", "occasion", name="uq_messages_occasion"),
                      Index("messages_due", "merchant_id", "status", "not_before"),
                      Index("messages_member_sent", "member_id", "sent_at"))
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(32))
    member_id: Mapped[str] = mapped_column(String(32))
    trigger: Mapped[str] = mapped_column(String(24))
    occasion: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16), default="email")
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # quiet hours, retry backoff
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # unsent by then: suppressed
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # the send began (then finished)
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # first card visit from its link


class MessageText(Base):
    """The owner's words for a trigger (``key`` = the trigger) or an A/B test's message variant
    (``key`` = the variant's template key) in one language; without a row the built-in words of
    cloud/automations/templates.py apply."""

    __tablename__ = "message_texts"
    __table_args__ = (UniqueConstraint("merchant_id", "key", "language", name="uq_message_texts_key"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(2))
    subject: Mapped[str] = mapped_column(String(150))
    body: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str] = mapped_column(String(254))


class CampaignRow(Base):
    """An owner's announcement to a segment (cloud/automations/campaigns.py): ``texts`` maps a
    language to ``{"subject", "body"}``."""

    __tablename__ = "campaigns"
    __table_args__ = (Index("campaigns_merchant", "merchant_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(32))
    segment: Mapped[str] = mapped_column(String(24))
    tier: Mapped[str | None] = mapped_column(String(32))
    texts: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(254))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    planned: Mapped[int] = mapped_column(Integer, default=0)
    sent_by: Mapped[str | None] = mapped_column(String(254))


# -- NPS: one answer per member per quarter (cloud/nps.py) ------------------------------------------

class NpsAnswer(Base):
    """A member's answer to "how likely are you to recommend us?" (0–10). ``quarter`` (``2026-Q4``)
    is the quarter of ``answered_at`` in the shop's time zone: the unique key lets a member answer
    once per quarter whatever the number of web workers. Erasure clears ``comment`` and keeps the
    score, so the NPS of past periods does not change."""

    __tablename__ = "nps_answers"
    __table_args__ = (UniqueConstraint("merchant_id", "member_id", "quarter", name="uq_nps_answers_quarter"),
                      CheckConstraint("score >= 0 AND score <= 10", name="ck_nps_answers_score"),
                      Index("nps_answers_time", "merchant_id", "answered_at"))
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(32))
    member_id: Mapped[str] = mapped_column(String(32))
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(String(500))
    quarter: Mapped[str] = mapped_column(String(7))
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
