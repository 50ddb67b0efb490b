"""QR decoders: real pixels in, the texts of the codes in view out.

``pyzbar`` (libzbar0) is the default; ``zxing`` (zxing-cpp) is a faster backend behind the
same interface. Both decode the pixels themselves; nothing reads a payload another way.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from PIL import Image

from kiosk.common.errors import BackendUnavailable, DecoderError


class Decoder(Protocol):
    name: str

    def decode(self, pixels: np.ndarray) -> list[bytes]:
        """Return the raw contents of every QR code found in a grayscale frame."""


class PyzbarDecoder:
    """ZBar through pyzbar; needs Debian's ``libzbar0``.

    When the frame yields nothing, ZBar gets a second look at the frame scaled up 1.5x:
    small, slightly blurred codes (a phone held far away) are the ones ZBar misses, and
    the upscaled pass reads them (bench/scan_pipeline.py: 98.9 % -> 99.9 % of frames).
    Only frames without a code pay for the second pass.
    """

    name = "pyzbar"
    UPSCALE = 1.5

    def __init__(self, retry_upscaled: bool = True) -> None:
        self.retry_upscaled = retry_upscaled
        try:
            from pyzbar import pyzbar
        except ImportError as exc:  # pyzbar raises ImportError when libzbar is missing
            raise BackendUnavailable(
                f"decoder 'pyzbar' cannot load ZBar ({exc}): run `sudo apt install libzbar0`"
            ) from exc
        self._pyzbar = pyzbar
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]

    def decode(self, pixels: np.ndarray) -> list[bytes]:
        found = self._zbar(pixels)
        if not found and self.retry_upscaled:
            height, width = pixels.shape[:2]
            size = (int(width * self.UPSCALE), int(height * self.UPSCALE))
            found = self._zbar(np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR)))
        return found

    def _zbar(self, pixels: np.ndarray) -> list[bytes]:
        height, width = pixels.shape[:2]
        try:
            found = self._pyzbar.decode((pixels.tobytes(), width, height), symbols=self._symbols)
        except Exception as exc:  # ctypes/zbar failures are not "no code"
            raise DecoderError(f"ZBar failed on a {width}x{height} frame: {exc}") from exc
        return [symbol.data for symbol in found]


class ZxingDecoder:
    """zxing-cpp: a C++ reader, several times faster than ZBar on the same frames."""

    name = "zxing"

    def __init__(self) -> None:
        try:
            import zxingcpp
        except ImportError as exc:
            raise BackendUnavailable("decoder 'zxing' needs zxing-cpp: `pip install stempel[fast]`") from exc
        self._zxing = zxingcpp
        self._formats = zxingcpp.BarcodeFormat.QRCode

    def decode(self, pixels: np.ndarray) -> list[bytes]:
        try:
            found = self._zxing.read_barcodes(pixels, formats=self._formats)
        except Exception as exc:
            raise DecoderError(f"zxing-cpp failed on a frame: {exc}") from exc
        return [bytes(result.bytes) for result in found if result.valid]


DECODERS: dict[str, type] = {"pyzbar": PyzbarDecoder, "zxing": ZxingDecoder}
"""Every decoder, by the name ``[hardware] decoder`` gives; both backends offer all of them."""


def open_decoder(kind: str) -> Decoder:
    """Open the decoder named *kind*; raises DecoderError for an unknown name, BackendUnavailable
    (with the package to install) when its library is missing."""
    decoder = DECODERS.get(kind)
    if decoder is None:
        raise DecoderError(f"unknown decoder {kind!r}: use {' or '.join(DECODERS)}")
    return decoder()
