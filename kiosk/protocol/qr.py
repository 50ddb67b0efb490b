"""Render pass QR codes with segno (PNG for printing and phones, SVG for the web card)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import segno
from PIL import Image

log = logging.getLogger(__name__)

MAX_VERSION = 7  # beyond this, phone-screen codes get too dense to read first try


def make_qr(text: str) -> segno.QRCode:
    """A QR code at error level M, the smallest version that fits; warns past version 7."""
    qr = segno.make_qr(text, error="m", boost_error=False)
    if qr.version > MAX_VERSION:
        log.warning("qr.version_too_high", extra={"version": qr.version, "chars": len(text)})
    return qr


def save(text: str, path: Path | str, scale: int = 8) -> Path:
    """Write *text* as a QR image; the format follows the suffix (.png or .svg)."""
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("png", "svg"):
        raise ValueError(f"{path}: pass images are written as .png or .svg")
    make_qr(text).save(str(path), kind=kind, scale=scale, border=4)
    return path


def to_image(text: str, scale: int = 4) -> Image.Image:
    """The QR as a grayscale PIL image (quiet zone included), for composing camera scenes."""
    buf = io.BytesIO()
    make_qr(text).save(buf, kind="png", scale=scale, border=4)
    buf.seek(0)
    return Image.open(buf).convert("L")
