"""Event load for the ingest benchmark: hub databases, ingest worker processes, simulated
kiosks that publish real ``events`` batches, and a reader that watches rows commit.

The kiosks here are not ``OutboxSender``s (that would put 20 SQLite ledgers and their
fsyncs on the same two CPUs as the hub); they send what a sender sends — the same
``kiosk.link.events.batch_message`` payloads on the same topic at QoS 1, ``batch_size`` events
per message, at most ``max_in_flight`` events beyond the hub's ``events/ack`` — from
batches built before the clock starts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine

from bench.broker import Broker
from cloud.db import create_tables, make_engine
from cloud.models import HubEvent, LedgerOutbox, LedgerStream
from kiosk.link.events import SenderSettings, batch_message
from kiosk.protocol import topics
from kiosk.protocol.event import Event
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import EventsAck, decode
from tests.postgres import session_server

HUB = str(Path(sys.executable).parent / "stempel-hub")
SENDER = SenderSettings()  # the kiosk's defaults: 100 events per message, 1,000 in flight
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


# -- databases -----------------------------------------------------------------------------
@contextlib.contextmanager
def hub_database(backend: str, workdir: Path) -> Iterator[str]:
    """A SQLAlchemy URL of a new, empty hub database (tables created), removed afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{workdir / 'hub.sqlite3'}"
        _create(url)
        yield url
        return
    name = f"stempel_bench_{os.getpid()}_{secrets.token_hex(4)}"
    # The tests' server: STEMPEL_TEST_PG, else 127.0.0.1:5432, else a private cluster (raises PostgresUnavailable).
    with session_server() as server:
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = server.url(name)
            _create(url)
            yield url
        finally:
            with psycopg.connect(server.dsn(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _create(url: str) -> None:
    engine = make_engine(url)
    try:
        create_tables(engine)
    finally:
        engine.dispose()


class Reader:
    """Reads what the workers committed, on its own connection (plain reads, no write lock)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})

    def committed(self) -> int:
        """Events committed so far: each merchant's gapless ``hub_seq`` high-water mark, summed."""
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.coalesce(func.sum(LedgerStream.last_hub_seq), 0))))

    def new_rows(self, merchant: str, after_hub_seq: int) -> list[tuple[int, str, datetime]]:
        """(hub_seq, event_id, received_at) above *after_hub_seq*. Per merchant, rows become visible
        in ``hub_seq`` order (the stream row is locked from numbering to commit), so a watermark
        per merchant never skips a row."""
        query = (select(HubEvent.hub_seq, HubEvent.event_id, HubEvent.received_at)
                 .where(HubEvent.merchant_id == merchant, HubEvent.hub_seq > after_hub_seq)
                 .order_by(HubEvent.hub_seq))
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query)]

    def last_hub_seq(self, merchant: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.coalesce(func.max(HubEvent.hub_seq), 0))
                                   .where(HubEvent.merchant_id == merchant)))

    def unpublished(self) -> int:
        """Ledger outbox rows the relay has not published yet."""
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).where(LedgerOutbox.published_at.is_(None))))

    def analyze(self) -> None:
        """Refresh the planner's statistics, as autovacuum does on a running PostgreSQL (the test
        server runs with ``autovacuum = off``; without statistics the ``event_id IN (…)`` lookup
        of every ingest is a sequential scan that slows down as the table grows)."""
        with self.engine.begin() as conn:
            conn.execute(text("ANALYZE"))

    def close(self) -> None:
        self.engine.dispose()


# -- ingest workers ------------------------------------------------------------------------
@contextlib.contextmanager
def ingest_workers(n: int, url: str, broker: Broker, workdir: Path, timeout: float = 20.0) -> Iterator[list]:
    """*n* ``stempel-hub ingest`` processes (quiet, as in production), started at the same
    instant as systemd would start them, ready when their shared subscription shows in the
    broker's log; SIGTERM (then SIGKILL) at the end."""
    procs: list[subprocess.Popen] = []
    try:
        for i in range(1, n + 1):
            with (workdir / f"ingest-w{i}.log").open("w") as err:
                procs.append(subprocess.Popen(
                    [HUB, "--data-dir", str(workdir / "hub"), "--db-url", url, "ingest", "--port", str(broker.port),
                     "--worker-id", f"w{i}"], stdout=subprocess.DEVNULL, stderr=err))
        deadline = time.monotonic() + timeout
        for i, proc in enumerate(procs, 1):
            while not broker.subscribed(f"w{i}", topics.SHARED_EVENTS):
                if proc.poll() is not None:
                    raise RuntimeError(f"ingest worker w{i} exited ({proc.returncode}): "
                                       f"{(workdir / f'ingest-w{i}.log').read_text()[-1500:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ingest worker w{i} did not subscribe within {timeout}s")
                time.sleep(0.05)
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# -- where the CPU goes -------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")
_PG_BACKGROUND = ("walwriter", "checkpointer", "background writer", "wal writer", "autovacuum", "logical replication")


def _cpu(pid: int) -> float:
    """User + system CPU seconds of *pid* (all its threads); 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _postgres(database: str | None) -> dict[str, list[int]]:
    """PostgreSQL processes by role, from their titles: backends of *database*, and the shared
    background writers (other users of the server show in neither)."""
    found: dict[str, list[int]] = {"postgres (our backends)": [], "postgres (wal/background)": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if not title.startswith("postgres: "):
            continue
        if database and f" {database} " in title:
            found["postgres (our backends)"].append(int(entry.name))
        elif any(role in title for role in _PG_BACKGROUND):
            found["postgres (wal/background)"].append(int(entry.name))
    return found


class CpuMeter:
    """CPU seconds spent by each part of the rig between ``start`` and ``stop``."""

    def __init__(self, workers: list[subprocess.Popen], broker: Broker, url: str) -> None:
        database = url.rsplit("/", 1)[1] if url.startswith("postgresql") else None
        self.parts: dict[str, list[int]] = {"ingest workers": [p.pid for p in workers], "mosquitto": [broker.proc.pid],
                                            "bench (kiosks, reader)": [os.getpid()], **_postgres(database)}
        self.before: dict[str, float] = {}
        self.t0 = 0.0

    def _now(self) -> dict[str, float]:
        return {part: sum(_cpu(pid) for pid in pids) for part, pids in self.parts.items()}

    def start(self) -> None:
        self.before, self.t0 = self._now(), time.monotonic()

    def stop(self) -> dict:
        wall = time.monotonic() - self.t0
        spent = {part: round(cpu - self.before[part], 2) for part, cpu in self._now().items()}
        return {"wall_s": round(wall, 2), "cpu_s": spent,
                "cores_busy": round(sum(spent.values()) / wall, 2) if wall else None}


# -- simulated kiosks ----------------------------------------------------------------------
@dataclass
class Batch:
    last_seq: int
    payload: bytes
    event_ids: list[str]


def make_batches(kiosk_no: int, events: int, size: int) -> list[Batch]:
    """*events* stamp events of one kiosk, as its ledger would hold them, cut into messages."""
    batches, seq = [], 0
    while seq < events:
        rows = []
        for _ in range(min(size, events - seq)):
            seq += 1
            rows.append(Event(seq, new_event_id(), "earn", f"m-{(kiosk_no * 7919 + seq) % 5000}", 1,
                              "visit", None, None, {"cause": "visit"}, T0 + timedelta(seconds=seq),
                              seq * 1_000_000_000, f"boot-{kiosk_no}"))
        batches.append(Batch(seq, batch_message(rows), [e.event_id for e in rows]))
    return batches


@dataclass
class SimKiosk:
    """One kiosk's MQTT connection, its prepared batches and what the hub acknowledged."""

    merchant: str
    kiosk: str
    batches: list[Batch]
    wake: threading.Event
    client: paho.Client | None = None
    next: int = 0
    sent_through: int = 0
    acked: int = 0
    sent_at: dict[int, float] = field(default_factory=dict)  # batch index → time.time() at publish

    def connect(self, port: int) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{self.merchant}.{self.kiosk}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        ready = threading.Event()
        ack_topic = topics.events_ack(self.merchant, self.kiosk)
        self.client.on_connect = lambda c, *_: c.subscribe(ack_topic, 1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_ack
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError(f"simulated kiosk {self.kiosk} could not subscribe to its ack")

    def _on_ack(self, client, userdata, message) -> None:
        self.acked = max(self.acked, decode(EventsAck, message.payload).acked_through_seq)
        self.wake.set()

    @property
    def done(self) -> bool:
        return self.next >= len(self.batches)

    def can_send(self) -> bool:
        return not self.done and self.sent_through - self.acked < SENDER.max_in_flight

    def send(self) -> None:
        batch = self.batches[self.next]
        self.sent_at[self.next] = time.time()
        self.client.publish(topics.events(self.merchant, self.kiosk), batch.payload, qos=1)
        self.sent_through = batch.last_seq
        self.next += 1

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()


@contextlib.contextmanager
def fleet(port: int, prefix: str, kiosks: int, merchants: int, events_each: int,
          batch: int) -> Iterator[list[SimKiosk]]:
    """*kiosks* connected kiosks spread over *merchants*, each with *events_each* events ready."""
    wake = threading.Event()
    sims = [SimKiosk(f"bench-m{k % merchants}", f"{prefix}-k{k}", make_batches(k, events_each, batch), wake)
            for k in range(kiosks)]
    try:
        for sim in sims:
            sim.connect(port)
        yield sims
    finally:
        for sim in sims:
            sim.close()
