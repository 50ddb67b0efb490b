"""Tier reached, tier about to be lost, reward about to expire: pure functions of a member's
ledger facts and a moment, beside triggers.py (welcome, birthday, win-back, almost there).

They follow the rules engine exactly (kiosk/rules/engine.py, state.py):

* the tier at a moment is ``tier_at``'s: the visits (or the spend) in the window
  ``(now − window_days, now]``; a visit at ``t`` leaves the window at ``t + window_days``;
* a tier is *reached* by a ``tier_change`` ledger entry to a higher level than the one before
  (the first tier every member gets on the first visit is not "reached");
* a tier is *about to be lost* when, without another visit, the window's visits (or spend) fall
  below the current tier's threshold within ``days_before`` days — a visit before then keeps it,
  since the engine counts the visit it is evaluating;
* a reward *expires* ``expires_after_days`` after it became affordable (``affordable_since``)
  and is taken at the next scan after that moment.

Occasions (the unique key's last part; at most 24 characters so ``@webhook`` still fits):
``<tier>-<local date>`` of the change for "reached", ``<tier>-<local date of the loss>`` for
"about to be lost" (a visit moves the loss, so it is a new occasion), ``<reward hash>-<since>``
for the reward (each time it becomes affordable again is a new one).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from cloud.automations.triggers import Due
from kiosk.rules.program import Reward, Tiers

TIER_REACHED, TIER_LOSS, REWARD_EXPIRY = "tier_reached", "tier_loss", "reward_expiry"
TRANSACTIONAL = frozenset({REWARD_EXPIRY})  # about what the member already has, not marketing


@dataclass(frozen=True)
class MoreRules:
    """The knobs of these triggers (``[automations]`` of hub.toml)."""

    triggers: frozenset[str] = frozenset({TIER_REACHED, TIER_LOSS, REWARD_EXPIRY})
    tier_reached_valid: timedelta = timedelta(days=2)  # sent this long after the change at most
    tier_loss_days_before: int = 7
    reward_expiry_days_before: int = 3
    transactional_without_consent: bool = False


@dataclass(frozen=True)
class TierChange:
    """A ``tier_change`` ledger entry: ``detail.from`` → ``detail.to`` at *at*."""

    at: datetime
    before: str | None
    after: str | None


@dataclass(frozen=True)
class Window:
    """A member's visits in the tier window at a moment: the window's value (visits, or spend)
    and the visits that will leave it soonest, oldest first, as (time, amount)."""

    value: Decimal
    leaving: tuple[tuple[datetime, Decimal], ...] = ()


def slug(name: str, width: int = 12) -> str:
    """*name* as a key part: lower case, runs of anything but a-z0-9 as one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:width] or "tier"


def level(tiers: Tiers, name: str | None) -> int:
    """The index of tier *name* (case-insensitive) in *tiers*, −1 for None or an unknown one."""
    names = [t.name.lower() for t in tiers.levels]
    return names.index(name.lower()) if name and name.lower() in names else -1


def tier_of(tiers: Tiers, value: Decimal) -> int:
    """The level a window's *value* earns (as tier_at: the highest threshold reached)."""
    return max(i for i, t in enumerate(tiers.levels) if t.threshold <= value)


def tier_reached(member: str, change: TierChange, now: datetime, tiers: Tiers, rules: MoreRules,
                 zone: ZoneInfo) -> Due | None:
    """Due if *change* raised the member to a tier above the first and is at most
    ``tier_reached_valid`` old at *now*."""
    up = level(tiers, change.after)
    if up < 1 or up <= level(tiers, change.before):
        return None
    if not change.at <= now < change.at + rules.tier_reached_valid:
        return None
    day = change.at.astimezone(zone).date().isoformat()
    return Due(member, TIER_REACHED, f"{slug(tiers.levels[up].name)}-{day}", change.at + rules.tier_reached_valid)


def loss_at(window: Window, tiers: Tiers) -> tuple[int, datetime] | None:
    """(current level, the moment it is lost without another visit), or None if the member is
    on the first level or keeps the tier through every visit in ``window.leaving``."""
    current = tier_of(tiers, window.value)
    if current < 1:
        return None
    threshold = tiers.levels[current].threshold
    value, span = window.value, timedelta(days=tiers.window_days)
    for at, amount in window.leaving:
        value -= Decimal(1) if tiers.basis == "visits" else amount
        if value < threshold:
            return current, at + span
    return None


def tier_loss(member: str, window: Window, now: datetime, tiers: Tiers, rules: MoreRules,
              zone: ZoneInfo) -> Due | None:
    """Due if the member's tier is lost within ``tier_loss_days_before`` days unless they visit."""
    lost = loss_at(window, tiers)
    if lost is None:
        return None
    current, moment = lost
    if not now < moment <= now + timedelta(days=rules.tier_loss_days_before):
        return None
    day = moment.astimezone(zone).date().isoformat()
    return Due(member, TIER_LOSS, f"{slug(tiers.levels[current].name)}-{day}", moment)


def window_of(recent: Iterable[tuple[datetime, Decimal]], now: datetime, tiers: Tiers, days_ahead: int) -> Window:
    """The Window at *now* from the engine's ``MemberState.recent`` (visits in time order)."""
    oldest, horizon = now - timedelta(days=tiers.window_days), now + timedelta(days=days_ahead - tiers.window_days)
    inside = [(at, amount) for at, amount in recent if oldest < at <= now]
    value = Decimal(len(inside)) if tiers.basis == "visits" else sum((a for _, a in inside), Decimal(0))
    return Window(value, tuple(v for v in inside if v[0] <= horizon))


def reward_key(reward_id: str, since: datetime) -> str:
    """The occasion of a reward's expiry: a short hash of the reward and the moment it became affordable."""
    digest = hashlib.sha256(reward_id.encode()).hexdigest()[:6]
    return f"{digest}-{since.astimezone(ZoneInfo('UTC')):%Y%m%dT%H%M}"


def expiries(affordable_since: Iterable[tuple[str, datetime]], balance: int,
             rewards: Sequence[Reward]) -> list[tuple[Reward, datetime]]:
    """(reward, the moment it expires) for each expiring reward the member can still afford."""
    by_id = {r.id: r for r in rewards}
    out = []
    for reward_id, since in affordable_since:
        reward = by_id.get(reward_id)
        if reward is not None and reward.expires_after_days and balance >= reward.cost:
            out.append((reward, since + timedelta(days=reward.expires_after_days)))
    return sorted(out, key=lambda pair: pair[1])


def reward_expiry(member: str, affordable_since: Sequence[tuple[str, datetime]], balance: int, now: datetime,
                  rewards: Sequence[Reward], rules: MoreRules) -> list[Due]:
    """Due for each affordable reward that expires within ``reward_expiry_days_before`` days."""
    lead = timedelta(days=rules.reward_expiry_days_before)
    since = dict(affordable_since)
    return [Due(member, REWARD_EXPIRY, reward_key(reward.id, since[reward.id]), expires)
            for reward, expires in expiries(affordable_since, balance, rewards) if now < expires <= now + lead]
