"""Everything the hub sends a running kiosk, handled on one worker thread.

Subscriptions (all on the kiosk's one bus connection, which the outbox sender starts):
``config/desired`` and ``kiosks/{kiosk}/config/desired`` (retained, signed) → the fleet
config; ``keys`` (retained, signed) → the pass keys; ``ledger`` and
``kiosks/{kiosk}/sync/response`` → the merchant's events from other kiosks. The bus
handlers only queue the payload; the worker applies it, answers with the retained
``config/reported`` and sync requests, records versions and errors for the kiosk's
``state``, and queues programme and key changes for the scan loop (kiosk/updates.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kiosk.common.bus import Bus, Handler, Message
from kiosk.config_sync import FleetConfig
from kiosk.common.errors import BusError, LedgerError, MessageError
from kiosk.keys_sync import APPLIED, REJECTED, KeysFollower
from kiosk.ledger import Ledger
from kiosk.ledger_follower import FollowerSettings, LedgerFollower
from kiosk.protocol import topics
from kiosk.protocol.messages import SyncRequest, encode
from kiosk.protocol.passes import KeyRing
from kiosk.remote_config import KIOSK, MERCHANT
from kiosk.rules.program import Program
from kiosk.status import StatusBoard
from kiosk.updates import Updates

log = logging.getLogger(__name__)

_STOP = object()
_CONNECTED = ("connected", b"")


class RemoteLink:
    """Subscribes, then applies configs, keys and the hub ledger in arrival order on its thread."""

    def __init__(self, bus: Bus, *, merchant: str, kiosk: str, fleet: FleetConfig, keys: KeysFollower,
                 ledger_path: Path, updates: Updates, status: StatusBoard,
                 follower: FollowerSettings = FollowerSettings(), tick: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.bus, self.merchant, self.kiosk = bus, merchant, kiosk
        self.fleet, self.keys, self.updates, self.status = fleet, keys, updates, status
        self.ledger_path = Path(ledger_path)
        self._follower_settings, self._tick, self._now = follower, tick, monotonic
        self._work: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"remote-{kiosk}", daemon=True)
        self.follower: LedgerFollower | None = None  # made on the worker thread (it owns the connection)
        status.set_applied({**fleet.versions(), "keys": keys.version})

    def start(self) -> None:
        """Subscribe and start the worker; call before (or after) the sender starts the bus."""
        m, k = self.merchant, self.kiosk
        for topic, kind in ((topics.config_desired(m), MERCHANT), (topics.kiosk_config_desired(m, k), KIOSK),
                            (topics.keys(m), "keys"), (topics.ledger(m), "ledger"),
                            (topics.sync_response(m, k), "sync")):
            self.bus.subscribe(topic, self._inbox(kind), qos=1)
        self.bus.on_connect(lambda: self._work.put(_CONNECTED))
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._work.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _inbox(self, kind: str) -> Handler:
        def handler(message: Message) -> None:  # the bus's dispatch thread: queue and return
            self._work.put((kind, message.payload))
        return handler

    # -- the worker ------------------------------------------------------------------------
    def _run(self) -> None:
        ledger = Ledger(self.ledger_path)
        self.follower = LedgerFollower(ledger, self.kiosk, self._request_sync, self._follower_settings, self._now,
                                       on_refused=self._on_refused)
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
        try:
            if item is not None:
                self._handle(*item)
            self.follower.tick()
        except MessageError as exc:
            kind = item[0] if item else "?"
            log.warning("remote.bad_message", extra={"kind": kind, "error": str(exc)})
            self.status.set_error("ledger", f"invalid {kind} message from the hub: {exc}")
        except LedgerError as exc:  # the entries stay pending and are written on a later tick
            log.error("remote.ledger_failed", extra={"error": str(exc)})
            self.status.set_error("ledger", str(exc))
        except Exception:  # never let one message stop the kiosk's link to the hub
            log.exception("remote.failed", extra={"kind": item[0] if item else None})

    def _handle(self, kind: str, payload: bytes) -> None:
        if kind in (MERCHANT, KIOSK):
            self._on_config(kind, payload)
        elif kind == "keys":
            self._on_keys(payload)
        elif kind == "ledger":
            self.follower.on_ledger(payload)
        elif kind == "sync":
            self.follower.on_response(payload)
        elif kind == "connected":  # the broker may have lost our retained report (restart without persistence)
            self._publish_report()
            self.follower.on_connected()

    def _on_refused(self, hub_seq: int | None, reason: str) -> None:
        """A ledger entry this kiosk cannot apply: it keeps scanning; ``state`` says so."""
        where = f"hub_seq {hub_seq}" if hub_seq is not None else "an entry without a valid hub_seq"
        count = self.follower.refused if self.follower is not None else 1
        self.status.set_error("ledger", f"refused {where} from the hub ({count} refused so far): {reason[:200]}")

    def _on_config(self, scope: str, payload: bytes) -> None:
        outcome = self.fleet.handle(scope, payload)
        if outcome.program is not None:
            self.updates.put(f"program ({scope} config)", _use_program(outcome.program))
        report = outcome.report
        if report.status == "rejected":
            self.status.set_error("config", f"{scope} config v{report.version} rejected: {'; '.join(report.errors)}")
        else:
            self.status.set_error("config", None)
        self.status.set_applied(self.fleet.versions())
        self._publish_report()

    def _on_keys(self, payload: bytes) -> None:
        outcome = self.keys.handle(payload)
        if outcome.status == APPLIED:
            self.updates.put(f"keys v{outcome.version}", _use_keyring(outcome.keyring))
            self.status.set_applied({"keys": outcome.version})
            self.status.set_error("keys", None)
        elif outcome.status == REJECTED:
            self.status.set_error("keys", outcome.error)

    def _publish_report(self) -> None:
        try:
            self.bus.publish(topics.config_reported(self.merchant, self.kiosk), self.fleet.report_payload(),
                             qos=1, retain=True)
        except BusError as exc:  # offline: every connect publishes the report again
            log.info("remote.report_not_sent", extra={"error": str(exc)})

    def _request_sync(self, after: int) -> bool:
        if not self.bus.connected:
            return False
        try:
            self.bus.publish(topics.sync_request(self.merchant, self.kiosk), encode(SyncRequest(after_hub_seq=after)),
                             qos=1)
        except BusError as exc:
            log.info("remote.sync_request_not_sent", extra={"error": str(exc)})
            return False
        return True


def _use_program(program: Program):
    def change(kiosk) -> None:
        kiosk.apply_program(program)
    return change


def _use_keyring(ring: KeyRing):
    def change(kiosk) -> None:
        kiosk.verifier.keyring = ring
    return change


def open_remote(config, bus: Bus, status: StatusBoard) -> RemoteLink:
    """The remote link for a configured kiosk (not started); raises ConfigError for a broken hub-keys file."""
    from kiosk.wiring import ledger_path, load_hub_keys, merchant_of, open_fleet_config

    merchant = merchant_of(config)
    keys = KeysFollower(merchant, load_hub_keys(config), config.keys_path())
    return RemoteLink(bus, merchant=merchant, kiosk=config.kiosk.id, fleet=open_fleet_config(config), keys=keys,
                      ledger_path=ledger_path(config), updates=Updates(), status=status)


class HubLink:
    """A kiosk's whole connection to the hub: the outbox sender and the remote link on one bus."""

    def __init__(self, sender, remote: RemoteLink) -> None:
        self.sender, self.remote = sender, remote

    @property
    def updates(self) -> Updates:
        return self.remote.updates

    def stop(self, drain: float = 0.0) -> None:
        """Stop both; *drain* seconds let the sender hand the last events to the hub first."""
        self.remote.stop()
        self.sender.stop(drain=drain)


def start_hub_link(config, boot: str) -> HubLink | None:
    """Connect a configured kiosk to its hub (in the background); None without ``[mqtt]``.

    Raises ConfigError for an unreadable password or hub-keys file.
    """
    if config.mqtt is None:
        return None
    from kiosk.sync import open_sender

    status = StatusBoard()
    sender = open_sender(config, boot, status=status)
    remote = open_remote(config, sender.bus, status)
    remote.start()
    sender.start()
    return HubLink(sender, remote)
