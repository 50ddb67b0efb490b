"""Screens against golden PNGs (regenerate with STEMPEL_UPDATE_GOLDEN=1 after a deliberate change,
and look at the new PNGs before committing them), every string's glyphs, every screen's layout (the
offline marker's too), and the idle screen's join QR as a phone camera sees it."""

import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import zxingcpp
from luma.core.device import dummy
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont
from pyzbar import pyzbar

from kiosk.display import joinqr, screens
from kiosk.display.device import HEIGHT, WIDTH
from kiosk.display.texts import REASONS, TEXTS
from kiosk.protocol.passes import Reason

GOLDEN = Path(__file__).parent / "golden"
JOIN = "https://hub.example/j/cafe-rosa.counter-1"
"""The join URL ``stempel-hub add-kiosk`` writes for kiosk counter-1 of cafe-rosa on hub.example."""
LONG_JOIN = "https://loyalty.baeckerei-oeztuerk.de/j/oeztuerk.theke-2"
"""About the longest join URL that still fits version 3 (at level L)."""
SCREENS = {
    "idle": screens.Idle("Cafe Rosa"),
    "stamped-7-of-10": screens.Stamped(7, 10),
    "reward-ready": screens.RewardReady("Free coffee", 10, 10),
    "already-stamped": screens.AlreadyStamped(3, 10, 42),
    "already-stamped-a-day": screens.AlreadyStamped(3, 10, 1440),
    "redeemed": screens.Redeemed("Free coffee", 2),
    "rejected-wrong-merchant": screens.Rejected("wrong_merchant"),
    "rejected-forged": screens.Rejected("forged"),
    "nothing-to-redeem": screens.NothingToRedeem(),
    "points-earned": screens.Stamped(1230, 1500, "points", 120),
    "amount-required": screens.AmountRequired(),
    "de-idle": screens.Idle("Bäckerei Öztürk", "de"),
    "de-stamped": screens.Stamped(3, 10, lang="de"),
    "de-reward-ready-points": screens.RewardReady("5 EUR Gutschein", 520, 1000, "points", "de"),
    "de-already-stamped": screens.AlreadyStamped(3, 10, 42, lang="de"),
    "de-redeemed": screens.Redeemed("Süßes Teilchen", 2, lang="de"),
    "de-nothing-to-redeem": screens.NothingToRedeem("de"),
    "de-rejected-wrong-merchant": screens.Rejected("wrong_merchant", "de"),
    "de-rejected-truncated": screens.Rejected("truncated", "de"),
    "idle-join": screens.Idle("Cafe Rosa", join_url=JOIN),
    "de-idle-join-offline": screens.Idle("Bäckerei Öztürk", "de", LONG_JOIN, offline=True),
    "idle-offline": screens.Idle("Cafe Rosa", offline=True),
    "stamped-7-of-10-offline": screens.Stamped(7, 10, offline=True),
    "already-stamped-offline": screens.AlreadyStamped(3, 10, 42, offline=True),
    "rejected-forged-offline": screens.Rejected("forged", offline=True),
}
JOIN_GOLDENS = {"idle-join": JOIN, "de-idle-join-offline": LONG_JOIN}

TYPICAL = {"n": 1500, "b": 10, "g": 10, "m": 60}
"""Values a customer usually sees: every string must fit in the 6x12 body font with them."""
WORST = {"n": 99999, "b": 99, "g": 99, "m": 7 * 24 * 60}
"""Largest values a screen can be given (cooldown is capped at a week): still on the screen."""
MISSING = ("\ue000", "\uffff", "\U0010fffd")
"""Code points no font has a glyph for: they show the font's missing-glyph shape."""


def _strings(values: dict) -> list[tuple[str, str, str]]:
    """(lang, key, text) for every string of every language table, formatted with *values*."""
    rows = [(lang, key, _format(key, template, values))
            for lang, table in TEXTS.items() for key, template in table.items()]
    for lang, table in REASONS.items():
        rows += [(lang, code, line) for code, lines in table.items() for line in lines]
    return rows


def _format(key: str, template: str, values: dict) -> str:
    """A template filled as the screens fill it: the points count is "balance/goal"."""
    if key == "points":
        values = {**values, "n": f"{values['n']}/{values['n']}"}
    return template.format(**values)


def _glyph(font: ImageFont.FreeTypeFont, char: str) -> bytes:
    """*char* drawn alone the way screens draw text (1-bit, so fontmode "1"), as raw pixels."""
    image = Image.new("1", (32, 32), 0)
    ImageDraw.Draw(image).text((4, 4), char, font=font, fill=1)
    return image.tobytes()


def _looks_missing(font: ImageFont.FreeTypeFont, char: str) -> bool:
    """True if *char* would show as the missing-glyph shape, or as nothing though it is not a space.

    Terminus draws a character it lacks as its own "?", so "?" itself is allowed that shape.
    """
    if unicodedata.category(char) in ("Zs", "Cf"):  # spaces and the soft hyphen draw nothing
        return False
    shape = _glyph(font, char)
    blank = _glyph(font, " ")
    return shape == blank or (char != "?" and shape in {_glyph(font, c) for c in MISSING})


@pytest.mark.parametrize("name", SCREENS)
def test_screen_matches_golden(name):
    device = dummy(width=128, height=64, mode="1")
    screens.show(device, SCREENS[name])
    path = GOLDEN / f"{name}.png"
    if os.environ.get("STEMPEL_UPDATE_GOLDEN"):
        device.image.save(path)
    with Image.open(path) as golden:
        assert ImageChops.difference(device.image.convert("L"), golden.convert("L")).getbbox() is None


@pytest.mark.parametrize("role", screens.FONTS)
def test_every_string_of_every_language_has_a_glyph_for_every_character(role):
    font = screens.font(role)
    for lang, key, line in _strings(TYPICAL):
        missing = sorted({c for c in line if _looks_missing(font, c)})
        assert not missing, (role, lang, key, line, missing)


@pytest.mark.parametrize("role", screens.FONTS)
def test_every_font_covers_latin_1_and_the_usual_punctuation(role):
    font = screens.font(role)
    chars = [chr(c) for c in range(0x21, 0x7F)] + [chr(c) for c in range(0xA1, 0x100)] + list("€–—„“”‚‘’…•")
    assert [c for c in chars if _looks_missing(font, c)] == []


@pytest.mark.parametrize("role", screens.FONTS)
def test_the_missing_glyph_check_catches_a_missing_glyph(role):
    """The check above is not vacuous: a CJK ideograph and a private-use code point are caught."""
    font = screens.font(role)
    assert _looks_missing(font, "\u4e00") and _looks_missing(font, "\ue123")
    assert not _looks_missing(font, "ä") and not _looks_missing(font, " ")


def test_every_string_fits_in_the_body_font_with_typical_values():
    body = screens.font("body")
    for lang, key, line in _strings(TYPICAL):
        left, _, right, _ = body.getbbox(line)
        assert right - left <= screens.TEXT_WIDTH, (lang, key, line)


def test_every_string_fits_the_screen_with_the_largest_values():
    for lang, key, line in _strings(WORST):
        left, _, right, _ = screens.fitting_font(line, *screens.TITLE).getbbox(line)
        assert right - left <= screens.TEXT_WIDTH, (lang, key, line)


class _Recorder(ImageDraw.ImageDraw):
    """A drawing surface that keeps the layout box of every text line drawn on it (the font's
    box, as ``draw.text`` would place the line, not just its ink)."""

    def __init__(self, image: Image.Image):
        super().__init__(image)
        self.boxes: list[tuple[str, tuple[int, int, int, int]]] = []


@pytest.fixture
def recorded_lines(monkeypatch):
    """Record each line ``screens`` centres on a _Recorder, then draw it as usual."""
    centred = screens._centred

    def record(draw, top, line, roles, centre=WIDTH // 2, width=screens.TEXT_WIDTH):
        if isinstance(draw, _Recorder):
            font = screens.fitting_font(line, *roles, width=width)
            box = draw.textbbox((centre, top), line, font=font, anchor="mt")
            draw.boxes.append((line, tuple(int(v) for v in box)))
        centred(draw, top, line, roles, centre, width)

    monkeypatch.setattr(screens, "_centred", record)


def _every_screen(lang: str) -> list[screens.Screen]:
    """Every screen in *lang*, with the longest names and largest numbers it can be given."""
    shop, reward, week = "Bäckerei Müller-Lüdenscheid", "Großer Milchkaffee", 7 * 24 * 60
    codes = sorted({code for table in REASONS.values() for code in table}) + ["some_future_reason_code_x"]
    return [
        screens.Idle(shop, lang),
        screens.Idle(shop, lang, LONG_JOIN),
        screens.Stamped(99, 99, lang=lang),
        screens.Stamped(12, 12, lang=lang),
        screens.Stamped(99999, 99999, "points", 99999, lang),
        screens.RewardReady(reward, 99, 99, lang=lang),
        screens.RewardReady(reward, 99999, 99999, "points", lang),
        screens.AlreadyStamped(99, 99, week, lang=lang),
        screens.AlreadyStamped(99999, 99999, week, "points", lang),
        screens.AmountRequired(lang),
        screens.Redeemed(reward, 99999, lang=lang),
        screens.Redeemed(reward, 99999, "points", lang),
        screens.NothingToRedeem(lang),
        *(screens.Rejected(code, lang) for code in codes),
    ]


@pytest.mark.parametrize("lang", TEXTS)
def test_no_screen_text_leaves_the_screen_or_overlaps(lang, recorded_lines):
    """Every text box inside the 2 px margin, clear of the other texts, of the progress bar and
    of the join QR's lit square (the offline marker: the next test, by the pixels)."""
    for screen in _every_screen(lang):
        surface = _Recorder(Image.new("1", (WIDTH, HEIGHT), 0))
        screens.draw(screen, surface)
        assert surface.boxes, screen
        with_progress = isinstance(screen, screens.Stamped | screens.RewardReady | screens.AlreadyStamped)
        bottom = 46 if with_progress else HEIGHT - 1  # the progress bar starts at row 46
        leftmost = screens.QR_BOX + 2 if isinstance(screen, screens.Idle) and screen.join_url else 2
        for line, (left, top, right, low) in surface.boxes:
            assert left >= leftmost and right <= WIDTH - 2 and top >= 1 and low <= bottom, (screen, line)
        for i, (line, box) in enumerate(surface.boxes):
            for other, obox in surface.boxes[i + 1 :]:
                assert box[3] <= obox[1] or obox[3] <= box[1], (screen, line, other)


@pytest.mark.parametrize("lang", TEXTS)
def test_the_offline_marker_clears_every_screen_s_ink_and_the_rejection_frame(lang):
    """The marker is drawn on a cleared patch: nothing the screen drew is lost under it (the
    screen's ink starts below the patch), and in the rejection frame the frame stays whole."""
    for screen in _every_screen(lang):
        plain = np.array(screens.render(screen), dtype=bool)
        marked = np.array(screens.render(screens.marked(screen, True)), dtype=bool)
        left, top, right, low = screens.offline_box(lang, framed=isinstance(screen, screens.Rejected))
        patch = np.zeros_like(plain)
        patch[top - 1 : low + 2, left - 2 : right + 3] = True
        assert not (plain & patch).any(), screen  # the screen draws nothing there
        assert not ((plain != marked) & ~patch).any(), screen  # and the marker nothing elsewhere
        assert marked[top : low + 1, left : right + 1].any()


def test_marked_keeps_the_screen_and_only_flips_the_marker():
    stamped = screens.Stamped(7, 10)
    assert screens.marked(stamped, False) is stamped
    assert screens.marked(stamped, True) == screens.Stamped(7, 10, offline=True)
    assert screens.marked(screens.marked(stamped, True), False) == stamped


def test_every_rejection_reason_has_a_screen_text_in_every_language():
    """Every pass rejection has its two lines (the table may hold other codes, e.g. out of order)."""
    reasons = {v for k, v in vars(Reason).items() if k.isupper()}
    assert set(TEXTS) == set(REASONS)
    assert reasons <= set(REASONS["en"])
    for lang in TEXTS:
        assert set(REASONS[lang]) == set(REASONS["en"]), lang
        assert set(TEXTS[lang]) == set(TEXTS["en"]), lang


def test_progress_never_overflows_for_long_cards():
    image = screens.render(screens.Stamped(37, 40))
    assert image.size == (128, 64) and image.getbbox() is not None


PHONE_VIEWS = {"x3-sharp": (3, 1.0, 0), "x4-blurred": (4, 1.5, 0), "x4-tilted": (4, 1.5, 6),
               "x6-soft-tilted": (6, 2.0, -9)}
"""How a phone camera at the counter may see the screen: camera pixels per screen pixel, blur
(focus, in camera pixels) and tilt (degrees)."""
LIT, UNLIT, BEZEL = 230, 25, 15
"""Grey levels of a photographed OLED: lit pixels are not paper white, unlit ones not black,
and the display's edge and the case around it are dark (just outside the code's quiet zone)."""


def _as_a_phone_sees_it(screen: Image.Image, scale: int, blur: float, angle: float, seed: int = 7) -> np.ndarray:
    """*screen* photographed: each pixel *scale* camera pixels (nearest), grey levels of an OLED,
    a dark bezel, tilted by *angle*, blurred by *blur*, and a little sensor noise (seeded)."""
    grey = screen.convert("L").point(lambda v: LIT if v else UNLIT)
    grey = grey.resize((screen.width * scale, screen.height * scale), Image.Resampling.NEAREST)
    photo = Image.new("L", (grey.width + 16 * scale, grey.height + 16 * scale), BEZEL)
    photo.paste(grey, (8 * scale, 8 * scale))
    if angle:
        photo = photo.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=BEZEL)
    photo = photo.filter(ImageFilter.GaussianBlur(blur))
    noise = np.random.default_rng(seed).normal(0, 6, (photo.height, photo.width))
    return np.clip(np.asarray(photo, dtype=np.float64) + noise, 0, 255).astype(np.uint8)


def _pyzbar(pixels: np.ndarray) -> list[str]:
    return [r.data.decode() for r in pyzbar.decode(Image.fromarray(pixels), symbols=[pyzbar.ZBarSymbol.QRCODE])]


def _zxing(pixels: np.ndarray) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(pixels, formats=zxingcpp.BarcodeFormat.QRCode)]


@pytest.mark.parametrize("decode", [_pyzbar, _zxing], ids=["pyzbar", "zxing-cpp"])
@pytest.mark.parametrize("view", PHONE_VIEWS)
@pytest.mark.parametrize("name", JOIN_GOLDENS)
def test_a_phone_reads_the_join_url_off_the_golden_idle_screen(name, view, decode):
    """The golden PNG (what the OLED shows), photographed: the code carries the join URL, its
    scheme and host in capitals (alphanumeric mode) and its path as the hub routes it."""
    url = JOIN_GOLDENS[name]
    with Image.open(GOLDEN / f"{name}.png") as golden:
        pixels = _as_a_phone_sees_it(golden.convert("1"), *PHONE_VIEWS[view])
    assert decode(pixels) == [joinqr.qr_text(url)]
    scheme_host, path = joinqr.qr_text(url).split("/", 3)[2], "/" + url.split("/", 3)[3]
    assert joinqr.qr_text(url) == f"{url.split(':')[0].upper()}://{scheme_host}{path}"
    assert joinqr.qr_text(url).lower().split("/", 3)[:3] == url.split("/", 3)[:3] and path.islower()


@pytest.mark.parametrize("name", JOIN_GOLDENS)
def test_the_golden_join_qr_is_version_3_at_most_at_2_px_a_module(name):
    """The lit square holds the code module by module, 2x2 pixels each, in its centre, and
    nothing else: the size a phone reads from behind the counter."""
    qr = joinqr.join_qr(JOIN_GOLDENS[name])
    assert qr.version <= 3
    modules = np.array([list(row) for row in qr.matrix_iter(scale=1, border=0)], dtype=bool)
    with Image.open(GOLDEN / f"{name}.png") as golden:
        lit = np.array(golden.convert("1"), dtype=bool)
    side = 2 * len(modules)
    at = (screens.QR_BOX - side) // 2, (HEIGHT - side) // 2
    square = lit[:, : screens.QR_BOX].copy()
    code = square[at[1] : at[1] + side, at[0] : at[0] + side].copy()
    assert (code == ~np.kron(modules, np.ones((2, 2), dtype=bool))).all()  # dark module: unlit
    square[at[1] : at[1] + side, at[0] : at[0] + side] = True
    assert square.all()  # the quiet zone: lit to the square's edges
