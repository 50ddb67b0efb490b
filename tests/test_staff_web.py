"""The staff screen through Flask's test client: the PIN and its lockout, CSRF on every form,
the keypad, redeem and undo, the mirror and status, the till's API. The kiosk's clock is a
FakeClock (staffsite.py): lockouts and the undo window are passed by moving it."""

from __future__ import annotations

import io
import re
from decimal import Decimal

import pytest
from PIL import Image
from staffsite import PIN, POS_TOKEN, make_site, staff  # noqa: F401

from kiosk.common.errors import ConfigError
from kiosk.config import load_config
from kiosk.link.state import StatusBoard
from kiosk.rules.state import ADJUST, VISIT
from kiosk.web import create_staff_app
from kiosk.web.auth import PinGate, hash_pin, new_pos_token, token_digest
from kiosk.web.counter import parse_amount


def text(response) -> str:
    return response.get_data(as_text=True)


def flashes(page) -> list[str]:
    return re.findall(r'<div class="flash \w+" role="status">([^<]*)</div>', text(page).replace("&#39;", "'"))


# -- the PIN -------------------------------------------------------------------------------------
def test_every_page_but_the_pin_page_needs_the_pin(staff):
    client = staff.client()
    for path in ("/", "/live", "/display.png", "/device/frame.png"):
        assert client.get(path).headers["Location"] == "/login", path
    for path in ("/amount", "/redeem", "/undo", "/device/selftest", "/device/button", "/device/present"):
        assert staff.post(client, path, "/login").headers["Location"] == "/login", path
    assert list(staff.kiosk.recent) == []  # nothing happened


def test_five_wrong_pins_lock_the_screen_even_for_the_right_one(staff):
    client = staff.client()
    for tries_left in (4, 3, 2, 1):
        wrong = staff.post(client, "/login", "/login", pin="1111")
        assert wrong.status_code == 401 and f"{tries_left} more tries" in text(wrong)
    locked = staff.post(client, "/login", "/login", pin="1111")
    assert locked.status_code == 429 and "locked for 5 min 00 s" in text(locked)
    right = staff.post(client, "/login", "/login", pin=PIN)
    assert right.status_code == 429 and "session" not in right.headers.get("Set-Cookie", "staff")
    assert client.get("/").status_code == 302
    page = client.get("/login")
    assert page.status_code == 429 and 'id="unlock" disabled' in text(page)
    staff.clock.advance(299)
    assert staff.post(client, "/login", "/login", pin=PIN).status_code == 429
    staff.clock.advance(2)
    assert staff.post(client, "/login", "/login", pin=PIN).status_code == 302
    assert client.get("/").status_code == 200


def test_a_right_pin_resets_the_count(staff):
    client = staff.client()
    for _ in range(4):
        staff.post(client, "/login", "/login", pin="0000")
    staff.login(client)
    assert staff.post(staff.client(), "/login", "/login", pin="0000").status_code == 401  # 4 more, not locked


def test_the_gate_counts_wrong_pins_whoever_sends_them(staff):
    """One count for the kiosk: a guesser changing address (or cookie) gains nothing."""
    for _ in range(5):
        staff.post(staff.client(), "/login", "/login", pin="9999")
    assert staff.post(staff.client(), "/login", "/login", pin=PIN).status_code == 429


def test_lock_signs_out(staff):
    client = staff.login()
    staff.post(client, "/logout")
    assert client.get("/").headers["Location"] == "/login"


def test_pin_hash_and_pos_token_helpers():
    stored = hash_pin("123456")
    assert stored.startswith("$argon2id$")
    gate = PinGate(stored, 5, 300, lambda: 0.0)
    assert gate.check("123456").ok and not gate.check("654321").ok
    with pytest.raises(ConfigError, match="4 to 12 digits"):
        hash_pin("12a4")
    token, digest = new_pos_token()
    assert token_digest(token) == digest and len(token) > 40


# -- CSRF ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/amount", "/amount/cancel", "/redeem", "/undo", "/logout", "/device/selftest",
                                  "/device/button", "/device/present"])
def test_a_form_without_its_csrf_token_is_refused(staff, path):
    client = staff.login()
    refused = client.post(path, data={"amount": "5"})
    assert refused.status_code == 400 and "Form expired" in text(refused)
    forged = client.post(path, data={"amount": "5", "csrf_token": "forged"})
    assert forged.status_code == 400
    assert list(staff.kiosk.recent) == [] and staff.kiosk.session.pending_amount() is None


def test_the_pin_form_needs_its_csrf_token_too(staff):
    assert staff.client().post("/login", data={"pin": PIN}).status_code == 400


def test_every_form_on_the_page_carries_a_token(staff):
    page = text(staff.login().get("/"))
    forms = re.findall(r"<form[^>]*method=\"post\".*?</form>", page, re.S)
    assert len(forms) >= 8 and all('name="csrf_token"' in form for form in forms)


# -- the keypad, redeem, undo --------------------------------------------------------------------
def test_amount_typed_then_the_customer_scans(staff):
    client = staff.login()
    anna = staff.member("Anna Schmidt")
    held = staff.post(client, "/amount", amount="23,50")
    assert held.status_code == 302
    page = client.get("/")
    assert flashes(page) == ["23.50 held: the customer's next scan takes it (held for the next scan (30 s))."]
    assert "23.50 held for the next scan (30 s)" in text(page)
    staff.clock.advance(12)
    assert staff.scan(anna).earned == 230
    live = text(client.get("/live"))
    assert re.search(r"<td>Anna</td><td>stamped.*?<td class=\"num\">23.50</td><td class=\"num\">230 points \(\+230\)",
                     live), live
    assert "Anna · 230 points of 500" in live


def test_customer_scans_then_the_amount_is_typed(staff):
    client = staff.login()
    anna = staff.member("Anna")
    assert staff.scan(anna).outcome == "amount_required"
    assert "Anna scanned" not in text(client.get("/live"))  # the id is shown where no name is needed
    assert f"{anna.member} scanned: type the amount" in text(client.get("/live"))
    staff.post(client, "/amount", amount="47")
    assert flashes(client.get("/")) == ["Anna: +490 points, now 490/500."]


def test_a_malformed_amount_is_explained_and_nothing_held(staff):
    client = staff.login()
    for typed in ("", "12.5.0", "-3", "1e3", "12.3456", "abc"):
        staff.post(client, "/amount", amount=typed)
        assert flashes(client.get("/"))[0].startswith("Amount not taken: type the amount"), typed
    staff.post(client, "/amount", amount="100001")
    assert flashes(client.get("/")) == ["Amount not taken: the amount must be between 0 and 100000."]
    assert staff.kiosk.session.pending_amount() is None


def test_parse_amount():
    assert parse_amount(" 23,50 ") == Decimal("23.50") and parse_amount("7") == Decimal(7)
    with pytest.raises(ValueError):
        parse_amount("٣")  # only ASCII digits


def test_redeem_is_the_staff_button(staff):
    client = staff.login()
    anna = staff.member("Anna")
    staff.post(client, "/amount", amount="55")
    staff.scan(anna)
    staff.post(client, "/redeem")
    assert flashes(client.get("/")) == ["Anna redeemed 5 EUR voucher; 70 points left."]
    staff.post(client, "/redeem")
    assert flashes(client.get("/")) == ["Nothing to redeem for Anna: no reward is ready."]
    assert [r.result.image for r in staff.kiosk.recent][-2:] == ["button", "button"]


def test_undo_within_sixty_seconds_and_not_after(staff):
    client = staff.login()
    anna = staff.member("Anna")
    staff.post(client, "/amount", amount="23.50")
    staff.scan(anna)
    staff.clock.advance(40)
    assert "stamp of Anna, 20 s left" in text(client.get("/live"))
    staff.post(client, "/undo")
    assert flashes(client.get("/")) == ["Undone for Anna: -230 points, balance now 0."]
    kinds = [(e.kind, e.delta) for e in staff.kiosk.ledger.events(anna.member)]
    assert kinds[0] == (VISIT, 0) and kinds[-1] == (ADJUST, -230)
    staff.clock.advance(5)
    staff.post(client, "/amount", amount="10")
    staff.scan(anna)
    staff.clock.advance(60.5)
    assert "older than 60 s" in text(client.get("/live"))
    staff.post(client, "/undo")
    assert flashes(client.get("/")) == ["Nothing undone: the last stamp is older than 60 s; correct it at the hub."]
    assert staff.balance(anna) == 100


# -- the mirror and the status -------------------------------------------------------------------
def test_the_mirror_is_the_displays_image(staff):
    client = staff.login()
    anna = staff.member("Anna")
    staff.kiosk.enter_amount(Decimal("23.50"))
    staff.scan(anna)
    png = client.get("/display.png")
    assert png.mimetype == "image/png"
    mirrored = Image.open(io.BytesIO(png.data))
    assert mirrored.size == (128, 64)
    assert mirrored.convert("1").tobytes() == staff.kiosk.display.image.convert("1").tobytes()


def test_the_led_and_buzzer_and_status_are_shown(staff):
    client = staff.login()
    staff.scan(staff.member("Anna"))
    live = text(client.get("/live"))
    assert "last: rejected (LED" in live  # amount_required plays the "rejected" cue
    assert '<dd class="hub-standalone" id="hub">standalone</dd>' in live
    assert '<dd id="versions">kiosk.toml</dd>' in live


class _Bus:
    connected = True


class _Sender:
    acked_through_seq = 1


class _Link:
    """What the status reads of a running hub link."""

    def __init__(self) -> None:
        self.bus, self.sender, self.status = _Bus(), _Sender(), StatusBoard()


def test_status_of_a_kiosk_linked_to_its_hub(staff):
    link = _Link()
    link.status.set_applied({"merchant": 3, "keys": 2})
    link.status.set_error("config", "kiosk config v4 rejected: unknown field")
    app = create_staff_app(staff.kiosk, staff.config, link=link)
    client = app.test_client()
    staff.app = app
    staff.login(client)
    staff.kiosk.enter_amount(Decimal("2"))
    staff.scan(staff.member("Anna"))  # a visit and an earn entry: 2 events, 1 acknowledged
    live = text(client.get("/live"))
    assert '<dd class="hub-online" id="hub">online</dd>' in live
    assert '<dd id="outbox">1</dd>' in live
    assert '<dd id="versions">keys v2, merchant v3</dd>' in live
    assert "kiosk config v4 rejected: unknown field" in live
    link.bus.connected = False
    assert '<dd class="hub-offline" id="hub">offline</dd>' in text(client.get("/live"))


def test_the_page_has_security_headers_and_a_strict_cookie(staff):
    client = staff.client()
    page = client.get("/login")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_no_staff_section_no_staff_screen(staff, kiosk_dir):
    config = load_config(None, env={}, kiosk__data_dir=str(kiosk_dir))
    with pytest.raises(ConfigError, match=r"no \[staff\] section"):
        create_staff_app(staff.kiosk, config)


def test_the_staff_section_is_checked(tmp_path):
    path = tmp_path / "kiosk.toml"
    path.write_text('[staff]\npin_hash = "2468"\n')
    with pytest.raises(ConfigError, match="pin_hash"):
        load_config(path, env={})
    path.write_text(f'[staff]\npin_hash = "{hash_pin("2468")}"\nport = 70000\n')
    with pytest.raises(ConfigError, match="port"):
        load_config(path, env={})


# -- the till (POS) ------------------------------------------------------------------------------
def test_pos_purchase_repeated_receipt_is_credited_once(staff):
    client = staff.client()
    anna = staff.member("Anna")
    staff.scan(anna)
    first = staff.purchase(client, "30.00", "R-1001")
    assert first.status_code == 200
    assert (first.json["status"], first.json["earned"], first.json["member"]) == ("credited", 300, anna.member)
    for _ in range(3):  # the till did not hear the answer and retries
        repeat = staff.purchase(client, "30.00", "R-1001")
        assert repeat.status_code == 200 and repeat.json["status"] == "repeated"
        assert repeat.json["receipt"]["member"] == anna.member and repeat.json["receipt"]["outcome"] == "stamped"
    assert staff.balance(anna) == 300
    assert len([e for e in staff.kiosk.ledger.events(anna.member) if e.kind == VISIT]) == 1


def test_pos_amount_first_then_the_scan(staff):
    client = staff.client()
    anna = staff.member("Anna")
    pending = staff.purchase(client, 12.5, "R-2")
    assert pending.json["status"] == "pending" and pending.json["amount"] == "12.5"
    assert staff.scan(anna).earned == 120
    assert staff.purchase(client, 12.5, "R-2").json["receipt"]["member"] == anna.member


def test_pos_refusals(staff):
    client = staff.client()
    assert staff.purchase(client, "5", "R-1", token="pos_wrong").status_code == 401
    assert client.post("/api/v1/purchase", json={"amount": "5", "receipt_id": "R-1"}).status_code == 401
    bad = {"amount": "5", "receipt_id": "has space"}, {"amount": True, "receipt_id": "R"}, \
          {"amount": "1.2345", "receipt_id": "R"}, {"amount": "-2", "receipt_id": "R"}, {"receipt_id": "R"}, []
    for body in bad:
        refused = client.post("/api/v1/purchase", json=body, headers={"Authorization": f"Bearer {POS_TOKEN}"})
        assert refused.status_code == 400, body
    staff.purchase(client, "5", "R-1")
    other = staff.purchase(client, "6", "R-1")
    assert other.status_code == 409 and "with amount 5" in other.json["error"]
    assert staff.kiosk.ledger.receipt("R-1")["amount"] == "5"


def test_pos_api_is_off_without_a_token(kiosk_dir, clock, hub):
    site = make_site(kiosk_dir, clock, hub, pos_token_sha256=None)
    try:
        assert site.purchase(site.client(), "5", "R-1").status_code == 404
    finally:
        site.kiosk.close()


def test_install_commands_print_the_config_lines():
    from click.testing import CliRunner

    from kiosk.web.commands import staff as staff_commands

    runner = CliRunner()
    made = runner.invoke(staff_commands, ["hash-pin"], input="482913\n482913\n")
    assert made.exit_code == 0, made.output
    line = made.output.strip().splitlines()[-1]
    assert line.startswith('pin_hash = "$argon2id$') and "482913" not in line
    assert PinGate(line.split('"')[1], 5, 300, lambda: 0.0).check("482913").ok
    assert runner.invoke(staff_commands, ["hash-pin", "--pin", "12"]).exit_code == 2
    token = runner.invoke(staff_commands, ["pos-token"])
    digest = re.search(r'pos_token_sha256 = "([0-9a-f]{64})"', token.stdout).group(1)
    shown = re.search(r"(pos_\S+)", token.stderr).group(1)
    assert token_digest(shown) == digest
