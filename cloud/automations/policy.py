"""Quiet hours: no message leaves between, say, 21:00 and 08:00 in the shop's time zone.

The wall clock is read in the shop's zone at the moment of sending, so a DST change moves the
quiet hours with the shop's clocks (08:00 is 07:00 UTC in winter and 06:00 UTC in summer in
Berlin). Messages that fall in quiet hours are not dropped: they stay pending until the morning.
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo


def quiet(now: datetime, zone: ZoneInfo, start: time, end: time) -> bool:
    """Whether *now* (aware) is inside the quiet hours [start, end) local; they may span midnight.
    ``start == end`` means no quiet hours."""
    local = now.astimezone(zone).time().replace(tzinfo=None)
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end
