"""The whole scan path on simulated hardware, with real QR decoding of rendered frames.

Passes are drawn onto 640x480 camera-like frames (phone in a hand: rotation, perspective,
blur, noise, glare, low contrast); the test asserts who was stamped, what the counter saw
and heard (on the display and the front panel themselves: the ``shown`` screens and the
panel's ``history``) and what the ledger holds. The ``kiosk`` fixture runs each scenario on
the simulated backend, and on a real Raspberry Pi too (``pi`` marker).
"""

import queue
import threading
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import segno
from PIL import Image

from kiosk.clock import FakeClock
from kiosk.config import load_config
from kiosk.display import screens
from kiosk.hardware import scenes
from kiosk.hardware.camera import Frame
from kiosk.hardware.decoder import ZxingDecoder
from kiosk.hardware.panel import Signal
from kiosk.ledger import SCAN_REJECTED
from kiosk.loop import run as run_loop
from kiosk.rules.program import Program, Pulses
from kiosk.wiring import build_kiosk

LOOKS = {
    "flat": scenes.Look(),
    "rotated +30": scenes.Look(rotation_deg=30),
    "rotated -30": scenes.Look(rotation_deg=-30),
    "perspective": scenes.Look(tilt=0.12, rotation_deg=12),
    "blur": scenes.Look(blur=1.0),
    "sensor noise": scenes.Look(noise=9),
    "glare spot": scenes.Look(glare=90),
    "low contrast": scenes.Look(contrast=0.45),
    "all at once": scenes.Look.hardest(),
}


def frame_of(texts, rng, look=None, source="frame") -> Frame:
    return Frame(scenes.render(texts, rng, look), source=source)


def screen(kiosk) -> screens.Screen:
    """What the display shows now."""
    return kiosk.display.shown[-1]


def signals(kiosk) -> list[Signal]:
    """Everything the front panel has played, in order."""
    return [played.signal for played in kiosk.panel.history]


@pytest.mark.parametrize("look", LOOKS.values(), ids=LOOKS.keys())
def test_pass_on_a_phone_is_read_and_stamped(kiosk, hub, rng, look):
    anna = hub.issue("Anna")
    result = kiosk.handle_frame(frame_of(anna.url, rng, look))
    assert (result.outcome, result.member, result.balance) == ("stamped", anna.member, 1)
    assert [e.event_id for e in kiosk.ledger.events(anna.member)] == result.event_ids
    assert (screen(kiosk), signals(kiosk)) == (screens.Stamped(1, 10), [Signal.STAMPED])


def test_zxing_backend_reads_the_same_frames(kiosk, hub, rng):
    kiosk.decoder = ZxingDecoder()
    anna = hub.issue("Anna")
    result = kiosk.handle_frame(frame_of(anna.url, rng, scenes.Look.hardest()))
    assert (result.outcome, result.member) == ("stamped", anna.member)


def test_ten_visits_earn_the_reward_and_the_button_redeems_it(kiosk, hub, rng, clock):
    anna = hub.issue("Anna")
    outcomes = []
    for _ in range(10):
        clock.advance(2 * 3600)
        outcomes.append(kiosk.handle_frame(frame_of(anna.url, rng)).outcome)
    assert outcomes == ["stamped"] * 9 + ["reward_ready"]
    assert screen(kiosk) == screens.RewardReady("Free coffee", 10, 10)
    assert signals(kiosk) == [Signal.STAMPED] * 9 + [Signal.REWARD_READY]
    clock.advance(5)  # staff press the button while the customer is at the counter
    redeemed = kiosk.press_button()
    assert (redeemed.outcome, redeemed.balance, redeemed.reward) == ("redeemed", 0, "free-coffee")
    assert kiosk.ledger.member_state(anna.member, kiosk.program).balance == 0
    assert (screen(kiosk), signals(kiosk)[-1]) == (screens.Redeemed("Free coffee", 0), Signal.REDEEMED)
    again = kiosk.press_button()
    assert (again.outcome, again.reason) == ("nothing_to_redeem", "no_reward_ready")
    assert (screen(kiosk), signals(kiosk)[-1]) == (screens.NothingToRedeem(), Signal.NOTHING_TO_REDEEM)


def test_button_with_nobody_at_the_counter_gives_a_distinct_signal(kiosk, clock):
    result = kiosk.press_button()
    assert (result.outcome, result.reason) == ("nothing_to_redeem", "no_customer")
    assert (screen(kiosk), signals(kiosk)) == (screens.NothingToRedeem(), [Signal.NOTHING_TO_REDEEM])


def test_the_staff_button_on_the_panel_redeems_and_the_led_blinks(sim_kiosk, hub, rng):
    """The mock button pressed through gpiozero, the mock LED's pin driven: simulated pins only."""
    program = Program(rewards=({"id": "free-coffee", "name": "Free coffee", "cost": 1},))
    sim_kiosk.apply_program(program)
    camera, results, stop = sim_kiosk.camera, queue.Queue(), threading.Event()
    loop = threading.Thread(target=run_loop, args=(sim_kiosk, camera, stop, results.put))
    loop.start()
    try:
        camera.present(scenes.render(hub.issue("Anna").url, rng), source="anna")
        assert results.get(timeout=20).outcome == "reward_ready"
        sim_kiosk.panel.led.pin.clear_states()
        sim_kiosk.panel.button.pin.drive_low()
        sim_kiosk.panel.button.pin.drive_high()
        assert results.get(timeout=20).outcome == "redeemed"
    finally:
        stop.set()
        loop.join(10)
    assert [f.source for f in camera.frames_shown] == ["anna"]
    assert signals(sim_kiosk) == [Signal.REWARD_READY, Signal.REDEEMED]
    assert any(s.state for s in sim_kiosk.panel.led.pin.states)  # the LED pattern started on the pin
    assert sim_kiosk.display.images[-1].tobytes() == screens.render(screens.Redeemed("Free coffee", 0)).tobytes()


def test_counter_session_expires(kiosk, hub, rng, clock):
    anna = hub.issue("Anna")
    kiosk.handle_frame(frame_of(anna.url, rng))
    clock.advance(31)
    assert kiosk.press_button().reason == "no_customer"


def test_same_pass_twice_inside_the_cooldown_is_one_stamp(kiosk, hub, rng, clock):
    anna = hub.issue("Anna")
    first = kiosk.handle_frame(frame_of(anna.url, rng))
    clock.advance(20 * 60)
    second = kiosk.handle_frame(frame_of(anna.url, rng))
    assert (first.outcome, second.outcome) == ("stamped", "already_stamped")
    assert second.balance == 1 and second.event_ids == []
    assert (screen(kiosk), signals(kiosk)[-1]) == (screens.AlreadyStamped(1, 10, 40), Signal.ALREADY_STAMPED)
    assert kiosk.ledger.member_state(anna.member, kiosk.program).balance == 1
    clock.advance(41 * 60)
    assert kiosk.handle_frame(frame_of(anna.url, rng)).outcome == "stamped"


def test_wall_clock_set_back_never_grants_a_stamp(kiosk, hub, rng, clock):
    anna = hub.issue("Anna")
    kiosk.handle_frame(frame_of(anna.url, rng))
    clock.wall = clock.wall.replace(year=2025)  # e.g. a Pi booted offline with no RTC
    assert kiosk.handle_frame(frame_of(anna.url, rng)).outcome == "already_stamped"


def _forged(url: str) -> str:
    head, sig = url.rsplit(".", 1)  # the signature is decimal digits: change one near its end
    return f"{head}.{sig[:-20]}{'2' if sig[-20] == '1' else '1'}{sig[-19:]}"


def _junk_qr_frame(rng) -> np.ndarray:
    junk = np.random.default_rng(7).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    code = segno.make_qr(junk, error="l")
    image = Image.new("L", (640, 480), 200)
    import io

    buf = io.BytesIO()
    code.save(buf, kind="png", scale=2, border=4)
    buf.seek(0)
    qr_img = Image.open(buf).convert("L")
    image.paste(qr_img, ((640 - qr_img.width) // 2, (480 - qr_img.height) // 2))
    return np.asarray(image)


def test_bad_codes_are_rejected_with_reasons_and_the_loop_keeps_going(kiosk, hub, rng, tmp_path):
    anna = hub.issue("Anna")
    hub.init("baeckerei-kurz", "Baeckerei Kurz")
    foreign = hub.issue("Bob", merchant="baeckerei-kurz")
    bruno = hub.issue("Bruno")
    cases = [
        ("forged signature", frame_of(_forged(anna.url), rng), "rejected", "forged"),
        ("other merchant", frame_of(foreign.url, rng), "rejected", "wrong_merchant"),
        ("truncated", frame_of(anna.url[:-30], rng), "rejected", "truncated"),
        ("random url", frame_of("https://example.com/lunch-menu", rng), "rejected", "not_a_pass"),
        ("2 KB binary junk", Frame(_junk_qr_frame(rng), "junk"), "rejected", "not_a_pass"),
        ("two passes", frame_of([anna.url, bruno.url], rng, scenes.Look()), "rejected", "multiple_codes"),
        ("empty counter", Frame(np.full((480, 640), 128, np.uint8), "empty"), "no_code", None),
    ]
    for name, frame, outcome, reason in cases:
        result = kiosk.handle_frame(frame)
        assert (result.outcome, result.reason) == (outcome, reason), name
        if outcome == "rejected":
            assert (screen(kiosk), signals(kiosk)[-1]) == (screens.Rejected(reason), Signal.REJECTED), name
    rejected = [e for e in kiosk.ledger.events() if e.kind == SCAN_REJECTED]
    assert [e.reason for e in rejected] == [c[3] for c in cases if c[2] == "rejected"]
    assert all(e.member is None and e.delta == 0 for e in rejected)
    # After all of that, a good pass still works and nobody got a stamp from the bad ones.
    assert kiosk.handle_frame(frame_of(anna.url, rng)).outcome == "stamped"
    assert sum(e.delta for e in kiosk.ledger.events()) == 1


def test_each_outcome_has_its_own_signal(kiosk, hub, rng, clock):
    anna = hub.issue("Anna")
    kiosk.handle_frame(frame_of(anna.url, rng))
    kiosk.handle_frame(frame_of(anna.url, rng))
    kiosk.handle_frame(frame_of("https://example.com", rng))
    kiosk.handle_frame(Frame(np.full((480, 640), 128, np.uint8), "empty counter"))  # no code: nothing played
    clock.advance(60)
    kiosk.press_button()
    assert signals(kiosk) == [Signal.STAMPED, Signal.ALREADY_STAMPED, Signal.REJECTED, Signal.NOTHING_TO_REDEEM]
    assert [type(s) for s in kiosk.display.shown][-4:] == [screens.Stamped, screens.AlreadyStamped,
                                                           screens.Rejected, screens.NothingToRedeem]


def test_the_panel_plays_the_programmes_feedback_patterns(kiosk, hub, rng):
    """[feedback] in the programme decides the LED and the beep; what it leaves out stays as it was."""
    quiet = Program(feedback={"rejected": {"buzzer": {"n": 0}}, "stamped": {"led": {"on": 0.2, "n": 2}}})
    kiosk.apply_program(quiet)
    kiosk.handle_frame(frame_of("https://example.com/menu", rng))
    kiosk.handle_frame(frame_of(hub.issue("Anna").url, rng))
    rejected, stamped = kiosk.panel.history
    assert (rejected.signal, rejected.buzzer.n, rejected.led) == (Signal.REJECTED, 0, Program().feedback.rejected.led)
    assert (stamped.signal, stamped.led, stamped.buzzer) == (Signal.STAMPED, Pulses(on=0.2, off=0.1, n=2),
                                                             Program().feedback.stamped.buzzer)


SAMPLE_URL = ("HTTPS://STEMPEL.EXAMPLE/P/1.SI6FZ7.CAFE-ROSA.MKGK7YK52V.MSWPNV5GEKND2DQR6ILKBSLQ2BIRBQJ2O2M37HY4"
              "7NHLVAYL25I6FCXFVAWV7DOTDI5JIXKPXGZ4L74XTQJQ3QPSCT7O5YKRILY24BQ")


def test_zbar_gets_a_second_look_at_small_blurred_codes():
    """Far-away, slightly blurred codes are what ZBar misses; the upscaled retry reads them."""
    from kiosk.hardware.decoder import PyzbarDecoder

    url = SAMPLE_URL
    look = scenes.Look(rotation_deg=20, tilt=0.05, qr_px=172, blur=1.2, noise=5, glare=30, contrast=0.7)
    frames = [scenes.render(url, np.random.default_rng(seed), look) for seed in range(20)]
    plain, retry = PyzbarDecoder(retry_upscaled=False), PyzbarDecoder()
    read_plain = [plain.decode(f) == [url.encode()] for f in frames]
    read_retry = [retry.decode(f) == [url.encode()] for f in frames]
    assert all(read_retry)
    assert not all(read_plain)  # the scene really is one the single pass misses


def test_an_ntp_step_of_the_wall_clock_neither_grants_nor_blocks(kiosk, hub, rng, clock):
    """Same boot: the cooldown runs on the monotonic clock, whatever the wall clock does."""
    anna, ben = hub.issue("Anna"), hub.issue("Ben")
    assert kiosk.handle_frame(frame_of(anna.url, rng)).outcome == "stamped"
    clock.wall += timedelta(hours=3)  # NTP steps the clock forward (it was behind after an offline boot)
    clock.advance(5 * 60)
    assert kiosk.handle_frame(frame_of(anna.url, rng)).outcome == "already_stamped"  # not a free stamp

    assert kiosk.handle_frame(frame_of(ben.url, rng)).outcome == "stamped"
    clock.wall -= timedelta(hours=5)  # ... or backwards (it was ahead)
    clock.advance(61 * 60)
    assert kiosk.handle_frame(frame_of(ben.url, rng)).outcome == "stamped"  # not blocked for hours


def test_after_a_reboot_a_clock_behind_the_last_visit_never_grants(kiosk, hub, rng, clock):
    anna = hub.issue("Anna")
    kiosk.handle_frame(frame_of(anna.url, rng))
    kiosk.boot = "another-boot"  # the kiosk restarted; monotonic time starts again
    kiosk.session._boot = "another-boot"
    clock.mono = 5.0
    clock.wall -= timedelta(minutes=50)  # fake-hwclock restored an older time
    assert kiosk.handle_frame(frame_of(anna.url, rng)).outcome == "already_stamped"
    clock.advance(3 * 3600)
    assert kiosk.handle_frame(frame_of(anna.url, rng)).outcome == "stamped"


class TickingClock(FakeClock):
    """A clock that moves on by *step* seconds after every reading, so two readings never agree."""

    def __init__(self, start: datetime, step: float) -> None:
        super().__init__(start)
        self.step = timedelta(seconds=step)

    def now(self) -> datetime:
        at, self.wall = self.wall, self.wall + self.step
        return at

    def monotonic(self) -> float:
        at, self.mono = self.mono, self.mono + self.step.total_seconds()
        return at


def test_a_scan_is_decided_and_committed_at_one_instant(kiosk_dir, hub, rng, backend):
    """A happy hour ends while the clock ticks 20 minutes per reading: the bonus the decision gave
    is in the ledger at the time it was given, never after the happy hour."""
    opens = datetime(2026, 3, 2, 9, 20, tzinfo=timezone.utc)  # 10:20 in Berlin, happy hour until 10:30
    config = load_config(None, env={}, kiosk__data_dir=str(kiosk_dir), hardware__backend=backend)
    kiosk = build_kiosk(config, clock=TickingClock(opens, step=20 * 60), live=False)
    kiosk.apply_program(Program(campaigns=({"id": "happy-hour", "name": "Happy hour", "bonus": 5,
                                             "start_time": "10:00", "end_time": "10:30"},)))
    try:
        result = kiosk.handle_frame(frame_of(hub.issue("Anna").url, rng))
        events = kiosk.ledger.events()
    finally:
        kiosk.close()
    assert result.outcome == "stamped" and {"base-rate", "campaign:happy-hour"} <= {e.rule for e in events}
    assert {e.occurred_at for e in events} == {opens}  # the instant the decision saw, not a later reading
    assert len({e.mono_ns for e in events}) == 1


def test_a_stamp_and_its_counter_session_are_one_commit(sim_kiosk, hub, rng, clock):
    """One fsync per stamp: the session that lets the button act for the member is written in
    the stamp's own transaction (bench/stamp_commits.py measured the second commit it replaces)."""
    issued = hub.issue("Anna")
    statements: list[str] = []
    sim_kiosk.ledger._db.set_trace_callback(statements.append)  # the SQL the ledger sends
    result = sim_kiosk.handle_frame(frame_of([issued.url], rng))
    sim_kiosk.ledger._db.set_trace_callback(None)
    assert result.outcome in ("stamped", "reward_ready")
    commits = [s for s in statements if s.strip().upper() == "COMMIT"]
    assert len(commits) == 1, statements
    assert sim_kiosk.session.member() == issued.member
    clock.advance(5)
    pressed = sim_kiosk.press_button()  # the button acts for Anna: no reward yet, but not "no customer"
    assert (pressed.outcome, pressed.member, pressed.reason) == ("nothing_to_redeem", issued.member, "no_reward_ready")
