"""The shop's join URL as the kiosk's idle screen shows it: which URLs fit, and the QR they make.

Shared by both sides: the hub writes a kiosk's join URL into its bundle and config documents
(``stempel-hub add-kiosk``), the kiosk checks it when configured and draws it
(kiosk/display/joinqr.py).

A phone camera reads a QR off the 128x64 OLED when a module is 2 px and the code is version 3
at most (29 modules, 58 px: the screen's height less a 3 px quiet zone above and below). So a
join URL is checked when it is configured (``[kiosk] join_url``, or the kiosk's own config
document), not when the idle screen is drawn: one that needs a larger code is refused with the
fix, never shown as a code no phone can read.

The scheme and host are case-insensitive (RFC 3986), so they are encoded uppercase in the QR's
alphanumeric mode (5.5 bits a character instead of 8) and the path as it is, in byte mode: the
hub's join route (``/j/<merchant>.<kiosk>``, cloud/web/public.py) is lowercase and
case-sensitive. A phone opens ``HTTPS://HUB.EXAMPLE/j/cafe-rosa.counter-1`` as the lowercase
URL (pass URLs rely on the same). An all-uppercase URL (a hub that accepts ``/J/...``) goes
into one alphanumeric segment.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

from kiosk.common.errors import ConfigError

if TYPE_CHECKING:
    import segno

MAX_VERSION = 3
"""The largest QR version a phone reads off the OLED at ``SCALE`` px a module."""
SCALE = 2
"""Pixels per module: one is too fine for a phone camera behind the counter."""
MAX_CHARS = 200
"""A bound before any parsing; the version check allows far fewer (about 45-60 characters)."""

_URL = re.compile(r"(?P<head>https?://[a-z0-9.-]+(?::[0-9]{1,5})?)(?P<rest>/[\x21-\x7e]*)?", re.IGNORECASE)
_ALPHANUMERIC = re.compile(r"[0-9A-Z $%*+\-./:]*")
_LEVELS = ("m", "l")  # level M (the project's) if it fits version 3, else L: a screen is not smudged like paper


def check_join_url(value: object) -> str:
    """*value* if it is a join URL the idle screen can show as a readable QR; ConfigError otherwise."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CHARS or not _URL.fullmatch(value):
        raise ConfigError(f"{str(value)[:60]!r} is not a join URL: use http(s)://HOST[:PORT]/PATH in printable "
                          f"ASCII, at most {MAX_CHARS} characters (e.g. https://hub.example/j/cafe-rosa.counter-1, "
                          "as `stempel-hub add-kiosk` writes it)")
    join_qr(value)
    return value


def qr_text(url: str) -> str:
    """What the QR carries: *url* with its scheme and host uppercased, the rest as it is."""
    return "".join(_segments(url))


def _segments(url: str) -> list[str]:
    """The QR's segments (segno picks each one's mode): scheme and host uppercased, then the rest;
    one segment if the whole is alphanumeric."""
    match = _URL.fullmatch(url)
    if match is None:
        raise ConfigError(f"{url[:60]!r} is not a join URL (see check_join_url)")
    head, rest = match["head"].upper(), match["rest"] or ""
    return [head + rest] if _ALPHANUMERIC.fullmatch(head + rest) else [head, rest]


@lru_cache(maxsize=8)
def join_qr(url: str) -> segno.QRCode:
    """The smallest QR for *url* at level M (else L), up to version 3; ConfigError if it needs more.

    Cached: segno tries all eight masks (~15 ms), and the idle screen is drawn again and again."""
    # imported here: segno brings xml.sax, urllib.request and http.client (~3 MiB resident), which
    # a kiosk without a join URL never needs (bench/kiosk_footprint.py)
    import segno

    for level in _LEVELS:
        qr = segno.make_qr(_segments(url), error=level, boost_error=True)
        if qr.version <= MAX_VERSION:
            return qr
    needed = qr.version
    raise ConfigError(f"{url[:80]!r} needs a version {needed} QR code; the 128x64 display shows version "
                      f"{MAX_VERSION} at most ({len(url)} characters is too long, about 45-55 fit): use a shorter "
                      "host, merchant or kiosk id, or leave join_url out")
