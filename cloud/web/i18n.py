"""The member-facing texts in the merchant's language (``language`` of the programme): en, de."""

from __future__ import annotations

TEXTS = {
    "en": {
        "join_title": "Join {shop}", "join_lead": "Collect {unit} at every visit. No app, no paper card.",
        "first_name": "First name", "email": "E-mail (optional)", "birthday": "Birthday (optional)",
        "consent_program": "I join the loyalty programme and accept its terms.",
        "consent_marketing": "Send me news and offers by e-mail (optional, you can stop any time).",
        "referred": "Invited by a friend", "join_button": "Get my card", "terms": "Terms",
        "terms_text": "{shop} runs this loyalty programme. We keep your first name, the e-mail and birthday "
                      "you give, and your visits and rewards, to run the programme. You can download your data "
                      "or leave at any time from your card. Rewards have no cash value.",
        "need_name": "Please enter your first name.", "need_consent": "Please accept the programme's terms to join.",
        "bad_email": "That e-mail address does not look right.", "bad_birthday": "Please give the birthday as a date.",
        "slow_down": "Too many sign-ups from here just now. Please try again in a few minutes.",
        "card_title": "{shop} card", "show_at_counter": "Show this code at the counter",
        "brightness": "Turn your screen brightness up and hold the phone still, about 15 cm from the camera.",
        "progress": "{balance} of {goal} {unit}", "to_go": "{n} more {unit} to {reward}",
        "ready": "Ready to redeem", "tier": "Tier", "next_tier": "Next: {name}, {needs}",
        "last_visits": "Last visits", "no_visits": "No visits yet. Your welcome bonus comes with the first one.",
        "refer": "Invite a friend", "refer_text": "Share this link; you both get a bonus at their first visit.",
        "download": "Download my data", "leave": "Leave the programme",
        "leave_confirm": "This deletes your name, e-mail and birthday and stops this card. Your rewards are lost.",
        "leave_button": "Yes, leave", "left": "You have left the programme. Your personal data is deleted.",
        "revoked": "This pass has been replaced or revoked. Ask at the counter for a new one.",
        "install": "Add this page to your home screen: the code then works without a connection.",
        "saved_offline": "Saved on this phone: the code shows even offline.",
    },
    "de": {
        "join_title": "{shop}: Mitglied werden", "join_lead": "Bei jedem Besuch {unit} sammeln. Ohne App, ohne Papierkarte.",
        "first_name": "Vorname", "email": "E-Mail (freiwillig)", "birthday": "Geburtstag (freiwillig)",
        "consent_program": "Ich nehme am Treueprogramm teil und akzeptiere die Bedingungen.",
        "consent_marketing": "Schickt mir Neuigkeiten und Angebote per E-Mail (freiwillig, jederzeit abbestellbar).",
        "referred": "Von einem Freund eingeladen", "join_button": "Karte holen", "terms": "Bedingungen",
        "terms_text": "{shop} betreibt dieses Treueprogramm. Wir speichern deinen Vornamen, die angegebene E-Mail "
                      "und den Geburtstag sowie Besuche und Prämien, um das Programm zu führen. Du kannst deine "
                      "Daten jederzeit über deine Karte herunterladen oder austreten. Prämien sind nicht in Geld "
                      "einlösbar.",
        "need_name": "Bitte gib deinen Vornamen ein.", "need_consent": "Bitte akzeptiere die Bedingungen, um beizutreten.",
        "bad_email": "Diese E-Mail-Adresse sieht nicht richtig aus.", "bad_birthday": "Bitte gib den Geburtstag als Datum an.",
        "slow_down": "Gerade zu viele Anmeldungen von hier. Bitte versuche es in ein paar Minuten noch einmal.",
        "card_title": "Karte von {shop}", "show_at_counter": "Zeig diesen Code an der Kasse",
        "brightness": "Stell die Bildschirmhelligkeit hoch und halte das Handy ruhig, etwa 15 cm vor die Kamera.",
        "progress": "{balance} von {goal} {unit}", "to_go": "Noch {n} {unit} bis {reward}",
        "ready": "Bereit zum Einlösen", "tier": "Stufe", "next_tier": "Nächste: {name}, {needs}",
        "last_visits": "Letzte Besuche", "no_visits": "Noch keine Besuche. Dein Willkommensbonus kommt beim ersten.",
        "refer": "Freunde einladen", "refer_text": "Teile diesen Link; ihr bekommt beide einen Bonus bei ihrem ersten Besuch.",
        "download": "Meine Daten herunterladen", "leave": "Programm verlassen",
        "leave_confirm": "Das löscht Vorname, E-Mail und Geburtstag und sperrt diese Karte. Deine Prämien verfallen.",
        "leave_button": "Ja, austreten", "left": "Du hast das Programm verlassen. Deine Daten sind gelöscht.",
        "revoked": "Dieser Pass wurde ersetzt oder gesperrt. Frag an der Kasse nach einem neuen.",
        "install": "Leg diese Seite auf den Startbildschirm: Der Code funktioniert dann auch ohne Verbindung.",
        "saved_offline": "Auf diesem Handy gespeichert: Der Code erscheint auch offline.",
    },
}
UNITS = {"en": {"stamps": "stamps", "points": "points"}, "de": {"stamps": "Stempel", "points": "Punkte"}}


def texts(language: str) -> dict[str, str]:
    return TEXTS.get(language, TEXTS["en"])


def unit(language: str, unit_name: str) -> str:
    return UNITS.get(language, UNITS["en"]).get(unit_name, unit_name)
