"""Screens as pure functions of state, drawn through luma's ``canvas``.

Each screen is a small frozen dataclass (with the programme's language); ``render``
draws it onto a 1-bit 128x64 image and ``show`` puts it on a luma device.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from kiosk.display.device import HEIGHT, WIDTH
from kiosk.display.texts import reason as reason_text
from kiosk.display.texts import text


@dataclass(frozen=True)
class Idle:
    shop: str
    lang: str = "en"


@dataclass(frozen=True)
class Stamped:
    """Credited: stamps (boxes) or points (a bar towards the next reward)."""

    balance: int
    goal: int
    unit: str = "stamps"
    earned: int = 1
    lang: str = "en"


@dataclass(frozen=True)
class RewardReady:
    reward: str
    balance: int
    goal: int
    unit: str = "stamps"
    lang: str = "en"


@dataclass(frozen=True)
class AlreadyStamped:
    balance: int
    goal: int
    minutes_left: int
    unit: str = "stamps"
    lang: str = "en"


@dataclass(frozen=True)
class AmountRequired:
    lang: str = "en"


@dataclass(frozen=True)
class Redeemed:
    reward: str
    balance: int
    unit: str = "stamps"
    lang: str = "en"


@dataclass(frozen=True)
class Rejected:
    reason: str
    lang: str = "en"


@dataclass(frozen=True)
class NothingToRedeem:
    lang: str = "en"


Screen = Idle | Stamped | RewardReady | AlreadyStamped | AmountRequired | Redeemed | Rejected | NothingToRedeem


@lru_cache(maxsize=4)
def font(size: int) -> ImageFont.ImageFont:
    """Pillow's embedded font at *size* px: the same on every machine, no font files needed."""
    return ImageFont.load_default(size=size)


def _progress(draw: ImageDraw.ImageDraw, balance: int, goal: int, unit: str, top: int = 46) -> None:
    """Stamp boxes for short stamp cards; a filled bar for points and long cards."""
    if unit == "stamps" and 0 < goal <= 12:
        gap, width = 2, (WIDTH - 8 - 2 * (goal - 1)) // goal
        for i in range(goal):
            x = 4 + i * (width + gap)
            draw.rectangle((x, top, x + width - 1, top + 9), outline=1, fill=1 if i < balance else 0)
        return
    draw.rectangle((4, top, WIDTH - 5, top + 9), outline=1, fill=0)
    filled = int((WIDTH - 10) * min(balance, goal) / goal) if goal else 0
    if filled:
        draw.rectangle((6, top + 2, 6 + filled - 1, top + 7), fill=1)


def _lines(draw: ImageDraw.ImageDraw, first: str, second: str = "", top: int = 6) -> None:
    draw.text((WIDTH // 2, top), first, font=font(14), fill=1, anchor="mt")
    if second:
        draw.text((WIDTH // 2, top + 18), second, font=font(12), fill=1, anchor="mt")


def _count(lang: str, balance: int, goal: int, unit: str) -> str:
    return f"{balance}/{goal}" if unit == "stamps" else text(lang, "points", n=f"{balance}/{goal}")


def draw(screen: Screen, canvas: ImageDraw.ImageDraw) -> None:
    """Draw *screen*; one branch per screen, each a few lines."""
    match screen:
        case Idle(shop, lang):
            _lines(canvas, shop[:16], text(lang, "show_pass"), top=14)
        case Stamped(balance, goal, unit, earned, lang):
            title = text(lang, "stamped") if unit == "stamps" else text(lang, "earned_points", n=earned)
            _lines(canvas, title, _count(lang, balance, goal, unit))
            _progress(canvas, balance, goal, unit)
        case RewardReady(reward, balance, goal, unit, lang):
            _lines(canvas, text(lang, "reward_ready"), reward[:18])
            _progress(canvas, balance, goal, unit)
        case AlreadyStamped(balance, goal, minutes, unit, lang):
            second = text(lang, "again_in", b=balance, g=goal, m=minutes) if unit == "stamps" \
                else text(lang, "again_in_points", m=minutes)
            _lines(canvas, text(lang, "already"), second)
            _progress(canvas, balance, goal, unit)
        case AmountRequired(lang):
            _lines(canvas, text(lang, "amount_1"), text(lang, "amount_2"), top=14)
        case Redeemed(reward, balance, unit, lang):
            _lines(canvas, text(lang, "redeemed"), reward[:18])
            left = text(lang, "left_stamps" if unit == "stamps" else "left_points", n=balance)
            canvas.text((WIDTH // 2, 50), left, font=font(10), fill=1, anchor="mt")
        case Rejected(code, lang):
            first, second = reason_text(lang, code)
            canvas.rectangle((0, 0, WIDTH - 1, HEIGHT - 1), outline=1)
            _lines(canvas, first, second, top=14)
        case NothingToRedeem(lang):
            _lines(canvas, text(lang, "nothing_1"), text(lang, "nothing_2"), top=14)


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
