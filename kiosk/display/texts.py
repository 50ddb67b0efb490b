"""Screen texts in English and German, short enough for a 128x64 display."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "show_pass": "Show your pass",
        "stamped": "Stamped!",
        "earned_points": "+{n} points",
        "reward_ready": "Reward ready!",
        "already": "Already stamped",
        "again_in": "{b}/{g} - again in {m}m",
        "again_in_points": "again in {m} min",
        "redeemed": "Enjoy!",
        "left_stamps": "{n} stamps left",
        "left_points": "{n} points left",
        "nothing_1": "Nothing to",
        "nothing_2": "redeem",
        "amount_1": "Enter amount",
        "amount_2": "then scan again",
        "points": "{n} pts",
        "not_accepted": "Not accepted",
        "join_1": "Join:",
        "join_2": "scan me",
        "offline": "offline",
    },
    "de": {
        "show_pass": "Pass zeigen",
        "stamped": "Gestempelt!",
        "earned_points": "+{n} Punkte",
        "reward_ready": "Prämie bereit!",
        "already": "Schon gestempelt",
        "again_in": "{b}/{g} - in {m} Min.",
        "again_in_points": "wieder in {m} Min.",
        "redeemed": "Viel Freude!",
        "left_stamps": "{n} Stempel übrig",
        "left_points": "{n} Punkte übrig",
        "nothing_1": "Nichts",
        "nothing_2": "einzulösen",
        "amount_1": "Betrag eingeben",
        "amount_2": "dann neu scannen",
        "points": "{n} Pkt.",
        "not_accepted": "Abgelehnt",
        "join_1": "Mitmachen:",
        "join_2": "scannen",
        "offline": "offline",
    },
}

REASONS: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        "not_a_pass": ("Not a Stempel", "pass"),
        "garbled": ("Pass unreadable", "try again"),
        "truncated": ("Pass incomplete", "show it again"),
        "wrong_merchant": ("Pass is for", "another shop"),
        "unknown_key": ("Pass not known", "ask staff"),
        "forged": ("Invalid pass", "ask staff"),
        "revoked": ("Pass revoked", "ask staff"),
        "multiple_codes": ("Two codes seen", "show one pass"),
        "out_of_order": ("Out of order", "call staff"),
    },
    "de": {
        "not_a_pass": ("Kein Stempel-", "Pass"),
        "garbled": ("Pass unlesbar", "nochmal bitte"),
        "truncated": ("Pass unvollständig", "nochmal zeigen"),
        "wrong_merchant": ("Pass gehört zu", "anderem Laden"),
        "unknown_key": ("Pass unbekannt", "bitte Personal"),
        "forged": ("Ungültiger Pass", "bitte Personal"),
        "revoked": ("Pass gesperrt", "bitte Personal"),
        "multiple_codes": ("Zwei Codes", "nur einen zeigen"),
        "out_of_order": ("Außer Betrieb", "Personal rufen"),
    },
}


def text(lang: str, key: str, **values) -> str:
    return TEXTS.get(lang, TEXTS["en"])[key].format(**values)


def reason(lang: str, code: str) -> tuple[str, str]:
    table = REASONS.get(lang, REASONS["en"])
    return table.get(code, (text(lang, "not_accepted"), code[:18]))
