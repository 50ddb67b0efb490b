"""The programme schema: everything a merchant configures, as one validated document.

The same document is a TOML file on the kiosk (``examples/*.toml``) and, later, the
``config/desired`` payload over MQTT. An invalid programme is rejected as a whole with
messages that name the field and the fix; the caller keeps the previous one in force.
"""

from __future__ import annotations

from datetime import date, time, timedelta
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError,
                      field_validator, model_validator)

from kiosk.protocol.ids import ID_PATTERN
from kiosk.common.tomlfile import explain, read_toml

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Every number a merchant types is bounded, so a typo is refused here with the field and the
# fix instead of surfacing later as an event the wire refuses (the sender stuck on it) or an
# integer SQLite cannot store (>= 2**63, the scan crashes).
MAX_DELTA = 1_000_000
"""The most one ledger entry may credit or debit: the wire's bound on ``WireEvent.delta``."""
MAX_AMOUNT = Decimal(100_000)
"""The largest purchase amount (currency units) a kiosk accepts for one scan (see Program.max_amount)."""
MIN_AMOUNT_ROOM = Decimal(1000)
"""A points programme must let a purchase of at least this much earn without overflowing an entry."""
MAX_DAYS = 3660  # ten years: any longer period is a typo
MAX_VISITS = 100_000
MAX_SPEND = Decimal(100_000_000)  # tier thresholds on spend: a window's purchases
MAX_RATE = Decimal(1000)  # points per currency unit
MAX_MULTIPLIER = Decimal(10)
_DECIMAL = {"decimal_places": 4}  # 0.0001 is the finest step that means anything here


def _at_most(limit: int | Decimal, why: str) -> AfterValidator:
    """An upper bound whose message says what the limit is for, so the owner sees the typo."""
    def check(value):
        if value is not None and value > limit:
            raise ValueError(f"{value} is more than {limit:,}, {why}; check the value for a typo")
        return value
    return AfterValidator(check)


Points = Annotated[int, _at_most(MAX_DELTA, "the most one ledger entry may credit or debit")]
Amount = Annotated[Decimal, _at_most(MAX_AMOUNT, "the largest purchase a kiosk accepts")]
Rate = Annotated[Decimal, _at_most(MAX_RATE, "points per currency unit")]
Multiplier = Annotated[Decimal, _at_most(MAX_MULTIPLIER, "the largest multiplier")]
Days = Annotated[int, _at_most(MAX_DAYS, "ten years")]
Visits = Annotated[int, _at_most(MAX_VISITS, "the most visits a milestone may count")]
Threshold = Annotated[Decimal, _at_most(MAX_SPEND, "the largest tier threshold")]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_id(value: str) -> str:
    if not ID_PATTERN.fullmatch(value):  # not match(): '$' would let a trailing newline through
        raise ValueError(f"{value!r} is not an id: use a-z, 0-9 and '-', e.g. 'free-coffee'")
    return value


class Band(_Doc):
    """One band of a tiered earn rate: *rate* points per unit for the part of the amount up to *up_to*."""

    up_to: Amount | None = Field(None, gt=0, **_DECIMAL,
                                  description="upper end of the band; omit for the last band")
    rate: Rate = Field(gt=0, **_DECIMAL)


class Earning(_Doc):
    type: Literal["stamps", "points"] = "stamps"
    per_visit: int = Field(1, ge=0, le=100, description="stamps per visit (stamp cards)")
    currency: str = Field("EUR", pattern="^[A-Z]{3}$")
    rate: Rate = Field(Decimal(10), gt=0, **_DECIMAL,
                          description="points per currency unit (points programmes)")
    bands: tuple[Band, ...] = Field((), description="tiered rates, e.g. 5/unit up to 50 then 10/unit")
    rounding: Literal["whole_units", "floor", "nearest"] = "whole_units"

    @model_validator(mode="after")
    def _bands_ascend(self) -> "Earning":
        ends = [b.up_to for b in self.bands]
        if ends and ends[-1] is not None:
            raise ValueError("bands: the last band must have no 'up_to' (it covers the rest of the amount)")
        if any(e is None for e in ends[:-1]) or ends[:-1] != sorted(e for e in ends[:-1] if e is not None):
            raise ValueError("bands: give every band but the last an 'up_to', in ascending order")
        if len(set(ends)) != len(ends):
            raise ValueError("bands: two bands end at the same 'up_to'; merge them")
        return self


class Reward(_Doc):
    id: str
    name: str = Field(min_length=1, max_length=18, description="short: it is shown on a 128x64 display")
    cost: Points = Field(ge=1, description="stamps or points the reward costs")
    expires_after_days: Days | None = Field(None, ge=1,
                                           description="use it or lose it: days after it became affordable")
    tiers: tuple[str, ...] | None = Field(None, description="only members of these tiers may redeem it")

    _id = field_validator("id")(_check_id)


class Tier(_Doc):
    name: str = Field(min_length=1, max_length=12)
    threshold: Threshold = Field(ge=0, **_DECIMAL,
                               description="visits (or spend) in the window to reach this tier")
    multiplier: Multiplier = Field(Decimal(1), gt=0, **_DECIMAL)
    perks: tuple[str, ...] = ()


class Tiers(_Doc):
    basis: Literal["visits", "spend"] = "visits"
    window_days: Days = Field(365, ge=1)
    levels: tuple[Tier, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _levels(self) -> "Tiers":
        thresholds = [t.threshold for t in self.levels]
        if thresholds[0] != 0:
            raise ValueError("levels: the first tier must start at threshold 0 so every member has a tier")
        if any(b <= a for a, b in zip(thresholds, thresholds[1:])):
            raise ValueError("levels: thresholds overlap; list tiers from lowest to highest with rising thresholds")
        names = [t.name.lower() for t in self.levels]
        if len(set(names)) != len(names):
            raise ValueError("levels: two tiers have the same name")
        if self.basis == "visits" and thresholds[-1] > MAX_VISITS:
            raise ValueError(f"levels.{len(thresholds) - 1}.threshold: {thresholds[-1]} visits is more than "
                             f"{MAX_VISITS:,}; check the value for a typo (with basis = \"spend\" thresholds are amounts)")
        return self


class Campaign(_Doc):
    """A multiplier or fixed bonus limited by weekday, time of day, dates and tier (merchant's time zone)."""

    id: str
    name: str = Field(min_length=1, max_length=40)
    multiplier: Multiplier | None = Field(None, gt=0, **_DECIMAL)
    bonus: Points | None = Field(None, ge=1)
    weekdays: tuple[str, ...] | None = None
    start_time: time | None = None
    end_time: time | None = None
    start_date: date | None = None
    end_date: date | None = None
    tiers: tuple[str, ...] | None = None

    _id = field_validator("id")(_check_id)

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for day in value or ():
            if day.lower()[:3] not in WEEKDAYS or len(day) < 3:
                raise ValueError(f"unknown weekday {day!r}: use {', '.join(WEEKDAYS)}")
        return None if value is None else tuple(d.lower()[:3] for d in value)

    @model_validator(mode="after")
    def _shape(self) -> "Campaign":
        if (self.multiplier is None) == (self.bonus is None):
            raise ValueError("give exactly one of 'multiplier' (e.g. 2) or 'bonus' (e.g. 5)")
        if (self.start_time is None) != (self.end_time is None):
            raise ValueError("give both 'start_time' and 'end_time' (e.g. 14:00 and 16:00), or neither")
        if self.start_time and self.end_time and self.end_time <= self.start_time:
            raise ValueError("end_time must be after start_time")
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date; the campaign would never run")
        return self


class SpendBonus(_Doc):
    min_amount: Amount = Field(gt=0, **_DECIMAL)
    bonus: Points = Field(ge=1)


class Birthday(_Doc):
    amount: Points = Field(ge=1)
    window_days: int = Field(3, ge=0, le=31)


class Referral(_Doc):
    referrer: Points = Field(ge=0)
    referee: Points = Field(ge=0)


class Milestone(_Doc):
    visit: Visits = Field(ge=1)
    bonus: Points = Field(ge=1)


class Bonuses(_Doc):
    signup: Points = Field(0, ge=0)
    birthday: Birthday | None = None
    spend: tuple[SpendBonus, ...] = ()
    milestones: tuple[Milestone, ...] = ()
    referral: Referral | None = None


class Limits(_Doc):
    cooldown_minutes: int = Field(0, ge=0, le=7 * 24 * 60)
    daily_cap: Points | None = Field(None, ge=1, description="most stamps/points earned per local day")
    max_per_scan: Points | None = Field(None, ge=1, description="most stamps/points earned by one scan")


class Expiry(_Doc):
    inactive_months: int | None = Field(None, ge=1, le=120)


MAX_PATTERN_SECONDS = 10.0
"""The longest one LED or buzzer pattern may last: it must be over before the next customer."""

DEFAULT_FEEDBACK: dict[str, dict[str, dict[str, float]]] = {
    "stamped": {"led": {"on": 0.4, "off": 0.1, "n": 1}, "buzzer": {"on": 0.08, "off": 0.05, "n": 1}},
    "reward_ready": {"led": {"on": 0.15, "off": 0.15, "n": 5}, "buzzer": {"on": 0.08, "off": 0.06, "n": 3}},
    "already_stamped": {"led": {"on": 0.1, "off": 0.1, "n": 2}, "buzzer": {"on": 0.05, "off": 0.1, "n": 2}},
    "redeemed": {"led": {"on": 0.8, "off": 0.1, "n": 1}, "buzzer": {"on": 0.4, "off": 0.1, "n": 1}},
    "rejected": {"led": {"on": 0.05, "off": 0.05, "n": 8}, "buzzer": {"on": 0.6, "off": 0.1, "n": 1}},
    "nothing_to_redeem": {"led": {"on": 0.1, "off": 0.3, "n": 4}, "buzzer": {"on": 0.05, "off": 0.25, "n": 4}},
}
"""The patterns every kiosk played before they were configurable; each one the owner leaves out."""


class Pulses(_Doc):
    """*n* pulses of *on* seconds with *off* seconds after each (an LED blink or a buzzer beep)."""

    on: float = Field(gt=0, le=5, description="seconds on per pulse")
    off: float = Field(ge=0, le=5, description="seconds off after each pulse")
    n: int = Field(ge=0, le=20, description="pulses; 0 keeps the LED dark or the buzzer silent")

    @property
    def seconds(self) -> float:
        return self.n * (self.on + self.off)

    @model_validator(mode="after")
    def _short(self) -> "Pulses":
        if self.seconds > MAX_PATTERN_SECONDS:
            raise ValueError(f"{self.n} pulses of {self.on} + {self.off} s last {self.seconds:g} s, more than "
                             f"{MAX_PATTERN_SECONDS:g} s; the next customer would still hear it: use fewer or shorter pulses")
        return self


class Cue(_Doc):
    """What the front panel does for one outcome."""

    led: Pulses
    buzzer: Pulses


def _fill(given, default):
    """*given* with what it leaves out taken from *default*, at every level; anything that is not a
    table (a wrong type, an unknown key) is left as it is for validation to name."""
    if not isinstance(given, dict) or not isinstance(default, dict):
        return given
    return {**default, **{key: _fill(value, default.get(key)) for key, value in given.items()}}


class FeedbackPatterns(_Doc):
    """``[feedback]``: the LED and buzzer pattern per outcome (screens follow ``language``).

    Each outcome, and each of its ``led`` / ``buzzer`` tables, may be given in part: what is
    left out keeps today's pattern (``DEFAULT_FEEDBACK``), e.g. ``[feedback.rejected]
    buzzer = { on = 0.2, off = 0.1, n = 2 }`` changes only the beep of a refused pass.
    """

    stamped: Cue
    reward_ready: Cue
    already_stamped: Cue
    redeemed: Cue
    rejected: Cue
    nothing_to_redeem: Cue

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, raw):
        if not isinstance(raw, dict):
            return raw
        return {**raw, **{outcome: _fill(raw.get(outcome, {}), default) for outcome, default in DEFAULT_FEEDBACK.items()}}

    def cue(self, outcome: str) -> Cue:
        """The cue for *outcome* (a ``kiosk.hardware.panel.Signal`` value)."""
        return getattr(self, outcome)


MESSAGE_TRIGGERS = ("welcome", "birthday", "almost_there", "winback", "tier_reached", "tier_loss", "reward_expiry")
"""The automated messages whose words an experiment may vary (the hub's triggers,
cloud/automations/templates.py; a test keeps the two lists equal)."""
EXPERIMENT_BONUSES = ("signup", "per_visit", "winback")
"""The bonuses an experiment may vary: ``bonuses.signup``, ``earning.per_visit`` (stamps) and
``winback``, the bonus the hub offers with a win-back message (cloud/automations/winback.py;
not a programme value: the hub writes each member's arm into their offer entry, which every
kiosk grants as it stands, and 0 means no offer)."""
MAX_WINBACK_BONUS = 10_000
"""The largest win-back bonus an arm may offer: the bound of the hub's ``[automations] winback_bonus``."""


class Variant(_Doc):
    """One arm of an experiment: the value its members get instead of the programme's."""

    id: str
    value: StrictInt | StrictStr = Field(description="a bonus or a reward cost (whole number), or a message "
                                                     "template key (text)")

    _id = field_validator("id")(_check_id)


class Experiment(_Doc):
    """``[[experiments]]``: an A/B test of one parameter; members are assigned by kiosk/rules/experiments.py.

    From ``started`` (the shop's local date) an enrolled member gets their variant's value; from
    ``ended`` on, everyone gets the ``winner``'s value, or the programme's own without a winner.
    """

    id: str
    name: str = Field(min_length=1, max_length=60)
    varies: Literal["bonus", "reward", "message"]
    target: str = Field(description="bonus: 'signup', 'per_visit' or 'winback' (the win-back offer); "
                                    "reward: the reward's id; "
                                    "message: the automation's trigger, e.g. 'winback'")
    variants: tuple[Variant, ...] = Field(min_length=2, max_length=6)
    share: float = Field(1.0, gt=0, le=1,
                         description="fraction of members enrolled; the rest get the programme's value")
    started: date
    ended: date | None = None
    winner: str | None = None

    _id = field_validator("id")(_check_id)

    @model_validator(mode="after")
    def _shape(self) -> "Experiment":
        ids = [v.id for v in self.variants]
        if len(set(ids)) != len(ids):
            raise ValueError("variants: two variants have the same id; name them e.g. 'a' and 'b'")
        if self.winner is not None and self.winner not in ids:
            raise ValueError(f"winner: {self.winner!r} is not one of the variants ({', '.join(ids)})")
        if self.winner is not None and self.ended is None:
            raise ValueError("winner: set 'ended' too (the day the winner applies to everyone)")
        if self.ended is not None and self.ended < self.started:
            raise ValueError("ended is before started; the experiment would never run")
        if self.varies == "bonus" and self.target not in EXPERIMENT_BONUSES:
            raise ValueError(f"target: a bonus experiment varies one of {', '.join(EXPERIMENT_BONUSES)}, "
                             f"not {self.target!r}")
        if self.varies == "message" and self.target not in MESSAGE_TRIGGERS:
            raise ValueError(f"target: a message experiment varies the words of one of "
                             f"{', '.join(MESSAGE_TRIGGERS)}, not {self.target!r}")
        if self.varies == "reward":
            _check_id(self.target)
        for i, variant in enumerate(self.variants):
            self._check_value(f"variants.{i}.value", variant.value)
        return self

    def _check_value(self, where: str, value: int | str) -> None:
        if self.varies == "message":
            if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
                raise ValueError(f"{where}: a message variant names a template key such as 'winback-short'")
            return
        if not isinstance(value, int):
            raise ValueError(f"{where}: {value!r} is not a whole number of stamps or points")
        bonus_bounds = {"signup": (0, MAX_DELTA), "per_visit": (0, 100), "winback": (0, MAX_WINBACK_BONUS)}
        low, high = bonus_bounds.get(self.target, (1, MAX_DELTA)) if self.varies == "bonus" else (1, MAX_DELTA)
        if not low <= value <= high:
            raise ValueError(f"{where}: {value} is outside {low}..{high:,} for {self.varies} {self.target!r}")

    def variant(self, variant_id: str) -> Variant:
        return next(v for v in self.variants if v.id == variant_id)


class Program(_Doc):
    """A merchant's loyalty programme."""

    name: str = "Stempel"
    timezone: str = "Europe/Berlin"
    language: Literal["en", "de"] = "en"
    earning: Earning = Earning()
    rewards: tuple[Reward, ...] = (Reward(id="free-coffee", name="Free coffee", cost=10),)
    tiers: Tiers | None = None
    campaigns: tuple[Campaign, ...] = ()
    bonuses: Bonuses = Bonuses()
    limits: Limits = Limits(cooldown_minutes=60)
    expiry: Expiry = Expiry()
    feedback: FeedbackPatterns = FeedbackPatterns()
    experiments: tuple[Experiment, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as 'Europe/Berlin'") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Program":
        if not self.rewards:
            raise ValueError("rewards: add at least one reward, or nobody can ever redeem anything")
        ids = [r.id for r in self.rewards] + [c.id for c in self.campaigns]
        if len(set(ids)) != len(ids):
            raise ValueError("rewards/campaigns: ids must be unique")
        tier_names = {t.name.lower() for t in self.tiers.levels} if self.tiers else set()
        for where, names in [(f"rewards[{r.id}].tiers", r.tiers) for r in self.rewards] + \
                            [(f"campaigns[{c.id}].tiers", c.tiers) for c in self.campaigns]:
            if names is None:
                continue
            if not names:
                raise ValueError(f"{where}: an empty list means no one qualifies; remove the field or name tiers")
            unknown = [n for n in names if n.lower() not in tier_names]
            if unknown:
                raise ValueError(f"{where}: unknown tier {unknown[0]!r}; no one can reach it "
                                 f"(tiers are: {', '.join(sorted(tier_names)) or 'none defined'})")
        if self.earning.type == "stamps" and self.earning.per_visit == 0 and not self.campaigns and not self.bonuses.signup:
            raise ValueError("earning.per_visit: 0 stamps per visit and no bonuses; no reward can be reached")
        self._one_scan_fits()
        self._experiments_fit()
        return self

    def _experiments_fit(self) -> None:
        """Each experiment varies something this programme has, and no parameter is varied by two."""
        ids = [e.id for e in self.experiments]
        if len(set(ids)) != len(ids):
            raise ValueError("experiments: ids must be unique")
        varied: dict[tuple[str, str], str] = {}
        for e in self.experiments:
            where = f"experiments[{e.id}]"
            if e.varies == "reward" and self.reward(e.target) is None:
                raise ValueError(f"{where}.target: no reward {e.target!r} (rewards are: "
                                 f"{', '.join(r.id for r in self.rewards)})")
            if e.varies == "bonus" and e.target == "per_visit" and self.earning.type != "stamps":
                raise ValueError(f"{where}.target: per_visit applies to stamp cards; this programme earns points")
            if e.ended is not None and e.winner is None:
                continue  # over, nothing kept: it varies nothing any more
            other = varied.setdefault((e.varies, e.target), e.id)
            if other != e.id:
                raise ValueError(f"{where}: experiment {other!r} already varies {e.varies} {e.target!r}; "
                                 "end one of them, or write its winner into the programme first")

    def _one_scan_fits(self) -> None:
        """A purchase of a sensible size must earn no more than one ledger entry can hold, or the
        kiosk would stamp an event the hub can never take (see ``max_amount``)."""
        if self.limits.max_per_scan is None and self.max_amount < MIN_AMOUNT_ROOM:
            raise ValueError(
                f"earning: {self._per_unit():,} points per {self.earning.currency} (rate × the largest tier and "
                f"campaign multipliers) fill the {MAX_DELTA:,} one ledger entry may hold at a purchase of only "
                f"{self.max_amount:,} {self.earning.currency}; lower the rate or the multipliers, "
                "or set limits.max_per_scan")

    def _per_unit(self) -> Decimal:
        """The most one currency unit (points) or one visit (stamps) can earn, before caps."""
        earning = self.earning
        tier = max((t.multiplier for t in self.tiers.levels), default=Decimal(1)) if self.tiers else Decimal(1)
        campaign = max((c.multiplier for c in self.campaigns if c.multiplier), default=Decimal(1))
        base = Decimal(earning.per_visit) if earning.type == "stamps" else max([b.rate for b in earning.bands]
                                                                               or [earning.rate])
        return base * max(tier, Decimal(1)) * max(campaign, Decimal(1))

    @property
    def max_amount(self) -> Decimal:
        """The largest purchase a kiosk accepts under this programme: at most MAX_AMOUNT, and with
        no ``max_per_scan`` cap, small enough that one scan's earning fits one ledger entry."""
        if self.earning.type == "stamps" or self.limits.max_per_scan is not None:
            return MAX_AMOUNT
        return min(MAX_AMOUNT, (Decimal(MAX_DELTA) / self._per_unit()).to_integral_value(ROUND_FLOOR))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def unit(self) -> str:
        return self.earning.type

    @property
    def cooldown(self) -> timedelta:
        return timedelta(minutes=self.limits.cooldown_minutes)

    def reward(self, reward_id: str) -> Reward | None:
        return next((r for r in self.rewards if r.id == reward_id), None)

    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers.levels] if self.tiers else []


def parse_program(raw: dict, source: str = "programme") -> Program:
    """Validate a programme document (a parsed TOML/JSON mapping); raises ConfigError."""
    try:
        return Program.model_validate(raw)
    except ValidationError as exc:
        raise explain(exc, source, whole="programme") from exc


def load_program(path: Path | str) -> Program:
    """Read and validate a programme TOML file; raises ConfigError naming the field and the fix."""
    return parse_program(read_toml(Path(path), "give the path of a programme TOML"), str(path))

