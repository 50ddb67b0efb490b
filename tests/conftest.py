"""Shared fixtures: a hub with a merchant, its passes, and a simulated kiosk on fakes."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from cloud.keys import KeyStore
from cloud.passes import export_keys, init_merchant, issue_pass
from cloud.db import default_url, open_store
from kiosk.clock import FakeClock
from kiosk.config import load_config
from kiosk.wiring import build_kiosk

from hubdb import PG_USED, pg_server  # noqa: F401  (one PostgreSQL server for the whole session)
from pihost import on_a_pi

MERCHANT = "cafe-rosa"
START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # a Monday


@dataclass
class Hub:
    data_dir: Path
    engine: object
    keys: KeyStore

    def init(self, merchant: str, name: str = "Shop") -> None:
        init_merchant(self.engine, self.keys, merchant, name, "https://stempel.example")

    def issue(self, name: str, merchant: str = MERCHANT, out: Path | None = None):
        out = out or self.data_dir / f"{merchant}-{name}.png"
        return issue_pass(self.engine, self.keys, merchant, name, out)

    def export(self, merchant: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(export_keys(self.engine, merchant).to_json())
        return dest


@pytest.fixture(scope="module", autouse=True)
def _collect_garbage_per_module(request):
    """Free what a module of brokers and processes (marked ``slow``) left to the garbage collector
    before the next module runs: a socket a test forgot to close then fails that module
    (filterwarnings=error), not whichever test happens to run when the collector gets to it.
    (Only there: a collection costs ~0.15 s, too much to pay after every quick module.)"""
    yield
    if request.node.get_closest_marker("slow") is not None:
        gc.collect()


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    data = tmp_path / "hub"
    data.mkdir()
    hub = Hub(data, open_store(default_url(data)), KeyStore(data))
    hub.init(MERCHANT, "Cafe Rosa")
    yield hub
    hub.engine.dispose()


@pytest.fixture
def kiosk_dir(hub: Hub, tmp_path: Path) -> Path:
    data = tmp_path / "kiosk"
    hub.export(MERCHANT, data / "keys.json")
    return data


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


BACKENDS = ["sim", pytest.param("pi", marks=pytest.mark.pi)]
"""Every scenario on the ``kiosk`` fixture runs on each: simulated here, real on a Raspberry Pi."""


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``pi`` need a Raspberry Pi's camera, GPIO and OLED: skipped anywhere else."""
    if on_a_pi():
        return
    skip = pytest.mark.skip(reason="needs a real Raspberry Pi (camera, GPIO pins, I2C OLED)")
    for item in items:
        if item.get_closest_marker("pi") is not None:
            item.add_marker(skip)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """The hardware backend (``[hardware] backend``) the kiosk of a scenario runs on."""
    return request.param


def open_kiosk(kiosk_dir: Path, clock: FakeClock, backend: str = "sim"):
    config = load_config(None, env={}, kiosk__data_dir=str(kiosk_dir), kiosk__shop_name="Cafe Rosa",
                         hardware__backend=backend)
    return build_kiosk(config, clock=clock)


@pytest.fixture
def kiosk(kiosk_dir: Path, clock: FakeClock, backend: str):
    """A kiosk from the hardware factory: its panel's ``history`` and display's ``shown`` say
    what the counter saw and heard, on either backend."""
    k = open_kiosk(kiosk_dir, clock, backend)
    yield k
    k.close()


@pytest.fixture
def sim_kiosk(kiosk_dir: Path, clock: FakeClock):
    """A kiosk on simulated hardware only: for tests that press the mock button or read pin states."""
    k = open_kiosk(kiosk_dir, clock)
    yield k
    k.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261124)


def pytest_terminal_summary(terminalreporter, config) -> None:
    """Say which PostgreSQL the hub tests ran on: the shared server or a private cluster."""
    if (used := config.stash.get(PG_USED, None)) is not None:
        terminalreporter.write_line(f"PostgreSQL: {used}")
