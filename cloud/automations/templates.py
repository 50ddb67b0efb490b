"""The messages' words, in German and English, as ``string.Template`` texts.

Placeholders: ``$first_name``, ``$shop``, ``$balance``, ``$unit`` (stamps/points in the
member's language), ``$reward`` (the next reward), ``$remaining`` (what is still missing for
it), ``$card_url``; a win-back to a member with an open bonus offer gets ``OFFER``'s paragraph
with ``$bonus`` and ``$bonus_until`` (winback.offer_values); any message to a member the card
would ask for an NPS score gets ``NPS``'s paragraph with ``$nps_url`` before the footer
(compose.nps_values). A body is paragraphs separated by blank lines; the HTML part is made
from the same paragraphs (values escaped, the card link a link), so the two parts never drift
apart. The footer with the unsubscribe link is added to every message. ``render`` uses
``substitute``: a misspelt placeholder fails the tests instead of reaching a customer.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from string import Template

from kiosk.common.errors import ConfigError

LANGUAGES = ("de", "en")
LANGUAGE_NAMES = {"en": "English", "de": "German"}
SUBJECT_MAX, BODY_MAX = 150, 5000  # what an owner may write (campaigns, their own words for a trigger)


@dataclass(frozen=True)
class Text:
    subject: str
    body: str


TEXTS: dict[tuple[str, str], Text] = {
    ("welcome", "en"): Text(
        "Welcome to $shop, $first_name!",
        "Hello $first_name,\n\nthank you for joining $shop. You collect $unit at every visit; "
        "at $remaining more you get $reward.\n\nYour card is always here: $card_url"),
    ("welcome", "de"): Text(
        "Willkommen bei $shop, $first_name!",
        "Hallo $first_name,\n\nschön, dass du bei $shop dabei bist. Bei jedem Besuch sammelst du $unit; "
        "mit $remaining weiteren gibt es $reward.\n\nDeine Karte findest du immer hier: $card_url"),
    ("birthday", "en"): Text(
        "Happy birthday, $first_name!",
        "Hello $first_name,\n\neveryone at $shop wishes you a happy birthday! Come by and celebrate with us.\n\n"
        "You have $balance $unit; $remaining more to $reward.\n\nYour card: $card_url"),
    ("birthday", "de"): Text(
        "Alles Gute zum Geburtstag, $first_name!",
        "Hallo $first_name,\n\nalle bei $shop wünschen dir alles Gute zum Geburtstag! "
        "Komm vorbei und feiere mit uns.\n\n"
        "Du hast $balance $unit; noch $remaining bis $reward.\n\nDeine Karte: $card_url"),
    ("winback", "en"): Text(
        "We miss you at $shop",
        "Hello $first_name,\n\nit has been a while since your last visit to $shop. We would love to see you again.\n\n"
        "You have $balance $unit; only $remaining more to $reward.\n\nYour card: $card_url"),
    ("winback", "de"): Text(
        "Wir vermissen dich bei $shop",
        "Hallo $first_name,\n\ndein letzter Besuch bei $shop ist eine Weile her. "
        "Wir würden uns freuen, dich wiederzusehen.\n\n"
        "Du hast $balance $unit; nur noch $remaining bis $reward.\n\nDeine Karte: $card_url"),
    ("almost_there", "en"): Text(
        "Only $remaining more to $reward, $first_name!",
        "Hello $first_name,\n\nthank you for your visit to $shop. You have $balance $unit now: "
        "only $remaining more and $reward is yours.\n\nYour card: $card_url"),
    ("almost_there", "de"): Text(
        "Nur noch $remaining bis $reward, $first_name!",
        "Hallo $first_name,\n\ndanke für deinen Besuch bei $shop. Du hast jetzt $balance $unit: "
        "nur noch $remaining, dann gehört $reward dir.\n\nDeine Karte: $card_url"),
    # tier reached / about to be lost, reward about to expire (triggers_more.py); $tier, $tier_until,
    # $expiring and $expires come from the member's card (card_extras.py)
    ("tier_reached", "en"): Text(
        "Welcome to $tier, $first_name!",
        "Hello $first_name,\n\nthank you for your visits to $shop: you are $tier now.\n\n"
        "You have $balance $unit; $remaining more to $reward.\n\nYour card: $card_url"),
    ("tier_reached", "de"): Text(
        "Willkommen im Status $tier, $first_name!",
        "Hallo $first_name,\n\ndanke für deine Besuche bei $shop: du bist jetzt $tier.\n\n"
        "Du hast $balance $unit; noch $remaining bis $reward.\n\nDeine Karte: $card_url"),
    ("tier_loss", "en"): Text(
        "Keep your $tier status, $first_name",
        "Hello $first_name,\n\nyour $tier status at $shop runs out on $tier_until. "
        "Visit us before then and you keep it.\n\nYour card: $card_url"),
    ("tier_loss", "de"): Text(
        "Behalte deinen Status $tier, $first_name",
        "Hallo $first_name,\n\ndein Status $tier bei $shop läuft am $tier_until ab. "
        "Komm vorher vorbei, dann behältst du ihn.\n\nDeine Karte: $card_url"),
    ("reward_expiry", "en"): Text(
        "Your $expiring expires on $expires",
        "Hello $first_name,\n\nyou have $balance $unit at $shop: enough for $expiring. "
        "Unused, it expires on $expires — redeem it at your next visit.\n\nYour card: $card_url"),
    ("reward_expiry", "de"): Text(
        "Dein $expiring verfällt am $expires",
        "Hallo $first_name,\n\ndu hast $balance $unit bei $shop: genug für $expiring. "
        "Ungenutzt verfällt es am $expires — löse es bei deinem nächsten Besuch ein.\n\nDeine Karte: $card_url"),
}

SERVICE_FOOTER = {  # transactional messages ([automations] transactional_without_consent)
    "en": "A service message about your card at $shop. No more news from $shop: $unsubscribe_url",
    "de": "Eine Service-Nachricht zu deiner Karte bei $shop. Keine Neuigkeiten mehr von $shop: $unsubscribe_url",
}
SERVICE_TRIGGERS = frozenset({"reward_expiry"})

OFFER = {  # after a win-back's greeting, when the member's card holds an open offer
    "en": "Come back by $bonus_until and get $bonus extra $unit at your next visit.",
    "de": "Komm bis zum $bonus_until vorbei und erhalte bei deinem nächsten Besuch $bonus $unit extra.",
}

NPS = {  # before the footer, when the member's card asks the NPS question (compose.nps_values)
    "en": "How likely are you to recommend $shop to a friend? Tell us on your card (0–10, takes ten seconds): $nps_url",
    "de": "Wie wahrscheinlich ist es, dass du $shop Freunden weiterempfiehlst? Sag es uns auf deiner Karte (0–10, dauert zehn Sekunden): $nps_url",
}

FOOTER = {
    "en": "You receive this because you agreed to news from $shop. Unsubscribe with one click: $unsubscribe_url",
    "de": "Du erhältst diese Nachricht, weil du Neuigkeiten von $shop zugestimmt hast. "
          "Mit einem Klick abmelden: $unsubscribe_url",
}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    language: str


def language_of(preferred: str | None, programme_language: str) -> str:
    """The member's language if we have texts in it, else the programme's, else English."""
    for lang in (preferred, programme_language):
        if lang in LANGUAGES:
            return lang  # type: ignore[return-value]
    return "en"


def render(trigger: str, language: str, values: dict[str, str], text: Text | None = None) -> Rendered:
    """The message for *trigger* in *language* filled with *values* (every placeholder, plus
    ``unsubscribe_url``); *text* instead of the trigger's own words (an owner's campaign).
    Raises KeyError for a missing value or an unknown trigger."""
    text = text or TEXTS[(trigger, language)]
    paragraphs = [Template(p).substitute(values) for p in text.body.split("\n\n")]
    if trigger == "winback" and values.get("bonus"):
        paragraphs.insert(2, Template(OFFER[language]).substitute(values))
    if values.get("nps_url") and trigger not in SERVICE_TRIGGERS:  # a survey is no service message
        paragraphs.append(Template(NPS[language]).substitute(values))
    footer = Template((SERVICE_FOOTER if trigger in SERVICE_TRIGGERS else FOOTER)[language]).substitute(values)
    plain = "\n\n".join(paragraphs + ["--", footer]) + "\n"
    links = [values["card_url"], values["unsubscribe_url"]] + ([values["nps_url"]] if values.get("nps_url") else [])
    parts = [f"<p>{_linked(p, links)}</p>" for p in paragraphs]
    parts.append(f'<hr><p style="font-size:small;color:#666">{_linked(footer, links)}</p>')
    page = (f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">'
            f"<title>{html.escape(Template(text.subject).substitute(values))}</title></head>"
            f"<body>{''.join(parts)}</body></html>")
    return Rendered(Template(text.subject).substitute(values), plain, page, language)


def _linked(paragraph: str, links: list[str]) -> str:
    """*paragraph* HTML-escaped, each URL of *links* made a link; newlines become ``<br>``. One
    pass, longest URL first: the card link is a prefix of the NPS link (and the hub's address,
    the card link of a member without a pass, of the unsubscribe link), so replacing one after
    the other would link the prefix and break the longer one."""
    out = html.escape(paragraph)
    urls = sorted({html.escape(url) for url in links if url}, key=len, reverse=True)
    if urls:
        pattern = re.compile("|".join(re.escape(url) for url in urls))
        out = pattern.sub(lambda m: f'<a href="{m.group()}">{m.group()}</a>', out)
    return out.replace("\n", "<br>")


def check_words(language: str, subject: str, body: str, allowed: frozenset[str], kind: str,
                empty_fix: str) -> Text:
    """An owner's *subject* and *body* in *language* as a Text, checked when saved, never at
    sending: both given (else *empty_fix*), a one-line subject, bounded lengths, no bare ``$``
    and only the placeholders in *allowed* (those *kind* messages have). Raises ConfigError
    naming the field and the fix."""
    what = LANGUAGE_NAMES[language]
    subject, body = subject.strip(), body.replace("\r\n", "\n").strip()
    if not subject or not body:
        raise ConfigError(f"the {what} words need both a subject and a message; {empty_fix}")
    if "\n" in subject or "\r" in subject or len(subject) > SUBJECT_MAX:
        raise ConfigError(f"the {what} subject must be one line of at most {SUBJECT_MAX} characters "
                          f"(it has {len(subject)}): shorten it")
    if len(body) > BODY_MAX:
        raise ConfigError(f"the {what} message is {len(body)} characters long: shorten it to at most {BODY_MAX}")
    listed = ", ".join("$" + p for p in sorted(allowed))
    for field, part in (("subject", subject), ("message", body)):
        template = Template(part)
        if not template.is_valid():
            raise ConfigError(f"the {what} {field} has a '$' that is no placeholder: write $$ for a dollar sign, "
                              f"or one of {listed}")
        unknown = set(template.get_identifiers()) - allowed
        if unknown:
            raise ConfigError(f"the {what} {field} uses {', '.join('$' + u for u in sorted(unknown))}, which "
                              f"{kind} messages do not have: use {listed}")
    return Text(subject, body)
