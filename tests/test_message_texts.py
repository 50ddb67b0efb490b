"""The owner's words for the automated messages (issue 11): checked when saved; sent instead of
the built-in words by e-mail (a real aiosmtpd), in the webhook's body and on the card's inbox; an
A/B test's message variant per arm; the owner's pages: a preview with a member's real card, a test
to the owner's own address, back to the built-in words, this merchant's owners only, CSRF.
SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from hubdb import hub_url, pg_database  # noqa: F401  (fixtures)
from smtpsink import smtp_sink  # noqa: F401  (fixture)
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_automations import NOW, SHOP, Shop
from test_automations_webhook import SECRET, Receiver, hook_for
from webapp import NOW as WEB_NOW, make_site, _quick_password_hashes  # noqa: F401  (fixture)

from cloud.automations import templates, texts
from cloud.automations.mailer import SmtpChannel
from cloud.automations.worker import Worker
from cloud.config import AutomationsSection
from cloud.link import documents
from cloud.models import HubEvent, MessageText
from cloud.passes import enrol
from cloud.programs import program_of
from cloud.web import create_app
from cloud.web.secret import secret_key
from kiosk.common.errors import ConfigError
from kiosk.rules.experiments import assign
from kiosk.rules.program import parse_program

WELCOME_TEST = {"id": "welcome-words", "name": "Warm or plain welcome", "varies": "message", "target": "welcome",
                "started": "2026-11-01",
                "variants": [{"id": "a", "value": "welcome"}, {"id": "b", "value": "welcome-warm"}]}
BIRTHDAY_TEST = {"id": "birthday-words", "name": "Short birthday wishes", "varies": "message",
                 "target": "birthday", "started": "2026-11-01",
                 "variants": [{"id": "a", "value": "birthday"}, {"id": "b", "value": "birthday-short"}]}
PROGRAM = parse_program({
    "name": "Cafe Rosa", "timezone": "Europe/Berlin", "language": "en",
    "rewards": [{"id": "free-coffee", "name": "Free coffee", "cost": 10}],
    "experiments": [WELCOME_TEST, BIRTHDAY_TEST]}, "test")
EXPERIMENT = PROGRAM.experiments[0]


def _check(key: str, language: str, subject: str, body: str):
    return texts.check_text(texts.check_key(key), language, subject, body, PROGRAM)


# --- what the owner may write -----------------------------------------------------------------------


@pytest.mark.parametrize("key, language, subject, body, error", [
    ("welcome", "en", "Hi", "Hello $frist_name", "the English message uses $frist_name, which Welcome messages do "
                                                  "not have: use $balance, $card_url, $first_name,"),
    ("welcome", "en", "Hi $tier", "Hello", "the English subject uses $tier, which Welcome messages do not have"),
    ("winback", "de", "Hallo", "Bonus: $bonus", "the German message uses $bonus"),
    ("welcome-warm", "en", "Hi", "Until $expires", "the English message uses $expires"),
    ("welcome", "en", "Hi", "Only $5 today", "a '$' that is no placeholder: write $$ for a dollar sign"),
    ("welcome", "de", "Hallo", "", "the German words need both a subject and a message; to use the built-in words"),
    ("welcome", "en", "Two\nlines", "Hello", "the English subject must be one line of at most 150 characters"),
    ("welcome", "en", "x" * 151, "Hello", "(it has 151): shorten it"),
    ("welcome", "en", "Hi", "x" * 5001, "the English message is 5001 characters long: shorten it to at most 5000"),
    ("welcome", "fr", "Salut", "Bonjour", "language 'fr': write the words in one of de, en"),
    ("Win Back!", "en", "Hi", "Hello", "message key 'Win Back!': use a trigger (welcome, birthday"),
])
def test_the_owners_words_are_checked_naming_the_field_and_the_fix(key, language, subject, body, error):
    with pytest.raises(ConfigError, match=re.escape(error)):
        _check(key, language, subject, body)


@pytest.mark.parametrize("key, body", [
    ("tier_loss", "Your $tier status runs out on $tier_until"),
    ("tier_reached", "You are $tier now"),
    ("reward_expiry", "Your $expiring expires on $expires"),
    ("birthday-short", "Happy birthday, ${first_name}: $balance $unit"),  # a variant of the birthday's
    ("welcome", "Coffee for $$3, $first_name: $remaining more $unit to $reward ($balance now) $card_url"),
])
def test_each_trigger_offers_the_placeholders_its_messages_have(key, body):
    assert _check(key, "en", " Hello $first_name ", body + "\r\n") == texts.Text("Hello $first_name", body)


@pytest.mark.parametrize("trigger, language", sorted(templates.TEXTS))
def test_every_built_in_text_passes_the_owners_check(trigger, language):
    """The page fills the form with the built-in words: saving them unchanged must work."""
    built_in = templates.TEXTS[(trigger, language)]
    assert _check(trigger, language, built_in.subject, built_in.body) == built_in


# --- the worker sends them ---------------------------------------------------------------------------


@pytest.fixture
def shop(tmp_path, hub_url, smtp_sink):
    s = Shop(tmp_path, hub_url, smtp_sink)
    yield s
    s.hub.close()


def _save(shop: Shop, key: str, language: str, subject: str, body: str) -> None:
    texts.save(shop.hub.engine, SHOP, key, language, subject, body, program_of(shop.hub.engine, SHOP),
               "owner@cafe", NOW)


def _join(shop: Shop, name: str, language: str | None = None) -> tuple[str, str]:
    """A member who joined yesterday (a welcome is due) with consent; (id, card path)."""
    joined = NOW - timedelta(days=1)
    issued = enrol(shop.hub.engine, shop.hub.keys, SHOP, name, {
        "email": f"{name.lower()}@example.org", "created_at": joined, "consent_program_at": joined,
        "consent_marketing_at": joined, "language": language})
    return issued.member, "/P/" + issued.url.split("/P/")[1]


def _plain(mail) -> str:
    return mail.get_body(("plain",)).get_content()


def test_the_owners_words_replace_the_built_in_ones_in_the_members_language(shop):
    _save(shop, "welcome", "de", "Schön, dass du da bist, $first_name",
          "Hallo $first_name,\n\ndu hast $balance $unit bei $shop.\n\nDeine Karte: $card_url")
    _join(shop, "Greta", language="de")
    _join(shop, "Anna")

    done = shop.worker().sweep()

    assert done["sent"] == 2
    [german], [english] = shop.sink.to("greta@example.org"), shop.sink.to("anna@example.org")
    assert german["Subject"] == "Schön, dass du da bist, Greta" and german["Content-Language"] == "de"
    text = _plain(german)
    assert text.startswith("Hallo Greta,\n\ndu hast 0 Stempel bei Cafe Rosa.\n\nDeine Karte: HTTPS://HUB.EXAMPLE/P/")
    assert "Mit einem Klick abmelden: https://hub.example/u/" in text  # the footer is still added
    assert german["List-Unsubscribe"][1:-1] in text
    assert "<p>Hallo Greta,</p>" in german.get_body(("html",)).get_content()
    assert english["Subject"] == "Welcome to Cafe Rosa, Anna!"  # no English words written: the built-in ones


def test_the_webhook_and_the_cards_inbox_carry_the_same_words(shop):
    _save(shop, "welcome", "en", "Good to have you, $first_name", "Hello $first_name,\n\nsee you soon at $shop.")
    anna, card = _join(shop, "Anna")
    receiver = Receiver(SECRET, shop.now, [200])
    try:
        worker = Worker(shop.hub.engine, shop.hub.keys, secret_key(shop.hub.data_dir),
                        AutomationsSection(channels=["email", "webhook", "inbox"]), SmtpChannel.from_config(shop.smtp),
                        shop.smtp.sender, clock=shop.now, worker_id="w1", webhook=hook_for(shop, receiver))
        assert worker.sweep()["sent"] == 3
        [hook] = receiver.accepted()
    finally:
        receiver.stop()
    [mail] = shop.sink.to("anna@example.org")
    assert mail["Subject"] == hook.json["subject"] == "Good to have you, Anna"
    assert hook.json["text"].startswith("Hello Anna,\n\nsee you soon at Cafe Rosa.\n\n--\n")
    page = create_app(shop.hub, clock=shop.now, publisher=object()).test_client().get(card)
    assert page.status_code == 200
    inbox = page.get_data(as_text=True).split('id="inbox"')[1]
    assert "<strong>Good to have you, Anna</strong>" in inbox and "<p>see you soon at Cafe Rosa.</p>" in inbox


def test_an_ab_test_gives_each_arm_its_words_with_the_triggers_as_fallback(shop):
    documents.prepare(shop.hub.engine, shop.hub.data_dir, SHOP, PROGRAM)
    _save(shop, "welcome", "en", "Plain welcome, $first_name", "Hello $first_name.")
    _save(shop, "welcome-warm", "en", "A warm welcome, $first_name", "Dear $first_name, so glad you came to $shop!")
    _save(shop, "welcome", "de", "Willkommen, $first_name", "Hallo $first_name.")  # no German 'welcome-warm'
    arms: dict[str, list[str]] = {"a": [], "b": []}
    german_b = None
    for i in range(60):  # members until each arm has two English ones and arm b a German one
        if min(len(v) for v in arms.values()) >= 2 and german_b:
            break
        german = german_b is None and i % 2 == 1
        name = f"Member{i}"
        member, _ = _join(shop, name, language="de" if german else None)
        arm = assign(EXPERIMENT, member)
        if german and arm == "b":
            german_b = name
        elif not german:
            arms[arm].append(name)
    assert min(len(v) for v in arms.values()) >= 2 and german_b, arms

    shop.worker().sweep()

    for name in arms["a"]:
        [mail] = shop.sink.to(f"{name.lower()}@example.org")
        assert mail["Subject"] == f"Plain welcome, {name}"
    for name in arms["b"]:
        [mail] = shop.sink.to(f"{name.lower()}@example.org")
        assert mail["Subject"] == f"A warm welcome, {name}"
        assert _plain(mail).startswith(f"Dear {name}, so glad you came to Cafe Rosa!\n\n--\n")
    [mail] = shop.sink.to(f"{german_b.lower()}@example.org")
    assert mail["Subject"] == f"Willkommen, {german_b}"  # the variant has no German words: the trigger's


def test_words_for_follows_variant_then_trigger_then_built_in(shop):
    documents.prepare(shop.hub.engine, shop.hub.data_dir, SHOP, PROGRAM)
    engine = shop.hub.engine
    member = next(m for m in (_join(shop, f"M{i}")[0] for i in range(40)) if assign(EXPERIMENT, m) == "b")
    before = NOW.replace(year=2026, month=10, day=30)  # the test had not started

    assert texts.words_for(engine, PROGRAM, SHOP, member, "welcome", "en", NOW) is None  # built-in
    _save(shop, "welcome", "en", "Plain, $first_name", "Hello.")
    assert texts.words_for(engine, PROGRAM, SHOP, member, "welcome", "en", NOW).subject == "Plain, $first_name"
    _save(shop, "welcome-warm", "en", "Warm, $first_name", "Hello!")
    with Session(engine) as session:  # a session works as well as the engine
        assert texts.words_for(session, PROGRAM, SHOP, member, "welcome", "en", NOW).subject == "Warm, $first_name"
    assert texts.words_for(engine, PROGRAM, SHOP, member, "welcome", "en", before).subject == "Plain, $first_name"
    assert texts.words_for(engine, PROGRAM, "bakery", member, "welcome", "en", NOW) is None  # another merchant's
    assert texts.reset(engine, SHOP, "welcome-warm", "en") and not texts.reset(engine, SHOP, "welcome-warm", "en")
    assert texts.words_for(engine, PROGRAM, SHOP, member, "welcome", "en", NOW).subject == "Plain, $first_name"


# --- the owner's pages -------------------------------------------------------------------------------


class Members:
    """Cafe Rosa's members with stamps written into the hub's ledger."""

    def __init__(self, site) -> None:
        self.engine, self.keys, self.seq = site.hub.engine, site.hub.keys, 0

    def add(self, name: str, stamps: int = 0, language: str | None = None, merchant: str = "cafe") -> str:
        joined = WEB_NOW - timedelta(days=400)
        member = enrol(self.engine, self.keys, merchant, name, {
            "email": f"{name.split()[0].lower()}@example.org", "created_at": joined, "consent_program_at": joined,
            "consent_marketing_at": joined, "language": language}).member
        if stamps:
            self.seq += 1
            at = WEB_NOW - timedelta(days=1)
            with Session(self.engine) as session, session.begin():
                session.add(HubEvent(event_id=str(uuid.uuid4()), merchant_id=merchant, kiosk_id="k1", ledger_id="",
                                     kiosk_seq=self.seq, hub_seq=self.seq, kind="earn", member_id=member,
                                     delta=stamps, rule="earn", detail={}, occurred_at=at, mono_ns=self.seq,
                                     boot_id="b", received_at=at))
        return member


@pytest.fixture
def site(tmp_path, hub_url, smtp_sink):
    made = make_site(tmp_path, hub_url, smtp__host=smtp_sink.host, smtp__port=smtp_sink.port, smtp__starttls=False,
                     smtp__sender="Stempel <stempel@hub.example>")
    made.sink = smtp_sink
    documents.prepare(made.hub.engine, made.hub.data_dir, "cafe", PROGRAM)
    made.members = Members(made)
    yield made
    made.hub.close()


PAGE = "/owner/messages/texts/birthday"
WORDS = {"subject": "Happy birthday from $shop, $first_name",
         "body": "Hello $first_name,\n\nyou have $balance $unit.\n\nYour card: $card_url"}


def _rows(site) -> list[tuple[str, str, str, str]]:
    with Session(site.hub.engine) as session:
        return [(r.merchant_id, r.key, r.language, r.subject) for r in
                session.scalars(select(MessageText).order_by(MessageText.merchant_id, MessageText.key))]


def test_the_owner_writes_previews_with_a_real_card_and_sends_a_test_to_themselves(site):
    regula = site.members.add("Regula Stein", stamps=9)
    greta = site.members.add("Greta", stamps=4, language="de")
    owner = site.login()
    listing = owner.get("/owner/messages/texts/").get_data(as_text=True)
    assert 'id="text-birthday"' in listing and "your words" not in listing
    assert "welcome-words" in listing.split('id="text-welcome-warm"')[1].split("</tr>")[0]  # the variant key
    assert 'id="texts-link"' in owner.get("/owner/messages").get_data(as_text=True)

    done = site.post(owner, PAGE, f"{PAGE}/en", **WORDS)
    assert done.status_code == 302
    assert _rows(site) == [("cafe", "birthday", "en", WORDS["subject"])]
    listing = owner.get("/owner/messages/texts/").get_data(as_text=True)
    assert "your words" in listing.split('id="text-birthday"')[1].split("</tr>")[0]

    page = owner.get(f"{PAGE}?member={regula}").get_data(as_text=True)
    preview = page.split('id="preview"')[1]
    assert "Happy birthday from Cafe Rosa, Regula" in preview
    assert "Hello Regula,\n\nyou have 9 stamps." in preview  # her real card
    assert "HTTPS://HUB.EXAMPLE/P/" in preview and "https://hub.example/u/" in preview  # card, unsubscribe
    german = owner.get(f"{PAGE}?member={greta}").get_data(as_text=True).split('id="preview"')[1]
    assert "Alles Gute zum Geburtstag, Greta!" in german and "Du hast 4 Stempel" in german  # built-in German
    assert "No member" in owner.get(f"{PAGE}?member=nobody").get_data(as_text=True)

    done = site.post(owner, f"{PAGE}?member={regula}", f"{PAGE}/test", member=regula)
    assert done.status_code == 302
    [test] = site.sink.to("owner@cafe")
    assert test["Subject"] == "[Test] Happy birthday from Cafe Rosa, Regula"
    text = _plain(test)
    assert text.startswith("Hello Regula,\n\nyou have 9 stamps.") and "Unsubscribe with one click:" in text
    assert site.sink.to("regula@example.org") == [] and len(site.sink.messages()) == 1  # the owner only


def test_a_mistake_is_shown_with_the_words_kept_and_nothing_is_saved(site):
    owner = site.login()
    done = site.post(owner, PAGE, f"{PAGE}/de", subject="Alles Gute, $frist_name", body="Hallo!")
    page = done.get_data(as_text=True)
    assert done.status_code == 200
    assert "the German subject uses $frist_name, which Birthday messages do not have" in page
    assert 'value="Alles Gute, $frist_name"' in page  # what the owner typed, to correct it
    assert _rows(site) == []


def test_back_to_the_built_in_words_removes_the_row(site):
    owner = site.login()
    site.post(owner, PAGE, f"{PAGE}/en", **WORDS)
    site.post(owner, PAGE, f"{PAGE}/de", subject="Alles Gute, $first_name", body="Hallo $first_name!")
    assert 'id="reset-en"' in owner.get(PAGE).get_data(as_text=True)

    done = site.post(owner, PAGE, f"{PAGE}/en/reset")

    assert done.status_code == 302
    assert _rows(site) == [("cafe", "birthday", "de", "Alles Gute, $first_name")]
    page = owner.get(PAGE).get_data(as_text=True)
    assert 'id="reset-en"' not in page and 'value="Happy birthday, $first_name!"' in page  # the built-in again


def test_staff_and_another_merchants_owner_are_refused(site):
    regula = site.members.add("Regula", stamps=9)
    owner = site.login()
    site.post(owner, PAGE, f"{PAGE}/en", **WORDS)

    staff = site.login("staff@cafe")
    token = site.csrf(staff, "/owner/")
    for path in ("/owner/messages/texts/", PAGE):
        assert staff.get(path).status_code == 403
    for path in (f"{PAGE}/en", f"{PAGE}/en/reset", f"{PAGE}/test"):
        assert staff.post(path, data={"csrf_token": token, "member": regula, **WORDS}).status_code == 403
    assert 'id="texts-link"' not in staff.get("/owner/messages").get_data(as_text=True)
    assert site.client().get(PAGE).status_code == 302  # to the login page

    bakery = site.login("owner@bakery")
    page = bakery.get(PAGE).get_data(as_text=True)
    assert WORDS["subject"] not in page and "your words" not in page
    assert "No member" in bakery.get(f"{PAGE}?member={regula}").get_data(as_text=True)
    assert site.post(bakery, PAGE, f"{PAGE}/test", member=regula).status_code == 302
    assert site.post(bakery, PAGE, f"{PAGE}/en/reset").status_code == 302
    assert bakery.get("/owner/messages/texts/welcome-warm").status_code == 404  # not in the bakery's programme
    assert site.sink.messages() == []
    assert _rows(site) == [("cafe", "birthday", "en", WORDS["subject"])]


def test_a_form_without_the_csrf_token_is_refused_and_nothing_changes(site):
    regula = site.members.add("Regula", stamps=9)
    owner = site.login()
    assert owner.post(f"{PAGE}/en", data=WORDS).status_code == 400
    assert _rows(site) == []
    site.post(owner, PAGE, f"{PAGE}/en", **WORDS)
    assert owner.post(f"{PAGE}/en/reset").status_code == 400
    assert owner.post(f"{PAGE}/test", data={"member": regula}).status_code == 400
    assert _rows(site) == [("cafe", "birthday", "en", WORDS["subject"])]
    assert site.sink.messages() == []


def test_unknown_keys_and_languages_are_not_found_and_variant_keys_are_edited(site):
    owner = site.login()
    assert owner.get("/owner/messages/texts/no-such-test").status_code == 404
    assert owner.get("/owner/messages/texts/Welcome").status_code == 404
    assert site.post(owner, PAGE, f"{PAGE}/fr", **WORDS).status_code == 404
    variant = "/owner/messages/texts/birthday-short"
    page = owner.get(variant).get_data(as_text=True)
    assert "A/B test variant for Birthday (birthday-words)" in page and "<code>$remaining</code>" in page
    assert "<code>$tier</code>" not in page
    refused = site.post(owner, variant, f"{variant}/en", subject="Hi $first_name", body="You are $tier.")
    assert "the English message uses $tier, which birthday-short messages do not have" in refused.get_data(as_text=True)
    done = site.post(owner, variant, f"{variant}/en", subject="Happy birthday!", body="All the best, $first_name.")
    assert done.status_code == 302
    assert _rows(site) == [("cafe", "birthday-short", "en", "Happy birthday!")]
