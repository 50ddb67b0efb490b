"""The half of a bus that both backends share: handlers by topic filter, run on one thread of ours.

``MqttBus`` (paho) and ``MemoryBus`` only feed it: a message, or "connected". Here each
message goes to the handler of the first matching filter; a handler that returns acks the
message, one that raises leaves it unacknowledged (the broker redelivers), is logged, and is
told to the error listeners so it reaches the kiosk's ``state``. The thread never dies of a
handler.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiosk.common.bus import Handler, Message

log = logging.getLogger("kiosk.common.bus")

_STOP = object()


class Dispatcher:
    """Subscriptions, connect callbacks and error listeners, and the thread that runs them.

    *matches(filter, topic)* is the backend's topic matching (a ``$share/group/`` prefix is the
    backend's to strip); *halted()* lets a backend end the thread at once (a killed client).
    """

    def __init__(self, name: str, matches: Callable[[str, str], bool],
                 halted: Callable[[], bool] = lambda: False) -> None:
        self._matches = matches
        self._halted = halted
        self._subs: dict[str, tuple[Handler, int]] = {}
        self._lock = threading.Lock()
        self._connect_callbacks: list[Callable[[], None]] = []
        self._error_listeners: list[Callable[[str], None]] = []
        self._work: queue.Queue = queue.Queue()
        self._failure = ""  # the latest handler exception (dispatch thread only)
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- what the bus registers ------------------------------------------------------------
    def add(self, topic_filter: str, handler: Handler, qos: int) -> None:
        with self._lock:
            self._subs[topic_filter] = (handler, qos)

    def subscriptions(self) -> list[tuple[str, int]]:
        """(filter, qos) of every subscription, to subscribe again on a new connection."""
        with self._lock:
            return [(t, q) for t, (_, q) in self._subs.items()]

    def on_connect(self, callback: Callable[[], None]) -> None:
        self._connect_callbacks.append(callback)

    def on_handler_error(self, listener: Callable[[str], None]) -> None:
        self._error_listeners.append(listener)

    # -- what the bus feeds ----------------------------------------------------------------
    def connected(self) -> None:
        self._work.put(("connected",))

    def deliver(self, message: Message) -> None:
        self._work.put(("message", message))

    def start(self) -> None:
        self._thread.start()

    def halt(self) -> None:
        """End the thread after what it is running now, without waiting for it."""
        self._work.put(_STOP)

    def stop(self, timeout: float = 10) -> None:
        self.halt()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is _STOP or self._halted():
                return
            if item[0] == "connected":
                for callback in self._connect_callbacks:
                    if not self._call(callback):
                        self._failed("a connect callback")
            else:
                self._handle(item[1])

    def _handle(self, message: Message) -> None:
        handler = self._handler_for(message.topic)
        if handler is None:
            message.ack()
            return
        if self._call(lambda: handler(message)):
            message.ack()  # no-op if the handler acked already
        else:
            self._failed(f"the handler of {message.topic}")

    def _handler_for(self, topic: str) -> Handler | None:
        with self._lock:
            for topic_filter, (handler, _) in self._subs.items():
                if self._matches(topic_filter, topic):
                    return handler
        return None

    def _call(self, fn: Callable[[], None]) -> bool:
        try:
            fn()
            return True
        except Exception as exc:  # noqa: BLE001 - a handler's failure must not end the thread
            self._failure = f"{type(exc).__name__}: {exc}"
            log.exception("bus.handler_failed")
            return False

    def _failed(self, what: str) -> None:
        error = f"{what} failed: {self._failure}"
        self.last_error = error
        for listener in self._error_listeners:
            try:
                listener(error)
            except Exception:  # noqa: BLE001 - a broken listener must not stop the dispatch thread
                log.exception("bus.error_listener_failed")
