"""Where a scan becomes a stamp.

``Kiosk.handle_frame`` runs one camera frame through every stage:
decoder → pass verifier → counter session → rules engine → ledger → feedback.
``Kiosk.press_button`` is the staff button: redeem for the member at the counter.
``Kiosk.enter_amount`` (the staff screen's keypad) and ``Kiosk.purchase`` (a till, once per
receipt) bring the purchase amount to the counter session, before or after the scan;
``Kiosk.undo`` takes the last stamp or redemption back within a minute (kiosk/undo.py).
Each stage is a small object passed in, so tests replace any of them. The clock is read
once per scan or press: the decision and the ledger entry carry the same instant.

The scan loop and the staff screen (kiosk/web/) call in from different threads: every entry
point that reads or writes the ledger or the counter session holds ``lock``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from kiosk.clock import Clock
from kiosk.display import screens
from kiosk.display.device import Display
from kiosk.common.errors import DecoderError, LedgerError
from kiosk.hardware.camera import Camera, Frame
from kiosk.hardware.decoder import Decoder
from kiosk.hardware.panel import Panel, Signal
from kiosk.ledger import Ledger
from kiosk.protocol.event_schema import PREVIEW_CHARS, printable
from kiosk.protocol.passes import PassRejected, PassVerifier, Reason
from kiosk.protocol.ids import new_event_id
from kiosk.rules import Decision, Feedback, Outcome, Program, Redeem, Visit, evaluate
from kiosk.rules.engine import ClockReading, next_goal
from kiosk.session import CounterSession
from kiosk.undo import UNDO_SECONDS, Candidate, compensation, last_candidate
from kiosk.link.state import StatusBoard

log = logging.getLogger(__name__)

NO_CODE = "no_code"
REJECTED = "rejected"
OUT_OF_ORDER = "out_of_order"  # the ledger cannot be read or written: nothing is stamped or shown as stamped
AMOUNT_REQUIRED = "amount_required"
AMOUNT_PENDING = "amount_pending"    # an amount is held for the customer's scan
REPEATED_RECEIPT = "repeated_receipt"  # a till sent a receipt id again: nothing is credited twice
UNDONE = "undone"
NOTHING_TO_UNDO = "nothing_to_undo"
RECENT = 50  # results the staff screen lists


@dataclass
class ScanResult:
    """What happened to one frame or button press; the CLI prints it as JSON."""

    image: str
    outcome: str
    reason: str | None = None
    member: str | None = None
    balance: int | None = None
    goal: int | None = None
    unit: str | None = None
    earned: int = 0
    tier: str | None = None
    rewards_ready: list[str] = field(default_factory=list)
    reward: str | None = None
    event_ids: list[str] = field(default_factory=list)
    decode_ms: float = 0.0
    total_ms: float = 0.0
    amount: str | None = None  # the purchase amount the visit was credited with

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Recent:
    """A result and when it happened, for the staff screen's list of the last scans."""

    at: datetime
    result: ScanResult


class Instant(NamedTuple):
    """One reading of the clock: what a decision is made at and its ledger entry records."""

    wall: datetime
    mono: float


class Kiosk:
    """The scan pipeline and the button, wired to a ledger, a display and a front panel.

    What the customer saw and heard is recorded by the devices themselves (the display's
    ``shown``, the panel's ``history``); the camera is held here for the live loop.
    """

    def __init__(self, *, shop_name: str, decoder: Decoder, verifier: PassVerifier, program: Program,
                 ledger: Ledger, session: CounterSession, clock: Clock, boot: str,
                 display: Display | None = None, panel: Panel | None = None, camera: Camera | None = None,
                 status: StatusBoard | None = None) -> None:
        self.shop_name = shop_name
        self.decoder = decoder
        self.verifier = verifier
        self.program = program
        self.ledger = ledger
        self.session = session
        self.clock = clock
        self.boot = boot
        self.display = display
        self.panel = panel
        self.camera = camera
        self.status = status  # where a ledger failure is reported for ``state`` (set by `run` when synced)
        self.out_of_order: str | None = None  # the ledger error while the last ledger access failed
        self.lock = threading.RLock()  # the scan loop and the staff screen's threads take turns
        self.recent: deque[Recent] = deque(maxlen=RECENT)  # newest last
        self.active_at: float | None = None  # monotonic time of the last result (any thread's)
        self.last_frame: Frame | None = None  # the camera's latest frame (the staff screen's self-test)

    # Set by kiosk.wiring after the kiosk is built; class defaults: no join QR, never offline.
    join_url: str | None = None  # the hub's join page for this kiosk: the idle screen shows it as a QR
    offline: bool = False  # the hub is unreachable: every screen carries the marker (set on the loop thread)

    def show_idle(self) -> None:
        """The idle screen (the shop's join QR if there is a join URL, else its name); while the
        ledger is failing, "out of order" stays up instead. Under the kiosk's lock: the staff
        screen's threads draw too, and two writers would interleave on the display's bus."""
        with self.lock:
            if self.out_of_order is not None:
                self._show(screens.Rejected(OUT_OF_ORDER, self.program.language), None)
                return
            self._show(screens.Idle(self.shop_name, self.program.language, self.join_url), None)

    def close(self) -> None:
        """Release the camera, the front panel (blink threads first, then pins) and the ledger;
        safe to call twice."""
        if self.camera is not None:
            self.camera.close()
        if self.panel is not None:
            self.panel.close()
        self.ledger.close()

    def decode(self, frame: Frame) -> list[bytes]:
        """The codes in view; a decoder failure counts as 'no code' and is logged."""
        self.last_frame = frame
        try:
            return self.decoder.decode(frame.pixels)
        except DecoderError as exc:
            log.warning("scan.decoder_failed", extra={"source": frame.source, "error": str(exc)})
            return []

    def handle_frame(self, frame: Frame, amount: Decimal | None = None) -> ScanResult:
        """Decode, verify, decide, commit, then show. Never raises for bad codes."""
        started = time.perf_counter()
        texts = self.decode(frame)
        return self.handle_codes(frame.source, texts, started, time.perf_counter(), amount)

    def handle_codes(self, source: str, texts: list[bytes], started: float, decoded: float,
                     amount: Decimal | None = None) -> ScanResult:
        """Everything after the decoder; *started*/*decoded* are perf_counter stamps for timing.

        Without an *amount*, a verified pass takes the amount held on the staff screen, if any."""
        if not texts:
            result = ScanResult(source, NO_CODE)
        elif amount is not None and not 0 <= amount <= self.program.max_amount:  # one scan fits one entry
            with self.lock:
                self._show(screens.AmountRequired(self.program.language), Signal.REJECTED)
            result = ScanResult(source, AMOUNT_REQUIRED,
                                reason=f"amount must be between 0 and {self.program.max_amount}")
        else:
            with self.lock:
                result = self._ledger_guard(source, lambda: self._handle_texts(source, texts, amount))
                self._remember(result)
        result.decode_ms = round((decoded - started) * 1000, 3)
        result.total_ms = round((time.perf_counter() - started) * 1000, 3)
        return result

    def _handle_texts(self, source: str, texts: list[bytes], amount: Decimal | None) -> ScanResult:
        distinct = set(texts)
        try:
            if len(distinct) > 1:
                raise PassRejected(Reason.MULTIPLE_CODES, f"{len(distinct)} different codes in view")
            claims = self.verifier.verify(texts[0])
        except PassRejected as rejected:
            return self._reject(source, rejected, texts)
        at = self._now()
        pending = self.session.take_amount() if amount is None else None  # amount first, then the scan
        result = self._credit(source, claims.member, pending.amount if pending else amount, at)
        # scan first: a points programme wants the amount, and the next one entered is this member's
        self.session.await_amount(claims.member if result.outcome == AMOUNT_REQUIRED else None)
        if pending is not None and pending.receipt is not None:
            self.ledger.settle_receipt(pending.receipt, result.member, result.outcome)
        return result

    def _credit(self, source: str, member: str, amount: Decimal | None, at: Instant) -> ScanResult:
        """A visit of *member* with *amount*, through the engine, committed and shown; the
        member is then at the counter (the session opens in the stamp's transaction)."""
        state = self.ledger.member_state(member, self.program)
        visit = Visit(new_event_id(), member, amount=amount, clock=ClockReading(self.boot, at.mono))
        result = self._commit_and_show(source, evaluate(state, visit, at.wall, self.program), at,
                                       opens=self.session.row(member))
        result.amount = None if amount is None else str(amount)
        return result

    # -- the purchase amount: the one place where an amount meets a scan (kiosk/session.py) --
    def enter_amount(self, amount: Decimal) -> ScanResult:
        """The staff screen's keypad: *amount* for the customer at the counter.

        If a member scanned without an amount (``amount_required``) within ``counter_seconds``,
        their visit is credited now (a new visit through the engine); otherwise the amount is
        held for the next verified scan (``amount_pending``). Raises ValueError for an amount
        outside 0..``max_amount``.
        """
        self.check_amount(amount)
        with self.lock:
            member = self.session.take_awaiting()
            if member is None:  # nothing is written: no ledger guard
                result = self._hold(amount, None, "amount")
            else:
                result = self._ledger_guard("amount", lambda: self._credit_awaiting(member, amount, None, "amount"))
            self._remember(result)
            return result

    def _hold(self, amount: Decimal, receipt: str | None, source: str) -> ScanResult:
        held = self.session.hold_amount(amount, receipt)
        seconds = round(held.expires - self.clock.monotonic())
        return ScanResult(source, AMOUNT_PENDING, reason=f"held for the next scan ({seconds} s)", amount=str(amount))

    def _credit_awaiting(self, member: str, amount: Decimal, receipt: str | None, source: str) -> ScanResult:
        """Scan first, amount second: credit the visit of *member*, who scanned without one."""
        at = self._now()
        result = self._credit(source, member, amount, at)  # the customer is still at the counter
        if receipt is not None:
            self.ledger.settle_receipt(receipt, result.member, result.outcome)
        return result

    def purchase(self, amount: Decimal, receipt: str) -> ScanResult:
        """A till's purchase: ``enter_amount`` once per *receipt* id (kept in the ledger file).

        A repeated id credits nothing and answers ``repeated_receipt``; an amount that could not
        be taken (the ledger failed) frees the id again, so the till may retry. Raises ValueError
        for an amount out of range."""
        self.check_amount(amount)
        with self.lock:
            result = self._ledger_guard("pos", lambda: self._purchase(amount, receipt))
            self._remember(result)
            return result

    def _purchase(self, amount: Decimal, receipt: str) -> ScanResult:
        if not self.ledger.claim_receipt(receipt, str(amount), self.clock.now()):
            return ScanResult("pos", REPEATED_RECEIPT, reason=f"receipt {receipt} was received before",
                              amount=str(amount))
        try:
            member = self.session.take_awaiting()
            if member is None:
                return self._hold(amount, receipt, "pos")
            return self._credit_awaiting(member, amount, receipt, "pos")
        except LedgerError:
            with suppress(LedgerError):
                self.ledger.release_receipt(receipt)
            raise

    def cancel_amount(self) -> None:
        """Drop the amount held for the next scan (staff typed a wrong one)."""
        with self.lock:
            self.session.cancel_amount()

    def check_amount(self, amount: Decimal) -> None:
        """Raise ValueError unless one scan may carry *amount* under the programme."""
        if not amount.is_finite() or not 0 <= amount <= self.program.max_amount:
            raise ValueError(f"the amount must be between 0 and {self.program.max_amount}")

    # -- undo: a compensating entry, never a delete (kiosk/undo.py) --
    def undoable(self) -> Candidate | None:
        """The last stamp or redemption of this kiosk (whether it can still be undone: ``refusal``)."""
        with self.lock:
            return last_candidate(self.ledger.recent_events(), self.boot, self.clock.monotonic())

    def undo(self, within: float = UNDO_SECONDS) -> ScanResult:
        """Take the last stamp or redemption back if it is at most *within* seconds old."""
        with self.lock:
            result = self._ledger_guard("undo", lambda: self._undo(within))
            self._remember(result)
            return result

    def _undo(self, within: float) -> ScanResult:
        at = self._now()
        candidate = last_candidate(self.ledger.recent_events(), self.boot, at.mono)
        if candidate is None:
            return ScanResult("undo", NOTHING_TO_UNDO, reason="there is no stamp or redemption to undo")
        member = candidate.target.member
        refusal = candidate.refusal(within)
        if refusal is not None:
            return ScanResult("undo", NOTHING_TO_UNDO, reason=refusal, member=member)
        # the customer is still at the counter: the button acts for them
        events = self.ledger.append(compensation(candidate), at.wall, at.mono, self.boot,
                                    session=self.session.row(member))
        state = self.ledger.member_state(member, self.program)
        log.info("kiosk.undone", extra={"kind": candidate.target.kind, "event_id": candidate.target.event_id})
        return ScanResult("undo", UNDONE, reason=f"{candidate.what} taken back",
                          member=member, balance=state.balance, goal=next_goal(state, self.program, at.wall),
                          unit=self.program.unit, earned=sum(e.delta for e in events if e.member == member),
                          event_ids=[e.event_id for e in events])

    def press_button(self) -> ScanResult:
        """The staff button: redeem the ready reward of the member at the counter."""
        with self.lock:
            result = self._ledger_guard("button", self._press)
            self._remember(result)
            return result

    def _remember(self, result: ScanResult) -> None:
        self.recent.append(Recent(self.clock.now(), result))
        self.active_at = self.clock.monotonic()

    def _press(self) -> ScanResult:
        at = self._now()
        member = self.session.member()
        if member is None:
            feedback = Feedback(Outcome.NOTHING_TO_REDEEM, "", 0, self.program.unit, reason="no_customer")
            return self._commit_and_show("button", Decision((), feedback, None), at)
        state = self.ledger.member_state(member, self.program)
        decision = evaluate(state, Redeem(new_event_id(), member), at.wall, self.program)
        return self._commit_and_show("button", decision, at)

    def _now(self) -> Instant:
        """The one clock reading of a scan or press."""
        return Instant(self.clock.now(), self.clock.monotonic())

    def apply_program(self, program: Program) -> None:
        """Switch to a new (already validated) programme without a restart."""
        self.program = program

    def _ledger_guard(self, source: str, work) -> ScanResult:
        """Run a scan or a press; a ledger that cannot be read or written (a full disk, a corrupt
        page) shows "out of order - call staff" and is reported in ``state``, and the loop goes on:
        the next scan tries again, and stamps already written stay where they are."""
        try:
            result = work()
        except LedgerError as exc:
            if self.out_of_order != str(exc):
                log.error("kiosk.out_of_order", extra={"source": source, "error": str(exc)})
            self.out_of_order = str(exc)
            if self.status is not None:
                self.status.set_error("scan", f"out of order: {exc}")
            self._show(screens.Rejected(OUT_OF_ORDER, self.program.language), Signal.REJECTED)
            return ScanResult(source, OUT_OF_ORDER, reason=str(exc))
        if self.out_of_order is not None:
            log.warning("kiosk.back_in_order", extra={"error": self.out_of_order})
            self.out_of_order = None
            if self.status is not None:
                self.status.set_error("scan", None)
        return result

    def _reject(self, source: str, rejected: PassRejected, texts: list[bytes]) -> ScanResult:
        preview = printable(texts[0][:PREVIEW_CHARS].decode("latin-1"))  # a code may hold any byte, NUL too
        detail = {"detail": rejected.detail, "codes": len(texts), "preview": preview}
        at = self._now()
        event = self.ledger.reject(rejected.reason, detail, at.wall, at.mono, self.boot)
        log.info("scan.rejected", extra={"reason": rejected.reason, "source": source})
        self._show(screens.Rejected(rejected.reason, self.program.language), Signal.REJECTED)
        return ScanResult(source, REJECTED, reason=rejected.reason, event_ids=[event.event_id])

    def _commit_and_show(self, source: str, decision: Decision, at: Instant,
                         opens: tuple[str, str, float] | None = None) -> ScanResult:
        """Commit *decision* at the instant it was made at, then show it; *opens* (a session
        row) puts the member at the counter in the same transaction."""
        events = []
        if decision.entries:  # committed (fsync'd) before the customer sees anything
            events = self.ledger.append(decision.entries, at.wall, at.mono, self.boot, session=opens)
        elif opens is not None:  # already stamped, amount required: still at the counter
            self.ledger.open_session(*opens)
        fb = decision.feedback
        self._show(*_presentation(fb, self.program))
        return ScanResult(source, fb.outcome.value, reason=fb.reason, member=fb.member or None,
                          balance=fb.balance if fb.member else None, goal=fb.goal, unit=fb.unit, earned=fb.earned,
                          tier=fb.tier, rewards_ready=list(fb.rewards_ready), reward=fb.reward,
                          event_ids=[e.event_id for e in events])

    def _show(self, screen: screens.Screen, signal: Signal | None) -> None:
        """Put *screen* on the display (marked while the hub is unreachable) and play the
        programme's cue for *signal* on the panel."""
        if self.display is not None:
            self.display.show(screens.marked(screen, self.offline))
        if self.panel is not None and signal is not None:
            self.panel.signal(signal, self.program.feedback.cue(signal.value))


def _presentation(fb: Feedback, program: Program) -> tuple[screens.Screen, Signal]:
    """Map engine feedback to a screen (in the programme's language) and a panel signal."""
    lang, unit, goal = program.language, fb.unit, fb.goal or 0
    reward = program.reward(fb.reward) if fb.reward else None
    name = reward.name if reward else ""
    match fb.outcome:
        case Outcome.STAMPED:
            return screens.Stamped(fb.balance, goal, unit, fb.earned, lang), Signal.STAMPED
        case Outcome.REWARD_READY:
            return screens.RewardReady(name, fb.balance, goal, unit, lang), Signal.REWARD_READY
        case Outcome.ALREADY_STAMPED | Outcome.DUPLICATE:
            return screens.AlreadyStamped(fb.balance, goal, fb.minutes_left, unit, lang), Signal.ALREADY_STAMPED
        case Outcome.AMOUNT_REQUIRED:
            return screens.AmountRequired(lang), Signal.REJECTED
        case Outcome.REDEEMED:
            return screens.Redeemed(name, fb.balance, unit, lang), Signal.REDEEMED
        case _:
            return screens.NothingToRedeem(lang), Signal.NOTHING_TO_REDEEM
