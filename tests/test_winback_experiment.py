"""A/B test of the win-back offer (issue 11: experiments on "a bonus, a reward, a win-back offer
or a message text"): ``varies = "bonus"``, ``target = "winback"``. The hub offers each lapsed
member their arm's bonus (an arm of 0: the message without an offer), labelled with experiment
and variant on the ledger; a kiosk's engine grants what the offer says and names the arm on the
grant; the programme refuses values that are no bonus; the owner's page explains the target."""

from __future__ import annotations

import tomllib
import uuid
from datetime import date, datetime, timedelta

import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from smtpsink import smtp_sink  # noqa: F401  (fixture)
from sqlalchemy import select
from sqlalchemy.orm import Session
from webapp import NOW, _quick_password_hashes, broker, web  # noqa: F401  (fixtures)

from cloud.automations import winback
from cloud.automations.mailer import SmtpChannel
from cloud.automations.worker import Worker
from cloud.config import AutomationsSection, SmtpSection
from cloud.experiments import results
from cloud.link.documents import prepare
from cloud.models import HubEvent, Message
from cloud.passes import enrol
from cloud.web.secret import secret_key
from kiosk.common.errors import ConfigError
from kiosk.protocol import topics
from kiosk.protocol.event import engine_entry, from_hub
from kiosk.protocol.event_schema import check_detail
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import EventBatch, WireEvent
from kiosk.rules import Visit, evaluate, fold, parse_program
from kiosk.rules.experiments import assign, for_member
from kiosk.rules.state import OFFER, WINBACK_RULE

PROGRAMME = """name = "Cafe Rosa"

[earning]
type = "stamps"
per_visit = 1

[[rewards]]
id = "free-coffee"
name = "Free coffee"
cost = 10

[[experiments]]
id = "winback-offer"
name = "Win-back offer 0 or 3"
varies = "bonus"
target = "winback"
started = 2026-11-01

[[experiments.variants]]
id = "a"
value = 0

[[experiments.variants]]
id = "b"
value = 3
"""
PROG = parse_program(tomllib.loads(PROGRAMME))
EXP = PROG.experiments[0]
CANDIDATES = [f"member-{i:04d}" for i in range(100)]
ARM_A = [m for m in CANDIDATES if assign(EXP, m) == "a"][:2]
ARM_B = [m for m in CANDIDATES if assign(EXP, m) == "b"][:2]
LAST_VISIT = NOW - timedelta(days=25)  # weekly regulars: lapsed after 21 days
EXPIRES = "2026-12-20"  # 30 days after 20 November, the shop's local day


def lapsed(site, monkeypatch) -> None:
    """Two members of each arm (fixed ids, enrolled before the test is published), lapsed."""
    ids = iter(ARM_A + ARM_B)
    monkeypatch.setattr("cloud.passes.new_member_id", lambda: next(ids))
    joined = NOW - timedelta(days=200)
    for name, member in zip(("Anna", "Arno", "Bea", "Bert"), ARM_A + ARM_B):
        issued = enrol(site.hub.engine, site.hub.keys, "cafe", name, {
            "email": f"{name.lower()}@example.org", "created_at": joined, "consent_program_at": joined,
            "consent_marketing_at": joined})
        assert issued.member == member
    visits(site, [(m, LAST_VISIT - timedelta(days=7 * k)) for m in ARM_A + ARM_B for k in range(4)])
    prepare(site.hub.engine, site.hub.data_dir, "cafe", PROG)


def visits(site, rows: list[tuple[str, datetime]]) -> None:
    events = [WireEvent(event_id=new_event_id(), kiosk_seq=i + 1, occurred_at=at, mono_ns=i, boot_id="b",
                        kind="visit", member=member, rule="visit") for i, (member, at) in enumerate(rows)]
    batch = EventBatch(ledger_id=uuid.uuid4().hex, events=events).model_dump_json(by_alias=True)
    assert site.hub.events().ingest(topics.events("cafe", "k1"), batch.encode()).new == len(rows)


def sweep(site, sink, winback_bonus: int) -> None:
    smtp = SmtpSection(host=sink.host, port=sink.port, starttls=False, sender="Stempel <s@hub.example>")
    settings = AutomationsSection(triggers=["winback"], winback_bonus=winback_bonus, control_share=0.0)
    Worker(site.hub.engine, site.hub.keys, secret_key(site.hub.data_dir), settings, SmtpChannel.from_config(smtp),
           smtp.sender, clock=lambda: site.clock[0], worker_id="w1").sweep()


def offers(site) -> dict[str, HubEvent]:
    with Session(site.hub.engine) as session:
        return {e.member_id: e for e in session.scalars(select(HubEvent).where(HubEvent.kind == OFFER))}


@pytest.mark.parametrize("configured", [0, 5])  # [automations] winback_bonus: the arm decides for enrolled members
def test_each_arm_is_offered_its_bonus_labelled_and_arm_a_none(web, smtp_sink, monkeypatch, configured):
    lapsed(web, monkeypatch)
    sweep(web, smtp_sink, configured)

    found = offers(web)
    assert set(found) == set(ARM_B)
    for member in ARM_B:
        offer = found[member]
        assert (offer.rule, offer.delta) == ("winback-offer", 0)
        assert offer.detail == {"bonus": 3, "expires": EXPIRES, "offer": f"winback:{LAST_VISIT.date()}",
                                "experiment": "winback-offer", "variant": "b"}
    with Session(web.hub.engine) as session:  # everyone got the win-back message, with or without the offer
        assert {(m.member_id, m.status) for m in session.scalars(select(Message))} == \
            {(m, "sent") for m in ARM_A + ARM_B}
    mails = {m["To"]: m.get_body(("plain",)).get_content() for m in smtp_sink.messages()}
    for name in ("bea", "bert"):
        assert "Come back by 20 Dec 2026 and get 3 extra stamps at your next visit." in mails[f"{name}@example.org"]
    for name in ("anna", "arno"):
        assert "We would love to see you again." in mails[f"{name}@example.org"]
        assert "extra" not in mails[f"{name}@example.org"]


def test_the_kiosk_engine_grants_the_arms_offer_and_names_the_arm(web, smtp_sink, monkeypatch):
    lapsed(web, monkeypatch)
    sweep(web, smtp_sink, 0)
    bea, anna = ARM_B[0], ARM_A[0]
    offer = offers(web)[bea]
    back = NOW + timedelta(days=2)

    state = fold(bea, [(engine_entry(from_hub(offer)), offer.occurred_at)], PROG)  # as a kiosk folds the ledger
    assert state.offer is not None and state.offer.bonus == 3
    assert for_member(PROG, bea, back) is PROG  # the offer's test is no programme value
    decision = evaluate(state, Visit("v1", bea), back, PROG)
    [grant] = [e for e in decision.entries if e.rule == WINBACK_RULE]
    assert grant.delta == 3 and dict(grant.detail) == {"offer": f"winback:{LAST_VISIT.date()}",
                                                       "experiment": "winback-offer", "variant": "b"}
    check_detail(grant.kind, grant.rule, dict(grant.detail))  # the wire takes the labelled grant
    assert decision.feedback.balance == 1 + 3 and decision.state.offer is None
    # the other entries keep their own labels: the visit's stamp is no arm's
    assert all("experiment" not in e.detail for e in decision.entries if e.rule != WINBACK_RULE)

    plain = evaluate(fold(anna, [], PROG), Visit("v2", anna), back, PROG)  # arm a: no offer, nothing granted
    assert [e for e in plain.entries if e.rule == WINBACK_RULE] == [] and plain.feedback.balance == 1

    # the hub's per-arm figures count the returning member in their arm, unchanged
    visits(web, [(bea, back)])
    (result,) = results(web.hub.engine, "cafe", PROG, back + timedelta(hours=1), days=14)
    assert [(a.variant, a.members, a.visits) for a in result.arms] == [("a", 0, 0), ("b", 1, 1)]


def test_the_arm_decides_only_while_the_test_runs_or_keeps_its_winner():
    member = ARM_B[0]
    assert winback.bonus_for(PROG, member, date(2026, 10, 31), 2) == (2, None)  # pending: the configured bonus
    bonus, test = winback.bonus_for(PROG, member, date(2026, 11, 20), 2)
    assert (bonus, test.experiment, test.variant) == (3, "winback-offer", "b")
    assert winback.bonus_for(PROG, ARM_A[0], date(2026, 11, 20), 2)[0] == 0
    over = parse_program(tomllib.loads(PROGRAMME.replace("started = 2026-11-01",
                                                         "started = 2026-11-01\nended = 2026-11-10")))
    assert winback.bonus_for(over, member, date(2026, 11, 20), 2) == (2, None)  # over, nothing kept
    kept = parse_program(tomllib.loads(PROGRAMME.replace(
        "started = 2026-11-01", 'started = 2026-11-01\nended = 2026-11-10\nwinner = "b"')))
    assert winback.bonus_for(kept, ARM_A[0], date(2026, 11, 20), 0)[0] == 3  # the winner for everyone
    assert winback.bonus_for(None, member, date(2026, 11, 20), 2) == (2, None)


@pytest.mark.parametrize("value, fix", [
    ('"3"', "variants.1.value: '3' is not a whole number of stamps or points"),
    ("-1", "variants.1.value: -1 is outside 0..10,000 for bonus 'winback'"),
    ("10001", "variants.1.value: 10001 is outside 0..10,000 for bonus 'winback'"),
    ("2.5", "[experiments.0.variants.1.value.int] Input should be a valid integer"),
])
def test_the_programme_refuses_a_winback_value_that_is_no_bonus(value, fix):
    source = PROGRAMME.replace('id = "b"\nvalue = 3', f'id = "b"\nvalue = {value}')
    assert source != PROGRAMME
    with pytest.raises(ConfigError) as info:
        parse_program(tomllib.loads(source), "shop.toml")
    assert "shop.toml: [experiments.0" in str(info.value) and fix in str(info.value), str(info.value)


def test_an_offer_names_its_experiment_and_variant_and_nothing_else():
    detail = {"bonus": 3, "expires": EXPIRES, "offer": "winback:2026-10-26"}
    check_detail(OFFER, "winback-offer", {**detail, "experiment": "winback-offer", "variant": "b"})
    for extra in ({"variant": "B b"}, {"experiment": ""}, {"arm": "b"}):
        with pytest.raises(ValueError):
            check_detail(OFFER, "winback-offer", {**detail, **extra})


def test_the_owners_page_explains_the_winback_target(web):
    prepare(web.hub.engine, web.hub.data_dir, "cafe", PROG)
    page = web.login("owner@cafe").get("/owner/experiments/").get_data(as_text=True)
    assert "(winback-offer: bonus winback, running)" in page
    assert "Varies the win-back offer: the bonus offered with the win-back message" in page
    assert "0 (no offer)" in page
    empty = web.login("owner@bakery").get("/owner/experiments/").get_data(as_text=True)
    assert "No A/B tests" in empty and '<code>"winback"</code> (win-back offer: the bonus offered' in empty
