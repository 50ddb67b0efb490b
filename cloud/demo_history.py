"""Six months of a café's history for the demo hub, made the way a real shop makes it.

The owner dashboard's retention and cohort charts need months of members and visits. They
are not written into the hub's tables: members are enrolled with the hub's own
``issue_pass``, and every visit is a scan of the member's pass URL at a simulated kiosk
(``build_kiosk`` on simulated hardware, a ``FakeClock`` walked through the months), the staff
button redeems a reward that is ready, and the kiosk's hub link sends its ledger over MQTT to
``stempel-hub ingest`` like any counter. Only the camera is skipped: the decoded pass text
goes straight to ``Kiosk.handle_codes``, the stage after the decoder.

Behaviour comes from a fixed seed (``numpy.random.default_rng``): members join spread over the
months (a few more recently), each comes back at a personal interval (lognormal, a median of
about 4-10 days), most stop after a while, a few VIPs come every couple of days, and staff
redeem a ready reward about four times in five. The history ends a little before the real
"now", because the hub refuses events from more than a few minutes in its future.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from cloud.app import Hub, create_hub
from cloud.config import load_hub_config
from cloud.hubkey import hub_keys_json
from cloud.passes import export_keys, issue_pass, new_member_id
from kiosk.app import Kiosk
from kiosk.clock import FakeClock
from kiosk.common.errors import ConfigError
from kiosk.config import load_config
from kiosk.link.hub_link import start_hub_link
from kiosk.wiring import build_kiosk, open_documents

log = logging.getLogger(__name__)

DAY = 86400.0
VISITED = ("stamped", "reward_ready")  # the outcomes of a scan that counted as a visit
FIRST_NAMES = ("Anna", "Ben", "Clara", "David", "Elif", "Felix", "Greta", "Hannes", "Ida", "Jonas", "Kim",
               "Lena", "Mehmet", "Nina", "Oskar", "Paula", "Quentin", "Rosa", "Sven", "Tara", "Umut", "Vera",
               "Wim", "Xenia", "Yusuf", "Zoe", "Amir", "Birte", "Carlos", "Dana", "Emil", "Fatma", "Gustav",
               "Hanna", "Igor", "Jana", "Karl", "Lucia", "Milan", "Nora")


@dataclass(frozen=True)
class Habits:
    """How the shop's customers behave; the defaults make the demo's six months."""

    members: int = 300
    days: int = 182
    seed: int = 2026
    vip_share: float = 0.05  # come every ~2 days and stay
    one_timer_share: float = 0.15  # join, visit once, never come back
    median_interval_days: float = 6.5  # the typical member's personal median gap (lognormal across members)
    mean_stay_days: float = 120.0  # how long a regular keeps coming (exponential), then churns
    redeem_share: float = 0.8  # staff press the button when a reward is ready
    open_hours: tuple[float, float] = (7.0, 18.75)  # local time of the first and last visit of a day

    def __post_init__(self) -> None:
        if self.members < 1 or self.days < 1:
            raise ConfigError(f"a history needs at least one member and one day (got {self.members} members, "
                              f"{self.days} days)")
        if not (0 <= self.vip_share and 0 <= self.one_timer_share and self.vip_share + self.one_timer_share <= 1):
            raise ConfigError("vip_share and one_timer_share must be 0..1 and add up to at most 1")


@dataclass(frozen=True)
class Regular:
    """One planned member: a name and the instants (UTC) of their visits, first = joining."""

    name: str
    visits: tuple[datetime, ...]
    vip: bool = False


@dataclass
class HistoryReport:
    """What the filler made; ``events`` is the kiosk's whole ledger, all acknowledged by the hub."""

    kiosk: str
    members: int = 0
    visits: int = 0
    rewards_ready: int = 0  # scans after which a reward was ready
    redeemed: int = 0
    refused: Counter = field(default_factory=Counter)  # scans that did not count as a visit, by outcome
    near_reward: int = 0  # members within two stamps of a reward at the end
    events: int = 0
    unacked: int = 0
    first: datetime | None = None
    last: datetime | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        span = f"{self.first:%Y-%m-%d} .. {self.last:%Y-%m-%d %H:%M} UTC" if self.first and self.last else "empty"
        refused = ", ".join(f"{k} {n}" for k, n in sorted(self.refused.items())) or "none"
        return (f"history ({self.kiosk}, {span}): {self.members} members, {self.visits} visits, "
                f"{self.rewards_ready} times a reward was ready, {self.redeemed} redeemed, "
                f"{self.near_reward} members within two stamps of a reward; refused scans: {refused}; "
                f"{self.events} kiosk events, {self.unacked} not acknowledged by the hub; {self.seconds:.1f} s")


def plan(habits: Habits, end: datetime, tz: ZoneInfo, rng: np.random.Generator) -> list[Regular]:
    """The members and their visits over the *habits.days* before *end* (pure: no I/O, no clock)."""
    start = end - timedelta(days=habits.days)
    regulars = []
    for _ in range(habits.members):
        regular_share = 1 - habits.vip_share - habits.one_timer_share
        kind = rng.choice(3, p=[habits.vip_share, habits.one_timer_share, regular_share])
        joined = habits.days * (np.sqrt(1 + 3 * rng.random()) - 1)  # density rising 1:2 towards now
        if kind == 0:  # VIP: every ~2 days, never leaves
            median, stay = float(np.exp(rng.normal(np.log(2.0), 0.25))), float("inf")
        elif kind == 1:
            median, stay = 1.0, 0.0
        else:
            median = float(np.exp(rng.normal(np.log(habits.median_interval_days), 0.35)))
            stay = float(rng.exponential(habits.mean_stay_days))
        days, day = [], np.floor(joined)
        while day <= joined + stay and day < habits.days:
            days.append(day)
            day += max(1.0, np.round(median * np.exp(rng.normal(0.0, 0.45))))  # at most one visit a day
        visits = tuple(v for v in (_at(start, d, tz, habits, rng) for d in days) if v < end)
        back = days[0]
        while not visits:  # joined today, after the last moment simulated: a day earlier, then
            back -= 1
            visits = tuple(v for v in (_at(start, back, tz, habits, rng),) if v < end)
        name = f"{FIRST_NAMES[rng.integers(len(FIRST_NAMES))]} {chr(65 + rng.integers(26))}."
        regulars.append(Regular(name, visits, vip=kind == 0))
    return regulars


def _at(start: datetime, day: float, tz: ZoneInfo, habits: Habits, rng: np.random.Generator) -> datetime:
    """A moment within opening hours on local day *day* after *start*: a morning, lunch or afternoon rush."""
    rush = rng.choice(3, p=[0.45, 0.3, 0.25])
    hour = float(np.clip(rng.normal((8.5, 12.75, 15.5)[rush], (0.8, 0.7, 1.2)[rush]), *habits.open_hours))
    local = start.astimezone(tz).date() + timedelta(days=int(day))
    midnight = datetime(local.year, local.month, local.day, tzinfo=tz)
    return (midnight + timedelta(hours=hour)).astimezone(timezone.utc)


def timeline(regulars: list[Regular]) -> list[tuple[datetime, int]]:
    """Every visit of every member as (when, member index), in the order the counter sees them."""
    return sorted((at, i) for i, regular in enumerate(regulars) for at in regular.visits)


def enrol(hub: Hub, merchant: str, regulars: list[Regular], passes_dir: Path) -> list[str]:
    """A pass for each member, issued by the hub as ``stempel-hub issue-pass`` does; their URLs.
    Each pass image is kept as ``<member id>.svg``, to be scanned at the demo kiosk too."""
    passes_dir.mkdir(parents=True, exist_ok=True)
    urls = []
    for regular in regulars:
        member = new_member_id()  # the id issue_pass would make, known before the image is named
        urls.append(issue_pass(hub.engine, hub.keys, merchant, regular.name, passes_dir / f"{member}.svg",
                               member_id=member).url)
    return urls


def prepare_kiosk_dir(hub: Hub, merchant: str, kiosk_dir: Path) -> None:
    """The files ``add-kiosk`` would bundle: the pass keys and the hub's document keys."""
    kiosk_dir.mkdir(parents=True, exist_ok=True)
    (kiosk_dir / "keys.json").write_text(export_keys(hub.engine, merchant).to_json() + "\n")
    (kiosk_dir / "hub-keys.json").write_text(hub_keys_json(hub.data_dir))


def fill(hub_dir: Path, merchant: str, *, broker_port: int, kiosk_dir: Path, program_file: Path,
         shop_name: str = "Demo Cafe", kiosk_id: str = "counter-2", habits: Habits = Habits(),
         end: datetime | None = None, drain_seconds: float = 120.0, ack_timeout: float = 2.0,
         progress: Callable[[str], None] = print) -> HistoryReport:
    """Enrol *habits.members* members of *merchant* at the hub in *hub_dir*, scan their visits at a
    simulated kiosk *kiosk_id* whose hub link talks to the broker on *broker_port* (where
    ``stempel-hub ingest`` listens), and wait until the hub has acknowledged every event.

    *end* (default: ten minutes before now) must not be in the hub's future. A batch the broker
    got before the ingest worker subscribed is sent again after *ack_timeout* seconds. Raises
    ConfigError (an unknown merchant, a bad programme file) before anything is scanned.
    """
    started = time.monotonic()
    end = end or datetime.now(timezone.utc) - timedelta(minutes=10)
    config = load_config(None, env={}, kiosk__id=kiosk_id, kiosk__data_dir=str(kiosk_dir),
                         kiosk__shop_name=shop_name, kiosk__program_file=str(program_file),
                         hardware__backend="sim", mqtt__host="127.0.0.1", mqtt__port=broker_port,
                         mqtt__ack_timeout_seconds=ack_timeout)
    regulars = plan(habits, end, ZoneInfo(config.program.timezone), np.random.default_rng(habits.seed))
    hub = create_hub(load_hub_config(env={}, hub__data_dir=hub_dir))
    try:
        prepare_kiosk_dir(hub, merchant, kiosk_dir)
        urls = enrol(hub, merchant, regulars, kiosk_dir / "passes")
    finally:
        hub.close()  # the ingest worker is the hub's only writer from here on
    visits = timeline(regulars)
    report = HistoryReport(kiosk_id, first=visits[0][0] if visits else None)
    progress(f"  history: {len(regulars)} members enrolled at the hub; scanning {len(visits)} visits "
             f"at kiosk {kiosk_id} ({report.first:%Y-%m-%d} .. {end:%Y-%m-%d})")
    clock = FakeClock(visits[0][0] - timedelta(hours=1) if visits else end)
    documents = open_documents(config)
    kiosk = build_kiosk(config, clock=clock, documents=documents, live=False)
    link = start_hub_link(config, kiosk.boot, documents)
    try:
        _scan_all(kiosk, clock, visits, urls, habits, np.random.default_rng(habits.seed + 1), report, progress)
        report.near_reward = _near_reward(kiosk, _members(kiosk))
        report.events = kiosk.ledger.last_seq()
        report.last = clock.wall
    finally:
        report.unacked = link.stop(drain=drain_seconds)
        kiosk.close()
    report.seconds = time.monotonic() - started
    return report


def _scan_all(kiosk: Kiosk, clock: FakeClock, visits: list[tuple[datetime, int]], urls: list[str],
              habits: Habits, rng: np.random.Generator, report: HistoryReport,
              progress: Callable[[str], None]) -> None:
    """Walk the clock through *visits*: scan each pass, press the button for most ready rewards."""
    seen: set[int] = set()
    every = max(1, len(visits) // 4)
    for n, (at, member) in enumerate(visits, 1):
        clock.advance(max(1.0, (at - clock.wall).total_seconds()))  # two visits in one second: one after the other
        now = time.perf_counter()
        result = kiosk.handle_codes("history", [urls[member].encode("ascii")], now, now)
        if result.outcome not in VISITED:
            report.refused[result.outcome] += 1
            continue
        seen.add(member)
        report.visits += 1
        if result.rewards_ready:
            report.rewards_ready += 1
            if rng.random() < habits.redeem_share:
                clock.advance(float(rng.uniform(5, 20)))  # staff hand over the coffee, press the button
                pressed = kiosk.press_button()
                if pressed.outcome == "redeemed":
                    report.redeemed += 1
                else:
                    report.refused[f"button: {pressed.outcome}"] += 1
        report.members = len(seen)
        if n % every == 0 and n // every < 4:  # at a quarter, half and three quarters
            progress(f"  history: {clock.wall:%Y-%m-%d}, {len(seen)}/{len(urls)} members, {report.visits} visits, "
                     f"{report.redeemed} rewards redeemed")


def _members(kiosk: Kiosk) -> list[str]:
    return sorted({e.member for e in kiosk.ledger.events() if e.member})


def _near_reward(kiosk: Kiosk, members: list[str]) -> int:
    """Members one or two stamps short of the cheapest reward (what the owner can nudge)."""
    cheapest = min(r.cost for r in kiosk.program.rewards)
    return sum(1 for m in members if cheapest - 2 <= kiosk.ledger.member_state(m, kiosk.program).balance < cheapest)
