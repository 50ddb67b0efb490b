"""Screens as pure functions of state, drawn through luma's ``canvas``.

Each screen is a small frozen dataclass (with the programme's language, and ``offline``: a
small marker in the top right corner while the hub is unreachable); ``render`` draws it onto
a 1-bit 128x64 image and ``show`` puts it on a luma device. The idle screen with a join URL
is the shop's join QR (kiosk/display/joinqr.py) beside a one-line invitation. Text is set in
bitmap fonts shipped in ``fonts/`` (Terminus; Misc-Fixed 5x8 for over-long lines): drawn
for small monochrome screens, the same pixels on every machine, and with the umlauts
Pillow's built-in font lacks.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources

from PIL import Image, ImageDraw, ImageFont

from kiosk.display import joinqr
from kiosk.display.device import HEIGHT, WIDTH
from kiosk.display.texts import reason as reason_text
from kiosk.display.texts import text


@dataclass(frozen=True)
class _Screen:
    """What every screen carries besides its own state: ``offline`` (keyword only) marks the
    screen while the hub is unreachable (``Kiosk.offline``)."""

    offline: bool = field(default=False, kw_only=True)


@dataclass(frozen=True)
class Idle(_Screen):
    """No customer at the counter: the shop's join QR (``join_url``) with an invitation, or
    without one the shop's name and "show your pass"."""

    shop: str
    lang: str = "en"
    join_url: str | None = None  # checked when configured (joinqr.check_join_url); drawing one that
    # needs a QR larger than version 3 raises ConfigError


@dataclass(frozen=True)
class Stamped(_Screen):
    """Credited: stamps (boxes) or points (a bar towards the next reward)."""

    balance: int
    goal: int
    unit: str = "stamps"
    earned: int = 1
    lang: str = "en"


@dataclass(frozen=True)
class RewardReady(_Screen):
    reward: str
    balance: int
    goal: int
    unit: str = "stamps"
    lang: str = "en"


@dataclass(frozen=True)
class AlreadyStamped(_Screen):
    balance: int
    goal: int
    minutes_left: int
    unit: str = "stamps"
    lang: str = "en"


@dataclass(frozen=True)
class AmountRequired(_Screen):
    lang: str = "en"


@dataclass(frozen=True)
class Redeemed(_Screen):
    reward: str
    balance: int
    unit: str = "stamps"
    lang: str = "en"


@dataclass(frozen=True)
class Rejected(_Screen):
    reason: str
    lang: str = "en"


@dataclass(frozen=True)
class NothingToRedeem(_Screen):
    lang: str = "en"


Screen = Idle | Stamped | RewardReady | AlreadyStamped | AmountRequired | Redeemed | Rejected | NothingToRedeem


def marked(screen: Screen, offline: bool) -> Screen:
    """*screen* with the offline marker on or off (the same object if it already is)."""
    return screen if screen.offline == offline else replace(screen, offline=offline)


TEXT_WIDTH = WIDTH - 4
"""Widest line of text: a 2 px margin on each side (the rejection frame is 1 px)."""

FONTS = {
    "title": ("ter-u14b_unicode.pcf.gz", 14),
    "body": ("ter-u12n_unicode.pcf.gz", 12),
    "small": ("5x8.pcf.gz", 8),
}
"""Role -> (file in ``fonts/``, pixel size of its only strike): Terminus 8x14 bold and
6x12, and Misc-Fixed 5x8 for a line too long for 6x12 (see ``fonts/README.md``)."""


@lru_cache(maxsize=len(FONTS))
def font(role: str) -> ImageFont.FreeTypeFont:
    """The packaged bitmap font for *role* (a key of ``FONTS``).

    Read through importlib.resources so it works from a wheel as from a checkout. The
    basic layout engine keeps advances identical with and without libraqm; ``draw`` sets
    fontmode "1" (no antialiasing).
    """
    name, size = FONTS[role]
    data = (resources.files(__package__) / "fonts" / name).read_bytes()
    return ImageFont.truetype(io.BytesIO(data), size=size, layout_engine=ImageFont.Layout.BASIC)


def fitting_font(line: str, *roles: str, width: int = TEXT_WIDTH) -> ImageFont.FreeTypeFont:
    """The first of *roles* in which *line* fits *width* (the last one if none does).

    A long German title or a long cooldown ("again in 1440m") steps down a size instead
    of running off both edges of the screen.
    """
    return font(fitting_role((line,), roles, width))


def fitting_role(lines: tuple[str, ...], roles: tuple[str, ...], width: int = TEXT_WIDTH) -> str:
    """The first of *roles* in which every one of *lines* fits *width* (the last one if none does)."""
    for role in roles[:-1]:
        if all(font(role).getlength(line) <= width for line in lines):
            return role
    return roles[-1]


TITLE, LINE = ("title", "body", "small"), ("body", "small")
"""Font roles to try, largest first, for a screen's first line and for any other line."""


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
    _centred(draw, top, first, TITLE)
    if second:
        _centred(draw, top + 18, second, LINE)


def _centred(draw: ImageDraw.ImageDraw, top: int, line: str, roles: tuple[str, ...],
             centre: int = WIDTH // 2, width: int = TEXT_WIDTH) -> None:
    """*line* centred on *centre* (the screen's, unless a panel's), its ascender at *top*, in
    the first of *roles* it fits *width* in."""
    mask, dx, dy = _rendered(line, roles, width)
    if mask is not None:
        draw.bitmap((centre + dx, top + dy), mask, fill=1)


_MARGIN = 16  # room around the text while it is rendered alone (accents, descenders)


@lru_cache(maxsize=256)
def _rendered(line: str, roles: tuple[str, ...], width: int = TEXT_WIDTH) -> tuple[Image.Image | None, int, int]:
    """*line* rendered once as a 1-bit mask (in the first of *roles* it fits *width* in) and its
    offset from (centre, top): FreeType takes ~1 ms a line, and a kiosk shows the same few lines
    all day. The pixels are those ``draw.text(..., anchor="mt")`` makes (the golden screens check it)."""
    font_ = fitting_font(line, *roles, width=width)
    span = int(font_.getlength(line)) + 2 * _MARGIN
    scratch = Image.new("1", (span, font_.size + 2 * _MARGIN), 0)
    pen = ImageDraw.Draw(scratch)
    pen.fontmode = "1"
    pen.text((span // 2, _MARGIN), line, font=font_, fill=1, anchor="mt")
    box = scratch.getbbox()
    if box is None:
        return None, 0, 0
    return scratch.crop(box), box[0] - span // 2, box[1] - _MARGIN


QR_BOX = 64
"""The lit square on the left of the join screen: the code (58 px at most) and its quiet zone."""
PANEL_CENTRE, PANEL_WIDTH = (QR_BOX + WIDTH) // 2, WIDTH - QR_BOX - 4
"""The invitation beside the code: its centre column and its widest line (a 2 px margin)."""


def _join(draw: ImageDraw.ImageDraw, url: str, lang: str) -> None:
    """The join QR, dark modules unlit on a lit square (dark on light, as phones expect; the
    quiet zone is what is left of the square), and the invitation beside it."""
    code = joinqr.dark_modules(url)
    draw.rectangle((0, 0, QR_BOX - 1, HEIGHT - 1), fill=1)
    draw.bitmap(((QR_BOX - code.width) // 2, (HEIGHT - code.height) // 2), code, fill=0)
    lines = (text(lang, "join_1"), text(lang, "join_2"))
    role = (fitting_role(lines, TITLE, PANEL_WIDTH),)  # both lines in one size
    for top, line in zip((16, 34), lines):
        _centred(draw, top, line, role, PANEL_CENTRE, PANEL_WIDTH)


OFFLINE_RIGHT = WIDTH - 4
"""The marker's last column: clear of the rejection frame's right edge."""


def _offline_mark(draw: ImageDraw.ImageDraw, lang: str, framed: bool) -> None:
    """"offline" in the small font in the top right corner, on a cleared patch so it reads on
    any screen; inside the rejection frame (*framed*) one row lower, the frame left whole."""
    mask, (left, top, right, bottom) = _offline_ink(lang, framed)
    draw.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill=0)
    draw.bitmap((left, top), mask, fill=1)


def offline_box(lang: str, framed: bool = False) -> tuple[int, int, int, int]:
    """The ink of the offline marker (left, top, right, bottom; inclusive): right-aligned at
    ``OFFLINE_RIGHT``, on the rows above every screen's first line (its ink starts at row 8)."""
    return _offline_ink(lang, framed)[1]


def _offline_ink(lang: str, framed: bool) -> tuple[Image.Image, tuple[int, int, int, int]]:
    line = text(lang, "offline")
    mask, _, _ = _rendered(line, ("small",))
    if mask is None:
        raise ValueError(f"the offline marker text {line!r} draws nothing")
    top = 2 if framed else 1
    return mask, (OFFLINE_RIGHT - mask.width + 1, top, OFFLINE_RIGHT, top + mask.height - 1)


def _count(lang: str, balance: int, goal: int, unit: str) -> str:
    return f"{balance}/{goal}" if unit == "stamps" else text(lang, "points", n=f"{balance}/{goal}")


def draw(screen: Screen, canvas: ImageDraw.ImageDraw) -> None:
    """Draw *screen*; one branch per screen, each a few lines."""
    canvas.fontmode = "1"  # no antialiasing, also on an RGB emulator's canvas
    match screen:
        case Idle(_, lang, join_url) if join_url:
            _join(canvas, join_url, lang)
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
            _centred(canvas, 50, left, LINE)
        case Rejected(code, lang):
            first, second = reason_text(lang, code)
            canvas.rectangle((0, 0, WIDTH - 1, HEIGHT - 1), outline=1)
            _lines(canvas, first, second, top=14)
        case NothingToRedeem(lang):
            _lines(canvas, text(lang, "nothing_1"), text(lang, "nothing_2"), top=14)
    if screen.offline:
        _offline_mark(canvas, screen.lang, framed=isinstance(screen, Rejected))


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
