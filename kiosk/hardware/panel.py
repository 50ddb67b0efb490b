"""The front panel: status LED, buzzer and the staff button, built from gpiozero devices.

On a Pi gpiozero picks its real pin factory; simulated, it gets gpiozero's own
``MockFactory``, so tests press the button with ``pin.drive_low()`` and read the LED's
and buzzer's recorded pin ``states``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from kiosk.errors import BackendUnavailable


class Signal(str, Enum):
    """What the panel tells the counter; each has its own LED and buzzer pattern."""

    STAMPED = "stamped"
    REWARD_READY = "reward_ready"
    ALREADY_STAMPED = "already_stamped"
    REDEEMED = "redeemed"
    REJECTED = "rejected"
    NOTHING_TO_REDEEM = "nothing_to_redeem"


@dataclass(frozen=True)
class Pattern:
    """Blink/beep timing: *n* pulses of *on* seconds with *off* seconds between."""

    on: float
    off: float
    n: int

    @property
    def seconds(self) -> float:
        return self.n * (self.on + self.off)


LED_PATTERNS: dict[Signal, Pattern] = {
    Signal.STAMPED: Pattern(0.4, 0.1, 1),
    Signal.REWARD_READY: Pattern(0.15, 0.15, 5),
    Signal.ALREADY_STAMPED: Pattern(0.1, 0.1, 2),
    Signal.REDEEMED: Pattern(0.8, 0.1, 1),
    Signal.REJECTED: Pattern(0.05, 0.05, 8),
    Signal.NOTHING_TO_REDEEM: Pattern(0.1, 0.3, 4),
}
BUZZER_PATTERNS: dict[Signal, Pattern] = {
    Signal.STAMPED: Pattern(0.08, 0.05, 1),
    Signal.REWARD_READY: Pattern(0.08, 0.06, 3),
    Signal.ALREADY_STAMPED: Pattern(0.05, 0.1, 2),
    Signal.REDEEMED: Pattern(0.4, 0.1, 1),
    Signal.REJECTED: Pattern(0.6, 0.1, 1),
    Signal.NOTHING_TO_REDEEM: Pattern(0.05, 0.25, 4),
}


def make_pin_factory(backend: str):
    """Return gpiozero's MockFactory for ``sim``, or None (gpiozero's default) for ``pi``."""
    if backend == "sim":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if backend == "pi":
        return None
    raise ValueError(f"unknown hardware backend {backend!r}: use 'pi' or 'sim'")


class FrontPanel:
    """LED + buzzer + button, like gpiozero's TrafficHat: plain composition of devices."""

    def __init__(self, led_pin: int, buzzer_pin: int, button_pin: int, pin_factory=None) -> None:
        from gpiozero import LED, Button, Buzzer
        from gpiozero.exc import BadPinFactory

        self._closed = False
        try:
            self.led = LED(led_pin, pin_factory=pin_factory)
            self.buzzer = Buzzer(buzzer_pin, pin_factory=pin_factory)
            self.button = Button(button_pin, pull_up=True, bounce_time=None, pin_factory=pin_factory)
        except BadPinFactory as exc:
            raise BackendUnavailable(
                "no GPIO library found: run `sudo apt install python3-lgpio`, "
                "or set backend = \"sim\" under [hardware]"
            ) from exc

    def on_press(self, callback: Callable[[], None] | None) -> None:
        """Call *callback* (in gpiozero's thread) when staff press the button; None detaches it."""
        if callback is not None:
            self.button.when_pressed = lambda: callback()
        elif self.button.when_pressed is not None:  # gpiozero warns about clearing an unset callback
            self.button.when_pressed = None

    def signal(self, signal: Signal, wait: bool = False) -> None:
        """Play the LED and buzzer pattern for *signal*; in the background unless *wait*.

        ``wait=True`` is for one-shot processes (``stempel-kiosk redeem``) that must not
        exit before the beep has finished.
        """
        led, beep = LED_PATTERNS[signal], BUZZER_PATTERNS[signal]
        # Every LED pattern lasts at least as long as its beep, so waiting for the LED is enough.
        self.buzzer.beep(on_time=beep.on, off_time=beep.off, n=beep.n, background=True)
        self.led.blink(on_time=led.on, off_time=led.off, n=led.n, background=not wait)

    def close(self) -> None:
        """Release the devices in order; safe to call twice.

        The blink and beep threads are stopped (joined) first, on this thread. Left running, a
        finished pattern's thread may hold the last reference to its device at exit, and
        gpiozero's ``__del__`` then tries to join that thread from itself (a traceback at every
        exit of ``stempel-kiosk run``). The button goes before the outputs so no press
        arrives while they close.
        """
        if self._closed:
            return
        self._closed = True
        self.on_press(None)
        for output in (self.led, self.buzzer):
            output.off()
        for device in (self.button, self.buzzer, self.led):
            device.close()
