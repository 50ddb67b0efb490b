"""Render pass QR codes with segno (PNG for printing and phones, SVG for the web card).

A pass URL ends in its signature as decimal digits: that run goes into a numeric segment
(3.3 bits a digit) after the alphanumeric one (5.5 bits a character), which is what keeps
a pass at version 7, level M. Decoders join the segments back into the one text.
"""

from __future__ import annotations

import functools
import io
import logging
import re
from pathlib import Path

import segno
from PIL import Image

from kiosk.common.errors import PassError

log = logging.getLogger(__name__)

MAX_VERSION = 7  # beyond this, phone-screen codes get too dense to read first try
_ALPHANUMERIC = re.compile(r"[0-9A-Z $%*+\-./:]*")
_DIGIT_TAIL = re.compile(r"(?P<head>.*?)(?P<digits>[0-9]{24,})")  # shorter runs gain less than a segment header


def segments(text: str) -> list[str]:
    """*text* as QR segments (segno picks each one's mode): an alphanumeric text ending in a
    long run of digits is split in two."""
    match = _DIGIT_TAIL.fullmatch(text)
    if match and match["head"] and _ALPHANUMERIC.fullmatch(match["head"]):
        return [match["head"], match["digits"]]
    return [text]


def make_qr(text: str, warn: bool = True) -> segno.QRCode:
    """A QR code at error level M, the smallest version that fits; warns past version 7."""
    qr = _encode(text)
    if warn and qr.version > MAX_VERSION:
        log.warning("qr.version_too_high", extra={"version": qr.version, "chars": len(text)})
    return qr


@functools.lru_cache(maxsize=64)
def _encode(text: str) -> segno.QRCode:
    """Encoding costs ~17 ms (segno tries all eight masks); a pass is drawn several times (its
    version checked, saved, shown in frames), so recent codes are kept. Callers only read them."""
    return segno.make_qr(segments(text), error="m", boost_error=False)


def check_suffix(path: Path | str) -> str:
    """The image type a pass is written as (``png`` or ``svg``, from the suffix); PassError otherwise."""
    kind = Path(path).suffix.lower().lstrip(".")
    if kind not in ("png", "svg"):
        raise PassError(f"{path}: pass images are written as .png or .svg")
    return kind


def save(text: str, path: Path | str, scale: int = 8) -> Path:
    """Write *text* as a QR image; the format follows the suffix (.png or .svg)."""
    path = Path(path)
    kind = check_suffix(path)
    make_qr(text).save(str(path), kind=kind, scale=scale, border=4)
    return path


def to_image(text: str, scale: int = 4) -> Image.Image:
    """The QR as a grayscale PIL image (quiet zone included), for composing camera scenes."""
    buf = io.BytesIO()
    make_qr(text).save(buf, kind="png", scale=scale, border=4)
    buf.seek(0)
    return Image.open(buf).convert("L")
