"""QR decoders: real pixels in, the texts of the codes in view out.

``auto`` (the default) reads with zxing-cpp and asks ZBar only when zxing-cpp saw a code it
could not read; ``pyzbar`` (ZBar, libzbar0) and ``zxing`` (zxing-cpp) alone stay selectable.
All decode the pixels themselves; nothing reads a payload another way. Every decoder takes a
2-D uint8 frame and raises DecoderError for anything else, so a broken frame is a failed
frame for the loop to log, never a crash.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from kiosk.common.errors import BackendUnavailable, DecoderError


class Decoder(Protocol):
    name: str

    def decode(self, pixels: np.ndarray) -> list[bytes]:
        """Return the raw contents of every QR code found in a grayscale frame ([] when there is
        none); raise DecoderError when the frame cannot be decoded at all."""


def grayscale(pixels: object) -> np.ndarray:
    """*pixels* as a C-contiguous 2-D uint8 array; DecoderError for anything else (a colour or
    float frame, an empty one, something that is not an array), which the libraries would
    otherwise misread or answer with their own exceptions."""
    if not isinstance(pixels, np.ndarray):
        raise DecoderError(f"a decoder takes a 2-D uint8 numpy array, not {type(pixels).__name__}")
    if pixels.ndim != 2 or pixels.dtype != np.uint8 or 0 in pixels.shape:
        raise DecoderError(f"a decoder takes a 2-D uint8 grayscale frame (the Y plane), "
                           f"not a {pixels.dtype} array of shape {pixels.shape}")
    return np.ascontiguousarray(pixels)


def upscale(pixels: np.ndarray, factor: float) -> np.ndarray:
    """*pixels* scaled by *factor*, bilinear (what small, soft codes need to be read)."""
    height, width = pixels.shape
    size = (int(width * factor), int(height * factor))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))


def double(pixels: np.ndarray) -> np.ndarray:
    """*pixels* scaled up 2x, bilinear with pixel centres aligned: each new pixel is 3/4 of its
    nearest source pixel and 1/4 of the next, rows then columns. The same image as
    ``upscale(pixels, 2)`` to one grey level in under half PIL's time, which every empty frame
    the auto decoder sees pays. Computed in place in two buffers: a dozen full-size temporaries
    made the allocator hand memory back and fault it in again on every frame, doubling the cost."""
    source = pixels.astype(np.uint16)
    tall = np.empty((2 * source.shape[0], source.shape[1]), np.uint16)
    _blend_rows(source, tall[0::2], tall[1::2])  # 4x the grey level
    wide = np.empty((tall.shape[0], 2 * tall.shape[1]), np.uint16)
    _blend_rows(tall.T, wide.T[0::2], wide.T[1::2])  # 16x
    wide += 8
    wide >>= 4
    return wide.astype(np.uint8)


def _blend_rows(source: np.ndarray, even: np.ndarray, odd: np.ndarray) -> None:
    """Each source row times 3 plus the row before it into *even*, plus the row after it into
    *odd* (the edge rows repeat)."""
    np.multiply(source, 3, out=even)
    even[1:] += source[:-1]
    even[0] += source[0]
    np.multiply(source, 3, out=odd)
    odd[:-1] += source[1:]
    odd[-1] += source[-1]


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
        pixels = grayscale(pixels)
        found = self._zbar(pixels)
        if not found and self.retry_upscaled:
            found = self._zbar(upscale(pixels, self.UPSCALE))
        return found

    def _zbar(self, pixels: np.ndarray) -> list[bytes]:
        height, width = pixels.shape[:2]
        try:
            found = self._pyzbar.decode((pixels.tobytes(), width, height), symbols=self._symbols)
        except Exception as exc:  # ctypes/zbar failures are not "no code"
            raise DecoderError(f"ZBar failed on a {width}x{height} frame: {exc}") from exc
        return [symbol.data for symbol in found]


@dataclass(frozen=True)
class Reading:
    """What one zxing-cpp pass found: the codes it read, and whether it located a code it could
    not read (a checksum or format error), which is what makes a slower second opinion worth it."""

    codes: list[bytes]
    seen_unread: bool


class ZxingDecoder:
    """zxing-cpp: a C++ reader, several times faster than ZBar on the same frames."""

    name = "zxing"

    def __init__(self) -> None:
        try:
            import zxingcpp
        except ImportError as exc:
            raise BackendUnavailable("decoder 'zxing' needs the zxing-cpp package: `pip install zxing-cpp` "
                                     "(stempel depends on it: reinstalling stempel brings it back)") from exc
        self._zxing = zxingcpp
        self._formats = zxingcpp.BarcodeFormat.QRCode

    def decode(self, pixels: np.ndarray) -> list[bytes]:
        return self.read(grayscale(pixels)).codes

    def read(self, pixels: np.ndarray, global_histogram: bool = False, try_invert: bool = True,
             try_downscale: bool = True) -> Reading:
        """One pass over a frame already checked by :func:`grayscale`: zxing-cpp's default
        binarizer (local average) or its global-histogram one; *try_invert* also looks for light
        codes on dark, *try_downscale* also at smaller copies of the frame."""
        binarizer = self._zxing.Binarizer.GlobalHistogram if global_histogram else self._zxing.Binarizer.LocalAverage
        try:
            found = self._zxing.read_barcodes(pixels, formats=self._formats, binarizer=binarizer,
                                              try_invert=try_invert, try_downscale=try_downscale,
                                              return_errors=True)
        except Exception as exc:
            raise DecoderError(f"zxing-cpp failed on a frame: {exc}") from exc
        return Reading([bytes(result.bytes) for result in found if result.valid],
                       any(not result.valid for result in found))


class AutoDecoder:
    """zxing-cpp three ways, then ZBar only when zxing-cpp located a code it could not read.

    Why this order (bench/scan_pipeline.py, harder scenes included): zxing-cpp reads most
    frames in about a millisecond; its global-histogram binarizer costs a tenth of that and
    locates codes that screen moiré hides from the default one; the frame scaled up 2x
    (:func:`double`) recovers small, soft or moving codes (2.5-4 px a module), where most of
    zxing-cpp's misses are; ZBar reads some moiré frames zxing-cpp cannot, but costs ~10 ms a
    look, so it only looks when a pass above located a code. A frame with no code never pays
    for ZBar; it pays for the three zxing-cpp passes, a fraction of ZBar's time.

    ``tried`` and ``read_by`` count, per pass, how often it ran and how often it was the one
    that read the frame (``none`` when nothing did): the bench reports them, tests assert on them.
    """

    name = "auto"
    UPSCALE_UP_TO = 960  # longest side of a frame scaled up 2x (640x480 is); larger ones need no help

    def __init__(self) -> None:
        try:
            self._zxing = ZxingDecoder()
            self._zbar = PyzbarDecoder()
        except BackendUnavailable as exc:
            raise BackendUnavailable(f"decoder 'auto' uses both zxing-cpp and ZBar; {exc}") from exc
        self.tried: Counter[str] = Counter()
        self.read_by: Counter[str] = Counter()

    def decode(self, pixels: np.ndarray) -> list[bytes]:
        pixels = grayscale(pixels)
        seen_unread = False
        for name, frame, options in self._zxing_passes(pixels):
            self.tried[name] += 1
            reading = self._zxing.read(frame, **options)
            if reading.codes:
                self.read_by[name] += 1
                return reading.codes
            seen_unread = seen_unread or reading.seen_unread
        if seen_unread:
            self.tried["pyzbar"] += 1
            codes = self._zbar.decode(pixels)
            if codes:
                self.read_by["pyzbar"] += 1
                return codes
        self.read_by["none"] += 1
        return []

    def _zxing_passes(self, pixels: np.ndarray) -> Iterator[tuple[str, np.ndarray, dict[str, bool]]]:
        """(name, frame, options) of each zxing-cpp pass, cheapest first; the upscaled frame is
        only made once the passes before it have read nothing."""
        yield "zxing", pixels, {}
        yield "zxing-global", pixels, {"global_histogram": True, "try_invert": False}
        if max(pixels.shape) <= self.UPSCALE_UP_TO:
            # smaller copies of the doubled frame would only repeat the first pass
            yield "zxing-upscaled", double(pixels), {"try_invert": False, "try_downscale": False}


DECODERS: dict[str, type] = {"auto": AutoDecoder, "pyzbar": PyzbarDecoder, "zxing": ZxingDecoder}
"""Every decoder, by the name ``[hardware] decoder`` gives; both backends offer all of them."""


def open_decoder(kind: str) -> Decoder:
    """Open the decoder named *kind*; raises DecoderError for an unknown name, BackendUnavailable
    (with the package to install) when its library is missing."""
    decoder = DECODERS.get(kind)
    if decoder is None:
        raise DecoderError(f"unknown decoder {kind!r}: use {' or '.join(DECODERS)}")
    return decoder()
