"""The whole scan path on simulated hardware, with real QR decoding of rendered frames.

Passes are drawn onto 640x480 camera-like frames (phone in a hand: rotation, perspective,
blur, noise, glare, low contrast); the test asserts who was stamped and what the counter
saw, heard and what the ledger holds.
"""

from datetime import timedelta

import numpy as np
import pytest
import segno
from PIL import Image

from kiosk.display import screens
from kiosk.hardware import scenes
from kiosk.hardware.camera import Frame
from kiosk.hardware.decoder import ZxingDecoder
from kiosk.hardware.panel import Signal
from kiosk.ledger import SCAN_REJECTED

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


@pytest.mark.parametrize("look", LOOKS.values(), ids=LOOKS.keys())
def test_pass_on_a_phone_is_read_and_stamped(kiosk, hub, rng, look):
    anna = hub.issue("Anna")
    result = kiosk.handle_frame(frame_of(anna.url, rng, look))
    assert (result.outcome, result.member, result.balance) == ("stamped", anna.member, 1)
    assert [e.event_id for e in kiosk.ledger.events(anna.member)] == result.event_ids
    assert kiosk.last_screen == screens.Stamped(1, 10)


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
    assert kiosk.last_screen == screens.RewardReady("Free coffee", 10, 10)
    clock.advance(5)  # staff press the button while the customer is at the counter
    redeemed = kiosk.press_button()
    assert (redeemed.outcome, redeemed.balance, redeemed.reward) == ("redeemed", 0, "free-coffee")
    assert kiosk.ledger.member_state(anna.member, kiosk.program).balance == 0
    again = kiosk.press_button()
    assert (again.outcome, again.reason) == ("nothing_to_redeem", "no_reward_ready")


def test_button_with_nobody_at_the_counter_gives_a_distinct_signal(kiosk, clock):
    led_before = len(kiosk.panel.led.pin.states)
    result = kiosk.press_button()
    assert (result.outcome, result.reason) == ("nothing_to_redeem", "no_customer")
    assert kiosk.last_screen == screens.NothingToRedeem()
    assert len(kiosk.panel.led.pin.states) > led_before  # the LED pattern started


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
    assert kiosk.last_screen == screens.AlreadyStamped(1, 10, 40)
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
            assert kiosk.last_screen == screens.Rejected(reason), name
    rejected = [e for e in kiosk.ledger.events() if e.kind == SCAN_REJECTED]
    assert [e.reason for e in rejected] == [c[3] for c in cases if c[2] == "rejected"]
    assert all(e.member is None and e.delta == 0 for e in rejected)
    # After all of that, a good pass still works and nobody got a stamp from the bad ones.
    assert kiosk.handle_frame(frame_of(anna.url, rng)).outcome == "stamped"
    assert sum(e.delta for e in kiosk.ledger.events()) == 1


def test_each_outcome_has_its_own_signal(kiosk, hub, rng, clock):
    anna = hub.issue("Anna")
    seen = []
    for action in (lambda: kiosk.handle_frame(frame_of(anna.url, rng)),
                   lambda: kiosk.handle_frame(frame_of(anna.url, rng)),
                   lambda: kiosk.handle_frame(frame_of("https://example.com", rng)),
                   lambda: (clock.advance(60), kiosk.press_button())):
        action()
        seen.append(kiosk.last_signal)
    assert seen == [Signal.STAMPED, Signal.ALREADY_STAMPED, Signal.REJECTED, Signal.NOTHING_TO_REDEEM]


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
