"""A live kiosk for fleet tests: the real scan loop on simulated hardware, the real hub link
on a real broker, and bounded waits on what it shows and reports.

Scans go through the camera (``VirtualCamera.present``) and the button through the mock
pin, so programme and key changes reach the Kiosk the way they do in ``stempel-kiosk run``:
queued by the hub link and applied by the loop between frames.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from syncrig import FAST, MERCHANT, kiosk_bus

from cloud.hubkey import hub_keys_json
from kiosk.app import ScanResult
from kiosk.clock import FakeClock
from kiosk.config import load_config
from kiosk.hardware import scenes
from kiosk.hardware.camera import VirtualCamera
from kiosk.ledger import Ledger
from kiosk.loop import run as run_loop
from kiosk.link.hub_link import HubLink
from kiosk.link.state import state_will
from kiosk.wiring import build_kiosk, ledger_path, open_documents

if TYPE_CHECKING:
    from buses import Buses

WAIT = 10.0


class LiveKiosk:
    """One kiosk of MERCHANT with its own data folder (keys.json and hub-keys.json from *hub*), on
    Mosquitto at *port*, or on the broker of a ``buses.Buses`` (the ``bus_factory`` fixture)."""

    def __init__(self, root: Path, hub, kiosk_id: str, port: "int | Buses", clock: FakeClock, seed: int = 7) -> None:
        self.id, self.clock = kiosk_id, clock
        self.data = root / kiosk_id
        if not (self.data / "keys.json").exists():
            hub.export(MERCHANT, self.data / "keys.json")
            (self.data / "hub-keys.json").write_text(hub_keys_json(hub.data_dir))
        self.config = load_config(None, env={}, kiosk__data_dir=str(self.data), kiosk__id=kiosk_id,
                                  kiosk__merchant=MERCHANT, mqtt__host="127.0.0.1",
                                  mqtt__port=port if isinstance(port, int) else port.port)
        self.port = port
        self.rng = np.random.default_rng(seed)
        self.results: queue.Queue[ScanResult] = queue.Queue()

    def start(self) -> "LiveKiosk":
        documents = open_documents(self.config)  # once, for the kiosk and its link (as `stempel-kiosk run`)
        self.kiosk = build_kiosk(self.config, clock=self.clock, documents=documents)
        if isinstance(self.port, int):
            bus = kiosk_bus(self.port, self.id, self.kiosk.boot)
        else:
            bus = self.port.bus(self.id, will=state_will(MERCHANT, self.id, self.kiosk.boot))
        self.link = HubLink(bus, merchant=MERCHANT, kiosk=self.id, boot_id=self.kiosk.boot,
                            ledger_path=ledger_path(self.config), documents=documents, software_version="test",
                            settings=FAST)
        self.sender, self.status = self.link.sender, self.link.status
        self.camera = VirtualCamera()
        self._stop = threading.Event()
        self._loop = threading.Thread(target=run_loop, args=(self.kiosk, self.camera, self._stop),
                                      kwargs={"on_result": self.results.put, "updates": self.link.updates},
                                      name=f"loop-{self.id}", daemon=True)
        self._loop.start()
        self.link.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._loop.join(WAIT)
        self.link.stop()
        self.kiosk.panel.close()
        self.kiosk.ledger.close()

    # -- the counter ------------------------------------------------------------------------
    def scan(self, url: str, advance: float = 3660) -> ScanResult:
        """Show a pass to the camera (after *advance* seconds, past the cooldown and the debounce)."""
        self.clock.advance(advance)
        self.camera.present(scenes.render(url, self.rng), source=f"{self.id}-scan")
        return self.results.get(timeout=WAIT)

    def press(self) -> ScanResult:
        pin = self.kiosk.panel.button.pin
        pin.drive_low()
        pin.drive_high()
        return self.results.get(timeout=WAIT)

    # -- reading the kiosk's ledger on the test thread (its own connection) -------------------
    def read(self, fn):
        ledger = Ledger(ledger_path(self.config))
        try:
            return fn(ledger)
        finally:
            ledger.close()

    def balance(self, member: str) -> int:
        """The member's balance as this kiosk folds it (own and foreign events)."""
        return self.read(lambda ledger: ledger.member_state(member, self.kiosk.program).balance)

    def foreign(self) -> int:
        return self.read(lambda ledger: len(ledger.foreign_events()))

    def cursor(self) -> int:
        return self.read(Ledger.hub_applied_through)


def reports(messages, kiosk: str | None = None) -> list[dict]:
    """Decoded ``config/reported`` payloads among watcher messages (optionally of one kiosk)."""
    out = []
    for m in messages:
        if m.topic.endswith("/config/reported") and (kiosk is None or f"/kiosks/{kiosk}/" in m.topic):
            out.append(json.loads(m.payload))
    return out
