"""Fixed-window request limits kept in the hub's database, so they hold across web workers.

``hit(key, limit, per)`` counts one request for *key* in the current window of *per* seconds
and says whether it is within *limit*. One upsert per request; old windows are pruned now and
then. Used for the join form (per IP and per merchant) and the login form (per IP and login).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from cloud.models import RateHit

MAX_PERIOD = 86_400  # the longest window any limit uses; older rows are pruned


class RateLimiter:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def hit(self, key: str, limit: int, per: int) -> bool:
        """Count a request for *key*; True while the window has seen at most *limit*."""
        if per > MAX_PERIOD:
            raise ValueError(f"a rate window is at most {MAX_PERIOD} s")
        now = self.clock()
        window = int(now // per) * per  # the window's start, in seconds: comparable across periods
        key = key[:200]
        for _ in range(3):  # two workers may insert the same new window at once
            try:
                with self.engine.begin() as conn:
                    done = conn.execute(update(RateHit).where(RateHit.key == key, RateHit.window == window)
                                        .values(count=RateHit.count + 1)).rowcount
                    if not done:
                        conn.execute(RateHit.__table__.insert().values(key=key, window=window, count=1))
                    count = conn.scalar(select(RateHit.count).where(RateHit.key == key, RateHit.window == window))
                    if random.random() < 0.01:
                        conn.execute(delete(RateHit).where(RateHit.window < now - MAX_PERIOD))
                return count <= limit
            except IntegrityError:
                continue
        return False
