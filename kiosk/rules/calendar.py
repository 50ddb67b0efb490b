"""Calendar arithmetic in the merchant's time zone: local days, campaigns, birthdays, months.

All inputs are aware datetimes; conversion to local time goes through zoneinfo, so a
campaign on "Tuesday 14-16h" follows the shop's wall clock across DST changes.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime
from zoneinfo import ZoneInfo

from kiosk.rules.program import WEEKDAYS, Campaign


def local(at: datetime, zone: ZoneInfo) -> datetime:
    return at.astimezone(zone)


def campaign_applies(campaign: Campaign, at: datetime, zone: ZoneInfo, tier: str | None) -> bool:
    """Whether *campaign* runs at *at* (local weekday, time of day, dates) for a member in *tier*."""
    when = local(at, zone)
    if campaign.weekdays is not None and WEEKDAYS[when.weekday()] not in campaign.weekdays:
        return False
    if campaign.start_time is not None and not (campaign.start_time <= when.time() < campaign.end_time):
        return False
    if campaign.start_date is not None and when.date() < campaign.start_date:
        return False
    if campaign.end_date is not None and when.date() > campaign.end_date:
        return False
    if campaign.tiers is not None and (tier is None or tier.lower() not in {t.lower() for t in campaign.tiers}):
        return False
    return True


def _on(year: int, birthday: date) -> date:
    """The birthday in *year*; 29 February falls on the 28th in other years."""
    day = min(birthday.day, calendar.monthrange(year, birthday.month)[1])
    return date(year, birthday.month, day)


def birthday_occurrence(birthday: date, today: date, window_days: int) -> date | None:
    """The occurrence of *birthday* within ±window_days of *today*, if any."""
    for year in (today.year - 1, today.year, today.year + 1):
        occurrence = _on(year, birthday)
        if abs((occurrence - today).days) <= window_days:
            return occurrence
    return None


def add_months(at: datetime, months: int) -> datetime:
    """*at* plus calendar months, clamping the day (31 Jan + 1 month = 28/29 Feb)."""
    index = at.month - 1 + months
    year, month = at.year + index // 12, index % 12 + 1
    return at.replace(year=year, month=month, day=min(at.day, calendar.monthrange(year, month)[1]))
