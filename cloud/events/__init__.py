"""The hub's event store: kiosk events in the database (the wire side is cloud/link/events.py).

One module per job:

- ``store.py``: ``EventStore``, the object the worker and the commands hold (engine, clock,
  clock window), one transaction per call, and the reads;
- ``ingest.py``: the ingest transaction: decode and check, classify, insert, ack advance;
- ``acks.py``: each kiosk ledger's contiguous ack, refusals settled for good;
- ``conflicts.py``: offline double spending, found when the ledgers merge;
- ``outbox.py``: the ledger outbox (add, lease, mark published) and the ``ledger`` entries;
- ``deadletters.py``: dead letters, capped and written once per refusal;
- ``retry.py``: the policy for a message the store failed on (``ingest_or_dead_letter``);
- ``sql.py``: what differs between SQLite and PostgreSQL.

Write path: SQLAlchemy Core, not ORM objects: one ``executemany`` of short statements
(psycopg pipelines it and caches the statement; a 1,600-parameter multi-row ``INSERT`` is
re-parsed in Python every time) and one array parameter (``= ANY(:ids)``) instead of long
``IN`` lists on PostgreSQL. A message's rows are known in memory, so nothing written is read
back: the outbox rows come from ``INSERT … SELECT`` over the ``hub_seq`` range just handed
out, and the ``ledger`` batch is built from the decoded events.
"""

from cloud.events.deadletters import DEAD_LETTER_KEEP, message_key
from cloud.events.ingest import Stored
from cloud.events.outbox import OutboxBatch, ledger_entry
from cloud.events.retry import MAX_ATTEMPTS, Attempts, DatabaseUnavailable, ingest_or_dead_letter
from cloud.events.store import EventStore

__all__ = ["DEAD_LETTER_KEEP", "MAX_ATTEMPTS", "Attempts", "DatabaseUnavailable", "EventStore", "OutboxBatch",
           "Stored", "ingest_or_dead_letter", "ledger_entry", "message_key"]
