"""The default decoder ("auto"): zxing-cpp three ways, then ZBar when zxing-cpp located a code.

Each frame below is a rendered scene with a fixed seed, chosen because the single decoders
disagree on it; the test states that premise, then which of the auto decoder's passes read
it (its ``read_by`` counter), so a change of order or a lost fallback shows as a wrong pass,
not as a slower benchmark. No timing here: speed belongs in bench/scan_pipeline.py.
"""

import sys

import numpy as np
import pytest

from kiosk.common.errors import BackendUnavailable, DecoderError
from kiosk.config import HardwareSection
from kiosk.hardware import scenes
from kiosk.hardware.decoder import DECODERS, AutoDecoder, PyzbarDecoder, ZxingDecoder, double, open_decoder, upscale

# A version-2 pass URL as the hub issues it: 155 signature digits, a version-7 QR at level M.
URL = "HTTPS://STEMPEL.EXAMPLE/P/2.SI6FZ7.CAFE-ROSA.MKGK7YK52V.DQR6ILKB." + str(7**190)[:155]
CODE = URL.encode()


def scene(kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return scenes.render(URL, rng, scenes.KINDS[kind](rng, scenes.width_in_modules(URL)))


# name: (kind, seed, pyzbar reads it, zxing reads it, the auto pass that reads it)
FRAMES = {
    "everyday phone": ("phone", 0, True, True, "zxing"),
    "moiré only ZBar reads": ("moire", 59, True, False, "pyzbar"),
    "glare only zxing-cpp reads": ("glare", 8, False, True, "zxing"),
    "moiré the global-histogram pass reads": ("moire", 0, True, False, "zxing-global"),
    "small code ZBar reads, zxing-cpp only upscaled": ("small", 4, True, False, "zxing-upscaled"),
    "small code neither reads alone": ("small", 1, False, False, "zxing-upscaled"),
}


@pytest.fixture(scope="module")
def singles() -> tuple[PyzbarDecoder, ZxingDecoder]:
    return PyzbarDecoder(), ZxingDecoder()


@pytest.mark.parametrize("kind, seed, by_zbar, by_zxing, read_by", FRAMES.values(), ids=FRAMES.keys())
def test_auto_reads_what_either_decoder_reads(singles, kind, seed, by_zbar, by_zxing, read_by):
    frame = scene(kind, seed)
    zbar, zxing = singles
    assert (zbar.decode(frame) == [CODE], zxing.decode(frame) == [CODE]) == (by_zbar, by_zxing)  # the premise
    auto = AutoDecoder()
    assert auto.decode(frame) == [CODE]
    assert auto.read_by == {read_by: 1}


def test_zbar_is_asked_last_and_only_once_zxing_has_located_a_code():
    auto = AutoDecoder()
    assert auto.decode(scene("moire", 59)) == [CODE]
    assert auto.tried == {"zxing": 1, "zxing-global": 1, "zxing-upscaled": 1, "pyzbar": 1}


def test_a_dark_mode_card_only_zxing_reads_is_read_on_the_first_pass(singles):
    """A phone that inverts the card (light code on dark): ZBar reads no inverted QR codes."""
    frame = 255 - scene("phone", 3)
    zbar, zxing = singles
    assert (zbar.decode(frame), zxing.decode(frame)) == ([], [CODE])
    auto = AutoDecoder()
    assert auto.decode(frame) == [CODE] and auto.read_by == {"zxing": 1}


def test_an_empty_counter_reads_nothing_and_never_pays_for_zbar():
    auto = AutoDecoder()
    for seed in range(3):
        assert auto.decode(scenes.render([], np.random.default_rng(seed))) == []
    assert auto.read_by == {"none": 3}
    assert "pyzbar" not in auto.tried and auto.tried["zxing-upscaled"] == 3


def test_a_large_frame_is_not_upscaled():
    auto = AutoDecoder()
    assert auto.decode(np.full((1080, 1920), 128, np.uint8)) == []
    assert set(auto.tried) == {"zxing", "zxing-global"}


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (48, 64), (480, 640)])
def test_doubling_a_frame_is_pils_bilinear_to_one_grey_level(shape):
    pixels = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    doubled = double(pixels)
    assert doubled.shape == (2 * shape[0], 2 * shape[1]) and doubled.dtype == np.uint8
    assert np.abs(doubled.astype(int) - upscale(pixels, 2.0).astype(int)).max() <= 1


def test_auto_is_the_default_and_every_decoder_can_be_chosen():
    assert HardwareSection().decoder == "auto"
    assert {name: type(open_decoder(name)) for name in ("auto", "pyzbar", "zxing")} == {
        "auto": AutoDecoder, "pyzbar": PyzbarDecoder, "zxing": ZxingDecoder}
    with pytest.raises(DecoderError, match="auto or pyzbar or zxing"):
        open_decoder("zbar")


BLANK = {
    "all black": np.zeros((480, 640), np.uint8),
    "all white": np.full((480, 640), 255, np.uint8),
    "1x1": np.zeros((1, 1), np.uint8),
    "noise": np.random.default_rng(1).integers(0, 256, (480, 640), dtype=np.uint8),
    "a view into a bigger frame": np.zeros((960, 1280), np.uint8)[::2, ::2],
}
GARBAGE = {
    "float frame": np.zeros((48, 64), np.float64),
    "colour frame": np.zeros((48, 64, 3), np.uint8),
    "bool frame": np.zeros((48, 64), bool),
    "one row of bytes": np.zeros(64, np.uint8),
    "0x0": np.zeros((0, 0), np.uint8),
    "0 rows": np.zeros((0, 64), np.uint8),
    "a list": [[0, 255], [255, 0]],
    "None": None,
}


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("pixels", BLANK.values(), ids=BLANK.keys())
def test_a_frame_without_a_code_gives_nothing(name, pixels):
    assert open_decoder(name).decode(pixels) == []


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("pixels", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_is_a_decoder_error_never_a_crash(name, pixels):
    with pytest.raises(DecoderError, match="2-D uint8"):
        open_decoder(name).decode(pixels)


@pytest.mark.parametrize("module, package", [("zxingcpp", "zxing-cpp"), ("pyzbar", "libzbar0")])
def test_a_missing_library_names_the_package(monkeypatch, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(BackendUnavailable, match=f"decoder 'auto' .*{package}"):
        AutoDecoder()
