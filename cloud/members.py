"""Members at the hub: find them, correct a balance, hand over or erase their data (GDPR).

A correction is a ledger event like any other: it goes through the hub's own ingest
(``EventStore.ingest``, the code path a kiosk's events take), gets the merchant's next
``hub_seq`` and travels to every kiosk on the ``ledger`` stream. It comes from the reserved
kiosk id ``hub``; each correction is its own one-event ledger (a fresh ``ledger_id``), so two
web workers never compete for a sequence number. Erasure wipes the personal fields and
revokes the passes; the member id is a random pseudonym, so the ledger keeps it and the
metrics stay right.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cloud import nps, pass_store
from cloud.automations.outbox import occasion_of
from cloud.events import EventStore
from cloud.metrics.activity import utc
from cloud.models import HubEvent, Member, Message, NpsAnswer, PassRecord
from kiosk.common.errors import ConfigError
from kiosk.protocol import topics
from kiosk.protocol.ids import check_id, new_event_id
from kiosk.protocol.messages import EventBatch, WireEvent
from kiosk.rules.state import ADJUST, PROFILE

HUB_KIOSK = "hub"  # the kiosk id of entries the hub makes itself; add-kiosk refuses it
ADJUST_RULE = "manual-adjustment"
PROFILE_RULE = "profile"
MAX_ADJUST = 10_000  # well inside an entry's DELTA_MAX
MAX_QUERY = 100


def get_member(engine: Engine, merchant: str, member: str) -> Member | None:
    """*member* of *merchant*, or None (a member of another merchant is None too)."""
    if not isinstance(member, str) or not re.fullmatch(r"[a-z0-9-]{1,32}", member):
        return None
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(Member, member)
    return row if row is not None and row.merchant_id == merchant else None


def search(engine: Engine, merchant: str, query: str, limit: int = 50) -> list[Member]:
    """Members of *merchant* whose name, e-mail or id contains *query* (case-insensitive);
    erased members are not found by name or e-mail (they have none)."""
    query = query.strip()
    stmt = select(Member).where(Member.merchant_id == merchant).order_by(Member.created_at.desc()).limit(limit)
    if query:
        if len(query) > MAX_QUERY or not query.isprintable():
            raise ConfigError(f"search for up to {MAX_QUERY} printable characters")
        like = "%" + re.sub(r"([\\%_])", r"\\\1", query.lower()) + "%"  # the query's own % and _ are literal
        stmt = stmt.where(or_(Member.name.ilike(like, escape="\\"), Member.email.ilike(like, escape="\\"),
                              Member.id == query.lower()))
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(stmt))


@dataclass(frozen=True)
class Recorded:
    """A ledger entry the hub made: its id and place in the merchant's stream."""

    event_id: str
    hub_seq: int | None


def adjust(store: EventStore, merchant: str, member: str, delta: int, note: str, by: str,
           balance: int, now: datetime) -> Recorded:
    """Record a manual correction of *delta* for *member* (current *balance*), made by *by*
    with the reason *note*; raises ConfigError for a refused one."""
    check_id(member, "member")
    if not isinstance(delta, int) or delta == 0 or abs(delta) > MAX_ADJUST:
        raise ConfigError(f"the correction must be a whole number between -{MAX_ADJUST:,} and {MAX_ADJUST:,}, not 0")
    note = (note or "").strip()
    if not note:
        raise ConfigError("give a reason for the correction; it is kept with the entry")
    if balance + delta < 0:
        raise ConfigError(f"the balance is {balance}; a correction of {delta} would take it below zero")
    return _record(store, merchant, WireEvent(
        event_id=new_event_id(), kiosk_seq=1, occurred_at=now, mono_ns=0, boot_id="hub", kind=ADJUST, member=member,
        delta=delta, rule=ADJUST_RULE, detail={"by": by[:254], "note": note[:200]}), "the correction")


def send_profile(store: EventStore, member: Member, now: datetime) -> Recorded:
    """Put what the engine needs about *member* beyond the pass (birthday month and day, the
    referrer) on the ledger, so every kiosk folds it in and grants the birthday and referral
    bonuses at the counter; after erasure the profile is empty, and the kiosks forget it."""
    detail = {}
    if member.erased_at is None and member.birthday is not None:
        detail["birthday"] = member.birthday.strftime("%m-%d")
    if member.erased_at is None and member.referred_by:
        detail["referred_by"] = member.referred_by
    return _record(store, member.merchant_id, WireEvent(
        event_id=new_event_id(), kiosk_seq=1, occurred_at=now, mono_ns=0, boot_id="hub", kind=PROFILE,
        member=member.id, rule=PROFILE_RULE, detail=detail), "the member's profile")


def _record(store: EventStore, merchant: str, event: WireEvent, what: str) -> Recorded:
    """Store an entry the hub makes itself, through the ingest path a kiosk's events take."""
    batch = EventBatch(ledger_id=uuid.uuid4().hex, events=[event])
    stored = store.ingest(topics.events(merchant, HUB_KIOSK), batch.model_dump_json(by_alias=True).encode())
    if stored.dead_letter or stored.rejected:
        raise ConfigError(f"the hub refused {what}: {stored.dead_letter or 'see the dead letters'}")
    with Session(store.engine) as session:
        seq = session.scalar(select(HubEvent.hub_seq).where(HubEvent.event_id == event.event_id))
    return Recorded(event.event_id, seq)


def export(engine: Engine, member: Member) -> dict:
    """Everything the hub holds about *member*: profile, consents, passes, ledger, NPS answers and
    the messages decided for them (GDPR art. 15/20). Messages carry what was sent when and how,
    not the delivery errors, which are the mail servers' words about the shop's setup."""
    with Session(engine) as session:
        passes = session.scalars(select(PassRecord).where(PassRecord.member_id == member.id)
                                 .order_by(PassRecord.id)).all()
        events = session.scalars(select(HubEvent).where(HubEvent.merchant_id == member.merchant_id,
                                                        HubEvent.member_id == member.id)
                                 .order_by(HubEvent.occurred_at, HubEvent.event_id)).all()
        answers = session.scalars(select(NpsAnswer).where(NpsAnswer.merchant_id == member.merchant_id,
                                                          NpsAnswer.member_id == member.id)
                                  .order_by(NpsAnswer.answered_at, NpsAnswer.id)).all()
        messages = session.scalars(select(Message).where(Message.merchant_id == member.merchant_id,
                                                         Message.member_id == member.id)
                                   .order_by(Message.created_at, Message.id)).all()
        return {
            "schema": "stempel.member-export.v1",
            "member": {"id": member.id, "merchant": member.merchant_id, "name": member.name, "email": member.email,
                       "birthday": _iso(member.birthday), "referred_by": member.referred_by,
                       "joined_via": member.joined_via, "language": member.language,
                       "joined_at": _iso(member.created_at), "consent_program_at": _iso(member.consent_program_at),
                       "consent_marketing_at": _iso(member.consent_marketing_at),
                       "erased_at": _iso(member.erased_at)},
            "passes": [{"serial": p.serial, "version": p.version, "issued_at": _iso(p.issued_at),
                        "revoked_at": _iso(p.revoked_at)} for p in passes],
            "ledger": [{"event_id": e.event_id, "kind": e.kind, "delta": e.delta, "rule": e.rule, "reward": e.reward,
                        "kiosk": e.kiosk_id, "occurred_at": _iso(e.occurred_at), "detail": e.detail} for e in events],
            "nps": [{"score": a.score, "comment": a.comment, "quarter": a.quarter, "answered_at": _at(a.answered_at)}
                    for a in answers],
            "messages": [{"trigger": m.trigger, "occasion": occasion_of(m.occasion), "channel": m.channel,
                          "status": m.status, "decided_at": _at(m.created_at), "sent_at": _at(m.sent_at)}
                         for m in messages],
        }


def export_json(engine: Engine, member: Member) -> str:
    return json.dumps(export(engine, member), indent=2, ensure_ascii=False)


def erase(store: EventStore, merchant: str, member: str, now: datetime) -> list[str]:
    """Erase *member*'s personal data, revoke every pass and empty the profile the kiosks hold;
    returns the serials revoked (the caller publishes the keys document, so kiosks refuse them).
    The ledger keeps the pseudonymous id."""
    with Session(store.engine, expire_on_commit=False) as session, session.begin():
        row = session.get(Member, member)
        if row is None or row.merchant_id != merchant:
            raise ConfigError(f"no member {member!r}")
        revoked = pass_store.revoke_member_passes(session, row)
        # the profiles sent before carry the birthday: the hub's copies lose it; the empty profile
        # sent below makes the kiosks forget it, and blank their copies of the older ones as they
        # store it (kiosk ledger version 2, kiosk/ledger_schema.py)
        session.execute(update(HubEvent).where(HubEvent.merchant_id == merchant, HubEvent.member_id == member,
                                               HubEvent.kind == PROFILE).values(detail={}))
        nps.forget_comments(session, merchant, member)  # free text may name them; the scores stay
        row.name = "(erased)"
        row.email = row.birthday = row.referred_by = row.joined_via = None
        row.consent_marketing_at = None
        row.erased_at = row.erased_at or now
    send_profile(store, row, now)
    return [r.serial for r in revoked if r.serial]


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _at(moment: datetime | None) -> str | None:
    """A stored time in UTC with its offset, on PostgreSQL and SQLite (which gives it back naive) alike."""
    return utc(moment).isoformat() if moment is not None else None
