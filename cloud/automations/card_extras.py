"""The placeholders of the tier and reward-expiry messages, from the member's card as the engine
folds it (cloud/cards.py) at the moment of writing: ``$tier``, ``$tier_until`` (the local date
the tier runs out without another visit), ``$expiring`` and ``$expires`` (the reward that
expires first and its local date). Empty strings where a programme has no tiers or no expiring
reward, so every template can be filled for every member.
"""

from __future__ import annotations

from datetime import datetime

from cloud.automations.triggers_more import expiries, loss_at, window_of
from kiosk.rules.program import Program
from kiosk.rules.state import MemberState

DATE_FORMAT = {"de": "%d.%m.%Y", "en": "%d %b %Y"}


def local_day(moment: datetime, program: Program, language: str) -> str:
    return moment.astimezone(program.zone).strftime(DATE_FORMAT.get(language, DATE_FORMAT["en"]))


def extras(state: MemberState, tier: str | None, program: Program, now: datetime, language: str) -> dict[str, str]:
    """The four values for *state* (the card's folded state; *tier* the card's tier at *now*)."""
    out = {"tier": tier or "", "tier_until": "", "expiring": "", "expires": ""}
    if program.tiers is not None:
        lost = loss_at(window_of(state.recent, now, program.tiers, program.tiers.window_days), program.tiers)
        if lost is not None:
            out["tier_until"] = local_day(lost[1], program, language)
    first = expiries(state.affordable_since, state.balance, program.rewards)
    if first:
        reward, moment = first[0]
        out["expiring"], out["expires"] = reward.name, local_day(moment, program, language)
    return out
