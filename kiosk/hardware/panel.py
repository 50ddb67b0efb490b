"""The front panel: status LED, buzzer and the staff button, built from gpiozero devices.

The panel never chooses its pins' backend: ``factory.py`` passes gpiozero's default pin
factory on a Pi and gpiozero's own ``MockFactory`` when simulated, so tests press the
button with ``pin.drive_low()`` and read the LED's and buzzer's recorded pin ``states``.
What to play for each outcome comes from the programme (``[feedback]``), not from here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from kiosk.common.errors import BackendUnavailable
from kiosk.rules.program import Cue, Pulses


class Signal(str, Enum):
    """What the panel tells the counter; the programme's ``[feedback]`` has a cue for each."""

    STAMPED = "stamped"
    REWARD_READY = "reward_ready"
    ALREADY_STAMPED = "already_stamped"
    REDEEMED = "redeemed"
    REJECTED = "rejected"
    NOTHING_TO_REDEEM = "nothing_to_redeem"


@dataclass(frozen=True)
class Played:
    """One signal the panel played, with the LED and buzzer patterns it played for it."""

    signal: Signal
    led: Pulses
    buzzer: Pulses


class Panel(Protocol):
    """The front panel as the kiosk uses it; ``history`` is what it was asked to play."""

    history: deque[Played]

    def signal(self, signal: Signal, cue: Cue, wait: bool = False) -> None: ...

    def on_press(self, callback: Callable[[], None] | None) -> None: ...

    def close(self) -> None: ...


class FrontPanel:
    """LED + buzzer + button, like gpiozero's TrafficHat: plain composition of devices.

    ``history`` keeps the last *keep* signals played, on every backend: the scenario tests
    read it on simulated pins and on a real Pi alike (a test hook that costs a deque).
    """

    def __init__(self, led_pin: int, buzzer_pin: int, button_pin: int, pin_factory=None, keep: int = 1000) -> None:
        from gpiozero import LED, Button, Buzzer
        from gpiozero.exc import BadPinFactory

        self._closed = False
        self.history: deque[Played] = deque(maxlen=keep)
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

    def signal(self, signal: Signal, cue: Cue, wait: bool = False) -> None:
        """Play *cue*'s LED and buzzer patterns for *signal*; in the background unless *wait*.

        ``wait=True`` is for one-shot processes that must not exit before the pattern has
        finished: the shorter pattern starts in the background, then the longer one in the
        foreground, so both start together and the call returns when both are over.
        """
        self.history.append(Played(signal, cue.led, cue.buzzer))
        shorter, longer = sorted([(cue.led, self.led.blink), (cue.buzzer, self.buzzer.beep)],
                                 key=lambda pair: pair[0].seconds)
        for (pulses, play), background in ((shorter, True), (longer, not wait)):
            play(on_time=pulses.on, off_time=pulses.off, n=pulses.n, background=background)

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
