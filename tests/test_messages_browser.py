"""The owner's message pages in a real browser (Debian's chromium): the Messages page with what
the automations did — opened, bounced, the win-back lift — and writing the welcome's own words
with a preview from a real member's card. Screenshots in test-artifacts/ (messages.png,
message-text.png) for a person to look at; the assertions read what the owner reads."""

from __future__ import annotations

from datetime import timedelta

import pytest
from browser import browser, screenshot, serve  # noqa: F401  (fixture)
from selenium.webdriver.common.by import By
from smtpsink import smtp_sink  # noqa: F401  (fixture)
from sqlalchemy import update
from syncrig import wait_until
from test_automations import NOW
from test_message_opened import Opening
from webapp import PASSWORD, _quick_password_hashes  # noqa: F401  (fixture)

from cloud.automations import outbox
from cloud.models import Message

pytestmark = pytest.mark.slow  # a browser


def test_the_owner_reads_what_the_messages_did_and_writes_the_welcome(tmp_path, smtp_sink, browser):
    shop = Opening(tmp_path, f"sqlite:///{tmp_path / 'hub.sqlite3'}", smtp_sink)
    try:
        anna = shop.member("Anna", "anna@example.org")
        ben = shop.member("Ben", "ben@example.org")
        carla = shop.member("Carla", "carla@example.org")
        shop.visits(anna, [NOW - timedelta(days=30), NOW - timedelta(days=2)])
        for member, status, opened in ((anna, outbox.SENT, NOW), (ben, outbox.SENT, None),
                                       (carla, outbox.SENT, None)):
            shop.add(member, "welcome", "join", status, opened_at=opened)
        bounced = shop.add(carla, "birthday", "2026", outbox.SENT)
        with shop.hub.engine.begin() as conn:
            conn.execute(update(Message).where(Message.id == bounced).values(
                status="bounced", last_error="bounced: 5.1.1 550 5.1.1 <carla@example.org>: user unknown"))
        shop.owner()  # makes the owner's login

        with serve(shop.app) as base:
            browser.get(f"{base}/owner/login")
            browser.find_element(By.ID, "login").send_keys("owner@cafe")
            browser.find_element(By.ID, "password").send_keys(PASSWORD)
            browser.find_element(By.ID, "signin").click()
            wait_until(lambda: browser.current_url.rstrip("/").endswith("/owner"), 10, "the dashboard")

            browser.get(f"{base}/owner/messages")
            opened = browser.find_element(By.ID, "opened").text
            assert "welcome 3 1 33 %" in opened.replace("\n", " "), opened
            assert "user unknown" in browser.find_element(By.ID, "bounces").text
            screenshot(browser, "messages", full_page=True)

            browser.find_element(By.CSS_SELECTOR, "#texts-link a").click()
            wait_until(lambda: "/owner/messages/texts" in browser.current_url, 10, "the texts page")
            browser.get(f"{base}/owner/messages/texts/welcome?member={anna}")
            subject = browser.find_element(By.ID, "subject_en")
            subject.clear()
            subject.send_keys("Hello $first_name, welcome to $shop")
            browser.find_element(By.CSS_SELECTOR, "#edit-en button").click()
            wait_until(lambda: "your words" in browser.page_source.lower() or "saved" in browser.page_source.lower(),
                       10, "the words saved")
            browser.get(f"{base}/owner/messages/texts/welcome?member={anna}")
            assert browser.find_element(By.ID, "preview-subject").text == "Hello Anna, welcome to Cafe Rosa"
            assert "You collect stamps" in browser.find_element(By.ID, "preview-text").text
            assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")  # links wrap
            screenshot(browser, "message-text", full_page=True)
    finally:
        shop.hub.close()
