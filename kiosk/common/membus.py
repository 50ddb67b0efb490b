"""The message bus in memory: a ``MemoryBroker`` per test and ``MemoryBus`` clients on it.

``MemoryBus`` is a complete backend behind the ``Bus`` interface, as gpiozero's ``MockFactory``
is a pin factory: the kiosk and the hub run on it unchanged, without a Mosquitto process. It
keeps the MQTT 5 semantics the code relies on, the way Mosquitto 2 implements them:

- topic filters with ``+`` and ``#`` (wildcards in the first level skip ``$`` topics);
- retained messages, sent on every subscribe with ``retain`` set (live ones arrive with it
  clear); an empty retained payload deletes the retained copy;
- QoS 1 with persistent sessions: a session with ``session_expiry`` > 0 survives its
  connection; what it did not acknowledge (``manual_ack``) comes again with ``dup`` set when
  the same client id returns, and QoS 1 messages published meanwhile wait for it;
- at most ``max_inflight`` unacknowledged messages per client, as Mosquitto's
  ``max_inflight_messages`` (the rest wait in order);
- the last will, published when a connection ends without a clean stop (a lost connection,
  a killed process, a session taken over by the same client id), never on ``stop()``;
- ``$share/{group}/{filter}``: each message to one member of the group, round robin over
  the member sessions (an offline persistent member gets its turn queued, as in Mosquitto);
  no retained messages on shared subscriptions;
- a second connection with the same client id takes the session over: the first is
  dropped (and, like paho, reconnects after its back-off).

The bus mirrors ``MqttBus``: handlers run on one dispatch thread per bus; with ``manual_ack``
a handler that raises leaves its message unacknowledged; an ack from before a reconnect is
not sent; publishing while disconnected raises ``NotConnected``; ``wait_connected`` raises
``BusError`` at once when the broker refused the credentials.

Test hooks: ``broker.disconnect(client_id)`` (the connection is lost; the bus reconnects
after its back-off, or at ``bus.reconnect()``), ``broker.kill(client_id)`` (the client
process dies: will published, the bus never runs a handler again), ``broker.close()`` (the
broker is gone), ``broker.retained(topic)``, ``broker.clients()``.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from kiosk.common.bus import BusSettings, Handler, Message
from kiosk.common.dispatch import Dispatcher
from kiosk.common.errors import BusError, NotConnected

log = logging.getLogger(__name__)

_SHARE = re.compile(r"\$share/([^/+#]+)/(.+)")


# -- topics ------------------------------------------------------------------------------
def valid_filter(topic_filter: str) -> bool:
    """An MQTT topic filter: ``#`` alone and last, ``+`` alone in its level."""
    shared = _SHARE.fullmatch(topic_filter)
    levels = (shared.group(2) if shared else topic_filter).split("/")
    if topic_filter.startswith("$share/") and not shared:
        return False
    for i, level in enumerate(levels):
        if ("#" in level and (level != "#" or i != len(levels) - 1)) or ("+" in level and level != "+"):
            return False
    return topic_filter != ""


def matches(topic_filter: str, topic: str) -> bool:
    """Does *topic* match *topic_filter* (not shared)? Wildcards in the first level skip ``$`` topics."""
    f_levels, t_levels = topic_filter.split("/"), topic.split("/")
    if topic.startswith("$") and f_levels[0] in ("+", "#"):
        return False
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= len(t_levels) or (level != "+" and level != t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


def unshare(topic_filter: str) -> tuple[str | None, str]:
    """``$share/{group}/{filter}`` → (group, filter); a plain filter → (None, filter)."""
    shared = _SHARE.fullmatch(topic_filter)
    return (shared.group(1), shared.group(2)) if shared else (None, topic_filter)


# -- the broker --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Out:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class _Link:
    """One network connection of a session (what an ack or a publish must come through)."""

    def __init__(self, bus: "MemoryBus", settings: BusSettings, client_id: str) -> None:
        self.bus, self.client_id = bus, client_id
        self.will, self.auto_ack = settings.will, not settings.manual_ack


@dataclass
class _Session:
    client_id: str
    expiry: int
    subs: dict[str, int] = field(default_factory=dict)  # filter (maybe $share/...) -> granted qos
    inflight: dict[int, _Out] = field(default_factory=dict)  # sent, not acknowledged (in send order)
    queued: deque[_Out] = field(default_factory=deque)  # offline, or over max_inflight
    link: _Link | None = None
    expires_at: float | None = None
    mids: itertools.count = field(default_factory=lambda: itertools.count(1))


class MemoryBroker:
    """One in-memory MQTT 5 broker; thread-safe, one lock. *accounts* (username → password),
    when given, refuses every other login like ``allow_anonymous false``."""

    host, port = "memory", 1883  # nominal: what settings and messages name

    def __init__(self, *, accounts: dict[str, str] | None = None, max_inflight: int = 20,
                 max_queued: int = 1000, clock: Callable[[], float] = time.monotonic) -> None:
        self.accounts, self.max_inflight, self.max_queued, self.clock = accounts, max_inflight, max_queued, clock
        self._lock = threading.RLock()
        self._sessions: dict[str, _Session] = {}
        self._retained: dict[str, _Out] = {}
        self._groups: dict[tuple[str, str], list[str]] = {}  # (group, filter) -> member client ids, next first
        self._auto_ids = itertools.count(1)
        self._open = True

    # -- test hooks ---------------------------------------------------------------------
    def disconnect(self, client_id: str) -> None:
        """The connection of *client_id* is lost (its will is published); its bus reconnects."""
        self._drop(client_id, "connection lost", final=False)

    def kill(self, client_id: str) -> None:
        """The process behind *client_id* dies: will published, session kept, the bus is dead."""
        self._drop(client_id, "killed", final=True)

    def close(self) -> None:
        """The broker goes away: every client is dropped and connecting fails from now on."""
        with self._lock:
            self._open = False
            links = [s.link for s in self._sessions.values() if s.link is not None]
            for session in self._sessions.values():
                session.link = None
        for link in links:
            link.bus._dropped(link, "broker closed", final=False)

    def retained(self, topic: str) -> bytes | None:
        with self._lock:
            out = self._retained.get(topic)
        return None if out is None else out.payload

    def clients(self) -> list[str]:
        """Client ids connected now."""
        with self._lock:
            return sorted(cid for cid, s in self._sessions.items() if s.link is not None)

    # -- what a MemoryBus calls ---------------------------------------------------------
    def attach(self, bus: "MemoryBus", settings: BusSettings) -> _Link:
        """CONNECT: check the login, take over or resume the session; raises ConnectionRefusedError
        if the broker is closed, PermissionError if the login is refused."""
        with self._lock:
            if not self._open:
                raise ConnectionRefusedError("the memory broker is closed")
            if self.accounts is not None and self.accounts.get(settings.username or "") != settings.password:
                raise PermissionError("Not authorized")
            client_id = settings.client_id or f"auto-{next(self._auto_ids)}"
            self._expire()
            old = self._sessions.get(client_id)
            if old is not None and old.link is not None:  # session takeover: the old connection goes
                taken = old.link
                self._end_link(old, will=True)
                taken.bus._dropped(taken, "session taken over", final=False)
            session = self._sessions.get(client_id)
            present = session is not None and settings.session_expiry > 0
            if session is None or not present:  # clean start
                self._forget(client_id)
                session = self._sessions[client_id] = _Session(client_id, settings.session_expiry)
            session.expiry, session.expires_at = settings.session_expiry, None
            link = session.link = _Link(bus, settings, client_id)
            bus._attached(link, present)
            # Right after CONNACK, before the client subscribes again: what it never acknowledged, then the queue.
            for mid, out in list(session.inflight.items()):
                self._send(session, mid, out, dup=True)
            self._pump(session)
            return link

    def detach(self, link: _Link) -> None:
        """A clean DISCONNECT: the will is discarded; a session without expiry ends."""
        with self._lock:
            session = self._current(link)
            if session is not None:
                self._end_link(session, will=False)

    def subscribe(self, link: _Link, topic_filter: str, qos: int) -> bool:
        """SUBSCRIBE; False if the filter is invalid (or the link is gone). Retained copies follow."""
        with self._lock:
            session = self._current(link)
            if session is None or not valid_filter(topic_filter):
                return False
            session.subs[topic_filter] = min(qos, 1)
            group, plain = unshare(topic_filter)
            if group is not None:
                members = self._groups.setdefault((group, plain), [])
                if session.client_id not in members:
                    members.append(session.client_id)
                return True
            for out in list(self._retained.values()):
                if matches(plain, out.topic):
                    self._deliver(session, _Out(out.topic, out.payload, min(out.qos, qos), True))
            return True

    def publish(self, link: _Link, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """PUBLISH from a client; NotConnected if *link* is no longer its session's connection."""
        with self._lock:
            if self._current(link) is None:
                raise NotConnected("connection to the memory broker lost")
            self._route(_Out(topic, bytes(payload), qos, retain))

    def settle(self, link: _Link, mid: int) -> None:
        """PUBACK from a client: the message leaves the session, the next queued one goes out."""
        with self._lock:
            session = self._current(link)
            if session is not None and session.inflight.pop(mid, None) is not None:
                self._pump(session)

    # -- inside the lock ----------------------------------------------------------------
    def _current(self, link: _Link) -> _Session | None:
        session = self._sessions.get(link.client_id)
        return session if session is not None and session.link is link else None

    def _drop(self, client_id: str, reason: str, *, final: bool) -> None:
        with self._lock:
            session = self._sessions.get(client_id)
            if session is None or session.link is None:
                raise KeyError(f"{client_id} is not connected")
            link = session.link
            self._end_link(session, will=True)
        link.bus._dropped(link, reason, final=final)

    def _end_link(self, session: _Session, *, will: bool) -> None:
        link, session.link = session.link, None
        if session.expiry == 0:
            self._forget(session.client_id)
        else:
            session.expires_at = self.clock() + session.expiry
        if will and link is not None and link.will is not None:
            w = link.will
            self._route(_Out(w.topic, w.payload, w.qos, w.retain))

    def _forget(self, client_id: str) -> None:
        self._sessions.pop(client_id, None)
        for members in self._groups.values():
            if client_id in members:
                members.remove(client_id)

    def _expire(self) -> None:
        now = self.clock()
        for cid, s in list(self._sessions.items()):
            if s.link is None and s.expires_at is not None and s.expires_at <= now:
                self._forget(cid)

    def _route(self, out: _Out) -> None:
        self._expire()
        if out.retain:
            if out.payload:
                self._retained[out.topic] = out
            else:
                self._retained.pop(out.topic, None)
        live = _Out(out.topic, out.payload, out.qos, False)
        for (group, plain), members in self._groups.items():
            if members and matches(plain, out.topic):
                member = self._sessions[members[0]]
                members.append(members.pop(0))
                self._deliver(member, live, member.subs[f"$share/{group}/{plain}"])
        for session in list(self._sessions.values()):
            for topic_filter, qos in list(session.subs.items()):
                if not topic_filter.startswith("$share/") and matches(topic_filter, out.topic):
                    self._deliver(session, live, qos)

    def _deliver(self, session: _Session, out: _Out, granted: int = 1) -> None:
        out = _Out(out.topic, out.payload, min(out.qos, granted), out.retain)
        if out.qos == 0:
            if session.link is not None:
                self._send(session, 0, out, dup=False)
            return
        if len(session.queued) >= self.max_queued:
            log.warning("membus.queue_full", extra={"client_id": session.client_id, "topic": out.topic})
            return
        session.queued.append(out)
        self._pump(session)

    def _pump(self, session: _Session) -> None:
        """Send queued messages while the client has room for unacknowledged ones."""
        while session.link is not None and session.queued and len(session.inflight) < self.max_inflight:
            out = session.queued.popleft()
            if session.link.auto_ack:  # paho acknowledges on receipt
                self._send(session, 0, out, dup=False)
                continue
            mid = next(session.mids)
            session.inflight[mid] = out
            self._send(session, mid, out, dup=False)

    @staticmethod
    def _send(session: _Session, mid: int, out: _Out, *, dup: bool) -> None:
        link = session.link
        link.bus._received(link, mid, Message(out.topic, out.payload, out.qos, out.retain, dup))


# -- the bus -----------------------------------------------------------------------------
class MemoryDelivery:
    """A publish the memory broker has taken (it acknowledges at once)."""

    def wait(self, timeout: float) -> bool:
        return True


class MemoryBus:
    """A ``Bus`` on a ``MemoryBroker``: same contract as ``MqttBus``, one dispatch thread."""

    def __init__(self, broker: MemoryBroker, settings: BusSettings, *, auto_reconnect: bool = True) -> None:
        self.broker, self.settings, self.auto_reconnect = broker, settings, auto_reconnect
        self._dispatch = Dispatcher(f"membus-{settings.client_id}",
                                    lambda topic_filter, topic: matches(unshare(topic_filter)[1], topic),
                                    halted=lambda: self._dead)
        self._dispatch.on_handler_error(self._note_error)
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._link: _Link | None = None
        self._generation = 0
        self._refusal: str | None = None
        self._failures = 0
        self._report: str | None = None
        self._delay = settings.reconnect_min
        self._timer: threading.Timer | None = None
        self._started = self._stopped = self._dead = False
        self.last_error: str | None = None

    # -- the Bus interface --------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Register *handler*; (re)subscribed on every connect, as ``MqttBus`` does."""
        self._dispatch.add(topic_filter, handler, qos)
        with self._lock:
            link = self._link if self._connected.is_set() else None
        if link is not None:
            self._subscribe(link, topic_filter, qos)

    def on_connect(self, callback: Callable[[], None]) -> None:
        self._dispatch.on_connect(callback)

    def on_handler_error(self, listener: Callable[[str], None]) -> None:
        """As ``MqttBus.on_handler_error``: a handler's failure reaches *listener* (and ``state``)."""
        self._dispatch.on_handler_error(listener)

    def _note_error(self, error: str) -> None:
        self.last_error = error

    def start(self) -> None:
        """Connect now (a refused or closed broker is retried after the back-off, like paho)."""
        self._started = True
        self._dispatch.start()
        self._attempt(force=True)

    def wait_connected(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._connected.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            if self._refusal is not None:
                raise BusError(self._refusal)
            if time.monotonic() >= deadline:
                raise BusError(f"no connection to {self.settings.host}:{self.settings.port} "
                               f"within {timeout}s ({self.last_error or 'no answer'})")

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> MemoryDelivery:
        if "+" in topic or "#" in topic:
            raise ValueError("Publish topic cannot contain wildcards.")  # paho's own check
        with self._lock:
            link = self._link if self._connected.is_set() else None
        if link is None:
            raise NotConnected(f"not connected to {self.settings.host}:{self.settings.port}")
        try:
            self.broker.publish(link, topic, payload, qos, retain)
        except NotConnected:
            raise NotConnected(f"connection to {self.settings.host}:{self.settings.port} lost") from None
        return MemoryDelivery()

    def stop(self) -> None:
        """Disconnect cleanly (no will) and join the dispatch thread."""
        with self._lock:
            self._stopped = True
            link, self._link = self._link, None
            if self._timer is not None:
                self._timer.cancel()
        if link is not None:
            self.broker.detach(link)
        self._connected.clear()
        self._dispatch.stop()

    def connect_report(self) -> str | None:
        """Why connecting failed before the latest connect (once; None if it did not)."""
        with self._lock:
            report, self._report = self._report, None
        return report

    # -- test hook ----------------------------------------------------------------------
    def reconnect(self) -> None:
        """Connect again now, without waiting for the back-off (takes the session over if needed)."""
        if not self._started or self._stopped or self._dead:
            raise BusError("reconnect() needs a started, live bus")
        self._attempt(force=True)

    # -- connecting ---------------------------------------------------------------------
    def _attempt(self, force: bool = False) -> None:
        """One CONNECT; the back-off timer's attempts (*force* False) do nothing once connected."""
        with self._lock:
            if self._stopped or self._dead or (self._connected.is_set() and not force):
                return
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        try:
            link = self.broker.attach(self, self.settings)
        except PermissionError as exc:
            self._refusal = (f"the broker at {self.settings.host}:{self.settings.port} refused the connection: "
                             f"{exc} (check the username, password file and ACL)")
            self._failed(self._refusal)
        except ConnectionRefusedError as exc:
            self._failed(f"{self.settings.host}:{self.settings.port}: {exc}")
        else:
            with self._lock:
                subs = self._dispatch.subscriptions()
            for topic_filter, qos in subs:  # as MqttBus does in on_connect
                self._subscribe(link, topic_filter, qos)

    def _failed(self, detail: str) -> None:
        self.last_error = detail
        with self._lock:
            self._failures += 1
            if self._failures == 1:
                log.warning("bus.connect_failed", extra={"client_id": self.settings.client_id, "error": detail})
        self._schedule()

    def _schedule(self) -> None:
        """Try again after the back-off (doubling up to ``reconnect_max``), as paho does."""
        with self._lock:
            if not self.auto_reconnect or self._stopped or self._dead:
                return
            delay, self._delay = self._delay, min(self._delay * 2, self.settings.reconnect_max)
            self._timer = threading.Timer(delay, self._attempt)
            self._timer.daemon = True
            self._timer.start()

    # -- what the broker calls (under its lock: record, enqueue, return) -----------------
    def _attached(self, link: _Link, session_present: bool) -> None:
        self._refusal = None
        with self._lock:
            self._link, self._generation = link, self._generation + 1
            self._delay = self.settings.reconnect_min
            if self._timer is not None:  # a takeover of our own earlier connection scheduled one
                self._timer.cancel()
                self._timer = None
            if self._failures:
                self._report = f"could not connect to the memory broker ({self._failures} attempts): {self.last_error}"
            self._failures = 0
        self._connected.set()
        log.info("bus.connected", extra={"client_id": self.settings.client_id, "session_present": session_present})
        self._dispatch.connected()

    def _dropped(self, link: _Link, reason: str, *, final: bool) -> None:
        with self._lock:
            if link is not self._link:
                return
            self._link = None
            self._dead = self._dead or final
        self._connected.clear()
        self.last_error = f"disconnected: {reason}"
        log.warning("bus.disconnected", extra={"client_id": self.settings.client_id, "reason": reason})
        if final:
            self._dispatch.halt()
        else:
            self._schedule()

    def _received(self, link: _Link, mid: int, message: Message) -> None:
        if self.settings.manual_ack and message.qos > 0:
            generation = self._generation
            message._ack = lambda: self._ack(generation, link, mid)
        self._dispatch.deliver(message)

    def _subscribe(self, link: _Link, topic_filter: str, qos: int) -> None:
        if not self.broker.subscribe(link, topic_filter, qos) and link is self._link:
            self.last_error = f"subscription refused: {topic_filter}"
            log.error("bus.subscribe_refused", extra={"client_id": self.settings.client_id, "filter": topic_filter})

    def _ack(self, generation: int, link: _Link, mid: int) -> None:
        # As MqttBus: an ack from an earlier connection must not go out (the broker redelivers).
        if generation == self._generation and self._connected.is_set():
            self.broker.settle(link, mid)
