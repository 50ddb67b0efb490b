"""The front panel on gpiozero's MockFactory, and the feedback patterns the programme gives it."""

import pytest
from gpiozero.pins.mock import MockFactory

from kiosk.common.errors import ConfigError
from kiosk.hardware.panel import FrontPanel, Played, Signal
from kiosk.rules.program import Cue, Program, Pulses, load_program

TODAY = {  # the patterns every kiosk played before [feedback] existed: still the defaults
    Signal.STAMPED: ((0.4, 0.1, 1), (0.08, 0.05, 1)),
    Signal.REWARD_READY: ((0.15, 0.15, 5), (0.08, 0.06, 3)),
    Signal.ALREADY_STAMPED: ((0.1, 0.1, 2), (0.05, 0.1, 2)),
    Signal.REDEEMED: ((0.8, 0.1, 1), (0.4, 0.1, 1)),
    Signal.REJECTED: ((0.05, 0.05, 8), (0.6, 0.1, 1)),
    Signal.NOTHING_TO_REDEEM: ((0.1, 0.3, 4), (0.05, 0.25, 4)),
}


def pulses_on(pin) -> int:
    """How many times a mock pin went high."""
    return sum(1 for s in pin.states if s.state)


@pytest.fixture
def panel():
    p = FrontPanel(led_pin=17, buzzer_pin=27, button_pin=22, pin_factory=MockFactory())
    yield p
    p.close()


@pytest.mark.parametrize("signal", list(Signal), ids=[s.value for s in Signal])
def test_default_feedback_is_the_patterns_kiosks_always_played(signal):
    led, buzzer = TODAY[signal]
    cue = Program().feedback.cue(signal.value)
    assert cue == Cue(led=Pulses(on=led[0], off=led[1], n=led[2]), buzzer=Pulses(on=buzzer[0], off=buzzer[1], n=buzzer[2]))


@pytest.mark.slow  # plays every default pattern in real time (~6 s)
def test_signals_blink_and_beep_their_own_number_of_pulses(panel):
    feedback = Program().feedback
    pulses = {}
    for signal in Signal:
        panel.led.pin.clear_states()
        panel.buzzer.pin.clear_states()
        panel.signal(signal, feedback.cue(signal.value), wait=True)
        pulses[signal] = (pulses_on(panel.led.pin), pulses_on(panel.buzzer.pin))
        assert (panel.led.value, panel.buzzer.value) == (0, 0)  # both patterns ended off
    assert pulses == {s: (led[2], buzzer[2]) for s, (led, buzzer) in TODAY.items()}
    assert [p.signal for p in panel.history] == list(Signal)


def test_waiting_waits_for_the_longer_pattern_even_when_it_is_the_beep(panel):
    cue = Cue(led=Pulses(on=0.01, off=0.01, n=1), buzzer=Pulses(on=0.05, off=0.05, n=3))
    panel.signal(Signal.REJECTED, cue, wait=True)
    assert pulses_on(panel.buzzer.pin) == 3 and panel.buzzer.value == 0
    assert list(panel.history) == [Played(Signal.REJECTED, cue.led, cue.buzzer)]


def test_a_silent_cue_keeps_the_buzzer_quiet(panel):
    cue = Cue(led=Pulses(on=0.02, off=0.01, n=2), buzzer=Pulses(on=0.1, off=0, n=0))
    panel.signal(Signal.STAMPED, cue, wait=True)
    assert (pulses_on(panel.led.pin), pulses_on(panel.buzzer.pin)) == (2, 0)


def test_button_press_calls_back(panel):
    presses = []
    panel.on_press(lambda: presses.append("press"))
    panel.button.pin.drive_low()
    panel.button.pin.drive_high()
    assert presses == ["press"]


def test_a_programme_changes_one_beep_and_keeps_the_rest(tmp_path):
    path = tmp_path / "quiet.toml"
    path.write_text('[feedback.rejected]\nbuzzer = { on = 0.2, n = 2 }\n[feedback.stamped.led]\nn = 3\n')
    feedback = load_program(path).feedback
    assert feedback.rejected.buzzer == Pulses(on=0.2, off=0.1, n=2)  # off kept from today's pattern
    assert feedback.rejected.led == Program().feedback.rejected.led
    assert feedback.stamped.led == Pulses(on=0.4, off=0.1, n=3)
    assert feedback.redeemed == Program().feedback.redeemed


@pytest.mark.parametrize("toml, field", [
    ("[feedback.rejected]\nbuzzer = { n = 21 }\n", "[feedback.rejected.buzzer.n]"),
    ("[feedback.rejected]\nbuzzer = { on = 0 }\n", "[feedback.rejected.buzzer.on]"),
    ("[feedback.rejected]\nled = { off = -0.1 }\n", "[feedback.rejected.led.off]"),
    ("[feedback.stamped]\nled = { on = 2, off = 1, n = 4 }\n", "[feedback.stamped.led] 4 pulses of 2.0 + 1.0 s"),
    ("[feedback.stampd]\nled = { n = 1 }\n", "[feedback.stampd] unknown field"),
    ("[feedback.stamped]\nlamp = { n = 1 }\n", "[feedback.stamped.lamp] unknown field"),
    ("[feedback]\nstamped = 3\n", "[feedback.stamped]"),
])
def test_a_bad_pattern_is_refused_naming_the_field(tmp_path, toml, field):
    path = tmp_path / "program.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_program(path)
    assert field in str(info.value)
