"""What a ledger event may hold, checked the same way by the hub (ingest) and the kiosks (hub ledger).

A kiosk folds every event of its merchant into balances (kiosk/rules/state.py), and the hub
stores them in typed columns, so an event is refused unless every field fits both: strings
without control characters (PostgreSQL cannot store NUL) or lone surrogates and within their
column lengths, integers within BIGINT/INTEGER, and a ``detail`` that matches its kind's
schema below. The schemas list exactly the keys the engine writes (kiosk/rules/engine.py,
kiosk/ledger.py, kiosk/app.py); being closed and flat they also bound the depth and size of
``detail``. The clock window (``check_time``) is the hub's alone: a kiosk's own clock may be
wrong (no RTC), the hub's is the reference.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from kiosk.protocol.ids import WIRE_ID_PATTERN
from kiosk.rules.state import ADJUST, BONUS, EARN, EXPIRE, OFFER, PROFILE, REDEEM, TIER_CHANGE, VISIT, WINBACK_RULE

SCAN_REJECTED = "scan_rejected"  # kiosk/ledger.py writes it for a refused code
KINDS = (VISIT, EARN, BONUS, REDEEM, EXPIRE, TIER_CHANGE, ADJUST, PROFILE, OFFER, SCAN_REJECTED)

INT64_MAX = 2**63 - 1  # BIGINT (PostgreSQL) and INTEGER (SQLite) columns
DELTA_MAX = 1_000_000  # ``delta`` is an INTEGER column; no single entry moves a balance further
MAX_DETAIL_BYTES = 1024  # ``detail`` as compact JSON
PREVIEW_CHARS = 48  # what a ``scan_rejected`` event keeps of the code that was shown

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # controls (NUL included), lone surrogates


def clean_text(value: str) -> str:
    """*value* if it holds no control character or lone surrogate, else ValueError."""
    bad = _UNSAFE.search(value)
    if bad:
        raise ValueError(f"control character or surrogate U+{ord(bad.group()):04X} at {bad.start()}")
    return value


def printable(text: str) -> str:
    """*text* with every control character and lone surrogate replaced by U+FFFD (for previews
    of codes a customer showed, which may hold any byte)."""
    return _UNSAFE.sub("\ufffd", text)


def Text(max_length: int, min_length: int = 0) -> Any:  # noqa: N802  (a type factory)
    """A string type: within *max_length* characters, no control characters."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length), AfterValidator(clean_text)]


def _decimal(value: str) -> str:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not number.is_finite() or abs(number) >= Decimal(10) ** 12:
        raise ValueError(f"{value!r} is not a finite amount below 10^12")
    return value


def _iso_date(value: str) -> str:
    date.fromisoformat(value)  # ValueError names the problem
    return value


def _iso_datetime(value: str) -> str:
    if datetime.fromisoformat(value).tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return value


DecimalText = Annotated[str, Field(max_length=40), AfterValidator(_decimal)]
IsoDate = Annotated[str, Field(max_length=10), AfterValidator(_iso_date)]
IsoDateTime = Annotated[str, Field(max_length=40), AfterValidator(_iso_datetime)]
MemberId = Annotated[str, Field(pattern=WIRE_ID_PATTERN)]


class _Detail(BaseModel):
    """Closed (unknown keys refused), strict (no "5" for 5), flat: every kind's detail."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False, populate_by_name=True)
    cause: Text(64) | None = None  # the visit or redemption behind the entry (kiosk/ledger.py adds it)


class _Attributed(_Detail):
    """An entry an A/B test's variant may have made names it (kiosk/rules/experiments.py ``label``)."""

    experiment: Annotated[str, Field(pattern=WIRE_ID_PATTERN)] | None = None
    variant: Annotated[str, Field(pattern=WIRE_ID_PATTERN)] | None = None


class VisitDetail(_Detail):
    amount: DecimalText | None = None
    boot: Text(64, 1) | None = None
    mono: float | None = Field(None, ge=0, le=1e12)

    @model_validator(mode="after")
    def _clock_pair(self) -> "VisitDetail":
        if (self.boot is None) != (self.mono is None):  # the fold reads both or neither
            raise ValueError("boot and mono come together")
        return self


class EarnDetail(_Attributed):
    amount: DecimalText | None = None
    multiplier: DecimalText | None = None
    bonus: int | None = Field(None, ge=0, le=DELTA_MAX)
    min_amount: DecimalText | None = None
    capped: bool | None = None


class BonusDetail(_Attributed):
    occurrence: IsoDate | None = None
    referrer: MemberId | None = None
    referee: MemberId | None = None
    offer: Text(64, 1) | None = None  # the offer a ``winback-bonus`` grants


class RedeemDetail(_Attributed):
    pass


class ExpireDetail(_Attributed):
    inactive_since: IsoDateTime | None = None
    months: int | None = Field(None, ge=0, le=1200)
    affordable_since: IsoDateTime | None = None


class TierChangeDetail(_Detail):
    from_: Text(64) | None = Field(None, alias="from")
    to: Text(64) | None = None
    reason: Text(200) | None = None


class AdjustDetail(_Detail):
    by: Text(254, 1)  # the owner's login that made it
    note: Text(200, 1)  # the reason they gave


class ProfileDetail(_Detail):
    birthday: Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")] | None = None  # MM-DD
    referred_by: MemberId | None = None

    @model_validator(mode="after")
    def _a_real_day(self) -> "ProfileDetail":
        if self.birthday is not None:
            month, day = map(int, self.birthday.split("-"))
            date(2000, month, day)  # ValueError for 02-30, 04-31 (2000 has a 29 February)
        return self


class OfferDetail(_Attributed):
    """A bonus the hub offers for the next credited visit up to ``expires`` (the last local day);
    ``experiment`` and ``variant`` when an A/B test of the win-back offer chose the bonus."""

    bonus: int = Field(ge=1, le=DELTA_MAX)
    expires: IsoDate
    offer: Text(64, 1)


class ScanRejectedDetail(_Detail):
    detail: Text(200) | None = None
    codes: int | None = Field(None, ge=0, le=1000)
    preview: Text(PREVIEW_CHARS) | None = None


DETAILS: dict[str, type[_Detail]] = {VISIT: VisitDetail, EARN: EarnDetail, BONUS: BonusDetail, REDEEM: RedeemDetail,
                                     EXPIRE: ExpireDetail, TIER_CHANGE: TierChangeDetail, ADJUST: AdjustDetail,
                                     PROFILE: ProfileDetail, OFFER: OfferDetail,
                                     SCAN_REJECTED: ScanRejectedDetail}


def check_detail(kind: str, rule: str | None, detail: dict[str, Any]) -> None:
    """Raise ValueError unless *detail* is what a kiosk writes for *kind* (and *rule*)."""
    schema = DETAILS.get(kind)
    if schema is None:
        raise ValueError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    try:
        size = len(json.dumps(detail, separators=(",", ":")))
    except (TypeError, ValueError, RecursionError):
        raise ValueError("detail is not plain JSON") from None
    if size > MAX_DETAIL_BYTES:
        raise ValueError(f"detail has {size} bytes (at most {MAX_DETAIL_BYTES})")
    try:
        checked = schema.model_validate(detail)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"detail of a {kind} event: [{where}] {first['msg']}") from None
    if kind == BONUS and rule == "birthday-bonus" and checked.occurrence is None:
        raise ValueError("a birthday bonus names its occurrence")  # the fold reads it
    if kind == BONUS and rule == WINBACK_RULE and checked.offer is None:
        raise ValueError("a win-back bonus names its offer")  # the fold closes that offer


_EARLIEST = datetime(1900, 1, 1, tzinfo=timezone.utc)
_LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)


def check_plausible_time(at: datetime) -> None:
    """Raise ValueError for a date no clock gives (year 1 or 9999: converting it to another
    time zone overflows, which would crash a kiosk's fold). Any kiosk clock passes, even an
    unset one at 1970; the hub's clock window is the real bound."""
    try:
        inside = _EARLIEST <= at <= _LATEST
    except OverflowError:
        inside = False
    if not inside:
        raise ValueError(f"occurred_at {at.isoformat()} is not between 1900 and 9000")


@dataclass(frozen=True)
class ClockWindow:
    """How far an event's ``occurred_at`` may be from the hub's clock.

    Ahead: a few minutes of clock skew; an event "from the future" would make its member
    "already stamped" on every kiosk until then. Behind: a kiosk may be offline for weeks and
    then send its backlog, so the default is ten years (a refused event is dead-lettered and settled:
    its ack moves past it). What it stops is a clock never set (1970) or a date no kiosk made.
    """

    future: timedelta = timedelta(minutes=5)
    past: timedelta = timedelta(days=3650)


def check_time(at: datetime, now: datetime, window: ClockWindow) -> None:
    """Raise ValueError if *at* is outside *window* around *now* (both aware)."""
    try:
        ahead = at - now
    except OverflowError:  # a date at the edge of datetime's range, with an offset
        raise ValueError(f"occurred_at {at.isoformat()} is out of range") from None
    if ahead > window.future:
        raise ValueError(f"occurred_at {at.isoformat()} is {_span(ahead)} ahead of the hub's clock "
                         f"(at most {_span(window.future)})")
    if -ahead > window.past:
        raise ValueError(f"occurred_at {at.isoformat()} is {_span(-ahead)} behind the hub's clock "
                         f"(at most {_span(window.past)})")


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds >= 2 * 86400:
        return f"{math.floor(seconds / 86400)} days"
    return f"{math.floor(seconds / 60)} minutes"
