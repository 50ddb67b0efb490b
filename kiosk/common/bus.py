"""The message bus: paho-mqtt 2.x (MQTT 5) wrapped once behind publish / subscribe / stop.

paho reports errors both as return codes and in callbacks, runs callbacks on its network
thread, and happily queues publishes while offline. Here: callbacks only record state and
hand work to one dispatch thread (handlers never run on paho's thread, so a slow database
cannot stall keep-alives); reason codes become ``BusError``/``NotConnected``; a refused
CONNACK is never "connected"; publishing while offline raises instead of queueing, because
the caller (the outbox) is the durable queue.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk.common.dispatch import Dispatcher
from kiosk.common.errors import BusError, NotConnected

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tls:
    """TLS material; ``ca_file`` None means the system CAs. A client certificate is optional."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class BusSettings:
    """How to reach the broker. ``session_expiry`` > 0 keeps our session (and its unacked
    messages) on the broker across reconnects and restarts with the same ``client_id``."""

    host: str
    port: int = 1883
    client_id: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: Tls | None = None
    will: Will | None = None
    keepalive: int = 30
    session_expiry: int = 0
    manual_ack: bool = False
    reconnect_min: float = 1.0
    reconnect_max: float = 30.0


@dataclass
class Message:
    """A received message. With ``manual_ack`` the broker gets PUBACK only from ``ack()``
    (or after the handler returns without raising)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    _ack: Callable[[], None] | None = field(default=None, repr=False)
    acked: bool = False

    def ack(self) -> None:
        if not self.acked and self._ack is not None:
            self._ack()
        self.acked = True


Handler = Callable[[Message], None]


class Delivery:
    """A QoS≥1 publish in flight; ``wait`` says whether the broker acknowledged it."""

    def __init__(self, info: paho.MQTTMessageInfo, bus: "MqttBus") -> None:
        self._info = info
        self._bus = bus

    def wait(self, timeout: float) -> bool:
        """True once PUBACKed, False on timeout or lost connection; BusError if the broker refused it."""
        try:
            self._info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        refused = self._bus._refused.pop(self._info.mid, None)
        if refused is not None:
            raise BusError(f"the broker refused the publish: {refused} (check the ACL for this client)")
        return self._info.is_published()


class Published(Protocol):
    """What ``publish`` returns on any bus (``Delivery`` here, ``kiosk.common.membus.MemoryDelivery`` in memory)."""

    def wait(self, timeout: float) -> bool: ...


class Bus(Protocol):
    """What the kiosk and the hub need from MQTT; tests may put a fake or a wrapper here."""

    @property
    def connected(self) -> bool: ...

    def start(self) -> None: ...

    def wait_connected(self, timeout: float) -> None: ...

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> Published: ...

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None: ...

    def on_connect(self, callback: Callable[[], None]) -> None: ...

    def on_handler_error(self, listener: Callable[[str], None]) -> None: ...

    def stop(self) -> None: ...



# Why a connection attempt failed, in the words an installer searches for.
CERTIFICATE = "certificate verification"
TLS = "tls handshake"
NOT_AUTHORISED = "not authorised"
REFUSED = "refused"
TIMEOUT = "timeout"
UNREACHABLE = "unreachable"
CLOSED = "closed by the broker"


def connect_cause(exc: BaseException, host: str, port: int) -> tuple[str, str]:
    """(cause, detail with the fix) for an exception paho raised while connecting."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CERTIFICATE, (f"certificate verify failed ({exc.verify_message or exc}): the broker's certificate "
                             f"is not signed by ca_file, or does not name {host}; check [mqtt] ca_file and host")
    if isinstance(exc, ssl.SSLError):
        return TLS, f"{exc.reason or exc}: check [mqtt] port, ca_file, cert_file and key_file"
    if isinstance(exc, ConnectionRefusedError):
        return REFUSED, f"nothing listens on {host}:{port}; is the broker running, and is this its port?"
    if isinstance(exc, TimeoutError):
        return TIMEOUT, f"no answer from {host}:{port}; check the host, the port and firewalls"
    if isinstance(exc, socket.gaierror):
        return UNREACHABLE, f"cannot resolve {host}: {exc.strerror or exc}; check [mqtt] host and DNS"
    if isinstance(exc, OSError):
        return UNREACHABLE, f"{host}:{port}: {exc.strerror or exc}"
    return UNREACHABLE, f"{host}:{port}: {type(exc).__name__}: {exc}"


@dataclass
class _Outage:
    """Connection attempts failing since *since* (wall time), the latest with *cause*."""

    cause: str
    detail: str
    since: float
    attempts: int = 0


class MqttBus:
    """One paho client, one network thread (paho's), one dispatch thread (ours)."""

    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings
        self._dispatch = Dispatcher(f"bus-{settings.client_id}",
                                    lambda topic_filter, topic: paho.topic_matches_sub(_unshare(topic_filter), topic))
        self._dispatch.on_handler_error(self._note_error)
        self._connected = threading.Event()
        self._refusal: str | None = None
        self._stopping = False
        self._refused: dict[int, str] = {}
        self._generation = 0
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self._outage: _Outage | None = None  # failing attempts since the last good connect (or the start)
        self._logged: tuple[str, str] | None = None  # the cause last logged: log again only when it changes
        self._refused_attempt = False  # this attempt got a refused CONNACK (its disconnect is no news)
        self._report: str | None = None  # the outage that ended with the latest connect, for ``state``
        self._client = self._make_client()

    # -- setup ---------------------------------------------------------------------------
    def _make_client(self) -> paho.Client:
        s = self.settings
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id,
                             protocol=MQTTProtocolVersion.MQTTv5, manual_ack=s.manual_ack)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls is not None:
            try:
                client.tls_set(ca_certs=_str(s.tls.ca_file), certfile=_str(s.tls.cert_file),
                               keyfile=_str(s.tls.key_file))
            except (OSError, ValueError) as exc:
                raise BusError(f"cannot load the TLS files {s.tls}: {exc}") from exc
        if s.will is not None:
            client.will_set(s.will.topic, s.will.payload, qos=s.will.qos, retain=s.will.retain)
        client.reconnect_delay_set(s.reconnect_min, s.reconnect_max)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        return client

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Register *handler*; (re)subscribed on every connect, so a broker that lost our session
        (restart without persistence) still delivers to us."""
        self._dispatch.add(topic_filter, handler, qos)
        if self._connected.is_set():
            self._client.subscribe(topic_filter, qos)

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Run *callback* on the dispatch thread after every successful (re)connect."""
        self._dispatch.on_connect(callback)

    def on_handler_error(self, listener: Callable[[str], None]) -> None:
        """Tell *listener* (on the dispatch thread) when a handler or connect callback raised: the
        dispatch thread goes on, but the failure must reach ``state``, not only the log."""
        self._dispatch.on_handler_error(listener)

    def _note_error(self, error: str) -> None:
        self.last_error = error

    def start(self) -> None:
        """Connect in the background and keep reconnecting; returns at once (offline is normal)."""
        s = self.settings
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = s.session_expiry
        self._dispatch.start()
        self._client.connect_async(s.host, s.port, keepalive=s.keepalive,
                                   clean_start=s.session_expiry == 0, properties=props)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> None:
        """Block until connected; raises BusError at once if the broker refused us, or on timeout."""
        deadline = time.monotonic() + timeout
        while not self._connected.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            if self._refusal is not None:
                raise BusError(self._refusal)
            if time.monotonic() >= deadline:
                raise BusError(f"no connection to {self.settings.host}:{self.settings.port} "
                               f"within {timeout}s ({self.last_error or 'no answer'})")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def connect_report(self) -> str | None:
        """Why connecting failed before the latest successful connect (once; None if it did not)."""
        with self._lock:
            report, self._report = self._report, None
        return report

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> Delivery:
        """Hand a message to the broker connection; raises NotConnected while offline."""
        if not self._connected.is_set():
            raise NotConnected(f"not connected to {self.settings.host}:{self.settings.port}")
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            raise NotConnected(f"connection to {self.settings.host}:{self.settings.port} lost")
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BusError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        return Delivery(info, self)

    def stop(self) -> None:
        """Disconnect cleanly (the broker then drops our will) and join both threads."""
        self._stopping = True  # our own goodbye is not a lost connection worth a warning
        self._client.disconnect()
        self._client.loop_stop()
        self._close_sockets()
        self._dispatch.stop()
        self._connected.clear()

    def _close_sockets(self) -> None:
        """Close what paho leaves open after ``loop_stop``: its socket and the wake-up socket pair
        (a TCP pair on 127.0.0.1), else each stopped bus leaks them to the garbage collector."""
        reset = getattr(self._client, "_reset_sockets", None)  # paho 2.x; private, hence the guard
        if reset is not None:
            try:
                reset()
            except OSError as exc:
                log.debug("bus.close_failed", extra={"error": str(exc)})

    # -- paho callbacks: record, enqueue, return ------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refusal = f"the broker at {self.settings.host}:{self.settings.port} refused the " \
                            f"connection: {reason_code} (check the username, password file and ACL)"
            self._refused_attempt = True
            cause = NOT_AUTHORISED if reason_code.value in (0x86, 0x87) else REFUSED  # bad password, not authorized
            self._connect_failed(cause, self._refusal)
            return
        self._refusal = None
        with self._lock:
            self._generation += 1
            subs = self._dispatch.subscriptions()
            outage, self._outage, self._logged = self._outage, None, None
            if outage is not None:
                self._report = self._describe(outage)
        if subs:
            client.subscribe(subs)
        self._connected.set()
        log.info("bus.connected", extra={"client_id": self.settings.client_id,
                                         "session_present": flags.session_present})
        if outage is not None:  # the installer should see that the cause is gone
            log.warning("bus.connected_after_failures", extra={"client_id": self.settings.client_id,
                                                               "attempts": outage.attempts, "cause": outage.cause})
        self._dispatch.connected()

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its ``except OSError`` around the connect, so the cause is at hand.
        exc = sys.exc_info()[1]
        s = self.settings
        if exc is None:
            self._connect_failed(UNREACHABLE, f"cannot reach {s.host}:{s.port}")
        else:
            self._connect_failed(*connect_cause(exc, s.host, s.port))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            if self._stopping:
                log.info("bus.closed", extra={"client_id": self.settings.client_id})
                return
            self.last_error = f"disconnected: {reason_code}"
            log.warning("bus.disconnected", extra={"client_id": self.settings.client_id, "reason": str(reason_code)})
        elif self._refused_attempt:  # the close that follows a refused CONNACK: already counted
            self._refused_attempt = False
        else:
            self._connect_failed(CLOSED, f"{self.settings.host}:{self.settings.port} closed the connection before "
                                         f"accepting it ({reason_code}); if the broker wants TLS on this port, "
                                         "set [mqtt] ca_file (or tls = true)")

    def _connect_failed(self, cause: str, detail: str) -> None:
        """Count a failed attempt; log at WARNING only when the cause differs from the last one logged."""
        with self._lock:
            if self._outage is None:
                self._outage = _Outage(cause, detail, time.time())
            outage = self._outage
            outage.cause, outage.detail, outage.attempts = cause, detail, outage.attempts + 1
            news, self._logged = self._logged != (cause, detail), (cause, detail)
        self.last_error = f"{cause}: {detail}"
        if news:
            log.warning("bus.connect_failed", extra={"client_id": self.settings.client_id, "host": self.settings.host,
                                                     "port": self.settings.port, "cause": cause, "error": detail})

    def _describe(self, outage: _Outage) -> str:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(outage.since))
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return (f"could not connect to the broker {self.settings.host}:{self.settings.port} from {since} "
                f"until {until} ({outage.attempts} attempts), last cause {outage.cause}: {outage.detail}")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        for rc in reason_codes:
            if rc.is_failure:
                self.last_error = f"subscription refused: {rc}"
                log.error("bus.subscribe_refused", extra={"client_id": self.settings.client_id, "reason": str(rc)})

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused[mid] = str(reason_code)
            log.warning("bus.publish_refused", extra={"client_id": self.settings.client_id, "reason": str(reason_code)})
        else:
            self._refused.pop(mid, None)

    def _on_message(self, client, userdata, msg: paho.MQTTMessage) -> None:
        ack = None
        if self.settings.manual_ack and msg.qos > 0:
            generation, mid, qos = self._generation, msg.mid, msg.qos
            ack = lambda: self._ack(generation, mid, qos)  # noqa: E731
        self._dispatch.deliver(Message(msg.topic, msg.payload, msg.qos, bool(msg.retain), bool(msg.dup), ack))

    def _ack(self, generation: int, mid: int, qos: int) -> None:
        # A packet id belongs to one connection: after a reconnect the broker redelivers, so a
        # stale ack must not go out (it could acknowledge a different message with the same id).
        if generation == self._generation and self._connected.is_set():
            self._client.ack(mid, qos)


def _unshare(topic_filter: str) -> str:
    """``$share/{group}/{filter}`` → ``{filter}`` (messages arrive on the plain topic)."""
    if topic_filter.startswith("$share/"):
        return topic_filter.split("/", 2)[2]
    return topic_filter


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
