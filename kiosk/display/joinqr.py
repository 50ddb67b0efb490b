"""The shop's join QR on the idle screen, as pixels (the URL and its code: kiosk/protocol/joinurl.py)."""

from __future__ import annotations

from functools import lru_cache

from PIL import Image

from kiosk.protocol.joinurl import MAX_CHARS, MAX_VERSION, SCALE, check_join_url, join_qr, qr_text

__all__ = ["MAX_CHARS", "MAX_VERSION", "SCALE", "check_join_url", "dark_modules", "join_qr", "qr_text"]


@lru_cache(maxsize=8)
def dark_modules(url: str) -> Image.Image:
    """The code of *url* as a 1-bit mask, ``SCALE`` px a module, no quiet zone: 1 where a module
    is dark. The screen leaves those pixels unlit on a lit square (dark on light, as phones expect).
    Cached, so callers only read it."""
    qr = join_qr(url)
    side = qr.symbol_size(scale=1, border=0)[0]
    mask = Image.new("1", (side, side), 0)
    mask.putdata([1 if dark else 0 for row in qr.matrix_iter(scale=1, border=0) for dark in row])
    return mask.resize((side * SCALE, side * SCALE), Image.Resampling.NEAREST)
