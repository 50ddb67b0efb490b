"""Screens against golden PNGs (regenerate with STEMPEL_UPDATE_GOLDEN=1 after a deliberate change)."""

import os
from pathlib import Path

import pytest
from luma.core.device import dummy
from PIL import Image, ImageChops

from kiosk.display import screens
from kiosk.display.texts import REASONS, TEXTS

GOLDEN = Path(__file__).parent / "golden"
SCREENS = {
    "idle": screens.Idle("Cafe Rosa"),
    "stamped-7-of-10": screens.Stamped(7, 10),
    "reward-ready": screens.RewardReady("Free coffee", 10, 10),
    "already-stamped": screens.AlreadyStamped(3, 10, 42),
    "redeemed": screens.Redeemed("Free coffee", 2),
    "rejected-wrong-merchant": screens.Rejected("wrong_merchant"),
    "rejected-forged": screens.Rejected("forged"),
    "nothing-to-redeem": screens.NothingToRedeem(),
    "points-earned": screens.Stamped(1230, 1500, "points", 120),
    "amount-required": screens.AmountRequired(),
    "de-stamped": screens.Stamped(3, 10, lang="de"),
    "de-reward-ready-points": screens.RewardReady("5 EUR Gutschein", 520, 1000, "points", "de"),
    "de-already-stamped": screens.AlreadyStamped(3, 10, 42, lang="de"),
    "de-rejected-wrong-merchant": screens.Rejected("wrong_merchant", "de"),
}


@pytest.mark.parametrize("name", SCREENS)
def test_screen_matches_golden(name):
    device = dummy(width=128, height=64, mode="1")
    screens.show(device, SCREENS[name])
    path = GOLDEN / f"{name}.png"
    if os.environ.get("STEMPEL_UPDATE_GOLDEN"):
        device.image.save(path)
    with Image.open(path) as golden:
        assert ImageChops.difference(device.image.convert("L"), golden.convert("L")).getbbox() is None


def test_every_rejection_reason_has_a_screen_text_that_fits():
    from kiosk.protocol.passes import Reason

    reasons = [v for k, v in vars(Reason).items() if k.isupper()]
    for lang, table in REASONS.items():
        assert set(table) == set(reasons), lang
        for first, second in table.values():
            for line, size in ((first, 14), (second, 12)):
                assert screens.font(size).getlength(line) <= 124, (lang, line)


@pytest.mark.parametrize("lang", TEXTS)
def test_every_screen_text_fits_in_both_languages(lang):
    assert set(TEXTS[lang]) == set(TEXTS["en"])
    for key, template in TEXTS[lang].items():
        line = template.format(n=1500, b=10, g=10, m=60)
        assert screens.font(12).getlength(line) <= 124, (lang, key, line)


def test_progress_never_overflows_for_long_cards():
    image = screens.render(screens.Stamped(37, 40))
    assert image.size == (128, 64) and image.getbbox() is not None
