"""Fleet configuration on the kiosk: verify, validate and apply ``config/desired`` documents.

A document is applied only if it is signed by the hub, is for this merchant (and kiosk),
is newer than the applied version and holds a valid programme; then the programme is
switched without a restart and the document is saved atomically (write, fsync, rename),
so it survives a power cut. Anything else is rejected with the reason and the running
programme stays in force. Every outcome becomes a ``config/reported`` payload.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kiosk.errors import ConfigError
from kiosk.protocol.signed import SignatureInvalid, verify
from kiosk.rules.program import Program, parse_program

log = logging.getLogger(__name__)

MAX_BYTES = 256 * 1024
SCHEMA = "stempel.config/1"


@dataclass(frozen=True)
class Report:
    """The ``config/reported`` payload."""

    version: int | None
    status: str  # "applied" | "rejected"
    errors: list[str] = field(default_factory=list)
    restart_required: bool = False

    def to_json(self) -> bytes:
        return json.dumps({"schema": "stempel.config-report/1", "version": self.version, "status": self.status,
                           "errors": self.errors, "restart_required": self.restart_required}).encode()


class ConfigApplier:
    """Applies signed programme documents for one kiosk; remembers the applied one on disk."""

    def __init__(self, merchant: str, kiosk: str, trusted: dict[str, Ed25519PublicKey], state_file: Path,
                 on_program) -> None:
        self.merchant, self.kiosk, self.trusted = merchant, kiosk, trusted
        self.state_file = Path(state_file)
        self.on_program = on_program  # called with the new Program
        self.version: int | None = None
        self.program: Program | None = None

    def restore(self) -> Program | None:
        """Load the last applied document (after a restart); a damaged file is ignored, loudly."""
        try:
            doc = json.loads(self.state_file.read_text())
            verify(doc, self.trusted)
            self.program = parse_program(doc["program"], "applied config")
            self.version = int(doc["version"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, SignatureInvalid, ConfigError) as exc:
            log.error("config.restore_failed", extra={"file": str(self.state_file), "error": str(exc)})
            return None
        return self.program

    def handle(self, payload: bytes) -> Report:
        """Verify, validate and apply one ``config/desired`` payload; never raises for bad input."""
        try:
            doc, version = self._check(payload)
        except _Rejected as exc:
            log.warning("config.rejected", extra={"version": exc.version, "errors": exc.errors})
            return Report(exc.version, "rejected", exc.errors)
        if self.version is not None and version <= self.version:
            return Report(self.version, "applied")  # old or repeated (e.g. retained): re-report ours
        program = self._validate(doc, version)
        if isinstance(program, Report):
            return program
        self._save(doc)
        self.version, self.program = version, program
        self.on_program(program)
        log.info("config.applied", extra={"version": version})
        return Report(version, "applied")

    def _check(self, payload: bytes) -> tuple[dict, int]:
        if len(payload) > MAX_BYTES:
            raise _Rejected(None, [f"document is {len(payload)} bytes; the limit is {MAX_BYTES}"])
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Rejected(None, [f"not JSON: {exc}"]) from None
        if not isinstance(doc, dict):
            raise _Rejected(None, ["not a JSON object"])
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise _Rejected(None, ["version: must be a positive integer"])
        try:
            verify(doc, self.trusted)
        except SignatureInvalid as exc:
            raise _Rejected(version, [f"signature: {exc}"]) from None
        if doc.get("schema") != SCHEMA:
            raise _Rejected(version, [f"schema: expected {SCHEMA!r}"])
        if doc.get("merchant") != self.merchant or doc.get("kiosk") not in (None, self.kiosk):
            raise _Rejected(version, ["merchant/kiosk: this document is for another kiosk"])
        if not isinstance(doc.get("program"), dict):
            raise _Rejected(version, ["program: missing or not an object"])
        return doc, version

    def _validate(self, doc: dict, version: int) -> Program | Report:
        try:
            return parse_program(doc["program"], "program")
        except ConfigError as exc:
            return Report(version, "rejected", str(exc).splitlines())

    def _save(self, doc: dict) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        with open(tmp, "w") as out:
            json.dump(doc, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.state_file)
        dir_fd = os.open(self.state_file.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class _Rejected(Exception):
    def __init__(self, version: int | None, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.version, self.errors = version, errors
