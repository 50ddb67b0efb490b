"""Fleet configuration on the kiosk: verify, validate and apply ``config/desired`` documents.

A document is applied only if it is signed by the hub, is for this merchant (and kiosk),
is newer than the applied version and holds a valid programme; then the programme is
switched without a restart and the document is saved atomically (write, fsync, rename),
so it survives a power cut. Anything else is rejected with the reason and the running
programme stays in force. Every outcome becomes a ``config/reported`` payload.

Two scopes, each with its own version space and state file: the merchant-wide document
(``config/desired``: a programme, no kiosk named) and the kiosk's own document
(``kiosks/{kiosk}/config/desired``: names this kiosk; may carry a ``program`` override
and ``hardware`` settings). A document of one scope arriving on the other's topic is
refused, so a signed document cannot be replayed into the other version space.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from kiosk.common.atomic import write_atomic
from kiosk.config import HardwareSection
from kiosk.common.errors import ConfigError
from kiosk.protocol.signed import CONFIG_SCHEMA, SignatureInvalid, verify
from kiosk.rules.program import Program, parse_program

log = logging.getLogger(__name__)

MAX_BYTES = 256 * 1024
SCHEMA = CONFIG_SCHEMA
MERCHANT = "merchant"  # scope of config/desired
KIOSK = "kiosk"  # scope of kiosks/{kiosk}/config/desired


@dataclass(frozen=True)
class Report:
    """The ``config/reported`` payload (of one document)."""

    version: int | None
    status: str  # "applied" | "rejected"
    errors: list[str] = field(default_factory=list)
    restart_required: bool = False

    def to_dict(self) -> dict:
        return {"schema": "stempel.config-report.v1", **asdict(self)}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict()).encode()


class ConfigApplier:
    """Applies signed config documents of one scope for one kiosk; remembers the applied one on disk."""

    def __init__(self, merchant: str, kiosk: str, trusted: dict[str, Ed25519PublicKey], state_file: Path,
                 scope: str = MERCHANT) -> None:
        if scope not in (MERCHANT, KIOSK):
            raise ValueError(f"scope must be {MERCHANT!r} or {KIOSK!r}, not {scope!r}")
        self.merchant, self.kiosk, self.trusted, self.scope = merchant, kiosk, trusted, scope
        self.state_file = Path(state_file)
        self.version: int | None = None
        self.program: Program | None = None
        self.hardware: dict = {}  # the hardware settings the document sets (kiosk scope only)

    def restore(self) -> Program | None:
        """Load the last applied document (after a restart), checked as if it had just arrived;
        a damaged or altered file is ignored, loudly."""
        try:
            payload = self.state_file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("config.restore_failed", extra={"file": str(self.state_file), "error": str(exc)})
            return None
        try:
            doc, version = self._check(payload)
            program, hardware = self._validate(doc, version)
        except _Rejected as exc:
            log.error("config.restore_failed", extra={"file": str(self.state_file), "errors": exc.errors})
            return None
        self.version, self.program, self.hardware = version, program, hardware
        return self.program

    def handle(self, payload: bytes) -> Report:
        """Verify, validate and apply one ``config/desired`` payload; never raises for bad input."""
        try:
            doc, version = self._check(payload)
            if self.version is not None and version <= self.version:
                return Report(self.version, "applied")  # old or repeated (e.g. retained): re-report ours
            program, hardware = self._validate(doc, version)
        except _Rejected as exc:
            log.warning("config.rejected", extra={"scope": self.scope, "version": exc.version, "errors": exc.errors})
            return Report(exc.version, "rejected", exc.errors)
        try:
            write_atomic(self.state_file, json.dumps(doc).encode())
        except OSError as exc:  # not applied: it would not survive a restart
            log.error("config.save_failed", extra={"file": str(self.state_file), "error": str(exc)})
            return Report(version, "rejected", [f"cannot save the document on the kiosk: {exc}"])
        self.version, self.program, self.hardware = version, program, hardware
        log.info("config.applied", extra={"scope": self.scope, "version": version})
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
        self._check_scope(doc, version)
        return doc, version

    def _check_scope(self, doc: dict, version: int) -> None:
        if self.scope == MERCHANT:
            if doc.get("kiosk") is not None:
                raise _Rejected(version, ["kiosk: a document for one kiosk arrived on the merchant-wide topic"])
            if "hardware" in doc:
                raise _Rejected(version, ["hardware: only a kiosk's own document may set hardware"])
            if not isinstance(doc.get("program"), dict):
                raise _Rejected(version, ["program: missing or not an object"])
            return
        if doc.get("kiosk") != self.kiosk:
            raise _Rejected(version, ["kiosk: a merchant-wide document arrived on this kiosk's topic"])
        for name in ("program", "hardware"):
            if doc.get(name) is not None and not isinstance(doc[name], dict):
                raise _Rejected(version, [f"{name}: not an object"])

    def _validate(self, doc: dict, version: int) -> tuple[Program | None, dict]:
        errors: list[str] = []
        program = None
        if doc.get("program") is not None:
            try:
                program = parse_program(doc["program"], "program")
            except ConfigError as exc:
                errors += str(exc).splitlines()
        hardware: dict = {}
        if doc.get("hardware") is not None:
            try:
                section = HardwareSection.model_validate(doc["hardware"])
                hardware = {name: getattr(section, name) for name in section.model_fields_set}
            except ValidationError as exc:
                errors += [f"hardware: [{'.'.join(str(p) for p in e['loc'])}] {e['msg']}" for e in exc.errors()]
        if errors:
            raise _Rejected(version, errors)
        return program, hardware


class _Rejected(Exception):
    def __init__(self, version: int | None, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.version, self.errors = version, errors
