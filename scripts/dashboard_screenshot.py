"""Take the README's dashboard screenshot from the demo shop: run `make demo` first.

Serves demo-out/hub with `stempel-hub serve`, signs in with a throwaway login in headless
Debian Chromium, and writes docs/dashboard.png (and docs/card.png, a member's card on a phone).

    .venv/bin/python scripts/dashboard_screenshot.py
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.accounts import add_user
from cloud.app import create_hub
from cloud.config import load_hub_config
from cloud.models import Merchant

DATA = Path("demo-out/hub")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def driver(width: int, height: int, mobile: bool = False) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in FLAGS + [f"--window-size={width},{height}"]:
        options.add_argument(flag)
    if mobile:
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": width, "height": height,
                                                                               "pixelRatio": 2.0}})
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def main() -> None:
    if not (DATA / "hub.sqlite3").exists():
        sys.exit("run `make demo` first: it fills demo-out/hub")
    hub = create_hub(load_hub_config(None, env={}, hub__data_dir=DATA))
    with Session(hub.engine) as session:
        base = session.scalar(select(Merchant.base_url).where(Merchant.id == "demo-cafe"))
    login, password = f"shot-{secrets.token_hex(3)}@demo-cafe", secrets.token_urlsafe(12)
    add_user(hub.engine, "demo-cafe", login, "owner", password)
    hub.close()
    port = base.rsplit(":", 1)[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "stempel-hub"), "--data-dir", str(DATA), "serve",
                               "--port", port, "--workers", "1", "--insecure-cookies"])
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/healthz").read()
                break
            except OSError:
                time.sleep(0.1)
        desk = driver(1280, 900)
        try:
            desk.get(f"{base}/owner/login")
            desk.find_element(By.ID, "login").send_keys(login)
            desk.find_element(By.ID, "password").send_keys(password)
            desk.find_element(By.ID, "signin").click()
            desk.get(f"{base}/owner/?days=90")
            height = desk.execute_script("return document.body.scrollHeight")
            desk.set_window_size(1280, height + 120)
            desk.save_screenshot("docs/dashboard.png")
        finally:
            desk.quit()
    finally:
        server.terminate()
        server.wait(10)
    print("wrote docs/dashboard.png")


if __name__ == "__main__":
    main()
