"""Stand-in for lgpio (the ``lg`` library's Python module, http://abyz.me.uk/lg/py_lgpio.html).

The calls gpiozero's ``LGPIOFactory``/``LGPIOPin`` make, with lgpio's signatures, return
values (0 / a handle / a level) and its ``lgpio.error`` on failure, over the lines of
simulated gpiochips. Constants are lgpio 0.2's (``SET_BIAS_*``; gpiozero maps them to the
older ``SET_PULL_*`` names itself).

Test hooks: ``CHIPS`` (the gpiochips that exist), ``drive(gpio, level)`` (the outside world
pulls a line: alerts fire like lgpio's notification thread would), ``writes`` (every level
written to an output, in order) and ``line(gpio)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# GPIO levels
LOW, HIGH = 0, 1

# line flags
SET_ACTIVE_LOW = 4
SET_OPEN_DRAIN = 8
SET_OPEN_SOURCE = 16
SET_BIAS_PULL_UP = 32
SET_BIAS_PULL_DOWN = 64
SET_BIAS_DISABLE = 128

# event flags
RISING_EDGE = 1
FALLING_EDGE = 2
BOTH_EDGES = 3

# error codes used here
BAD_HANDLE = -5
CANNOT_OPEN_CHIP = -78
GPIO_BUSY = -79
GPIO_NOT_ALLOCATED = -80
GPIO_NOT_AN_OUTPUT = -104

_TEXT = {BAD_HANDLE: "unknown handle", CANNOT_OPEN_CHIP: "can not open gpiochip", GPIO_BUSY: "GPIO busy",
         GPIO_NOT_ALLOCATED: "GPIO not allocated", GPIO_NOT_AN_OUTPUT: "GPIO not an output"}

# gpio_get_mode bits
_KERNEL_OUTPUT = 1 << 1
_LG_INPUT, _LG_OUTPUT, _LG_ALERT = 1 << 8, 1 << 9, 1 << 10
_LINE_FLAGS = (SET_ACTIVE_LOW | SET_OPEN_DRAIN | SET_OPEN_SOURCE
               | SET_BIAS_PULL_UP | SET_BIAS_PULL_DOWN | SET_BIAS_DISABLE)


class error(Exception):
    """lgpio's exception: raised when a call returns a negative status (``exceptions`` is True)."""

    def __init__(self, value):
        self.value = value

    def __str__(self):
        return repr(self.value)


def error_text(errnum: int) -> str:
    return _TEXT.get(errnum, f"error {errnum}")


def _fail(code: int):
    raise error(error_text(code))


@dataclass
class Line:
    """One GPIO line: how it is claimed, and the level on it."""

    claimed: str | None = None  # None, "input", "output", "alert"
    flags: int = 0
    level: int = 0  # what an output drives
    outside: int | None = None  # what the outside world drives (None: nothing, the bias decides)
    edges: int = 0
    debounce_us: int = 0
    pwm: tuple[float, float] | None = None

    def read(self) -> int:
        if self.claimed == "output":
            return self.level
        if self.outside is not None:
            return self.outside
        return 1 if self.flags & SET_BIAS_PULL_UP else 0


@dataclass
class _Chip:
    number: int
    lines: dict[int, Line] = field(default_factory=dict)


CHIPS: set[int] = {0}
"""The gpiochips that exist (``/dev/gpiochipN``); a test may remove 0 to see a failed open."""
writes: list[tuple[int, int]] = []
_open: dict[int, _Chip] = {}
_callbacks: list[_callback] = []
_lines: dict[int, Line] = {}  # one chip's lines, shared by its handles (as the kernel's are)


def _chip(handle: int) -> _Chip:
    try:
        return _open[handle]
    except KeyError:
        _fail(BAD_HANDLE)


def line(gpio: int) -> Line:
    """The line *gpio* (test hook)."""
    return _lines.setdefault(gpio, Line())


def drive(gpio: int, level: int) -> None:
    """The outside world drives *gpio* to *level*; claimed alerts call their callbacks (test hook)."""
    ln = line(gpio)
    before = ln.read()
    ln.outside = int(bool(level))
    after = ln.read()
    if ln.claimed != "alert" or before == after:
        return
    edge = RISING_EDGE if after else FALLING_EDGE
    if not ln.edges & edge:
        return
    tick = time.time_ns()
    for cb in list(_callbacks):
        if cb.gpio == gpio and cb.edge & edge:
            cb.func(cb.chip, gpio, after, tick)


# --- the API ------------------------------------------------------------------------------------

def gpiochip_open(gpiochip: int) -> int:
    if gpiochip not in CHIPS:
        _fail(CANNOT_OPEN_CHIP)
    handle = len(_open) | (gpiochip << 16)
    _open[handle] = _Chip(gpiochip, _lines)
    return handle


def gpiochip_close(handle: int) -> int:
    _chip(handle)
    del _open[handle]
    return 0


def gpio_get_mode(handle: int, gpio: int) -> int:
    _chip(handle)
    ln = line(gpio)
    mode = ln.flags & _LINE_FLAGS
    if ln.claimed == "output":
        mode |= _KERNEL_OUTPUT | _LG_OUTPUT
    elif ln.claimed == "input":
        mode |= _LG_INPUT
    elif ln.claimed == "alert":
        mode |= _LG_INPUT | _LG_ALERT
    return mode


def gpio_claim_input(handle: int, gpio: int, lFlags: int = 0) -> int:
    _chip(handle)
    ln = line(gpio)
    ln.claimed, ln.flags, ln.pwm = "input", lFlags, None
    return 0


def gpio_claim_output(handle: int, gpio: int, level: int = 0, lFlags: int = 0) -> int:
    _chip(handle)
    ln = line(gpio)
    ln.claimed, ln.flags, ln.level = "output", lFlags, int(bool(level))
    writes.append((gpio, ln.level))
    return 0


def gpio_claim_alert(handle: int, gpio: int, eFlags: int, lFlags: int = 0, notify_handle=None) -> int:
    _chip(handle)
    ln = line(gpio)
    ln.claimed, ln.flags, ln.edges = "alert", lFlags, eFlags
    return 0


def gpio_free(handle: int, gpio: int) -> int:
    _chip(handle)
    ln = line(gpio)
    if ln.claimed is None:
        _fail(GPIO_NOT_ALLOCATED)
    ln.claimed = None
    return 0


def gpio_read(handle: int, gpio: int) -> int:
    _chip(handle)
    ln = line(gpio)
    if ln.claimed is None:
        _fail(GPIO_NOT_ALLOCATED)
    return ln.read()


def gpio_write(handle: int, gpio: int, level: int) -> int:
    _chip(handle)
    ln = line(gpio)
    if ln.claimed != "output":
        _fail(GPIO_NOT_AN_OUTPUT)
    ln.level = int(bool(level))
    writes.append((gpio, ln.level))
    return 0


def gpio_set_debounce_micros(handle: int, gpio: int, debounce_micros: int) -> int:
    _chip(handle)
    line(gpio).debounce_us = debounce_micros
    return 0


def tx_pwm(handle: int, gpio: int, pwm_frequency: float, pwm_duty_cycle: float, pulse_offset: int = 0,
           pulse_cycles: int = 0) -> int:
    _chip(handle)
    ln = line(gpio)
    if ln.claimed != "output":
        _fail(GPIO_NOT_AN_OUTPUT)
    ln.pwm = None if pwm_frequency == 0 else (pwm_frequency, pwm_duty_cycle)
    return 1


class _callback:
    """What ``callback`` returns: ``cancel()`` removes it."""

    def __init__(self, chip: int, gpio: int, edge: int = RISING_EDGE, func=None) -> None:
        self.chip, self.gpio, self.edge = chip, gpio, edge
        self.count = 0
        self.func = func or self._tally
        _callbacks.append(self)

    def cancel(self) -> None:
        if self in _callbacks:
            _callbacks.remove(self)

    def _tally(self, chip, gpio, level, tick) -> None:
        self.count += 1

    def tally(self) -> int:
        return self.count


def callback(handle: int, gpio: int, edge: int = RISING_EDGE, func=None) -> _callback:
    """Call *func(chip, gpio, level, tick)* on each *edge* of *gpio* (claimed with gpio_claim_alert)."""
    return _callback(handle >> 16, gpio, edge, func)
