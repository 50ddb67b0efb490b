"""The demo's history filler: plausible visits, and every one of them made through the real path
(hub enrolment, kiosk scan, hub link, MQTT, `stempel-hub ingest`), arriving exactly once."""

from __future__ import annotations

import subprocess
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from mosquitto import Mosquitto
from syncrig import HUB

from cloud.app import create_hub
from cloud.config import load_hub_config
from cloud.db import default_url
from cloud.demo_history import Habits, fill, plan, timeline
from cloud.devbroker import terminate
from cloud.events import EventStore
from cloud.passes import init_merchant
from kiosk.common.errors import ConfigError
from kiosk.ledger import Ledger
from kiosk.rules import load_program

MERCHANT = "demo-cafe"
PROGRAM = Path(__file__).resolve().parent.parent / "examples" / "cafe.toml"
END = datetime(2026, 11, 20, 17, 0, tzinfo=timezone.utc)
BERLIN = ZoneInfo("Europe/Berlin")


def test_the_plan_keeps_to_the_period_opening_hours_and_cooldown():
    habits = Habits(members=120, days=90, seed=11)
    regulars = plan(habits, END, BERLIN, np.random.default_rng(habits.seed))
    cooldown = timedelta(minutes=load_program(PROGRAM).limits.cooldown_minutes)
    assert len(regulars) == 120 and all(r.visits for r in regulars)
    for r in regulars:
        assert END - timedelta(days=91) < r.visits[0] and r.visits[-1] < END
        assert all(b - a > cooldown for a, b in zip(r.visits, r.visits[1:]))
        assert all(7 <= v.astimezone(BERLIN).hour < 19 for v in r.visits)
    again = plan(habits, END, BERLIN, np.random.default_rng(habits.seed))
    assert again == regulars  # one seed, one history
    assert [at for at, _ in timeline(regulars)] == sorted(v for r in regulars for v in r.visits)


def test_members_join_more_lately_and_most_stop_coming():
    habits = Habits(members=300, days=180, seed=3)
    regulars = plan(habits, END, BERLIN, np.random.default_rng(habits.seed))
    joined = Counter((END - r.visits[0]).days // 60 for r in regulars)  # 0: the last two months
    assert joined[0] > joined[2]
    lapsed = sum(END - r.visits[-1] > timedelta(days=30) for r in regulars)
    assert 0.2 * len(regulars) < lapsed < 0.7 * len(regulars)
    assert 1 <= sum(r.vip for r in regulars) <= 0.1 * len(regulars)


@pytest.mark.parametrize("bad", [{"members": 0}, {"days": 0}, {"vip_share": 0.6, "one_timer_share": 0.5}])
def test_impossible_habits_are_refused_with_the_fix(bad):
    with pytest.raises(ConfigError, match="at least|add up"):
        Habits(**bad)


@pytest.mark.slow  # Mosquitto and a `stempel-hub ingest` process
def test_every_history_event_reaches_the_hub_exactly_once(tmp_path):
    hub_dir = tmp_path / "hub"
    hub = create_hub(load_hub_config(env={}, hub__data_dir=hub_dir))
    init_merchant(hub.engine, hub.keys, MERCHANT, "Demo Cafe", "http://127.0.0.1:8000")
    hub.close()
    broker = Mosquitto(tmp_path / "broker").start()
    log = (tmp_path / "ingest.log").open("w")
    ingest = subprocess.Popen([HUB, "--data-dir", str(hub_dir), "ingest", "--host", "127.0.0.1",
                               "--port", str(broker.port)], stdout=log, stderr=log)
    store = EventStore.open(default_url(hub_dir))
    lines: list[str] = []
    try:  # VIPs a third of the members: a month is enough for rewards to be earned and redeemed
        report = fill(hub_dir, MERCHANT, broker_port=broker.port, kiosk_dir=tmp_path / "kiosk",
                      program_file=PROGRAM, habits=Habits(members=20, days=30, seed=5, vip_share=0.3),
                      drain_seconds=60, ack_timeout=1.0, progress=lines.append)
        stored = store.events(MERCHANT, "counter-2")
        acked = store.acked_through(MERCHANT, "counter-2")
    finally:
        terminate(ingest)
        broker.stop()
        log.close()
        store.close()
    ledger = Ledger(tmp_path / "kiosk" / "ledger.sqlite3")
    made = ledger.events()
    ledger.close()
    assert report.unacked == 0 and not report.refused
    assert (report.members, report.events, acked) == (20, len(made), len(made))
    assert sorted(e.event_id for e in stored) == sorted(e.event_id for e in made)  # each exactly once
    kinds = Counter(e.kind for e in stored)
    assert (kinds["visit"], kinds["redeem"]) == (report.visits, report.redeemed)
    assert report.redeemed > 0 and report.visits > report.members
    assert len({e.member_id for e in stored}) == report.members
    assert "20 members enrolled" in lines[0] and all(line.startswith("  history: ") for line in lines)
