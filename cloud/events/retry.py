"""What happens to a message the store could not take: retried, waited out, or dead-lettered.

A failure while the *database* does not answer is waited out (with back-off) and not
counted; a transient failure with the database up (lock timeout, deadlock, a unique-key
race) is retried up to ``max_attempts``; anything else is dead-lettered at once, in a
transaction of its own after the failed one rolled back. So no message is left hanging on
a bad payload, and none is dropped while the database is down.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cloud.events.deadletters import REMEMBERED, message_key
from cloud.events.ingest import Stored
from cloud.events.store import EventStore
from kiosk.protocol.event_schema import printable

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # a message that failed this often (database up) is dead-lettered


class DatabaseUnavailable(Exception):
    """The database is down and the worker is stopping: leave the message for redelivery."""


class Attempts:
    """How often each message (by ``message_key``) failed in this process; bounded in memory."""

    def __init__(self) -> None:
        self._counts: OrderedDict[str, int] = OrderedDict()

    def add(self, key: str) -> int:
        self._counts[key] = count = self._counts.pop(key, 0) + 1
        while len(self._counts) > REMEMBERED:
            self._counts.popitem(last=False)
        return count

    def forget(self, key: str) -> None:
        self._counts.pop(key, None)


def ingest_or_dead_letter(store: EventStore, topic: str, payload: bytes, stopping, *, attempts: Attempts,
                          max_attempts: int = MAX_ATTEMPTS, max_delay: float = 30.0, **options: Any) -> Stored:
    """Store one message, or dead-letter it; never leave it hanging on a bad message.

    Raises DatabaseUnavailable only when *stopping* is set while the database does not answer,
    so the message stays unacknowledged for redelivery. *options* go to ``ingest`` (its
    ``published`` ids are marked by the dead letter's transaction instead).
    """
    key, delay = message_key(topic, payload), 0.05
    while True:
        try:
            stored = store.ingest(topic, payload, **options)
            attempts.forget(key)
            return stored
        except Exception as exc:
            failure = exc
        if _unavailable(failure) and not store.healthy():
            _wait_for_database(failure, stopping, delay)
            delay = min(delay * 2, max_delay)
            continue
        count = attempts.add(key)
        if _transient(failure) and count < max_attempts:
            log.warning("ingest.retry", extra={"topic": topic, "attempt": count, "error": _describe(failure)})
            stopping.wait(min(delay * count, max_delay))
            continue
        reason = f"the hub failed on it{f' {count} times' if count > 1 else ''}: {_describe(failure)}"
        log.error("ingest.failed", extra={"topic": topic, "attempts": count, "error": _describe(failure)},
                  exc_info=not isinstance(failure, DBAPIError))
        try:
            stored = store.dead_letter(topic, payload, reason, published=options.get("published", ()))
        except Exception as exc:
            if _unavailable(exc):  # a dead letter always fits: the database is the problem after all
                _wait_for_database(exc, stopping, delay)
                delay = min(delay * 2, max_delay)
                continue
            # Last resort, never expected: drop the message (logged with its key) rather than stall.
            log.critical("ingest.dead_letter_failed", extra={"topic": topic, "key": key, "reason": reason,
                                                             "error": _describe(exc)}, exc_info=True)
            stored = Stored(None, None, dead_letter=reason)
        attempts.forget(key)
        return stored


def _wait_for_database(failure: Exception, stopping, delay: float) -> None:
    if stopping.is_set():
        raise DatabaseUnavailable(_describe(failure)) from failure
    log.warning("ingest.db_retry", extra={"error": _describe(failure), "retry_in_s": delay})
    stopping.wait(delay)


def _unavailable(exc: Exception) -> bool:
    """A failure that may mean the database is down (the caller then asks it)."""
    return (isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeout))
            or (isinstance(exc, DBAPIError) and exc.connection_invalidated))


def _transient(exc: Exception) -> bool:
    """Worth another try with the database up: lock timeouts, deadlocks, a unique-key race."""
    return _unavailable(exc) or isinstance(exc, IntegrityError)


def _describe(exc: Exception) -> str:
    text = str(exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc)
    return printable(f"{type(exc).__name__}: {text}")[:300]
