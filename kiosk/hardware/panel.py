"""The front panel: status LED, buzzer and the staff button, built from gpiozero devices.

The panel never chooses its pins' backend: ``factory.py`` passes the pin factory
``[hardware] pin_factory`` names on a Pi (lgpio or RPi.GPIO, ``kiosk/hardware/pins.py``) and
gpiozero's own ``MockFactory`` when simulated, so tests press the button with
``pin.drive_low()`` and read the LED's and buzzer's recorded pin ``states``.
What to play for each outcome comes from the programme (``[feedback]``), not from here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from kiosk.common.errors import BackendUnavailable, HardwareError
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

    def __init__(self, led_pin: int, buzzer_pin: int, button_pin: int, pin_factory=None, keep: int = 1000,
                 owns_factory: bool = False) -> None:
        """*owns_factory*: the panel closes *pin_factory* with its devices (releasing the
        gpiochip or RPi.GPIO's pins), for a factory opened just for it. Raises HardwareError
        (GPIOPinInUse and the like, translated) and BackendUnavailable."""
        from gpiozero import LED, Button, Buzzer
        from gpiozero.exc import BadPinFactory

        self._closed = False
        self._factory = pin_factory if owns_factory else None
        self.history: deque[Played] = deque(maxlen=keep)
        opened = []
        try:
            opened.append(LED(led_pin, pin_factory=pin_factory))
            opened.append(Buzzer(buzzer_pin, pin_factory=pin_factory))
            opened.append(Button(button_pin, pull_up=True, bounce_time=None, pin_factory=pin_factory))
        except BadPinFactory as exc:
            self._release(opened)
            raise BackendUnavailable(
                "no GPIO library found: run `sudo apt install python3-lgpio`, "
                "or set backend = \"sim\" under [hardware]"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - gpiozero's and the pin library's (lgpio.error is bare)
            self._release(opened)
            raise HardwareError(f"front panel (LED GPIO{led_pin}, buzzer GPIO{buzzer_pin}, button GPIO{button_pin}): "
                                f"{exc}: check led_pin, buzzer_pin and button_pin under [hardware], and that no "
                                "other program or overlay holds those pins") from exc
        self.led, self.buzzer, self.button = opened

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
        self._release([self.led, self.buzzer, self.button])

    def _release(self, devices: list) -> None:
        """Close *devices* (last opened first), then the pin factory the panel owns."""
        for device in reversed(devices):
            device.close()
        if self._factory is not None:
            self._factory.close()
            self._factory = None
