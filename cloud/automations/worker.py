"""One sweep of the automations: for each merchant, plan the messages due, then deliver them.

Delivery follows outbox.py's order of commits: claim a batch (outside quiet hours only), then
per message begin → send → mark, each its own transaction, with no transaction open while the
SMTP server is talking. The clock is injected; ``stempel-hub automations run`` calls ``sweep``
every ``interval_seconds``, tests call it with the clock where they want it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cloud.automations import compose, outbox, planner
from cloud.automations.mailer import Channel, NotSent, Refused, Uncertain
from cloud.automations.policy import quiet
from cloud.config import AutomationsSection
from cloud.keys import KeyStore
from cloud.models import Member, Message, utcnow
from cloud.programs import program_of
from kiosk.common.errors import StempelError

log = logging.getLogger(__name__)


@dataclass
class Sweep:
    """What one sweep did, per outcome (``planned``, ``sent``, ``failed``, ...)."""

    done: Counter = field(default_factory=Counter)

    def __getitem__(self, key: str) -> int:
        return self.done[key]


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:80]


def _eligible(member: Member | None) -> str | None:
    """Why *member* may not get marketing now, or None if they may."""
    if member is None or member.erased_at is not None:
        return "the member was erased"
    if member.consent_marketing_at is None:
        return "no marketing consent (withdrawn since the message was planned)"
    if not member.email:
        return "no e-mail address"
    return None


class Worker:
    """Plans and delivers automated messages for every merchant of one hub database."""

    def __init__(self, engine: Engine, keys: KeyStore, secret: bytes, settings: AutomationsSection,
                 channel: Channel, sender: str, *, clock: Callable[[], datetime] = utcnow,
                 worker_id: str | None = None, batch: int = 100) -> None:
        self.engine, self.keys, self.secret, self.settings = engine, keys, secret, settings
        self.channel, self.sender, self.clock = channel, sender, clock
        self.worker_id = worker_id or default_worker_id()
        self.batch = batch
        self.rules = planner.rules_of(settings)
        self.lease = timedelta(seconds=settings.lease_seconds)

    def sweep(self) -> Sweep:
        result = Sweep()
        try:
            for merchant in planner.merchants(self.engine):
                result.done["planned"] += planner.plan(self.engine, merchant, self.clock(), self.rules)
                self.deliver(merchant, result)
        finally:
            self.channel.close()
        return result

    def deliver(self, merchant: str, result: Sweep) -> None:
        """Send *merchant*'s due messages, batch by batch, until none is left or the channel fails."""
        zone = program_of(self.engine, merchant).zone
        while True:
            now = self.clock()
            if quiet(now, zone, self.settings.quiet_start, self.settings.quiet_end):
                return  # they wait as pending until the morning
            with self.engine.begin() as conn:
                ids = outbox.claim(conn, merchant, self.worker_id, now, self.lease, self.settings.weekly_cap,
                                   self.batch)
            if not ids:
                return
            try:
                self.channel.connect()
            except NotSent as exc:
                log.warning("automations.channel_down", extra={"merchant": merchant, "error": str(exc)})
                with self.engine.begin() as conn:
                    outbox.release(conn, ids, self.worker_id)
                result.done["deferred"] += len(ids)
                return
            for message_id in ids:
                result.done[self._one(message_id)] += 1

    def _one(self, message_id: int) -> str:
        """Begin, send and mark one claimed message; its outcome."""
        now = self.clock()
        with self.engine.begin() as conn:
            row = outbox.begin(conn, message_id, self.worker_id, now, self.lease)
            if row is None:
                return "taken_over"
            with Session(bind=conn) as session:
                member = session.get(Member, row.member_id)
                why = _eligible(member)
                if why is not None:
                    outbox.suppress(conn, message_id, self.worker_id, why)
                    return outbox.SUPPRESSED
                session.expunge(member)
        message = Message(id=row.id, trigger=row.trigger, attempts=row.attempts)
        try:
            filled, language = compose.values(self.engine, self.keys, self.secret, member, now)
            mail = compose.email(message, member, self.sender, filled, language, now)
        except StempelError as exc:  # a missing signing key: nothing was sent; the owner sees why
            with self.engine.begin() as conn:
                outbox.failed(conn, message_id, self.worker_id, f"could not write the message: {exc}")
            return outbox.FAILED
        try:
            self.channel.send(mail)
        except NotSent as exc:
            outcome, mark = "retry", lambda c: outbox.retry(c, message, self.worker_id, self.clock(), str(exc))
        except Refused as exc:
            outcome, mark = outbox.FAILED, lambda c: outbox.failed(c, message_id, self.worker_id, str(exc))
        except Uncertain as exc:
            outcome, mark = outbox.UNKNOWN, lambda c: outbox.uncertain(c, message_id, self.worker_id, str(exc))
        else:
            outcome, mark = outbox.SENT, lambda c: outbox.sent(c, message_id, self.worker_id, self.clock())
        with self.engine.begin() as conn:
            if not mark(conn):
                log.warning("automations.mark_lost", extra={"message": message_id, "outcome": outcome})
        log.info("automations.message", extra={"message": message_id, "trigger": row.trigger, "outcome": outcome})
        return outcome
