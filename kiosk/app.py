"""Where a scan becomes a stamp.

``Kiosk.handle_frame`` runs one camera frame through every stage:
decoder → pass verifier → counter session → rules engine → ledger → feedback.
``Kiosk.press_button`` is the staff button: redeem for the member at the counter.
Each stage is a small object passed in, so tests replace any of them. The clock is read
once per scan or press: the decision and the ledger entry carry the same instant.
"""

from __future__ import annotations

import logging
import time
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
from kiosk.rules.engine import ClockReading
from kiosk.session import CounterSession
from kiosk.link.state import StatusBoard

log = logging.getLogger(__name__)

NO_CODE = "no_code"
REJECTED = "rejected"
OUT_OF_ORDER = "out_of_order"  # the ledger cannot be read or written: nothing is stamped or shown as stamped
AMOUNT_REQUIRED = "amount_required"


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

    def to_dict(self) -> dict:
        return asdict(self)


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

    def show_idle(self) -> None:
        """The idle screen; while the ledger is failing, "out of order" stays up instead."""
        if self.out_of_order is not None:
            self._show(screens.Rejected(OUT_OF_ORDER, self.program.language), None)
            return
        self._show(screens.Idle(self.shop_name, self.program.language), None)

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
        """Everything after the decoder; *started*/*decoded* are perf_counter stamps for timing."""
        if not texts:
            result = ScanResult(source, NO_CODE)
        elif amount is not None and not 0 <= amount <= self.program.max_amount:  # one scan fits one entry
            self._show(screens.AmountRequired(self.program.language), Signal.REJECTED)
            result = ScanResult(source, AMOUNT_REQUIRED,
                                reason=f"amount must be between 0 and {self.program.max_amount}")
        else:
            result = self._ledger_guard(source, lambda: self._handle_texts(source, texts, amount))
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
        self.session.open(claims.member)
        state = self.ledger.member_state(claims.member, self.program)
        visit = Visit(new_event_id(), claims.member, amount=amount, clock=ClockReading(self.boot, at.mono))
        return self._commit_and_show(source, evaluate(state, visit, at.wall, self.program), at)

    def press_button(self) -> ScanResult:
        """The staff button: redeem the ready reward of the member at the counter."""
        return self._ledger_guard("button", self._press)

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

    def _commit_and_show(self, source: str, decision: Decision, at: Instant) -> ScanResult:
        """Commit *decision* at the instant it was made at, then show it."""
        events = []
        if decision.entries:  # committed (fsync'd) before the customer sees anything
            events = self.ledger.append(decision.entries, at.wall, at.mono, self.boot)
        fb = decision.feedback
        self._show(*_presentation(fb, self.program))
        return ScanResult(source, fb.outcome.value, reason=fb.reason, member=fb.member or None,
                          balance=fb.balance if fb.member else None, goal=fb.goal, unit=fb.unit, earned=fb.earned,
                          tier=fb.tier, rewards_ready=list(fb.rewards_ready), reward=fb.reward,
                          event_ids=[e.event_id for e in events])

    def _show(self, screen: screens.Screen, signal: Signal | None) -> None:
        """Put *screen* on the display and play the programme's cue for *signal* on the panel."""
        if self.display is not None:
            self.display.show(screen)
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
