"""Stand-in for RPi.GPIO (https://sourceforge.net/p/raspberry-gpio-python/wiki/), the calls
gpiozero's ``RPiGPIOFactory`` and luma's SPI interface make, with RPi.GPIO's signatures,
constants and its RuntimeError/ValueError for misuse (no numbering mode set, writing to an
input, a second numbering mode).

Test hooks: ``drive(channel, level)`` (the outside world pulls an input: edge callbacks
fire), ``writes`` (every level written to an output, in order), ``channels``.
"""

from __future__ import annotations

from dataclasses import dataclass

UNKNOWN = -1
BOARD = 10
BCM = 11

PUD_OFF = 20
PUD_DOWN = 21
PUD_UP = 22

OUT = 0
IN = 1
LOW = 0
HIGH = 1

RISING = 31
FALLING = 32
BOTH = 33

SERIAL = 40
SPI = 41
I2C = 42
HARD_PWM = 43

VERSION = "0.7.1"


@dataclass
class Channel:
    function: int = IN
    pull: int = PUD_OFF
    level: int = 0  # what an output drives
    outside: int | None = None  # what the outside world drives
    edge: int | None = None
    callback: object = None
    bouncetime: int | None = None

    def read(self) -> int:
        if self.function == OUT:
            return self.level
        if self.outside is not None:
            return self.outside
        return 1 if self.pull == PUD_UP else 0


_mode: int | None = None
channels: dict[int, Channel] = {}
writes: list[tuple[int, int]] = []
warnings_on = True


def _channel(channel: int) -> Channel:
    if _mode is None:
        raise RuntimeError("Please set pin numbering mode using GPIO.setmode(GPIO.BOARD) or GPIO.setmode(GPIO.BCM)")
    if not 0 <= channel < 54:
        raise ValueError("The channel sent is invalid on a Raspberry Pi")
    return channels.setdefault(channel, Channel())


def _each(chanlist) -> list[int]:
    return list(chanlist) if isinstance(chanlist, (list, tuple)) else [chanlist]


def drive(channel: int, level: int) -> None:
    """The outside world drives *channel* to *level*: an edge calls its callback (test hook)."""
    ch = _channel(channel)
    before = ch.read()
    ch.outside = int(bool(level))
    after = ch.read()
    if ch.function != IN or ch.edge is None or before == after:
        return
    if ch.edge == BOTH or ch.edge == (RISING if after else FALLING):
        if ch.callback is not None:
            ch.callback(channel)


# --- the API ------------------------------------------------------------------------------------

def setmode(mode: int) -> None:
    global _mode
    if mode not in (BOARD, BCM):
        raise ValueError("An invalid mode was passed to setmode()")
    if _mode is not None and mode != _mode:
        raise ValueError("A different mode has already been set!")
    _mode = mode


def getmode() -> int | None:
    return _mode


def setwarnings(flag: bool) -> None:
    global warnings_on
    warnings_on = bool(flag)


def setup(channel, direction: int, pull_up_down: int = PUD_OFF, initial: int = -1) -> None:
    if direction not in (IN, OUT):
        raise ValueError("An invalid direction was passed to setup()")
    if pull_up_down not in (PUD_OFF, PUD_DOWN, PUD_UP):
        raise ValueError("Invalid value for pull_up_down - should be either PUD_OFF, PUD_UP or PUD_DOWN")
    for number in _each(channel):
        ch = _channel(number)
        ch.function, ch.pull = direction, pull_up_down if direction == IN else PUD_OFF
        if direction == OUT and initial != -1:
            ch.level = int(bool(initial))
            writes.append((number, ch.level))


def cleanup(chanlist=None) -> None:
    numbers = list(channels) if chanlist is None else _each(chanlist)
    for number in numbers:
        channels.pop(number, None)


def output(channel, value) -> None:
    for number in _each(channel):
        ch = _channel(number)
        if ch.function != OUT:
            raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
        ch.level = int(bool(value))
        writes.append((number, ch.level))


def input(channel: int) -> int:  # noqa: A001 - RPi.GPIO's name
    return _channel(channel).read()


def gpio_function(channel: int) -> int:
    return _channel(channel).function


def add_event_detect(channel: int, edge: int, callback=None, bouncetime=None) -> None:
    ch = _channel(channel)
    if ch.function != IN:
        raise RuntimeError("You must setup() the GPIO channel as an input first")
    if edge not in (RISING, FALLING, BOTH):
        raise ValueError("The edge must be set to RISING, FALLING or BOTH")
    if ch.edge is not None:
        raise RuntimeError("Conflicting edge detection already enabled for this GPIO channel")
    ch.edge, ch.callback, ch.bouncetime = edge, callback, bouncetime


def remove_event_detect(channel: int) -> None:
    ch = _channel(channel)
    ch.edge = ch.callback = None


class PWM:
    """Software PWM on an output channel."""

    def __init__(self, channel: int, frequency: float) -> None:
        if _channel(channel).function != OUT:
            raise RuntimeError("You must setup() the GPIO channel as an output first")
        if frequency <= 0:
            raise ValueError("frequency must be greater than 0.0")
        self.channel, self.frequency, self.duty_cycle, self.running = channel, frequency, 0.0, False

    def start(self, dutycycle: float) -> None:
        self.ChangeDutyCycle(dutycycle)
        self.running = True

    def ChangeDutyCycle(self, dutycycle: float) -> None:
        if not 0 <= dutycycle <= 100:
            raise ValueError("dutycycle must have a value from 0.0 to 100.0")
        self.duty_cycle = dutycycle

    def ChangeFrequency(self, frequency: float) -> None:
        if frequency <= 0:
            raise ValueError("frequency must be greater than 0.0")
        self.frequency = frequency

    def stop(self) -> None:
        self.running = False
