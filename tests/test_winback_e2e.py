"""Issue 11, "What it must show", third bullet, through the real kiosk and hub path: two regulars
visit a simulated kiosk (build_kiosk on sim hardware, passes shown to its camera) whose events
reach the hub through the ingest worker on the in-memory broker; both drift away; the
automations sweep sends Anna the win-back e-mail with a bonus (a real SMTP server, aiosmtpd) and
holds Bert out as the control group; the offer reaches the kiosk on the ledger stream, Anna comes
back, the kiosk grants the bonus once, and the owner's Messages page counts her return in the
lift against Bert. One injected clock drives the kiosk, the ingest worker and the sweep."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from buses import MemoryBuses
from fleetrig import WAIT, LiveKiosk
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from smtpsink import smtp_sink  # noqa: F401  (fixture)
from sqlalchemy import select
from sqlalchemy.orm import Session
from syncrig import MERCHANT, wait_until

from cloud.accounts import add_user
from cloud.app import create_hub
from cloud.automations import winback
from cloud.automations.mailer import SmtpChannel
from cloud.automations.worker import Worker
from cloud.config import AutomationsSection, SmtpSection, load_hub_config
from cloud.metrics.lift import Arm, winback_lift
from cloud.metrics.queries import snapshot
from cloud.models import HubEvent, Message
from cloud.passes import enrol, export_keys, init_merchant
from cloud.web import create_app
from cloud.web.secret import secret_key
from kiosk.rules.state import WINBACK_RULE

pytestmark = pytest.mark.slow  # an ingest worker, a kiosk loop and an SMTP server process

BASE, PASSWORD = "https://hub.example", "correct horse battery"
ANNA, BERT = "anna-0002", "bert-0001"  # ids the control group's hash splits at share 0.5 (asserted below)
DAY = 86400.0


class HubForKiosks:
    """What fleetrig.LiveKiosk takes from a hub: its data folder and the merchant's pass keys."""

    def __init__(self, hub) -> None:
        self.hub, self.data_dir = hub, hub.data_dir

    def export(self, merchant: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(export_keys(self.hub.engine, merchant).to_json())
        return dest


@pytest.fixture
def world(tmp_path, hub_url, smtp_sink, clock):
    config = load_hub_config(None, env={}, hub__data_dir=tmp_path / "hub", hub__db_url=hub_url,
                             web__secure_cookies=False)
    hub = create_hub(config)
    init_merchant(hub.engine, hub.keys, MERCHANT, "Cafe Rosa", BASE)
    add_user(hub.engine, MERCHANT, "owner@cafe", "owner", PASSWORD)
    buses = MemoryBuses()
    ingest = buses.ingest(tmp_path, hub_url, "w1")
    ingest.store.clock = clock.now  # the hub's clock is the kiosk's: events are inside its window
    wait_until(lambda: bool(ingest.records("bus.connected")), WAIT, "ingest to connect")
    kiosk = LiveKiosk(tmp_path, HubForKiosks(hub), "counter-1", buses, clock).start()
    try:
        yield hub, kiosk, ingest, smtp_sink
    finally:
        kiosk.stop()
        ingest.stop()
        buses.stop()
        hub.close()


def member(hub, member_id: str, name: str, joined: datetime, monkeypatch) -> str:
    """Join with marketing consent under a fixed id; the pass URL the member shows."""
    monkeypatch.setattr("cloud.passes.new_member_id", lambda: member_id)
    issued = enrol(hub.engine, hub.keys, MERCHANT, name, {
        "email": f"{name.lower()}@example.org", "created_at": joined, "consent_program_at": joined,
        "consent_marketing_at": joined})
    return issued.url


def hub_events(hub, **where) -> list[HubEvent]:
    with Session(hub.engine) as session:
        query = select(HubEvent).where(*(getattr(HubEvent, k) == v for k, v in where.items()))
        return list(session.scalars(query.order_by(HubEvent.hub_seq)))


def test_a_member_drifts_away_gets_the_bonus_comes_back_and_counts_in_the_lift(world, clock, monkeypatch):
    hub, kiosk, ingest, sink = world
    joined = clock.now() - timedelta(days=1)
    anna, bert = (member(hub, ANNA, "Anna", joined, monkeypatch), member(hub, BERT, "Bert", joined, monkeypatch))

    # three weekly visits each, Monday mornings (the last on 16 March)
    for week in range(3):
        assert kiosk.scan(anna, advance=3660 if week == 0 else 7 * DAY).outcome in ("stamped", "reward_ready")
        assert kiosk.scan(bert, advance=120).outcome in ("stamped", "reward_ready")
    wait_until(lambda: len(hub_events(hub, kind="visit")) == 6, WAIT, "the hub to store the six visits")
    lapse = kiosk.clock.now().date().isoformat()
    assert not winback.held_out(ANNA, "winback", lapse, 0.5) and winback.held_out(BERT, "winback", lapse, 0.5)

    # they drift away: 22 days later (their usual 7 days × 3 has passed), the sweep runs
    clock.advance(22 * DAY)
    smtp = SmtpSection(host=sink.host, port=sink.port, starttls=False, sender="Stempel <stempel@hub.example>")
    settings = AutomationsSection(triggers=["winback"], winback_bonus=3, winback_bonus_days=30, control_share=0.5)
    worker = Worker(hub.engine, hub.keys, secret_key(hub.data_dir), settings, SmtpChannel.from_config(smtp),
                    smtp.sender, clock=clock.now, worker_id="automations-1")
    done = worker.sweep()
    assert (done["planned"], done["sent"]) == (1, 1)
    [mail] = sink.messages()
    assert mail["To"] == "anna@example.org" and mail["Subject"] == "We miss you at Cafe Rosa"
    assert "get 3 extra stamps at your next visit" in mail.get_body(("plain",)).get_content()
    with Session(hub.engine) as session:
        assert {(m.member_id, m.status) for m in session.scalars(select(Message))} == {
            (ANNA, "sent"), (BERT, "control")}
    [offer] = hub_events(hub, kind="offer")
    assert (offer.member_id, offer.kiosk_id, offer.detail["bonus"]) == (ANNA, "hub", 3)

    # the offer travels to the kiosk on the ledger stream; the kiosk asks the hub nothing
    wait_until(lambda: kiosk.read(lambda ledger: ledger.member_state(ANNA, kiosk.kiosk.program).offer) is not None,
               WAIT, "the offer to reach the kiosk's ledger")
    before = kiosk.balance(ANNA)

    # Anna comes back two days after the message: the kiosk grants the bonus, once
    back = kiosk.scan(anna, advance=2 * DAY)
    assert (back.outcome, back.earned, back.balance) == ("stamped", 1 + 3, before + 4)
    again = kiosk.scan(anna, advance=DAY)
    assert (again.earned, again.balance) == (1, before + 5)
    wait_until(lambda: len(hub_events(hub, rule=WINBACK_RULE)) == 1 and len(hub_events(hub, kind="visit")) == 8,
               WAIT, "the bonus and the visits to reach the hub")
    [granted] = hub_events(hub, rule=WINBACK_RULE)
    assert (granted.member_id, granted.kiosk_id, granted.delta) == (ANNA, "counter-1", 3)
    assert granted.detail["offer"] == offer.detail["offer"]

    # 14 days after the message, the owner's Messages page counts her return against Bert
    clock.advance(13 * DAY)
    with snapshot(hub.engine) as conn:
        lift = winback_lift(conn, MERCHANT, clock.now())
    assert (lift.messaged, lift.control, lift.open) == (Arm(1, 1), Arm(1, 0), 0)
    client = create_app(hub, clock=clock.now, publisher=object()).test_client()
    form = client.get("/owner/login").get_data(as_text=True)
    token = form.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post("/owner/login", data={"csrf_token": token, "login": "owner@cafe",
                                             "password": PASSWORD}).status_code == 302
    page = client.get("/owner/messages").get_data(as_text=True)
    assert ("Of 1 member sent a win-back, 1 came back within 14 days (100 %); of 1 member held out without a "
            "message, 0 came back (0 %): 100 percentage points more came back with the message.") in page
