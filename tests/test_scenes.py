"""The synthetic camera's scene kinds: reproducible from a seed, and hard in the way they say."""

import numpy as np
import pytest

from kiosk.hardware import scenes

URL = "HTTPS://STEMPEL.EXAMPLE/P/2.SI6FZ7.CAFE-ROSA.MKGK7YK52V.DQR6ILKB." + str(7**190)[:155]


def test_a_version_7_pass_is_53_modules_wide_with_its_quiet_zone():
    assert scenes.width_in_modules(URL) == 53


@pytest.mark.parametrize("kind", scenes.KINDS)
def test_each_kind_gives_the_same_frame_for_the_same_seed(kind):
    def frame(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return scenes.render(URL, rng, scenes.KINDS[kind](rng, 53))

    assert np.array_equal(frame(5), frame(5))
    assert not np.array_equal(frame(5), frame(6))


@pytest.mark.parametrize("kind, effect", [
    ("phone", set()),
    ("small", set()),
    ("motion", {"motion_px"}),
    ("moire", {"moire"}),
    ("glare", {"glare_on_code"}),
])
def test_each_harder_kind_turns_on_its_own_effect_only(kind, effect):
    look = scenes.KINDS[kind](np.random.default_rng(0), 53)
    extras = {"motion_px": look.motion_px > 0, "moire": look.moire > 0, "glare_on_code": look.glare_on_code}
    assert {name for name, on in extras.items() if on} == effect


def test_small_codes_get_2_5_to_4_pixels_a_module():
    rng = np.random.default_rng(0)
    widths = [scenes.Look.small(rng, 53).qr_px for _ in range(200)]
    assert 2.5 * 53 - 1 <= min(widths) and max(widths) <= 4 * 53 + 1


def test_no_text_is_an_empty_counter():
    frame = scenes.render([], np.random.default_rng(0))
    assert frame.shape == (scenes.HEIGHT, scenes.WIDTH) and frame.dtype == np.uint8
