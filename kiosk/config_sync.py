"""The kiosk's two config documents and what they add up to.

The merchant-wide document (``config/desired``) sets the programme of every kiosk; the
kiosk's own document (``kiosks/{kiosk}/config/desired``) may override the programme and
set hardware. Each has its own version space and state file. The effective programme is
the kiosk override, else the merchant's, else the config file's; hardware is the file's
``[hardware]`` with the kiosk document's settings on top, and changes only at a restart
(the report says ``restart_required`` until then).

Not thread-safe on purpose: one thread (the remote link's worker) owns it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kiosk.config import HardwareSection
from kiosk.remote_config import KIOSK, MERCHANT, ConfigApplier, Report
from kiosk.rules.program import Program

MERCHANT_FILE = "applied-config.json"
KIOSK_FILE = "applied-kiosk-config.json"


@dataclass(frozen=True)
class Outcome:
    """What one document did: its report, and the new effective programme if it changed."""

    report: Report
    program: Program | None = None


class FleetConfig:
    """Both appliers of one kiosk, the programme and hardware in force, and the combined report."""

    def __init__(self, merchant: str, kiosk: str, trusted: dict[str, Ed25519PublicKey], data_dir: Path,
                 base_program: Program, base_hardware: HardwareSection) -> None:
        data_dir = Path(data_dir)
        self.appliers = {
            MERCHANT: ConfigApplier(merchant, kiosk, trusted, data_dir / MERCHANT_FILE, scope=MERCHANT),
            KIOSK: ConfigApplier(merchant, kiosk, trusted, data_dir / KIOSK_FILE, scope=KIOSK),
        }
        self.base_program, self.base_hardware = base_program, base_hardware
        self.running_hardware = base_hardware
        self._reports: dict[str, Report] = {}

    def restore(self) -> None:
        """Load what was applied before the restart; the hardware in force is then the restored one."""
        for applier in self.appliers.values():
            applier.restore()
        self.running_hardware = self.hardware()

    def program(self) -> Program:
        return self.appliers[KIOSK].program or self.appliers[MERCHANT].program or self.base_program

    def hardware(self) -> HardwareSection:
        """The file's hardware with the kiosk document's settings on top (validated on arrival)."""
        overrides = self.appliers[KIOSK].hardware
        if not overrides:
            return self.base_hardware
        return HardwareSection.model_validate({**self.base_hardware.model_dump(), **overrides})

    def restart_required(self) -> bool:
        return self.hardware() != self.running_hardware

    def versions(self) -> dict[str, int]:
        """Applied version per document, for the kiosk's retained ``state``."""
        return {scope: a.version for scope, a in self.appliers.items() if a.version is not None}

    def handle(self, scope: str, payload: bytes) -> Outcome:
        """Hand one payload to the applier of *scope*; never raises for bad input."""
        before = self.program()
        report = self.appliers[scope].handle(payload)
        if scope == KIOSK:
            report = replace(report, restart_required=self.restart_required())
        self._reports[scope] = report
        after = self.program()
        return Outcome(report, after if after is not before else None)

    def report_payload(self) -> bytes:
        """The retained ``config/reported``: the merchant-wide document's report at the top level
        (what ``stempel-hub fleet status`` compares with the latest version), the kiosk document's
        under ``kiosk_config``, and ``restart_required`` if either needs a restart."""
        merchant = self._reports.get(MERCHANT) or self._current(MERCHANT)
        kiosk = self._reports.get(KIOSK) or self._current(KIOSK)
        doc = merchant.to_dict()
        doc["restart_required"] = self.restart_required()
        doc["kiosk_config"] = None if kiosk.version is None and kiosk.status == "none" else kiosk.to_dict()
        doc["applied"] = self.versions()
        return json.dumps(doc).encode()

    def _current(self, scope: str) -> Report:
        version = self.appliers[scope].version
        return Report(version, "applied" if version is not None else "none")
