"""A blocking MQTT 5 test client: connect, subscribe and publish return the broker's answer.

Broker tests assert what the broker says (CONNACK, SUBACK, PUBACK reason codes) and what a
subscriber receives; every wait is bounded, and "never arrives" is shown by a control
message that does arrive after it, never by sleeping blindly.
"""

from __future__ import annotations

import gc
import queue
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

WAIT = 5.0
NOT_AUTHORIZED = 0x87


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class Peer:
    """One paho client (MQTT 5) on its own network thread."""

    def __init__(self, port: int, username: str | None, password: str | None, *, client_id: str = "",
                 host: str = "127.0.0.1", ca: Path | None = None, cert: Path | None = None,
                 key: Path | None = None) -> None:
        self.host, self.port = host, port
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca), certfile=cert and str(cert), keyfile=key and str(key))
        self.client.reconnect_delay_set(0.1, 0.5)  # so close() never waits out a 1 s back-off
        self.messages: queue.Queue[Received] = queue.Queue()
        self.connack: ReasonCode | None = None
        self.disconnects: list[ReasonCode] = []
        self._connected = threading.Event()
        self._dropped = threading.Event()
        self._acks: dict[int, object] = {}
        self._acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, m: self.messages.put(Received(m.topic, m.payload, bool(m.retain)))
        self.client.on_subscribe = lambda c, u, mid, codes, props: self._ack(mid, list(codes))
        self.client.on_publish = lambda c, u, mid, code, props: self._ack(mid, code)

    # -- connection -----------------------------------------------------------------------
    def connect(self) -> ReasonCode | None:
        """CONNACK reason code, or None if the connection closed (or timed out) without one."""
        error: Exception | None = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # paho leaves a failed TLS socket unclosed
            try:
                self.client.connect(self.host, self.port, keepalive=30)
            except OSError as exc:  # ssl.SSLError included: the TLS handshake failed
                error = exc.with_traceback(None)
            gc.collect()
        if error is not None:
            raise error
        self.client.loop_start()
        self._connected.wait(WAIT)
        return self.connack

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def _on_connect(self, client, userdata, flags, code, properties) -> None:
        self.connack = code
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, code, properties) -> None:
        self.disconnects.append(code)
        self._connected.set()
        self._dropped.set()

    def wait_dropped(self, timeout: float = WAIT) -> ReasonCode | None:
        """The reason the broker gave for closing this connection (None if it stayed up)."""
        return self.disconnects[0] if self._dropped.wait(timeout) else None

    # -- requests -------------------------------------------------------------------------
    def subscribe(self, topic_filter: str, qos: int = 1) -> ReasonCode:
        """SUBACK reason code. Without a connection paho sends nothing (and gives no packet id):
        that is said at once, with the broker's reasons for dropping it, not left to time out."""
        result, mid = self.client.subscribe(topic_filter, qos=qos)
        if result == mqtt.MQTT_ERR_NO_CONN:
            raise ConnectionError(f"not connected, SUBSCRIBE {topic_filter!r} not sent; {self._drop_reasons()}")
        return self._wait_ack(mid)[0]

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> ReasonCode | None:
        """PUBACK reason code for QoS 1; None for QoS 0 (the broker says nothing)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return self._wait_ack(info.mid) if qos else None

    def _ack(self, mid: int, answer: object) -> None:
        with self._acked:
            self._acks[mid] = answer
            self._acked.notify_all()

    def _wait_ack(self, mid: int):
        with self._acked:
            if not self._acked.wait_for(lambda: mid in self._acks, WAIT):
                raise TimeoutError(f"no answer from the broker to packet {mid} within {WAIT}s; {self._drop_reasons()}")
            return self._acks.pop(mid)

    def _drop_reasons(self) -> str:
        return f"connected: {self.client.is_connected()}, dropped by the broker with: {[str(c) for c in self.disconnects]}"

    # -- receiving ------------------------------------------------------------------------
    def next(self, timeout: float = WAIT) -> Received:
        return self.messages.get(timeout=timeout)

    def until(self, topic: str, payload: bytes) -> list[Received]:
        """Everything received up to and including the control message (*topic*, *payload*)."""
        seen = []
        while True:
            message = self.next()
            seen.append(message)
            if (message.topic, message.payload) == (topic, payload):
                return seen
