"""Every signed document the hub pushes, followed by one class along one verification path.

Three documents, each on its own retained topic, with its own version space and file:

==========  ======================================  ===========================  ====================
kind        topic                                   model (kiosk/protocol)       kept in
==========  ======================================  ===========================  ====================
merchant    ``config/desired``                      ``ConfigDocument``           applied-config.json
kiosk       ``kiosks/{kiosk}/config/desired``       ``ConfigDocument``           applied-kiosk-config.json
keys        ``keys``                                ``SignedKeysDocument``       keys.json
==========  ======================================  ===========================  ====================

Each payload goes the same way (``verify_document``): size, JSON object, the hub's signature
(its public key comes from the kiosk bundle, never over MQTT, so a broker that is misconfigured
or taken over cannot add a key, lift a revocation or change a programme), the document's model,
then whether it is for this merchant, this kiosk and the topic it came on (a document of one
kind cannot be replayed into another's version space). A version at or below the one held is
not looked at further: a stale retained copy (a broker restored from a backup) never rolls
anything back. A newer one must hold valid contents (the programme, the hardware settings, the
keys) and is saved atomically (write, fsync, rename) before it is in force, so it survives a
power cut. Anything refused changes nothing: the kiosk runs on what it had.

The programme in force is the kiosk document's override, else the merchant's, else the config
file's; hardware is the file's ``[hardware]`` with the kiosk document's settings on top, and
changes only at a restart (``restart_required`` until then); so does the join URL the idle
screen shows (the kiosk document's ``join_url``, else the file's ``[kiosk] join_url``). Every
config outcome becomes the retained ``config/reported`` (the hub's side is
``cloud/link/documents.py``).

The stored documents are loaded and verified once, at start (``restore``); the kiosk is built
from them and the hub link then follows new ones. Not thread-safe on purpose: one thread (the
hub link's worker, once started) owns it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from kiosk.common.atomic import write_atomic
from kiosk.common.errors import ConfigError
from kiosk.config import HardwareSection
from kiosk.protocol.joinurl import check_join_url
from kiosk.protocol.documents import MAX_DOCUMENT_BYTES, ConfigDocument, SignedKeysDocument, field_errors
from kiosk.protocol.event_schema import INT64_MAX
from kiosk.protocol.passes import KeyRing
from kiosk.protocol.signed import SignatureInvalid, verify
from kiosk.rules.program import Program, parse_program

log = logging.getLogger(__name__)

MERCHANT = "merchant"  # config/desired: the merchant-wide programme
KIOSK = "kiosk"  # kiosks/{kiosk}/config/desired: this kiosk's own config
KEYS = "keys"  # keys: the pass keys and revocations
CONFIGS = (MERCHANT, KIOSK)
KINDS = (MERCHANT, KIOSK, KEYS)
LABELS = {MERCHANT: "merchant config", KIOSK: "kiosk config", KEYS: "keys document"}
MERCHANT_FILE = "applied-config.json"
KIOSK_FILE = "applied-kiosk-config.json"
MAX_BYTES = MAX_DOCUMENT_BYTES
_MODELS = {MERCHANT: ConfigDocument, KIOSK: ConfigDocument, KEYS: SignedKeysDocument}


@dataclass(frozen=True)
class Report:
    """The ``config/reported`` payload (of one document): the version in force, or the one refused."""

    version: int | None
    status: str  # "applied" | "rejected" ("none": no document yet)
    errors: list[str] = field(default_factory=list)
    restart_required: bool = False

    def to_dict(self) -> dict:
        return {"schema": "stempel.config-report.v1", **asdict(self)}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict()).encode()


@dataclass(frozen=True)
class Outcome:
    """What one payload did: its report; ``applied`` if it is now in force; the new effective
    programme if that changed; the new pass keys if they changed."""

    report: Report
    applied: bool = False
    program: Program | None = None
    keyring: KeyRing | None = None

    @property
    def status(self) -> str:
        """``applied`` (now in force), ``ignored`` (an older or repeated version) or ``rejected``."""
        if self.report.status == "rejected":
            return "rejected"
        return "applied" if self.applied else "ignored"

    @property
    def version(self) -> int | None:
        return self.report.version

    @property
    def error(self) -> str | None:
        return "; ".join(self.report.errors) or None


@dataclass(frozen=True)
class Held:
    """One document in force: its version and what it holds (``None`` version: none yet)."""

    version: int | None = None
    program: Program | None = None
    hardware: dict = field(default_factory=dict)  # the hardware settings it sets (kiosk document only)
    keyring: KeyRing | None = None
    join_url: str | None = None  # the join URL it sets (kiosk document only)


class Refused(Exception):
    """A document that is not applied; ``errors`` say why (the version, when it was readable)."""

    def __init__(self, version: int | None, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.version, self.errors = version, errors


def verify_document(payload: bytes, kind: str, trusted: dict[str, Ed25519PublicKey], merchant: str,
                    kiosk: str) -> tuple[dict, ConfigDocument | SignedKeysDocument]:
    """The one check every document passes, on arrival and when restored: the raw JSON object
    (what is saved) and its model. Raises Refused; the contents are checked by ``contents``."""
    if len(payload) > MAX_BYTES:
        raise Refused(None, [f"document is {len(payload)} bytes; the limit is {MAX_BYTES}"])
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(None, [f"not JSON: {exc}"]) from None
    if not isinstance(doc, dict):
        raise Refused(None, ["not a JSON object"])
    claimed = doc.get("version")
    version = claimed if type(claimed) is int and 0 < claimed <= INT64_MAX else None  # to name it in the report
    try:
        verify(doc, trusted)
    except SignatureInvalid as exc:
        raise Refused(version, [f"signature: {exc}"]) from None
    try:
        model = _MODELS[kind].model_validate(doc)
    except ValidationError as exc:
        raise Refused(version, field_errors(exc)) from None
    errors = _misaddressed(model, kind, merchant, kiosk)
    if errors:
        raise Refused(model.version, errors)
    return doc, model


def _misaddressed(model: ConfigDocument | SignedKeysDocument, kind: str, merchant: str, kiosk: str) -> list[str]:
    """Why the document is not for this kiosk on this topic (empty if it is)."""
    if model.merchant != merchant:
        return [f"merchant: this document is for merchant {model.merchant!r}, not {merchant!r}"]
    if kind == KEYS:
        return []
    if model.kiosk not in (None, kiosk):
        return [f"kiosk: this document is for another kiosk ({model.kiosk!r})"]
    if kind == MERCHANT:
        if model.kiosk is not None:
            return ["kiosk: a document for one kiosk arrived on the merchant-wide topic"]
        if model.hardware is not None:
            return ["hardware: only a kiosk's own document may set hardware"]
        if model.join_url is not None:
            return ["join_url: only a kiosk's own document may set the join URL"]
        if model.program is None:
            return ["program: missing; the merchant-wide document sets the programme"]
    elif model.kiosk is None:
        return ["kiosk: a merchant-wide document arrived on this kiosk's topic"]
    return []


def contents(kind: str, model: ConfigDocument | SignedKeysDocument) -> Held:
    """What a verified document holds, validated with the kiosk's own schemas; raises Refused."""
    if kind == KEYS:
        return Held(model.version, keyring=_keyring(model))
    errors: list[str] = []
    program = None
    if model.program is not None:
        try:
            program = parse_program(model.program, "program")
        except ConfigError as exc:
            errors += str(exc).splitlines()
    hardware: dict = {}
    if model.hardware is not None:
        try:
            section = HardwareSection.model_validate(model.hardware)
            hardware = {name: getattr(section, name) for name in section.model_fields_set}
        except ValidationError as exc:
            errors += [f"hardware: {line}" for line in field_errors(exc, limit=100)]
    join_url = None
    if model.join_url is not None:
        try:
            join_url = check_join_url(model.join_url)
        except ConfigError as exc:
            errors.append(f"join_url: {exc}")
    if errors:
        raise Refused(model.version, errors)
    return Held(model.version, program=program, hardware=hardware, join_url=join_url)


def _keyring(model: SignedKeysDocument) -> KeyRing:
    try:
        ring = KeyRing.from_document(model)
    except ConfigError as exc:
        raise Refused(model.version, [str(exc)]) from None
    if not ring.keys:
        raise Refused(model.version, ["keys: the document holds no key; it would refuse every pass"])
    if any(owner != model.merchant for owner, _ in ring.keys.values()):
        raise Refused(model.version, ["keys: the document holds a key of another merchant"])
    return ring


class DocumentFollower:
    """The three documents of one kiosk: what is in force, what arrives, what is reported."""

    def __init__(self, merchant: str, kiosk: str, trusted: dict[str, Ed25519PublicKey], data_dir: Path, *,
                 base_program: Program | None = None, base_hardware: HardwareSection | None = None,
                 base_join_url: str | None = None, keys_file: Path | None = None) -> None:
        data_dir = Path(data_dir)
        self.merchant, self.kiosk, self.trusted = merchant, kiosk, trusted
        self.files = {MERCHANT: data_dir / MERCHANT_FILE, KIOSK: data_dir / KIOSK_FILE,
                      KEYS: Path(keys_file) if keys_file is not None else data_dir / "keys.json"}
        self.base_program = base_program if base_program is not None else Program()
        self.base_hardware = base_hardware if base_hardware is not None else HardwareSection()
        self.running_hardware = self.base_hardware
        self.base_join_url = self.running_join_url = base_join_url
        self.held: dict[str, Held] = {MERCHANT: Held(), KIOSK: Held(), KEYS: Held(0)}
        self._keys_problem: ConfigError | None = None  # why there is no keyring (no keys file yet, or broken)
        self._reports: dict[str, Report] = {}

    # -- at start ------------------------------------------------------------------------------
    def restore(self) -> "DocumentFollower":
        """Load what was in force before the restart (once): the config documents checked as if
        they had just arrived (a damaged or altered file is ignored, loudly), and the keys file
        (the bundle's copy is unsigned: version 0). The hardware and the join URL in force are
        then the restored ones."""
        for kind in CONFIGS:
            self._restore_config(kind)
        self._restore_keys()
        self.running_hardware, self.running_join_url = self.hardware(), self.join_url()
        return self

    def _restore_config(self, kind: str) -> None:
        path = self.files[kind]
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("config.restore_failed", extra={"file": str(path), "error": str(exc)})
            return
        try:
            _, model = verify_document(payload, kind, self.trusted, self.merchant, self.kiosk)
            self.held[kind] = contents(kind, model)
        except Refused as exc:
            log.error("config.restore_failed", extra={"file": str(path), "errors": exc.errors})

    def _restore_keys(self) -> None:
        path = self.files[KEYS]
        try:
            text = path.read_text()
        except FileNotFoundError:
            self._keys_problem = ConfigError(f"{path}: no keys file; copy the output of `stempel-hub export-keys` "
                                             "there or set [kiosk] keys_file")
            return
        try:
            version = json.loads(text).get("version", 0)
        except (ValueError, AttributeError):
            version = 0
        version = version if type(version) is int else 0
        try:
            self.held[KEYS] = Held(version, keyring=KeyRing.from_json(text))
        except ConfigError as exc:
            self.held[KEYS], self._keys_problem = Held(version), exc

    # -- what is in force ----------------------------------------------------------------------
    def program(self) -> Program:
        return self.held[KIOSK].program or self.held[MERCHANT].program or self.base_program

    def hardware(self) -> HardwareSection:
        """The file's hardware with the kiosk document's settings on top (validated on arrival)."""
        overrides = self.held[KIOSK].hardware
        if not overrides:
            return self.base_hardware
        return HardwareSection.model_validate({**self.base_hardware.model_dump(), **overrides})

    def join_url(self) -> str | None:
        """The join URL for the idle screen: the kiosk document's, else the file's (checked on arrival)."""
        return self.held[KIOSK].join_url or self.base_join_url

    def keyring(self) -> KeyRing:
        """The pass keys in force; ConfigError with the fix if there are none."""
        ring = self.held[KEYS].keyring
        if ring is None:
            raise self._keys_problem or ConfigError(f"{self.files[KEYS]}: no keys")
        return ring

    def restart_required(self) -> bool:
        return self.hardware() != self.running_hardware or self.join_url() != self.running_join_url

    def version(self, kind: str) -> int | None:
        return self.held[kind].version

    def versions(self) -> dict[str, int]:
        """Version in force per document, for the kiosk's retained ``state`` (keys 0: the bundle's file)."""
        return {kind: held.version for kind, held in self.held.items() if held.version is not None}

    # -- what arrives --------------------------------------------------------------------------
    def handle(self, kind: str, payload: bytes) -> Outcome:
        """Verify, validate and apply one payload of *kind*; never raises for bad input."""
        before = self.program()
        outcome = self._apply(kind, payload)
        if kind == KIOSK:
            outcome = replace(outcome, report=replace(outcome.report, restart_required=self.restart_required()))
        if kind in CONFIGS:
            self._reports[kind] = outcome.report
            after = self.program()
            outcome = replace(outcome, program=after if after is not before else None)
        return outcome

    def _apply(self, kind: str, payload: bytes) -> Outcome:
        held = self.held[kind]
        try:
            doc, model = verify_document(payload, kind, self.trusted, self.merchant, self.kiosk)
            if held.version is not None and model.version <= held.version:
                return Outcome(Report(held.version, "applied"))  # old or repeated (e.g. retained): re-report ours
            new = contents(kind, model)
            self._save(kind, doc)
        except Refused as exc:
            log.warning(f"{_area(kind)}.rejected", extra={"kind": kind, "version": exc.version, "errors": exc.errors})
            return Outcome(Report(exc.version, "rejected", exc.errors))
        self.held[kind] = new
        if kind == KEYS:
            self._keys_problem = None
            ring = new.keyring
            log.info("keys.applied", extra={"version": new.version, "keys": sorted(ring.keys),
                                            "base_url": ring.base_url,
                                            "revoked": len(ring.revoked_serials) + len(ring.revoked_members)})
        else:
            log.info("config.applied", extra={"scope": kind, "version": new.version})
        return Outcome(Report(new.version, "applied"), applied=True, keyring=new.keyring)

    def _save(self, kind: str, doc: dict) -> None:
        """Save before applying: what is not on disk would not survive a restart."""
        path = self.files[kind]
        try:
            write_atomic(path, json.dumps(doc, indent=2 if kind == KEYS else None).encode(), mode=0o644)
        except OSError as exc:
            log.error(f"{_area(kind)}.save_failed", extra={"file": str(path), "error": str(exc)})
            raise Refused(doc.get("version"), [f"cannot save the document on the kiosk ({path}): {exc}"]) from None

    # -- what is reported ----------------------------------------------------------------------
    def report_payload(self) -> bytes:
        """The retained ``config/reported``: the merchant-wide document's report at the top level
        (what ``stempel-hub fleet status`` compares with the latest version), the kiosk document's
        under ``kiosk_config``, and ``restart_required`` if either needs a restart."""
        merchant = self._reports.get(MERCHANT) or self._current(MERCHANT)
        kiosk = self._reports.get(KIOSK) or self._current(KIOSK)
        doc = merchant.to_dict()
        doc["restart_required"] = self.restart_required()
        doc["kiosk_config"] = None if kiosk.version is None and kiosk.status == "none" else kiosk.to_dict()
        doc["applied"] = {kind: v for kind, v in self.versions().items() if kind in CONFIGS}
        return json.dumps(doc).encode()

    def _current(self, kind: str) -> Report:
        version = self.held[kind].version
        return Report(version, "applied" if version is not None else "none")


def _area(kind: str) -> str:
    """The log namespace of a kind (``config.*`` or ``keys.*``, as operators know them)."""
    return "keys" if kind == KEYS else "config"
