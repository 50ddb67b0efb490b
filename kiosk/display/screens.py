"""Screens as pure functions of state, drawn through luma's ``canvas``.

Each screen is a small frozen dataclass; ``render`` draws it onto a 1-bit 128x64 image
and ``show`` puts it on a luma device. Texts stay short enough for the small display.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from kiosk.display.device import HEIGHT, WIDTH


@dataclass(frozen=True)
class Idle:
    shop: str


@dataclass(frozen=True)
class Stamped:
    stamps: int
    goal: int


@dataclass(frozen=True)
class RewardReady:
    reward: str
    stamps: int
    goal: int


@dataclass(frozen=True)
class AlreadyStamped:
    stamps: int
    goal: int
    minutes_left: int


@dataclass(frozen=True)
class Redeemed:
    reward: str
    stamps: int


@dataclass(frozen=True)
class Rejected:
    reason: str


@dataclass(frozen=True)
class NothingToRedeem:
    pass


Screen = Idle | Stamped | RewardReady | AlreadyStamped | Redeemed | Rejected | NothingToRedeem

REASON_TEXT = {
    "not_a_pass": ("Not a Stempel", "pass"),
    "garbled": ("Pass unreadable", "try again"),
    "truncated": ("Pass incomplete", "show it again"),
    "wrong_merchant": ("Pass is for", "another shop"),
    "unknown_key": ("Pass not known", "ask staff"),
    "forged": ("Invalid pass", "ask staff"),
    "revoked": ("Pass revoked", "ask staff"),
    "multiple_codes": ("Two codes seen", "show one pass"),
}


@lru_cache(maxsize=4)
def font(size: int) -> ImageFont.ImageFont:
    """Pillow's embedded font at *size* px: the same on every machine, no font files needed."""
    return ImageFont.load_default(size=size)


def _progress(draw: ImageDraw.ImageDraw, stamps: int, goal: int, top: int) -> None:
    """A row of stamp boxes, filled up to *stamps* (at most 10 drawn; longer cards scale)."""
    slots = min(goal, 10)
    filled = min(slots, stamps * slots // goal) if goal else 0
    gap, width = 2, (WIDTH - 8 - 2 * (slots - 1)) // slots
    for i in range(slots):
        x = 4 + i * (width + gap)
        draw.rectangle((x, top, x + width - 1, top + 9), outline=1, fill=1 if i < filled else 0)


def _lines(draw: ImageDraw.ImageDraw, first: str, second: str = "", top: int = 6) -> None:
    draw.text((WIDTH // 2, top), first, font=font(14), fill=1, anchor="mt")
    if second:
        draw.text((WIDTH // 2, top + 18), second, font=font(12), fill=1, anchor="mt")


def draw(screen: Screen, canvas: ImageDraw.ImageDraw) -> None:
    """Draw *screen*; one branch per screen, each a few lines."""
    match screen:
        case Idle(shop):
            _lines(canvas, shop[:16], "Show your pass", top=14)
        case Stamped(stamps, goal):
            _lines(canvas, "Stamped!", f"{stamps}/{goal}")
            _progress(canvas, stamps, goal, top=46)
        case RewardReady(reward, stamps, goal):
            _lines(canvas, "Reward ready!", reward[:18])
            _progress(canvas, stamps, goal, top=46)
        case AlreadyStamped(stamps, goal, minutes_left):
            _lines(canvas, "Already stamped", f"{stamps}/{goal} - again in {minutes_left}m")
            _progress(canvas, stamps, goal, top=46)
        case Redeemed(reward, stamps):
            _lines(canvas, "Enjoy!", reward[:18])
            canvas.text((WIDTH // 2, 50), f"{stamps} stamps left", font=font(10), fill=1, anchor="mt")
        case Rejected(reason):
            first, second = REASON_TEXT.get(reason, ("Not accepted", reason[:18]))
            canvas.rectangle((0, 0, WIDTH - 1, HEIGHT - 1), outline=1)
            _lines(canvas, first, second, top=14)
        case NothingToRedeem():
            _lines(canvas, "Nothing to", "redeem", top=14)


def render(screen: Screen) -> Image.Image:
    """The screen as a 1-bit 128x64 image (what the dummy device would hold)."""
    image = Image.new("1", (WIDTH, HEIGHT), 0)
    draw(screen, ImageDraw.Draw(image))
    return image


def show(device, screen: Screen) -> None:
    """Put *screen* on a luma device through its ``canvas``."""
    from luma.core.render import canvas

    with canvas(device) as surface:
        draw(screen, surface)
