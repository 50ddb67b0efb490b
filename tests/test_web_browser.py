"""The whole product in a real browser: a new customer joins on a phone, the pass QR as that
page draws it (a screenshot) is scanned by a simulated kiosk on the same hub, the visit travels
over a real Mosquitto through ``stempel-hub ingest``, and the owner sees it on the dashboard
served by ``stempel-hub serve`` (gunicorn). Screenshots land in test-artifacts/."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from browser import phone, browser, screenshot  # noqa: F401
from mosquitto import Mosquitto, free_port
from PIL import Image
from selenium.webdriver.common.by import By

from cloud.accounts import add_user
from cloud.app import create_hub
from cloud.config import load_hub_config
from cloud.hubkey import hub_keys_json
from cloud.link.documents import prepare
from cloud.passes import export_keys, init_merchant
from cloud.programs import parse_draft
from kiosk.clock import FakeClock
from kiosk.config import load_config
from kiosk.hardware.camera import Frame
from kiosk.link.hub_link import start_hub_link
from kiosk.wiring import build_kiosk, open_documents

HUB = str(Path(sys.executable).parent / "stempel-hub")
PASSWORD = "correct horse battery"
PROGRAMME = """name = "Cafe Rosa"
language = "en"

[earning]
type = "stamps"
per_visit = 1

[bonuses]
signup = 1

[[rewards]]
id = "free-coffee"
name = "Free coffee"
cost = 10
"""

pytestmark = pytest.mark.slow  # Mosquitto, gunicorn, an ingest worker and Chromium


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def stack(tmp_path):
    """A private Mosquitto, the hub's ingest worker and web server (real processes), one shop."""
    data = tmp_path / "hub"
    broker = Mosquitto(tmp_path / "broker").start()
    port = free_port()
    hub = create_hub(load_hub_config(None, env={}, hub__data_dir=data))
    init_merchant(hub.engine, hub.keys, "cafe", "Cafe Rosa", f"http://127.0.0.1:{port}")
    add_user(hub.engine, "cafe", "owner@cafe", "owner", PASSWORD)
    (tmp_path / "programme.toml").write_text(PROGRAMME)  # the kiosk's file; the hub records the same
    prepare(hub.engine, data, "cafe", parse_draft(PROGRAMME), source=PROGRAMME)
    logs = (tmp_path / "ingest.log").open("w"), (tmp_path / "web.log").open("w")
    procs = [subprocess.Popen([HUB, "--data-dir", str(data), "ingest", "--host", "127.0.0.1",
                               "--port", str(broker.port)], stdout=logs[0], stderr=logs[0]),
             subprocess.Popen([HUB, "--data-dir", str(data), "serve", "--port", str(port), "--workers", "2",
                               "--insecure-cookies"], stdout=logs[1], stderr=logs[1])]
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield hub, broker, f"http://127.0.0.1:{port}", tmp_path
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)
        for log in logs:
            log.close()
        broker.stop()
        hub.close()


def kiosk_for(hub, broker, workdir: Path):
    """A simulated kiosk of the shop, trusting this hub's keys, linked to the broker."""
    kiosk_dir = workdir / "kiosk"
    kiosk_dir.mkdir()
    (kiosk_dir / "keys.json").write_text(export_keys(hub.engine, "cafe").to_json())
    (kiosk_dir / "hub-keys.json").write_text(hub_keys_json(hub.data_dir))
    config = load_config(None, env={}, kiosk__id="counter-1", kiosk__data_dir=str(kiosk_dir),
                         kiosk__shop_name="Cafe Rosa", kiosk__program_file=str(workdir / "programme.toml"),
                         hardware__backend="sim", mqtt__host="127.0.0.1",
                         mqtt__port=broker.port, mqtt__ack_timeout_seconds=1.0)
    documents = open_documents(config)
    clock = FakeClock(datetime.now(timezone.utc))  # the hub holds events to its own clock
    kiosk = build_kiosk(config, clock=clock, documents=documents)
    return kiosk, start_hub_link(config, kiosk.boot, documents)


def as_the_kiosk_sees_it(png: bytes) -> np.ndarray:
    """A phone held up to the camera: the QR about 260 px wide in a 640×480 grey frame."""
    qr = Image.open(io.BytesIO(png)).convert("L")
    qr = qr.resize((260, round(260 * qr.height / qr.width)), Image.Resampling.BILINEAR)
    frame = Image.new("L", (640, 480), 90)
    frame.paste(qr, (190, max(0, (480 - qr.height) // 2)))
    return np.asarray(frame)


def test_join_on_a_phone_scan_the_screen_and_see_it_on_the_dashboard(stack, phone, browser):
    hub, broker, base, workdir = stack
    phone.get(f"{base}/j/cafe")
    assert phone.execute_script("return window.innerWidth") == 390
    screenshot(phone, "join", full_page=True)
    phone.find_element(By.ID, "name").send_keys("Anna")
    phone.find_element(By.ID, "email").send_keys("anna@example.com")
    marketing = phone.find_element(By.ID, "marketing")
    assert not marketing.is_selected()  # optional and unticked
    phone.find_element(By.ID, "program").click()
    phone.find_element(By.ID, "join").click()
    wait_until(lambda: "/P/" in phone.current_url, 10, "the card page")
    card_url = phone.current_url
    qr_png = phone.find_element(By.CSS_SELECTOR, "#pass-qr svg").screenshot_as_png
    screenshot(phone, "card", full_page=True)
    assert "0 of" in phone.find_element(By.ID, "balance").text

    kiosk, link = kiosk_for(hub, broker, workdir)
    try:
        result = kiosk.handle_frame(Frame(as_the_kiosk_sees_it(qr_png), source="phone screenshot"))
        assert result.outcome == "stamped", result
        member = result.member
        store = hub.events()
        wait_until(lambda: any(e.kind == "visit" and e.member_id == member for e in store.events("cafe")), 20,
                   "the visit to reach the hub")
    finally:
        if link is not None:
            link.stop()
        kiosk.close()

    phone.get(card_url)  # the card now shows the stamp the kiosk gave (signup bonus + the visit)
    assert "2 of 10" in phone.find_element(By.ID, "balance").text
    assert "welcome bonus" in phone.find_element(By.ID, "visits").text

    browser.get(f"{base}/owner/")
    assert "/owner/login" in browser.current_url
    browser.find_element(By.ID, "login").send_keys("owner@cafe")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "signin").click()
    wait_until(lambda: browser.current_url.rstrip("/").endswith("/owner"), 10, "the dashboard")
    figures = browser.find_element(By.ID, "figures").text
    assert "1\nMembers\n" in figures and "1\nVisits\n" in figures and "1\nNew customers" in figures, figures
    screenshot(browser, "dashboard", full_page=True)
    browser.get(f"{base}/owner/members/{member}")
    assert "Anna" in browser.page_source and "visit" in browser.find_element(By.ID, "ledger").text


def test_the_card_shows_its_qr_offline_once_visited(stack, phone):
    hub, broker, base, workdir = stack
    phone.get(f"{base}/j/cafe")
    phone.find_element(By.ID, "name").send_keys("Ben")
    phone.find_element(By.ID, "program").click()
    phone.find_element(By.ID, "join").click()
    wait_until(lambda: "/P/" in phone.current_url, 10, "the card page")
    card_url = phone.current_url
    wait_until(lambda: phone.execute_script("return !!(navigator.serviceWorker && navigator.serviceWorker.controller)")
               or _reload(phone), 10, "the service worker to control the card")
    phone.get(card_url)  # fetched once under the worker: now cached
    phone.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    try:
        phone.get(card_url)
        assert phone.find_element(By.CSS_SELECTOR, "#pass-qr svg").is_displayed()
        assert "Ben" in phone.page_source
        screenshot(phone, "card-offline")
    finally:
        phone.delete_network_conditions()


def _reload(driver) -> bool:
    driver.refresh()
    return False
