"""A kiosk with a points programme (examples/boutique.toml: 10 points per whole euro, a 5 EUR
voucher at 500) on simulated hardware, its staff screen, and helpers that act like the people
at the counter: the cashier (PIN, forms with their CSRF token), the customer (a scan) and a
till (the POS API). The kiosk's clock is a FakeClock, so lockouts and undo windows are tested
by moving it, never by sleeping.

Adopt with ``from staffsite import staff  # noqa: F401`` (it builds on conftest's ``hub``,
``kiosk_dir`` and ``clock``).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from kiosk.app import Kiosk, ScanResult
from kiosk.clock import FakeClock
from kiosk.config import KioskConfig, load_config
from kiosk.loop import run as run_loop
from kiosk.web import create_staff_app
from kiosk.web.auth import token_digest
from kiosk.wiring import build_kiosk

ROOT = Path(__file__).resolve().parent.parent
BOUTIQUE = ROOT / "examples" / "boutique.toml"
PIN = "2468"
POS_TOKEN = "pos_test-token-for-the-till-0123456789"
# argon2 at its lightest for tests (verification takes the parameters from the hash itself)
PIN_HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PIN)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def staff_config(kiosk_dir: Path, **staff) -> KioskConfig:
    overrides = {"staff__pin_hash": PIN_HASH, "staff__pos_token_sha256": token_digest(POS_TOKEN),
                 **{f"staff__{k}": v for k, v in staff.items()}}
    return load_config(None, env={}, kiosk__data_dir=str(kiosk_dir), kiosk__shop_name="Boutique Lina",
                       kiosk__program_file=str(BOUTIQUE), hardware__backend="sim", **overrides)


@dataclass
class Site:
    kiosk: Kiosk
    config: KioskConfig
    clock: FakeClock
    hub: object
    names: dict = field(default_factory=dict)
    app: object = None

    def client(self):
        return self.app.test_client()

    @staticmethod
    def csrf(client, path: str = "/") -> str:
        page = client.get(path)
        match = _CSRF.search(page.get_data(as_text=True))
        assert match, f"no CSRF token on {path} ({page.status_code})"
        return match.group(1)

    def post(self, client, path: str, form_page: str = "/", **data):
        """Submit a form the way the browser does: the token from *form_page*, then the POST."""
        return client.post(path, data={"csrf_token": self.csrf(client, form_page), **data})

    def login(self, client=None, pin: str = PIN):
        client = client or self.client()
        done = self.post(client, "/login", "/login", pin=pin)
        assert done.status_code == 302, done.get_data(as_text=True)[:500]
        return client

    def member(self, name: str):
        """A new member's pass (its ``url`` is what the QR holds); the staff screen knows the name."""
        issued = self.hub.issue(name)
        self.names[issued.member] = name
        return issued

    def scan(self, issued) -> ScanResult:
        """The customer shows the pass: the kiosk's scan path after the decoder."""
        return self.kiosk.handle_codes("camera", [issued.url.encode()], 0.0, 0.0)

    def purchase(self, client, amount, receipt_id: str, token: str = POS_TOKEN):
        return client.post("/api/v1/purchase", json={"amount": amount, "receipt_id": receipt_id},
                           headers={"Authorization": f"Bearer {token}"})

    def balance(self, issued) -> int:
        return self.kiosk.ledger.member_state(issued.member, self.kiosk.program).balance


def make_site(kiosk_dir: Path, clock: FakeClock, hub, selftest=None, **staff) -> Site:
    config = staff_config(kiosk_dir, **staff)
    kiosk = build_kiosk(config, clock=clock)
    site = Site(kiosk, config, clock, hub)
    site.app = create_staff_app(kiosk, config, names=site.names.get, selftest=selftest)
    return site


@pytest.fixture
def staff(kiosk_dir, clock, hub):
    site = make_site(kiosk_dir, clock, hub)
    yield site
    site.kiosk.close()


class Loop:
    """The kiosk's scan loop on a thread, as `stempel-kiosk run` runs it; results in ``results``."""

    def __init__(self, kiosk: Kiosk) -> None:
        self.kiosk, self.results, self.stop = kiosk, [], threading.Event()
        self.thread = threading.Thread(target=run_loop, args=(kiosk, kiosk.camera, self.stop, self.results.append),
                                       name="scan-loop", daemon=True)

    def __enter__(self) -> "Loop":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[ScanResult]:
        deadline = time.monotonic() + timeout
        while len(self.results) < count:
            assert time.monotonic() < deadline, f"the loop gave {len(self.results)} results, not {count}"
            time.sleep(0.02)
        return self.results
