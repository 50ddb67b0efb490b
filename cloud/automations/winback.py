"""The win-back's bonus offer and its held-out control group (issue 11, items 1 and 6).

* **Control group.** A share (``[automations] control_share``) of the win-backs due is held out:
  no message, no offer. Which ones is decided by a hash of member, trigger and occasion, so
  every worker and every sweep agrees, and a member held out of one lapse may be messaged in
  the next. The decision is recorded like a send, as ``control`` rows (outbox.record): as
  durable and once-only as a message, never claimed, never sent. The lift
  (cloud/metrics/lift.py) compares these members with those who were sent one.
* **Offer.** Every other new win-back decision puts an ``offer`` entry on the merchant's ledger
  (detail: bonus, expires — the last local day —, offer id) from the hub's reserved kiosk id,
  through the ingest path a kiosk's events take (as members.send_profile does). It travels to
  every kiosk on the ledger stream; the engine folds it into the member's state and grants it
  as a ``winback-bonus`` entry at the next credited visit up to its expiry, once. The kiosk
  asks the hub nothing.
* **A/B test of the offer.** A programme experiment with ``varies = "bonus"`` and ``target =
  "winback"`` gives each enrolled member their arm's bonus instead of ``winback_bonus`` (an arm
  of 0: no offer), the arm decided by kiosk/rules/experiments.py as everywhere else; the entry's
  detail names ``experiment`` and ``variant``. Kiosks grant what the entry says, so they need
  nothing of the test but its label on the grant (experiments.label).

Order of commits: the offer is stored *before* the decision's message rows, with an event id
and ledger id derived from (merchant, member, occasion). A crash in between, or two workers at
once, store the same entry again, and the hub keeps it once (a duplicate of the same ledger
position). Only decisions without a row yet get an offer, so a lapse that goes on for weeks
costs one ingest, not one per sweep. The e-mail's words come from the member's card at sending
time (compose.values), so a message mentions the bonus only if the offer is on the ledger.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from cloud.automations.outbox import occasion_of
from cloud.automations.triggers import WINBACK, Due, Rules
from cloud.events import EventStore
from cloud.members import HUB_KIOSK
from cloud.models import Message
from kiosk.common.errors import ConfigError
from kiosk.protocol import topics
from kiosk.protocol.messages import EventBatch, WireEvent
from kiosk.rules.experiments import WINBACK as WINBACK_TEST
from kiosk.rules.experiments import Override, overrides
from kiosk.rules.program import Program
from kiosk.rules.state import OFFER, MemberState

log = logging.getLogger(__name__)

OFFER_RULE = "winback-offer"
_NAMESPACE = uuid.UUID("4f1b7a52-53c5-4c1e-9d0e-5b7d2f0a9c11")  # Stempel's win-back offers
_CHUNK = 500  # member ids per IN list


def held_out(member: str, trigger: str, occasion: str, share: float) -> bool:
    """Whether this decision belongs to the control group: the first 8 bytes of SHA-256 over
    member, trigger and occasion, as a fraction of 2**64, below *share*."""
    if share <= 0:
        return False
    digest = hashlib.sha256(f"{member}\x1f{trigger}\x1f{occasion}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def split(dues: Sequence[Due], share: float) -> tuple[list[Due], list[Due]]:
    """(to message, held out): only win-backs are ever held out."""
    send, held = [], []
    for d in dues:
        (held if d.trigger == WINBACK and held_out(d.member_id, d.trigger, d.occasion, share) else send).append(d)
    return send, held


def offer_id(occasion: str) -> str:
    """The offer of the lapse that began after the visit of local day *occasion*."""
    return f"winback:{occasion}"


def undecided(conn: Connection, merchant: str, dues: Sequence[Due]) -> list[Due]:
    """The win-backs of *dues* with no message row yet (on any channel, held out or not)."""
    winbacks = [d for d in dues if d.trigger == WINBACK]
    members = sorted({d.member_id for d in winbacks})
    decided: set[tuple[str, str]] = set()
    for i in range(0, len(members), _CHUNK):
        rows = conn.execute(select(Message.member_id, Message.occasion).where(
            Message.merchant_id == merchant, Message.trigger == WINBACK,
            Message.member_id.in_(members[i:i + _CHUNK])))
        decided.update((member, occasion_of(occasion)) for member, occasion in rows)
    return [d for d in winbacks if (d.member_id, d.occasion) not in decided]


def bonus_for(program: Program | None, member: str, day: date, default: int) -> tuple[int, Override | None]:
    """*member*'s win-back bonus on the shop's local *day*, and the A/B test that chose it: their
    arm's in a running test of the win-back offer (everyone's: its kept winner's), else
    *default* (``[automations] winback_bonus``) and None."""
    if program is not None:
        for o in overrides(program, member, day):
            if (o.varies, o.target) == WINBACK_TEST:
                return int(o.value), o
    return default, None


def _tests_offer(program: Program | None) -> bool:
    return program is not None and any((e.varies, e.target) == WINBACK_TEST for e in program.experiments)


def to_offer(conn: Connection, merchant: str, dues: Sequence[Due], rules: Rules, program: Program | None = None,
             now: datetime | None = None) -> list[Due]:
    """The win-backs of *dues* that get an offer at *now*: a bonus above 0 (``winback_bonus``, or
    the member's arm of *program*'s test of the offer), not held out, not decided before.
    Raises ValueError for a *program* testing the offer without *now* (the arm depends on the day)."""
    tested = _tests_offer(program)
    if rules.winback_bonus <= 0 and not tested:
        return []
    send, _ = split([d for d in dues if d.trigger == WINBACK], rules.control_share)
    if program is None or not tested:
        return undecided(conn, merchant, send)
    if now is None:
        raise ValueError("to_offer: pass now with a programme that tests the offer (a member's arm depends on the day)")
    day = now.astimezone(program.zone).date()
    return [d for d in undecided(conn, merchant, send)
            if bonus_for(program, d.member_id, day, rules.winback_bonus)[0] > 0]


def last_day(now: datetime, zone: ZoneInfo, days: int) -> date:
    """The offer's last valid local day: *days* days after today in the shop's *zone*."""
    return now.astimezone(zone).date() + timedelta(days=days)


def offer_event(merchant: str, due: Due, bonus: int, expires: date, now: datetime,
                test: Override | None = None) -> tuple[str, WireEvent]:
    """(ledger id, event) of *due*'s offer, labelled with the A/B *test*'s experiment and variant
    if one chose the bonus; both ids derived from (merchant, member, occasion), so storing it
    twice stores it once."""
    name = uuid.uuid5(_NAMESPACE, f"{merchant}/{due.member_id}/{due.occasion}")
    detail: dict[str, object] = {"bonus": bonus, "expires": expires.isoformat(), "offer": offer_id(due.occasion)}
    if test is not None:
        detail.update(experiment=test.experiment, variant=test.variant)
    event = WireEvent(event_id=str(name), kiosk_seq=1, occurred_at=now, mono_ns=0, boot_id=HUB_KIOSK, kind=OFFER,
                      member=due.member_id, rule=OFFER_RULE, detail=detail)
    return name.hex, event


def put_offers(engine: Engine, merchant: str, dues: Sequence[Due], now: datetime, rules: Rules,
               zone: ZoneInfo, program: Program | None = None) -> int:
    """Store an offer entry per due win-back (the hub's clock is *now*) with the member's bonus
    (bonus_for: their arm of *program*'s test of the offer, else ``winback_bonus``; none at 0);
    how many were new. Raises ConfigError if the hub refuses one (nothing of the sweep is
    recorded then)."""
    if not dues:
        return 0
    store = EventStore(engine, clock=lambda: now)
    expires = last_day(now, zone, rules.winback_bonus_days)
    today = now.astimezone(zone).date()
    new = 0
    for due in dues:
        bonus, test = bonus_for(program, due.member_id, today, rules.winback_bonus)
        if bonus <= 0:
            continue  # an arm without an offer
        ledger_id, event = offer_event(merchant, due, bonus, expires, now, test)
        batch = EventBatch(ledger_id=ledger_id, events=[event]).model_dump_json(by_alias=True).encode()
        stored = store.ingest(topics.events(merchant, HUB_KIOSK), batch)
        if stored.dead_letter or stored.rejected:
            raise ConfigError(f"the hub refused the win-back offer for {due.member_id}: "
                              f"{stored.dead_letter or 'see the dead letters'}")
        new += stored.new
    log.info("automations.offers", extra={"merchant": merchant, "offers": len(dues), "new": new})
    return new


DATE_FORMAT = {"de": "%d.%m.%Y", "en": "%d %b %Y"}  # as card_extras writes a date


def offer_values(state: MemberState, program: Program, now: datetime, language: str) -> dict[str, str]:
    """``$bonus`` and ``$bonus_until`` of the member's open offer at *now* (the last day, local),
    or nothing: templates.render adds the offer's paragraph to a win-back only with them."""
    offer = state.offer
    if offer is None or now.astimezone(program.zone).date() > offer.expires:
        return {}
    return {"bonus": str(offer.bonus), "bonus_until": offer.expires.strftime(DATE_FORMAT.get(language, "%d %b %Y"))}
