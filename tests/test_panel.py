"""The front panel on gpiozero's MockFactory: patterns, and the staff button."""

import pytest
from gpiozero.pins.mock import MockFactory

from kiosk.hardware.panel import BUZZER_PATTERNS, LED_PATTERNS, FrontPanel, Signal


@pytest.fixture
def panel():
    p = FrontPanel(led_pin=17, buzzer_pin=27, button_pin=22, pin_factory=MockFactory())
    yield p
    p.close()


def test_every_led_pattern_outlasts_its_beep():
    """So `signal(wait=True)` can wait for the LED alone."""
    for signal in Signal:
        assert LED_PATTERNS[signal].seconds >= BUZZER_PATTERNS[signal].seconds, signal


def test_signals_blink_their_own_number_of_pulses(panel):
    pulses = {}
    for signal in Signal:
        panel.led.pin.clear_states()
        panel.signal(signal, wait=True)
        pulses[signal] = sum(1 for s in panel.led.pin.states if s.state)
        assert panel.led.value == 0  # the pattern ended with the LED off
    assert pulses == {s: LED_PATTERNS[s].n for s in Signal}


def test_button_press_calls_back(panel):
    presses = []
    panel.on_press(lambda: presses.append("press"))
    panel.button.pin.drive_low()
    panel.button.pin.drive_high()
    assert presses == ["press"]
