"""One sweep of the automations: for each merchant, plan the messages due, then deliver them.

Delivery follows outbox.py's order of commits: claim a batch (outside quiet hours only), then
per message begin → send → mark, each its own transaction, with no transaction open while the
SMTP server (or the webhook's receiver) is talking. Each channel of ``[automations] channels``
claims and sends its own rows: e-mail (mailer.py, compose.py), the signed webhook
(webhook.py) and the card's inbox (inbox.py: marked sent, read on the card); the first two sort
their failures into NotSent (retry with backoff), Refused (failed, with the reason) and, for
e-mail, Uncertain. The clock is injected; ``stempel-hub automations run`` calls ``sweep`` every
``interval_seconds`` (``serve``), tests call it with the clock where they want it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cloud.automations import bounces, compose, outbox, planner, planner_more
from cloud.automations.campaigns import CAMPAIGN, CampaignStore
from cloud.automations.templates import Text
from cloud.automations.texts import words_for
from cloud.automations.triggers_more import TRANSACTIONAL
from cloud.automations.inbox import INBOX, InboxChannel
from cloud.automations.mailer import Channel, NotSent, Refused, Uncertain
from cloud.automations.webhook import WebhookChannel, payload
from cloud.automations.policy import quiet
from cloud.config import AutomationsSection
from cloud.keys import KeyStore
from cloud.models import Member, Message, utcnow
from cloud.programs import program_of
from kiosk.common.errors import ConfigError, StempelError
from kiosk.common.sdnotify import Notifier

log = logging.getLogger(__name__)


@dataclass
class Sweep:
    """What one sweep did, per outcome (``planned``, ``sent``, ``failed``, ...)."""

    done: Counter = field(default_factory=Counter)

    def __getitem__(self, key: str) -> int:
        return self.done[key]


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:80]


def _eligible(member: Member | None, channel: str, service: bool = False) -> str | None:
    """Why *member* may not get marketing on *channel* now, or None if they may; a *service*
    message (triggers_more.TRANSACTIONAL, where the terms allow it) needs no marketing consent."""
    if member is None or member.erased_at is not None:
        return "the member was erased"
    if member.consent_marketing_at is None and not service:
        return "no marketing consent (withdrawn since the message was planned)"
    if channel == outbox.EMAIL and not member.email:
        return "no e-mail address"
    return None


class Worker:
    """Plans and delivers automated messages for every merchant of one hub database."""

    def __init__(self, engine: Engine, keys: KeyStore, secret: bytes, settings: AutomationsSection,
                 channel: Channel | None, sender: str, *, clock: Callable[[], datetime] = utcnow,
                 worker_id: str | None = None, batch: int = 100,
                 webhook: WebhookChannel | None = None, progress: Callable[[], object] | None = None,
                 campaigns: CampaignStore | None = None) -> None:
        """*channel* sends e-mail, *webhook* the webhook; each channel ``settings.channels`` lists
        must be given (ConfigError otherwise), channels it does not list are not used. *progress*
        is called after each merchant's planning and each message (``serve`` feeds the watchdog
        with it, so a long sweep that moves on is not taken for a hung one). *campaigns* reads the
        owner's campaigns (campaigns.py); by default a store on *engine*."""
        self.engine, self.keys, self.secret, self.settings = engine, keys, secret, settings
        self.channel, self.sender, self.clock = channel, sender, clock
        given = {outbox.EMAIL: channel, "webhook": webhook, INBOX: InboxChannel()}
        self.channels = {name: given[name] for name in settings.channels if given.get(name) is not None}
        missing = [name for name in settings.channels if name not in self.channels]
        if missing:
            raise ConfigError(f"[automations] channels lists {', '.join(missing)}, which is not set up: "
                              "set [smtp] host for email, [webhook] url for webhook, or remove it from channels")
        self.worker_id = worker_id or default_worker_id()
        self.batch = batch
        self.rules = planner.rules_of(settings)
        self.more = planner_more.rules_of(settings)
        self.campaigns = campaigns if campaigns is not None else CampaignStore(engine)
        self.lease = timedelta(seconds=settings.lease_seconds)
        self.progress = progress or (lambda: None)

    def sweep(self) -> Sweep:
        result = Sweep()
        try:
            result.done.update(bounces.collect(self.engine, self.channel, self.sender, self.progress))
            for merchant in planner.merchants(self.engine):
                result.done["planned"] += planner.plan(self.engine, merchant, self.clock(), self.rules,
                                                       list(self.channels), more=self.more)
                self.progress()
                for name in self.channels:
                    self.deliver(merchant, result, name)
        finally:
            for sender in self.channels.values():
                sender.close()
        return result

    def deliver(self, merchant: str, result: Sweep, name: str = outbox.EMAIL) -> None:
        """Send *merchant*'s due messages of channel *name*, batch by batch, until none is left or
        the channel fails."""
        channel = self.channels[name]
        zone = program_of(self.engine, merchant).zone
        while True:
            now = self.clock()
            if quiet(now, zone, self.settings.quiet_start, self.settings.quiet_end):
                return  # they wait as pending until the morning
            with self.engine.begin() as conn:
                ids = outbox.claim(conn, merchant, self.worker_id, now, self.lease, self.settings.weekly_cap,
                                   self.batch, channel=name)
            if not ids:
                return
            try:
                channel.connect()
            except ConfigError:  # a refused login: give the rows back now, not when the lease runs out
                with self.engine.begin() as conn:
                    outbox.release(conn, ids, self.worker_id)
                raise
            except NotSent as exc:
                log.warning("automations.channel_down", extra={"merchant": merchant, "channel": name,
                                                               "error": str(exc)})
                with self.engine.begin() as conn:
                    outbox.release(conn, ids, self.worker_id)
                result.done["deferred"] += len(ids)
                return
            for message_id in ids:
                result.done[self._one(message_id, name)] += 1
                self.progress()

    def _words(self, row: Message, language: str) -> Text | None:
        """The owner's words of *row*: a campaign's, or for a trigger the member's A/B variant's or
        the owner's (texts.words_for); None for the built-in ones. Raises ConfigError."""
        if row.trigger != CAMPAIGN:
            return words_for(self.engine, program_of(self.engine, row.merchant_id), row.merchant_id, row.member_id,
                             row.trigger, language, self.clock())
        campaign = outbox.occasion_of(row.occasion)
        return self.campaigns.text(row.merchant_id, campaign, language)

    def _one(self, message_id: int, name: str = outbox.EMAIL) -> str:
        """Begin, send and mark one claimed message of channel *name*; its outcome."""
        now = self.clock()
        with self.engine.begin() as conn:
            row = outbox.begin(conn, message_id, self.worker_id, now, self.lease)
            if row is None:
                return "taken_over"
            with Session(bind=conn) as session:
                member = session.get(Member, row.member_id)
                why = _eligible(member, name, self.more.transactional_without_consent
                                and row.trigger in TRANSACTIONAL)
                if why is None and name == outbox.EMAIL and member is not None:  # a hard bounce (bounces.py)
                    why = bounces.undeliverable(conn, member.id)
                if why is not None:
                    outbox.suppress(conn, message_id, self.worker_id, why)
                    return outbox.SUPPRESSED
                session.expunge(member)
        message = Message(id=row.id, merchant_id=row.merchant_id, member_id=row.member_id, trigger=row.trigger,
                          occasion=row.occasion, channel=row.channel, attempts=row.attempts)
        try:
            if name == INBOX:  # nothing to write now: the card writes it when it is read (inbox.py)
                out: object = message
            elif name == outbox.EMAIL:
                filled, language = compose.values(self.engine, self.keys, self.secret, member, now,
                                                   message_id=row.id, nps_after_visits=self.settings.nps_after_visits)
                out = compose.email(message, member, self.sender, filled, language, now,
                                    self._words(row, language))
            else:
                filled, language = compose.values(self.engine, self.keys, self.secret, member, now,
                                                   message_id=row.id, nps_after_visits=self.settings.nps_after_visits)
                out = payload(message, row.merchant_id, filled, language, self._words(row, language))
        except StempelError as exc:  # a missing signing key: nothing was sent; the owner sees why
            with self.engine.begin() as conn:
                outbox.failed(conn, message_id, self.worker_id, f"could not write the message: {exc}")
            return outbox.FAILED
        why = ""  # the error's text: Python unbinds ``exc`` when its except block ends, before mark runs
        try:
            self.channels[name].send(out)  # type: ignore[arg-type]  (what this channel's composer made)
        except NotSent as exc:
            why, outcome = str(exc), "retry"
            mark = lambda c: outbox.retry(c, message, self.worker_id, self.clock(), why)  # noqa: E731
        except Refused as exc:
            why, outcome = str(exc), outbox.FAILED
            mark = lambda c: outbox.failed(c, message_id, self.worker_id, why)  # noqa: E731
        except Uncertain as exc:
            why, outcome = str(exc), outbox.UNKNOWN
            mark = lambda c: outbox.uncertain(c, message_id, self.worker_id, why)  # noqa: E731
        else:
            mark = lambda c: outbox.sent(c, message_id, self.worker_id, self.clock())  # noqa: E731
            outcome = outbox.SENT
        with self.engine.begin() as conn:
            if not mark(conn):
                log.warning("automations.mark_lost", extra={"message_id": message_id, "outcome": outcome})
        log.info("automations.message", extra={"message_id": message_id, "trigger": row.trigger, "channel": name,
                                               "outcome": outcome})
        return outcome


def summary(done: Counter) -> str:
    """``2 planned, 2 sent``: a sweep's counts for the log line and systemd's status."""
    return ", ".join(f"{n} {what}" for what, n in sorted(done.items()) if n) or "nothing due"


def serve(worker: Worker, stop: threading.Event, notifier: Notifier, interval: float, *, once: bool = False,
          report: Callable[[Sweep], object] = lambda _: None) -> int:
    """Sweep every *interval* seconds until *stop* is set (after one sweep with *once*); the
    number of sweeps done. *report* gets each sweep's counts.

    Under systemd (``Type=notify``): ``READY=1`` once the database answers (a hub whose database
    is down fails here and is restarted, instead of counting as started), ``STATUS=`` with the
    last sweep's counts, and ``WATCHDOG=1`` from this loop — while it waits between sweeps and,
    through the worker's *progress*, as a sweep moves from merchant to merchant and message to
    message. A sweep stuck on one message longer than ``WatchdogSec=`` gets the worker killed
    and restarted; what it had claimed goes back to the others when the lease runs out.
    """
    worker.progress = notifier.watchdog
    with worker.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    notifier.ready("database reachable; first sweep running")
    sweeps = 0
    while True:
        done = worker.sweep()
        sweeps += 1
        report(done)
        notifier.status(f"last sweep: {summary(done.done)}")
        notifier.watchdog()
        if once or _wait(stop, interval, notifier):
            break
    notifier.stopping(f"stopping after {sweeps} sweep(s)")
    return sweeps


def _wait(stop: threading.Event, seconds: float, notifier: Notifier) -> bool:
    """Wait *seconds*, pinging the watchdog when due; True as soon as *stop* is set."""
    step = notifier.watchdog_interval or seconds
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if stop.wait(min(step, left)):
            return True
        notifier.watchdog()
    return stop.is_set()
