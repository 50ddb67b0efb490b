"""Why an entry was made, in words a member or an owner reads (English and German).

The engine names a rule on every entry (kiosk/rules/engine.py); this turns the name into a
phrase with the programme's own names for campaigns, rewards and tiers. Pure, like the engine:
the hub's card page and dashboard use it, so every surface explains a balance the same way.
"""

from __future__ import annotations

from kiosk.rules.program import Program
from kiosk.rules.state import Entry

_PHRASES = {
    "en": {"visit": "visit", "base-rate": "per visit", "signup-bonus": "welcome bonus",
           "birthday-bonus": "birthday bonus", "milestone": "milestone: visit {arg}",
           "referral-bonus:referee": "joined through a friend", "referral-bonus:referrer": "brought a friend",
           "inactivity-expiry": "expired after inactivity", "reward-expiry": "{arg} expired unused",
           "reward": "redeemed: {arg}", "tier": "tier now {arg}", "tier-multiplier": "{arg} tier bonus",
           "spend-bonus": "spent {arg} or more", "campaign": "{arg}", "manual-adjustment": "correction by the shop",
           "winback-bonus": "welcome-back bonus", "winback-offer": "welcome-back offer"},
    "de": {"visit": "Besuch", "base-rate": "pro Besuch", "signup-bonus": "Willkommensbonus",
           "birthday-bonus": "Geburtstagsbonus", "milestone": "Meilenstein: {arg}. Besuch",
           "referral-bonus:referee": "über eine Empfehlung beigetreten",
           "referral-bonus:referrer": "Freund geworben", "inactivity-expiry": "verfallen nach Inaktivität",
           "reward-expiry": "{arg} ungenutzt verfallen", "reward": "eingelöst: {arg}", "tier": "Stufe jetzt {arg}",
           "tier-multiplier": "Bonus der Stufe {arg}", "spend-bonus": "ab {arg} Einkauf",
           "campaign": "{arg}", "manual-adjustment": "Korrektur durch den Laden",
           "winback-bonus": "Willkommen-zurück-Bonus", "winback-offer": "Willkommen-zurück-Angebot"},
}


def describe(entry: Entry, program: Program, language: str | None = None) -> str:
    """A short phrase for *entry* (``"Double Stamp Tuesday"``, ``"welcome bonus"``)."""
    phrases = _PHRASES.get(language or program.language, _PHRASES["en"])
    rule = entry.rule
    if rule in phrases:
        return phrases[rule].format(arg="")
    head, _, arg = rule.partition(":")
    if head == "campaign":
        arg = next((c.name for c in program.campaigns if c.id == arg), arg)
    elif head in ("reward", "reward-expiry"):
        arg = _reward_name(program, arg)
    if head in phrases:
        return phrases[head].format(arg=arg)
    return rule or entry.kind


def _reward_name(program: Program, reward_id: str) -> str:
    reward = program.reward(reward_id)
    return reward.name if reward is not None else reward_id
