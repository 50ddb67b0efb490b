"""``HubLink``: a kiosk's whole connection to its hub, on the one bus connection it owns.

Out: ledger events (``events``, the outbox sender), the kiosk's retained ``state`` (with the
last will ``lost``), ``config/reported`` and ``sync/request``. In: the hub's acks, the signed
documents (``config/desired``, ``kiosks/{kiosk}/config/desired``, ``keys``) and the merchant's
ledger (``ledger``, ``kiosks/{kiosk}/sync/response``). The outbox sender runs on its own
thread; everything else that arrives is queued by the bus handlers and applied in arrival
order on one worker thread, which owns the documents follower and the ledger follower (and
its ledger connection). Programme and key changes go to the scan loop through ``updates``
(kiosk/link/updates.py); applied versions and errors go to ``status`` for ``state``.

A link made without a documents follower carries events and state only (the outbox tests
and the load benchmark use that).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kiosk.common.bus import Bus, BusSettings, Handler, Message, MqttBus, Tls
from kiosk.common.errors import BusError, ConfigError, LedgerError, MessageError
from kiosk.config import KioskConfig
from kiosk.ledger import Ledger
from kiosk.link.documents import (
    CONFIGS,
    KEYS,
    KIOSK,
    LABELS,
    MERCHANT,
    DocumentFollower,
    Outcome,
)
from kiosk.link.events import OutboxSender, SenderSettings
from kiosk.link.ledger import FollowerSettings, LedgerFollower, sync_requester
from kiosk.link.state import StateReporter, StatusBoard, software_version, state_will
from kiosk.link.updates import Updates
from kiosk.protocol import topics
from kiosk.protocol.passes import KeyRing
from kiosk.rules.program import Program

log = logging.getLogger(__name__)

_STOP = object()
_CONNECTED = ("connected", b"")


class HubLink:
    """Owns the bus; starts and stops the outbox sender and the worker that follows the hub."""

    def __init__(self, bus: Bus, *, merchant: str, kiosk: str, boot_id: str, ledger_path: Path,
                 documents: DocumentFollower | None = None, software_version: str = "0+unknown",
                 settings: SenderSettings = SenderSettings(), follower: FollowerSettings = FollowerSettings(),
                 tick: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.bus, self.merchant, self.kiosk = bus, merchant, kiosk
        self.status = StatusBoard()  # applied versions and errors of every part, for ``state``
        self.state = StateReporter(merchant, kiosk, boot_id, self.status, software_version)
        self.sender = OutboxSender(ledger_path, bus, self.state, settings=settings, monotonic=monotonic)
        self.documents = documents
        self.updates = Updates()
        self.inbound = None if documents is None else _Inbound(self, Path(ledger_path), follower, tick, monotonic)

    @property
    def follower(self) -> LedgerFollower | None:
        """The ledger follower (made on the worker thread once it runs)."""
        return self.inbound.follower if self.inbound is not None else None

    def start(self) -> "HubLink":
        """Subscribe every part, start their threads, then the bus (it connects in the background)."""
        if self.inbound is not None:
            self.inbound.start()
        self.bus.on_connect(self._on_connected)
        # a handler of any part raised: say so in ``state`` (both buses share one dispatcher)
        self.bus.on_handler_error(lambda error: self.status.set_error("bus", error))
        self.sender.start()
        self.bus.start()
        return self

    def stop(self, drain: float = 0.0, timeout: float = 5.0) -> int:
        """Stop following the hub, give the sender up to *drain* s to hand the last events over,
        say ``offline`` and disconnect. Returns the events still unacknowledged (``outbox_left``)."""
        if self.inbound is not None:
            self.inbound.stop(timeout)
        left = self.sender.stop(timeout=timeout, drain=drain)
        self.sender.goodbye()
        self.bus.stop()
        return left

    def _on_connected(self) -> None:
        # Why the broker could not be reached until now (wrong CA, password, unreachable) goes into
        # ``state`` at once, so whoever installed the kiosk sees it in `fleet status`.
        outage = getattr(self.bus, "connect_report", lambda: None)()
        if outage is not None:
            self.status.set_error("broker", outage)


class _Inbound:
    """The worker: documents and the hub ledger, applied in arrival order on one thread."""

    def __init__(self, link: HubLink, ledger_path: Path, settings: FollowerSettings, tick: float,
                 monotonic: Callable[[], float]) -> None:
        self.link, self.ledger_path = link, ledger_path
        self.documents: DocumentFollower = link.documents
        self._settings, self._tick, self._now = settings, tick, monotonic
        self._work: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"hub-link-{link.kiosk}", daemon=True)
        self.follower: LedgerFollower | None = None  # made on the worker thread (it owns the connection)
        link.status.set_applied(self.documents.versions())

    def start(self) -> None:
        m, k, bus = self.link.merchant, self.link.kiosk, self.link.bus
        for topic, kind in ((topics.config_desired(m), MERCHANT), (topics.kiosk_config_desired(m, k), KIOSK),
                            (topics.keys(m), KEYS), (topics.ledger(m), "ledger"),
                            (topics.sync_response(m, k), "sync")):
            bus.subscribe(topic, self._inbox(kind), qos=1)
        bus.on_connect(lambda: self._work.put(_CONNECTED))
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._work.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _inbox(self, kind: str) -> Handler:
        def handler(message: Message) -> None:  # the bus's dispatch thread: queue and return
            self._work.put((kind, message.payload))
        return handler

    def _run(self) -> None:
        ledger = Ledger(self.ledger_path)
        link = self.link
        self.follower = LedgerFollower(ledger, link.kiosk, sync_requester(link.bus, link.merchant, link.kiosk),
                                       self._settings, self._now, on_refused=self._on_refused)
        try:
            while True:
                try:
                    item = self._work.get(timeout=self._tick)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    return
                self._step(item)
        finally:
            ledger.close()

    def _step(self, item: tuple[str, bytes] | None) -> None:
        status = self.link.status
        try:
            if item is not None:
                self._handle(*item)
            self.follower.tick()
        except MessageError as exc:
            kind = item[0] if item else "?"
            log.warning("link.bad_message", extra={"kind": kind, "error": str(exc)})
            status.set_error("ledger", f"invalid {kind} message from the hub: {exc}")
        except LedgerError as exc:  # the entries stay pending and are written on a later tick
            log.error("link.ledger_failed", extra={"error": str(exc)})
            status.set_error("ledger", str(exc))
        except Exception:  # never let one message stop the kiosk's link to the hub
            log.exception("link.failed", extra={"kind": item[0] if item else None})

    def _handle(self, kind: str, payload: bytes) -> None:
        if kind in (MERCHANT, KIOSK, KEYS):
            self._on_document(kind, self.documents.handle(kind, payload))
        elif kind == "ledger":
            self.follower.on_ledger(payload)
        elif kind == "sync":
            self.follower.on_response(payload)
        elif kind == "connected":  # the broker may have lost our retained report (restart without persistence)
            self._publish_report()
            self.follower.on_connected()

    def _on_document(self, kind: str, outcome: Outcome) -> None:
        status, updates = self.link.status, self.link.updates
        if outcome.program is not None:
            updates.put(f"program ({kind} config)", _use_program(outcome.program))
        if outcome.keyring is not None:
            updates.put(f"keys v{outcome.version}", _use_keyring(outcome.keyring))
        source = "config" if kind in CONFIGS else "keys"
        if outcome.status == "rejected":
            status.set_error(source, f"{LABELS[kind]} v{outcome.version} rejected: {outcome.error}")
        elif kind in CONFIGS or outcome.applied:  # a config re-reported in force also clears its error
            status.set_error(source, None)
        status.set_applied(self.documents.versions())
        if kind in CONFIGS:
            self._publish_report()

    def _on_refused(self, hub_seq: int | None, reason: str) -> None:
        """A ledger entry this kiosk cannot apply: it keeps scanning; ``state`` says so."""
        where = f"hub_seq {hub_seq}" if hub_seq is not None else "an entry without a valid hub_seq"
        count = self.follower.refused if self.follower is not None else 1
        self.link.status.set_error("ledger", f"refused {where} from the hub ({count} refused so far): {reason[:200]}")

    def _publish_report(self) -> None:
        link = self.link
        try:
            link.bus.publish(topics.config_reported(link.merchant, link.kiosk), self.documents.report_payload(),
                             qos=1, retain=True)
        except BusError as exc:  # offline: every connect publishes the report again
            log.info("link.report_not_sent", extra={"error": str(exc)})


def _use_program(program: Program):
    def change(kiosk) -> None:
        kiosk.apply_program(program)
    return change


def _use_keyring(ring: KeyRing):
    def change(kiosk) -> None:
        kiosk.verifier.keyring = ring
    return change


def open_hub_link(config: KioskConfig, boot: str, documents: DocumentFollower | None = None) -> HubLink:
    """The link of a kiosk with ``[mqtt]`` (not started), on an MQTT connection made from the
    config; *documents* are the ones the kiosk was built from (opened here if not given).
    Raises ConfigError for an unreadable password or hub-keys file."""
    from kiosk.wiring import ledger_path, merchant_of, open_documents

    m = config.mqtt
    if m is None:
        raise ConfigError("no [mqtt] section: the kiosk has no broker to sync with")
    merchant, kiosk = merchant_of(config), config.kiosk.id
    password = None
    if m.password_file is not None:
        try:
            password = m.password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"[mqtt] password_file {m.password_file}: {exc.strerror}") from None
    documents = documents if documents is not None else open_documents(config)
    username = m.username or (kiosk if password is not None else None)
    tls = Tls(m.ca_file, m.cert_file, m.key_file) if m.uses_tls() else None
    bus = MqttBus(BusSettings(host=m.host, port=m.port, client_id=kiosk, username=username, password=password,
                              tls=tls, will=state_will(merchant, kiosk, boot), keepalive=m.keepalive))
    settings = SenderSettings(batch_size=m.batch_size, ack_timeout=m.ack_timeout_seconds,
                              warn_depth=m.outbox_warn_depth)
    return HubLink(bus, merchant=merchant, kiosk=kiosk, boot_id=boot, ledger_path=ledger_path(config),
                   documents=documents, software_version=software_version(), settings=settings)


def start_hub_link(config: KioskConfig, boot: str, documents: DocumentFollower | None = None) -> HubLink | None:
    """Connect a configured kiosk to its hub (in the background); None without ``[mqtt]``.

    Raises ConfigError for an unreadable password or hub-keys file.
    """
    if config.mqtt is None:
        return None
    return open_hub_link(config, boot, documents).start()
