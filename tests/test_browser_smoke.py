"""The browser fixtures drive a real Chromium: the phone's viewport is a phone's, screenshots land."""

from __future__ import annotations

import struct


import pytest

import browser as browser_module
from browser import browser, phone, screenshot, serve  # noqa: F401

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Stempel smoke</title></head>
<body style="margin:0;background:#f4efe6;font-family:sans-serif"><h1 id="hello">Hallo Stempel</h1></body></html>
"""


def tiny_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(PAGE)))])
    return [PAGE]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_phone_has_a_phone_viewport_and_screenshots_it(phone):
    with serve(tiny_app) as url:
        phone.get(url + "/")
        assert phone.find_element("id", "hello").text == "Hallo Stempel"
        width = phone.execute_script("return window.innerWidth")
        dpr = phone.execute_script("return window.devicePixelRatio")
        touch = phone.execute_script("return navigator.maxTouchPoints")
        agent = phone.execute_script("return navigator.userAgent")
        path = screenshot(phone, "smoke-phone")

    assert width == 390
    assert touch > 0 and "iPhone" in agent
    assert png_size(path.read_bytes())[0] == round(390 * dpr)


@pytest.mark.slow
def test_desktop_browser_is_1280_by_900(browser):
    with serve(tiny_app) as url:
        browser.get(url + "/")
        size = browser.execute_script("return [window.innerWidth, window.innerHeight]")
        path = screenshot(browser, "smoke-desktop")

    assert size == [1280, 900]
    assert png_size(path.read_bytes()) == (1280, 900)


def test_a_missing_chromedriver_fails_naming_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(browser_module, "CHROMEDRIVER", tmp_path / "no-chromedriver")
    with pytest.raises(pytest.fail.Exception, match=r"scripts/system-deps\.sh test"):
        browser_module._require_packages()


def test_screenshot_names_stay_inside_the_artifacts_folder(tmp_path):
    with pytest.raises(ValueError, match="plain file name"):
        screenshot(object(), "../escape")
