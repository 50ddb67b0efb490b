"""Real headless Chromium for the browser tests: Debian's chromium driven by Debian's chromedriver.

Import the fixtures into a test module: ``from browser import browser, phone  # noqa: F401``.
``browser`` is a desktop window (1280×900), ``phone`` a 390×844 touch phone (mobile emulation).
``serve(app)`` runs a WSGI app on a free local port for the browser to load, and
``screenshot(driver, name)`` keeps a PNG in ``test-artifacts/`` at the repository root.

Nothing here downloads a browser or a driver: the driver is ``/usr/bin/chromedriver`` by explicit
path, so Selenium never consults selenium-manager (and the fixtures make sure of it). When the
packages are missing the fixtures fail, naming the fix (``scripts/system-deps.sh test``): a browser
test that skips silently would hide a page nobody has looked at.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

DESKTOP = (1280, 900)
PHONE = {"width": 390, "height": 844, "pixelRatio": 3.0, "touch": True}
PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")

# Quiet, offline, deterministic: no GPU, no sandbox (tests may run as root in a container), no
# background fetches, /tmp instead of a possibly small /dev/shm.
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
)


def _require_packages() -> None:
    """Fail (never skip) when Debian's chromium or chromium-driver is not installed."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: the browser tests drive Debian's chromium "
                    "through its chromedriver; install them with `scripts/system-deps.sh test` "
                    "(as root or with sudo)", pytrace=False)


def _refuse_selenium_manager(*_args, **_kwargs):
    raise AssertionError("selenium-manager was about to run (it may download a browser); "
                         f"the browser tests must use {CHROMEDRIVER} through Service(path)")


def _start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, window: tuple[int, int],
           mobile: dict | None = None):
    """Start Chromium with a fresh profile in ``tmp_path`` (one per browser: a test may hold a
    phone and a desktop at once); the caller quits it."""
    _require_packages()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Service(path) already skips selenium-manager; make that a checked guarantee, and keep the
    # manager offline should anything reach it anyway.
    monkeypatch.setattr("selenium.webdriver.common.selenium_manager.SeleniumManager.binary_paths",
                        _refuse_selenium_manager)
    monkeypatch.setenv("SE_OFFLINE", "true")

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    name = "phone" if mobile is not None else "desktop"
    options.add_argument(f"--user-data-dir={tmp_path / f'chromium-{name}'}")
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    if mobile is not None:
        options.add_experimental_option("mobileEmulation", mobile)
    service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / f"chromedriver-{name}.log"))
    service.path = str(CHROMEDRIVER)  # SE_CHROMEDRIVER in the environment would override it
    return webdriver.Chrome(options=options, service=service)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A headless desktop Chromium whose viewport is 1280×900 CSS pixels."""
    driver = _start(tmp_path, monkeypatch, window=DESKTOP)
    try:
        # --window-size sets the window; the page's viewport is what layouts see: pin it.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": DESKTOP[0], "height": DESKTOP[1], "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def phone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A headless Chromium emulating a 390×844 touch phone (DPR 3, a phone's user agent)."""
    mobile = {"deviceMetrics": PHONE, "userAgent": PHONE_UA}
    driver = _start(tmp_path, monkeypatch, window=(PHONE["width"], PHONE["height"]), mobile=mobile)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver, name: str, *, full_page: bool = False) -> Path:
    """Save what ``driver`` shows as ``test-artifacts/<name>.png`` and return the path.

    ``full_page`` captures the whole document, not only the viewport (Chromium's DevTools call).
    The PNG is in device pixels: CSS width × devicePixelRatio.
    """
    if not name or Path(name).name != name:
        raise ValueError(f"screenshot name must be a plain file name, not {name!r}")
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / (name if name.endswith(".png") else f"{name}.png")
    if full_page:
        metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))
    elif not driver.save_screenshot(str(path)):
        raise RuntimeError(f"Chromium returned no screenshot for {path}")
    return path


@contextmanager
def serve(app) -> Iterator[str]:
    """Serve the WSGI ``app`` on a free port of 127.0.0.1 in a thread; yield its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="wsgi-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
