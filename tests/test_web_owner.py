"""The owner's pages doing their jobs: a correction becomes a ledger event for the kiosks, the
programme editor checks, previews, publishes, diffs and rolls back, revocations and programmes
reach the broker, conflicts are settled with who and why, and API tokens work until revoked."""

from __future__ import annotations

import json
import tomllib
from datetime import timedelta

from buses import bus_factory  # noqa: F401
from hubdb import hub_url, pg_database  # noqa: F401
from webapp import NOW, _quick_password_hashes, broker, make_site, web  # noqa: F401

from cloud.accounts import create_token, tokens
from cloud.events import EventStore
from cloud.models import Conflict
from cloud.programs import preview
from kiosk.protocol import topics
from kiosk.protocol.ids import new_event_id
from kiosk.protocol.messages import EventBatch, LedgerEntry, WireEvent
from kiosk.rules import parse_program
from sqlalchemy.orm import Session

PROGRAMME = """name = "Cafe Rosa"
language = "en"

[earning]
type = "stamps"
per_visit = 1

[[rewards]]
id = "free-coffee"
name = "Free coffee"
cost = 10
"""


def member_of(card: str) -> str:
    return card.split(".")[3].lower()


def test_a_correction_is_a_ledger_event_with_its_author_that_the_kiosks_receive(web):
    member = member_of(web.join(name="Anna"))
    owner = web.login()
    page = f"/owner/members/{member}"
    done = web.post(owner, page, f"{page}/adjust", delta="3", reason="stamp card from paper")
    assert done.status_code == 302
    shown = owner.get(page).get_data(as_text=True)
    assert 'id="balance">3<' in shown and "stamp card from paper" not in shown  # the note stays in the ledger
    assert "correction by the shop (owner@cafe)" in shown
    entries, head = web.hub.events().ledger_after("cafe", 0)
    assert head == 1 and len(entries) == 1
    entry = LedgerEntry.model_validate(entries[0].model_dump())  # what a kiosk validates
    assert (entry.kind, entry.member, entry.delta, entry.kiosk) == ("adjust", member, 3, "hub")
    assert entry.detail == {"by": "owner@cafe", "note": "stamp card from paper"}


def test_a_correction_needs_a_reason_and_never_takes_the_balance_below_zero(web):
    member = member_of(web.join(name="Anna"))
    owner = web.login()
    page = f"/owner/members/{member}"
    for delta, reason, why in (("2", "", "give a reason"), ("-1", "typo", "below zero"),
                               ("many", "typo", "whole number")):
        web.post(owner, page, f"{page}/adjust", delta=delta, reason=reason)
        assert why in owner.get(page).get_data(as_text=True)  # the flash, shown once
    assert web.hub.events().ledger_after("cafe", 0) == ([], 0)


def test_staff_can_correct_but_not_revoke_erase_or_edit_the_programme(web):
    member = member_of(web.join(name="Anna"))
    staff = web.login("staff@cafe")
    page = f"/owner/members/{member}"
    assert web.post(staff, page, f"{page}/adjust", delta="1", reason="forgot to scan").status_code == 302
    token = web.csrf(staff, page)
    for action in ("revoke", "erase", "reissue"):
        assert staff.post(f"{page}/{action}", data={"csrf_token": token, "confirm": member}).status_code == 403
    assert staff.get("/owner/programme/").status_code == 403
    assert staff.get("/owner/tokens").status_code == 403


def test_the_programme_editor_names_the_field_and_keeps_the_draft(web):
    owner = web.login()
    bad = PROGRAMME.replace("cost = 10", "cost = -3")
    answer = web.post(owner, "/owner/programme/", source=bad, action="preview")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "rewards.0.cost" in page and "cost = -3" in page
    answer = web.post(owner, "/owner/programme/", source="name = ", action="publish")
    assert answer.status_code == 400 and "not valid TOML" in answer.get_data(as_text=True)
    assert web.login().get("/owner/programme/history").get_data(as_text=True).count("<tr>") == 2  # header + empty


def test_a_preview_replays_the_real_visits_under_the_draft(web):

    store = web.hub.events()
    visits(store, "cafe", [("m-a", 12), ("m-b", 4)])
    base = parse_program(tomllib.loads(PROGRAMME))
    cheaper = parse_program(tomllib.loads(PROGRAMME.replace("cost = 10", "cost = 4")))
    assert preview(web.hub.engine, "cafe", base, NOW).rewards_draft == 1   # 12 stamps: one coffee
    result = preview(web.hub.engine, "cafe", cheaper, NOW)
    assert (result.members, result.visits, result.rewards_draft) == (2, 16, 4)  # 12//4 + 4//4
    owner = web.login()
    page = web.post(owner, "/owner/programme/", source=PROGRAMME.replace("cost = 10", "cost = 4"),
                    action="preview").get_data(as_text=True)
    assert "2 members would have earned 4 rewards instead of" in page


def test_publish_history_diff_and_rollback(web, broker):
    """Each version is signed and retained on ``config/desired``; a rollback is a new version."""
    owner = web.login()
    assert web.post(owner, "/owner/programme/", source=PROGRAMME, action="publish").status_code == 302
    assert web.post(owner, "/owner/programme/", source=PROGRAMME.replace("cost = 10", "cost = 8"),
                    action="publish").status_code == 302
    history = owner.get("/owner/programme/history").get_data(as_text=True)
    assert "owner@cafe" in history and "(in force)" in history
    diff = owner.get("/owner/programme/2/diff").get_data(as_text=True)
    assert "-cost = 10" in diff and "+cost = 8" in diff
    token = web.csrf(owner, "/owner/programme/history")
    assert owner.post("/owner/programme/1/rollback", data={"csrf_token": token}).status_code == 302
    retained = json.loads(broker.broker.retained(topics.config_desired("cafe")))
    assert retained["version"] == 3 and retained["program"]["rewards"][0]["cost"] == 10
    assert retained["signature"]["sig"]
    edit = owner.get("/owner/programme/").get_data(as_text=True)
    assert "version 3" in edit and "cost = 10" in edit


def test_revocation_and_erasure_reach_the_kiosks_on_both_brokers(tmp_path, hub_url, bus_factory):
    site = make_site(tmp_path, hub_url, connect=lambda: bus_factory.connected())
    try:
        watcher = bus_factory.watcher(topics.keys("cafe"))
        anna = member_of(site.join(name="Anna"))
        ben = member_of(site.join(name="Ben"))
        owner = site.login()
        site.post(owner, f"/owner/members/{anna}", f"/owner/members/{anna}/revoke")
        site.post(owner, f"/owner/members/{ben}", f"/owner/members/{ben}/erase", confirm=ben)
        seen = [json.loads(watcher.messages.get(timeout=5).payload) for _ in range(2)]
        assert [d["version"] for d in seen] == [1, 2]
        assert len(seen[-1]["revoked_passes"]) == 2  # Anna's pass and Ben's
        assert "Kiosks told (keys version 2)" in owner.get("/owner/members/").get_data(as_text=True)
    finally:
        watcher.stop()
        site.hub.close()


def test_a_conflict_is_settled_with_who_and_why(web):
    with Session(web.hub.engine) as session, session.begin():
        session.add(Conflict(merchant_id="cafe", member_id="m-a", balance=-10, first_event_id="e1",
                             event_ids=["e1", "e2"], kiosks=["k1", "k2"]))
        session.add(Conflict(merchant_id="bakery", member_id="m-b", balance=-5, first_event_id="e3",
                             event_ids=["e3"], kiosks=["k3"]))
    owner = web.login()
    ids = {c.merchant_id: c.id for c in web.hub.events().conflicts()}
    assert web.post(owner, "/owner/fleet", f"/owner/conflicts/{ids['bakery']}/settle", note="x").status_code == 404
    web.post(owner, "/owner/fleet", f"/owner/conflicts/{ids['cafe']}/settle", note="paid for the 2nd coffee")
    page = owner.get("/owner/fleet").get_data(as_text=True)
    assert "by owner@cafe: paid for the 2nd coffee" in page
    row = next(c for c in web.hub.events().conflicts("cafe"))
    assert row.resolved_by == "owner@cafe" and row.resolved_at is not None


def test_the_fleet_page_shows_what_the_kiosks_report(web, broker):
    kiosk = broker.connected("cafe-k1")
    state = {"schema": "stempel.kiosk-state.v1", "status": "online", "boot_id": "b1", "software_version": "0.2.0",
             "outbox_depth": 3, "last_error": "camera: no frame for 5 s"}
    kiosk.publish(topics.state("cafe", "k1"), json.dumps(state).encode(), qos=1, retain=True).wait(5)
    kiosk.publish(topics.config_reported("cafe", "k1"), json.dumps(
        {"version": 2, "status": "rejected", "errors": ["[rewards.0.cost] must be at least 1"]}).encode(),
        qos=1, retain=True).wait(5)
    page = web.login().get("/owner/fleet").get_data(as_text=True)
    kiosk.stop()
    assert "k1" in page and "status-online" in page and "0.2.0" in page and "camera: no frame for 5 s" in page
    assert "v2 rejected: [rewards.0.cost] must be at least 1" in page


def test_an_api_token_works_until_revoked(web):
    owner = web.login()
    page = web.post(owner, "/owner/tokens", name="till").get_data(as_text=True)
    token = page.split('id="new-token"')[1].split("<code>")[1].split("</code>")[0]
    member = member_of(web.join(name="Anna"))
    client = web.client()
    auth = {"Authorization": f"Bearer {token}"}
    body = client.get(f"/api/v1/members/{member}", headers=auth).get_json()
    assert body["name"] == "Anna" and body["balance"] == 0 and body["unit"] == "stamps"
    token_id = tokens(web.hub.engine, "cafe")[0].id
    web.post(owner, "/owner/tokens", f"/owner/tokens/{token_id}/revoke")
    assert client.get(f"/api/v1/members/{member}", headers=auth).status_code == 401


def visits(store: EventStore, merchant: str, counts: list[tuple[str, int]]) -> None:
    """Store *counts* daily visits per member through the hub's ingest, as a kiosk sends them."""
    seq = 0
    events = []
    for member, n in counts:
        for day in range(n):
            seq += 1
            at = NOW - timedelta(days=60 - day, hours=seq % 5)
            events.append(WireEvent(event_id=new_event_id(), kiosk_seq=seq, occurred_at=at, mono_ns=seq,
                                    boot_id="b", kind="visit", member=member, rule="visit"))
            seq += 1
            events.append(WireEvent(event_id=new_event_id(), kiosk_seq=seq, occurred_at=at, mono_ns=seq,
                                    boot_id="b", kind="earn", member=member, delta=1, rule="base-rate"))
    payload = EventBatch(ledger_id="a" * 32, events=events).model_dump_json(by_alias=True).encode()
    stored = store.ingest(topics.events(merchant, "k1"), payload)
    assert stored.new == len(events), stored


def test_the_dashboard_shows_and_exports_every_figure(web):
    visits(web.hub.events(), "cafe", [("m-a", 12), ("m-b", 4)])  # 16 visits within the last 60 days
    owner = web.login()
    page = owner.get("/owner/?days=90").get_data(as_text=True)
    assert '16</div><div class="l">Visits' in page and "CRR = (E" in page
    assert page.count("<svg") >= 2 and "Customers who came back" in page
    from cloud.metrics.dashboard import CSV_PARTS

    for part in CSV_PARTS:
        answer = owner.get(f"/owner/export/{part}.csv?days=90")
        assert answer.status_code == 200 and answer.mimetype == "text/csv", part
        assert answer.get_data(as_text=True).count("\r\n") >= 1, part
    figures = owner.get("/owner/export/figures.csv?days=90").get_data(as_text=True)
    assert "visits,Visits,16," in figures
    assert owner.get("/owner/export/passwords.csv").status_code == 404
    assert owner.get("/owner/?start=2026-11-10&end=2026-11-01").status_code == 400
    custom = owner.get("/owner/?start=2026-09-01&end=2026-11-20").get_data(as_text=True)
    assert "01 Sep 2026 – 20 Nov 2026" in custom


def test_the_api_gives_the_dashboards_figures(web):
    visits(web.hub.events(), "cafe", [("m-a", 3)])
    token = create_token(web.hub.engine, "cafe", "export", "owner@cafe")
    body = web.client().get("/api/v1/metrics?days=90", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert body["figures"]["visits"] == 3 and body["figures"]["active_members"] == 1
    assert web.client().get("/api/v1/metrics?days=5", headers={"Authorization": f"Bearer {token}"}).status_code == 400


def test_the_table_card_carries_the_join_qr_of_the_shop_or_a_kiosk(web):
    from kiosk.protocol import qr

    owner = web.login()
    page = owner.get("/owner/table-card?kiosk=counter-1").get_data(as_text=True)
    url = "http://localhost/j/cafe.counter-1"
    assert url in page and qr.make_qr(url, warn=False).svg_inline(scale=10, border=4, omitsize=True) in page
    assert owner.get("/owner/table-card?kiosk=../x").status_code == 404


def test_search_takes_the_query_literally(web):
    web.join(name="Anna", email="anna_b@example.com")
    web.join(name="Ben", email="ben@example.com")
    owner = web.login()
    assert "anna_b@example.com" in owner.get("/owner/members/?q=a_b").get_data(as_text=True)
    for wildcard in ("%", "_", "\\"):
        page = owner.get(f"/owner/members/?q={wildcard}").get_data(as_text=True)
        assert "Ben" not in page, wildcard  # not "match anything"
    assert "printable" in owner.get("/owner/members/?q=%01").get_data(as_text=True)


def test_the_messages_page_shows_what_the_automations_did_for_this_shop_only(web):
    from cloud.models import Message

    when = dict(not_before=NOW, expires_at=NOW + timedelta(days=1), attempts=1)
    with Session(web.hub.engine) as session, session.begin():
        session.add(Message(merchant_id="cafe", member_id="m-a", trigger="winback", occasion="2026-11-01",
                            channel="email", status="sent", **when))
        session.add(Message(merchant_id="cafe", member_id="m-b", trigger="winback", occasion="2026-11-02",
                            channel="webhook", status="failed", last_error="the webhook answered 400 Bad Request",
                            **when))
        session.add(Message(merchant_id="bakery", member_id="m-c", trigger="welcome", occasion="join",
                            channel="email", status="sent", **when))
    page = web.login().get("/owner/messages").get_data(as_text=True)
    assert "winback" in page and "the webhook answered 400 Bad Request" in page
    assert "welcome" not in page.split('id="by-trigger"')[1].split("</table>")[0]  # the bakery's message
    assert web.client().get("/owner/messages").status_code == 302
