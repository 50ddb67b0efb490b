"""The staff screen in real headless Chromium (Debian's chromium + chromedriver), served by the
kiosk's own server with the scan loop running on simulated hardware and a points programme
(boutique: 10 points per whole euro, a 5 EUR voucher at 500 points).

On a phone beside the till: the cashier types 23.50 on the keypad, the customer's pass is
shown to the (virtual) camera from the page, and the points appear on the mirrored OLED; the
customer scans again and the till sends the amount (twice: credited once); the voucher is
redeemed and the redemption undone within the minute; five wrong PINs lock the screen. The
same page on a tablet-sized window too. Screenshots land in test-artifacts/staff-*.png.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from browser import browser, phone, screenshot  # noqa: F401
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from staffsite import PIN, POS_TOKEN, Loop, make_site

from kiosk.display import screens
from kiosk.web.serve import serve_staff

pytestmark = pytest.mark.slow  # Chromium

READ_MIRROR = """
const img = document.getElementById('oled');
if (!img.complete || img.naturalWidth !== 128) return null;
const canvas = document.createElement('canvas');
canvas.width = 128; canvas.height = 64;
const g = canvas.getContext('2d');
g.drawImage(img, 0, 0);
const data = g.getImageData(0, 0, 128, 64).data;
let bits = '';
for (let i = 0; i < data.length; i += 4) bits += data[i] > 127 ? '1' : '0';
return bits;
"""


def bits(screen) -> str:
    """A screen as the page's canvas reads it: one character per pixel."""
    image = screens.render(screen).convert("L")
    return "".join("1" if value > 127 else "0" for value in image.tobytes())


def wait(check, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def mirror_shows(driver, screen) -> None:
    """Wait until the OLED image on the page is *screen*, pixel for pixel."""
    expected = bits(screen)
    wait(lambda: driver.execute_script(READ_MIRROR) == expected, f"the mirror to show {screen}")


def live_text(driver, selector: str) -> str:
    """The text of an element of the live part, read in one script: the page's poll may replace
    the element between a find and a read (a stale element for Selenium)."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
                                 selector)


def flashes(driver) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".flash")]


def submit(driver, button_id: str) -> None:
    """Click a form's button and wait for the page the form leads to."""
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, button_id).click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(page))


def sign_in(driver, url: str, pin: str = PIN) -> None:
    driver.get(url)
    driver.find_element(By.ID, "pin").send_keys(pin)
    submit(driver, "unlock")


def pos(url: str, amount: str, receipt: str) -> dict:
    request = urllib.request.Request(url + "api/v1/purchase", method="POST",
                                     data=json.dumps({"amount": amount, "receipt_id": receipt}).encode(),
                                     headers={"Authorization": f"Bearer {POS_TOKEN}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def test_staff_screen_at_the_counter(phone, browser, kiosk_dir, clock, hub):  # noqa: F811
    site = make_site(kiosk_dir, clock, hub)
    kiosk = site.kiosk
    anna = site.member("Anna Schmidt")
    server = serve_staff(kiosk, site.config, names=site.names.get, host="127.0.0.1", port=0)
    try:
        with Loop(kiosk) as loop:
            # The cashier opens the staff screen on a phone by the till.
            phone.get(server.url)
            assert phone.current_url.endswith("/login")
            screenshot(phone, "staff-pin")
            sign_in(phone, server.url)
            assert phone.find_element(By.ID, "enter-amount")

            # 23.50 on the keypad, then the customer scans.
            for key in ("2", "3", "dot", "5", "0"):
                phone.find_element(By.ID, f"key-{key}").click()
            assert phone.find_element(By.ID, "amount").get_attribute("value") == "23.50"
            screenshot(phone, "staff-keypad")
            submit(phone, "enter-amount")
            assert flashes(phone)[0].startswith("23.50 held")
            phone.find_element(By.ID, "pass_text").send_keys(anna.url)
            submit(phone, "present")
            scanned = loop.wait_for(1)[0]
            assert (scanned.outcome, scanned.earned, scanned.balance, scanned.amount) == ("stamped", 230, 230, "23.50")
            assert kiosk.display.shown[-1] == screens.Stamped(230, 500, "points", 230, "de")
            mirror_shows(phone, kiosk.display.shown[-1])  # "+230 Punkte", "230/500 Pkt." on the OLED
            wait(lambda: "Anna" in live_text(phone, "#scans"), "the scan in the list")
            row = live_text(phone, "#scans tbody tr")
            assert "Anna" in row and "stamped" in row and "23.50" in row and "230 points (+230)" in row
            screenshot(phone, "staff-stamped", full_page=True)

            # She buys again: scans first, and the till sends the amount (twice: it retried).
            clock.advance(10)
            phone.find_element(By.ID, "pass_text").send_keys(anna.url)
            submit(phone, "present")
            assert loop.wait_for(2)[1].outcome == "amount_required"
            wait(lambda: "type the amount" in live_text(phone, "#pending"), "the member awaiting")
            first = pos(server.url, "30.00", "R-1001")
            again = pos(server.url, "30.00", "R-1001")
            assert (first["status"], first["earned"], first["balance"]) == ("credited", 300, 530)
            assert (again["status"], again["receipt"]["member"]) == ("repeated", anna.member)
            assert site.balance(anna) == 530
            mirror_shows(phone, screens.RewardReady("5 EUR voucher", 530, 1000, "points", "de"))
            wait(lambda: "5 EUR voucher" in live_text(phone, "#ready"), "the ready reward")

            # Redeem, then undo it within the minute.
            clock.advance(5)
            submit(phone, "redeem")
            assert flashes(phone) == ["Anna redeemed 5 EUR voucher; 30 points left."]
            mirror_shows(phone, screens.Redeemed("5 EUR voucher", 30, "points", "de"))
            screenshot(phone, "staff-redeemed", full_page=True)
            clock.advance(20)
            wait(lambda: "redemption of Anna, 40 s left" in live_text(phone, "#undo-state"), "the undo offer")
            submit(phone, "undo")
            assert flashes(phone) == ["Undone for Anna: +500 points, balance now 530."]
            assert site.balance(anna) == 530
            wait(lambda: "undone" in live_text(phone, "#scans"), "the undo in the list")
            screenshot(phone, "staff-undone", full_page=True)
            assert phone.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), \
                "the page is wider than the phone"

            # The same page on a tablet-sized window.
            sign_in(browser, server.url)
            mirror_shows(browser, kiosk.display.shown[-1])
            screenshot(browser, "staff-tablet", full_page=True)

        # Five wrong PINs lock the screen, for the right PIN too.
        submit(phone, "logout")
        for _ in range(5):
            sign_in(phone, server.url + "login", pin="1111")
        assert "locked for 5 min" in phone.find_element(By.ID, "pin-error").text
        assert not phone.find_element(By.ID, "unlock").is_enabled()
        screenshot(phone, "staff-locked")
        # the form is disabled while locked; a guesser re-enabling it gets nowhere either
        phone.execute_script("document.getElementById('pin').disabled = false;"
                             "document.getElementById('unlock').disabled = false;")
        phone.find_element(By.ID, "pin").send_keys(PIN)
        submit(phone, "unlock")
        assert phone.current_url.endswith("/login") and "locked" in phone.find_element(By.ID, "pin-error").text
        clock.advance(301)
        sign_in(phone, server.url + "login")
        assert not phone.current_url.endswith("/login")
    finally:
        server.stop()
        kiosk.close()
