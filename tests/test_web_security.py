"""The hub's web, attacked: sign-in on every owner page, one merchant's owner against another's
data, forms without CSRF, guessing passwords, flooding the join form, cards that show nothing
but their member, erased members gone from every page and export."""

from __future__ import annotations

import json
import re

import pytest
from hubdb import hub_url, pg_database  # noqa: F401
from webapp import PASSWORD, _quick_password_hashes, broker, make_site, web  # noqa: F401

from cloud.accounts import create_token
from cloud.web.owner import LOGIN_PER_USER


def owner_paths(app) -> list[str]:
    """Every owner page (GET routes under /owner/ but the login), with ids filled in."""
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/owner") or rule.endpoint == "owner.login" or "GET" not in rule.methods:
            continue
        out.append(re.sub(r"<(?:int:)?(\w+)>", lambda m: "1" if "int" in m.group(0) else "mx", rule.rule))
    return out


def test_every_owner_page_sends_a_stranger_to_the_login(web):
    client = web.client()
    paths = owner_paths(web.app)
    assert len(paths) >= 9  # dashboard, csv, members, member, export, programme (+history, diff), fleet, tokens
    for path in paths:
        answer = client.get(path)
        assert answer.status_code == 302, path
        assert "/owner/login" in answer.headers["Location"], path
    posts = [r.rule for r in web.app.url_map.iter_rules() if r.rule.startswith("/owner") and "POST" in r.methods
             and r.endpoint != "owner.login"]
    for rule in posts:  # a forged POST without a session is refused before anything happens
        path = re.sub(r"<(?:int:)?(\w+)>", "1", rule)
        assert client.post(path, data={}).status_code in (302, 400), path


def test_an_owner_sees_only_their_own_merchant(web):
    card = web.join(name="Anna", code="cafe")
    member = card.split(".")[3].lower()
    bakery = web.login("owner@bakery")
    cafe = web.login("owner@cafe")
    assert cafe.get(f"/owner/members/{member}").status_code == 200
    for path in (f"/owner/members/{member}", f"/owner/members/{member}/export.json"):
        assert bakery.get(path).status_code == 404, path
    page = bakery.get("/owner/members/?q=Ann").get_data(as_text=True)
    assert "Anna" not in page and member not in page and "No members found" in page
    token = web.csrf(bakery, "/owner/members/")
    for action in ("adjust", "revoke", "reissue", "erase"):
        answer = bakery.post(f"/owner/members/{member}/{action}", data={"csrf_token": token, "delta": "5",
                                                                          "reason": "x", "confirm": member})
        assert answer.status_code == 404, action
    assert "Anna" in cafe.get(f"/owner/members/{member}").get_data(as_text=True)  # nothing happened to her


def test_the_api_answers_a_token_for_its_own_merchant_only(web):
    member = web.join(name="Anna", code="cafe").split(".")[3].lower()
    bakery_token = create_token(web.hub.engine, "bakery", "till", "owner@bakery")
    cafe_token = create_token(web.hub.engine, "cafe", "till", "owner@cafe")
    client = web.client()
    assert client.get("/api/v1/members").status_code == 401
    assert client.get("/api/v1/members", headers={"Authorization": "Bearer stp_guess"}).status_code == 401
    as_bakery = {"Authorization": f"Bearer {bakery_token}"}
    assert client.get(f"/api/v1/members/{member}", headers=as_bakery).status_code == 404
    assert client.get("/api/v1/members", headers=as_bakery).get_json() == {"members": []}
    mine = client.get(f"/api/v1/members/{member}", headers={"Authorization": f"Bearer {cafe_token}"})
    assert mine.status_code == 200 and mine.get_json()["name"] == "Anna"


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(web):
    client = web.client()
    assert client.post("/j/cafe", data={"name": "Eve", "program": "yes"}).status_code == 400
    assert client.post("/owner/login", data={"login": "owner@cafe", "password": PASSWORD}).status_code == 400
    cafe = web.login()
    assert cafe.post("/owner/tokens", data={"name": "sneaky"}).status_code == 400
    assert "sneaky" not in cafe.get("/owner/tokens").get_data(as_text=True)
    assert "Eve" not in cafe.get("/owner/members/").get_data(as_text=True)


def test_guessing_a_password_is_slowed_down_and_the_right_one_then_waits_too(web):
    client = web.client()
    for _ in range(LOGIN_PER_USER[0]):
        assert web.post(client, "/owner/login", login="owner@cafe", password="wrong guess").status_code == 401
    assert web.post(client, "/owner/login", login="owner@cafe", password=PASSWORD).status_code == 429
    web.advance(seconds=LOGIN_PER_USER[1])
    assert web.post(client, "/owner/login", login="owner@cafe", password=PASSWORD).status_code == 302


def test_a_login_that_does_not_exist_looks_like_a_wrong_password(web):
    client = web.client()
    unknown = web.post(client, "/owner/login", login="nobody@cafe", password="whatever123")
    wrong = web.post(client, "/owner/login", login="owner@cafe", password="whatever123")
    assert unknown.status_code == wrong.status_code == 401
    # the same page; only the CSRF token differs when the two answers straddle a second (it is timed)
    masked = [re.sub(r'name="csrf_token" value="[^"]+"', 'name="csrf_token" value=""', r.get_data(as_text=True))
              for r in (unknown, wrong)]
    assert masked[0] == masked[1] and 'name="csrf_token" value=""' in masked[0]


def test_the_join_form_is_rate_limited_per_address(web):
    client = web.client()
    allowed = web.hub.config.web.joins_per_ip
    for i in range(allowed):
        web.join(client, name=f"Guest {i}")
    flooded = web.post(client, "/j/cafe", name="One more", program="yes")
    assert flooded.status_code == 429
    # the shop keeps exactly the members that got through
    page = web.login().get("/owner/members/").get_data(as_text=True)
    assert page.count("<td>Guest ") == allowed and "One more" not in page


def test_the_join_form_is_rate_limited_per_shop_across_addresses(tmp_path, broker):
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'hub.sqlite3'}", connect=broker.connected,
                     web__joins_per_shop=3)
    try:
        for i in range(3):
            client = site.client()
            client.environ_base["REMOTE_ADDR"] = f"10.0.0.{i}"
            site.join(client, name=f"Guest {i}")
        client = site.client()
        client.environ_base["REMOTE_ADDR"] = "10.0.0.99"
        assert site.post(client, "/j/cafe", name="Flood", program="yes").status_code == 429
        client.environ_base["REMOTE_ADDR"] = "10.0.0.98"
        assert site.join(client, name="Bakery customer", code="bakery")  # another shop's limit is its own
    finally:
        site.hub.close()


def test_joining_never_tells_whether_someone_is_a_member_already(web):
    first = web.post(web.client(), "/j/cafe", name="Anna", email="anna@example.com", program="yes")
    again = web.post(web.client(), "/j/cafe", name="Anna", email="anna@example.com", program="yes")
    assert first.status_code == again.status_code == 303
    assert first.headers["Location"] != again.headers["Location"]  # a card of her own each time


def test_a_card_shows_its_member_and_nobody_else(web):
    anna = web.join(name="Anna")
    web.join(name="Ben")
    page = web.client().get(anna).get_data(as_text=True)
    assert "Anna" in page and "Ben" not in page
    forged = anna[:-6] + ("1" if anna[-6] != "1" else "2") + anna[-5:]
    assert web.client().get(forged).status_code == 404
    assert web.client().get("/P/2.XXXX.CAFE.M123.B.123").status_code == 404
    other_shop = anna.replace(".CAFE.", ".BAKERY.")
    assert web.client().get(other_shop).status_code == 404


def test_an_erased_member_is_gone_from_every_page_and_export(web):
    card = web.join(name="Zelda", email="zelda@example.com", birthday="1990-02-01")
    member = card.split(".")[3].lower()
    owner = web.login()
    export = json.loads(owner.get(f"/owner/members/{member}/export.json").get_data(as_text=True))
    assert export["member"]["email"] == "zelda@example.com"
    done = web.post(owner, f"/owner/members/{member}", f"/owner/members/{member}/erase", confirm=member)
    assert done.status_code == 302
    pages = [owner.get("/owner/members/").get_data(as_text=True),
             owner.get("/owner/members/?q=Zeld").get_data(as_text=True),
             owner.get("/owner/members/?q=zelda@example").get_data(as_text=True),
             owner.get(f"/owner/members/{member}").get_data(as_text=True),
             owner.get(f"/owner/members/{member}/export.json").get_data(as_text=True),
             web.client().get(card).get_data(as_text=True)]
    for page in pages:
        assert "Zelda" not in page and "zelda@example.com" not in page and "1990-02-01" not in page
    assert web.client().get(card).status_code == 410
    assert web.client().get(card + "/data.json").status_code == 410


@pytest.mark.parametrize("path", ["/j/UPPER", "/j/a..b", "/j/nope", "/P/..%2F..", "/P/" + "9" * 400])
def test_hostile_urls_are_a_plain_404(web, path):
    assert web.client().get(path).status_code == 404


def test_the_session_cookie_is_secure_httponly_and_samesite(tmp_path, broker):
    from webapp import BASE

    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'hub.sqlite3'}", connect=broker.connected,
                     web__secure_cookies=True)
    try:
        client = site.app.test_client()
        client.environ_base["wsgi.url_scheme"] = "https"
        page = client.get("/owner/login", base_url=BASE)
        cookie = page.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert page.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in \
            page.headers["Content-Security-Policy"]
    finally:
        site.hub.close()
