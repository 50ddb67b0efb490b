"""A merchant's programme at the hub: the one in force, drafts checked and previewed, versions.

The programme in force is the newest merchant-wide ``config_revisions`` row (what
``stempel-hub config push`` and the owner's editor publish); a merchant that never pushed one
runs the engine's defaults, as a kiosk with no programme file would. Drafts are TOML, checked
with the kiosk's own schema, so an error names the field exactly as the kiosk would.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import tomli_w
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cloud.models import ConfigRevision, HubEvent
from kiosk.common.errors import ConfigError
from kiosk.protocol.event import from_hub
from kiosk.rules.program import Program, parse_program
from kiosk.rules.simulate import Row, Simulation, simulate

MAX_SOURCE = 64 * 1024  # a programme is a few KiB of TOML


@dataclass(frozen=True)
class Revision:
    version: int
    created_at: datetime
    created_by: str | None
    program: Program
    source: str  # the TOML as written, or rendered from the document for older revisions


def _revision(row: ConfigRevision) -> Revision:
    raw = json.loads(row.document)["program"]
    program = parse_program(raw, f"version {row.version}")
    return Revision(row.version, row.created_at, row.created_by, program, row.source or to_toml(program))


def to_toml(program: Program) -> str:
    """*program* as TOML (for revisions stored without their source)."""
    return tomli_w.dumps(program.model_dump(mode="json", exclude_none=True))


def current(engine: Engine, merchant: str) -> Revision | None:
    """The programme in force for *merchant*, or None if none was ever published."""
    with Session(engine) as session:
        row = session.scalars(select(ConfigRevision).where(ConfigRevision.merchant_id == merchant,
                                                           ConfigRevision.kiosk_id == "")
                              .order_by(ConfigRevision.version.desc()).limit(1)).first()
        return _revision(row) if row is not None else None


def program_of(engine: Engine, merchant: str) -> Program:
    """The programme the engine runs for *merchant* (its defaults when none was published)."""
    revision = current(engine, merchant)
    return revision.program if revision is not None else Program()


def history(engine: Engine, merchant: str, limit: int = 50) -> list[Revision]:
    with Session(engine) as session:
        rows = session.scalars(select(ConfigRevision).where(ConfigRevision.merchant_id == merchant,
                                                            ConfigRevision.kiosk_id == "")
                               .order_by(ConfigRevision.version.desc()).limit(limit))
        return [_revision(r) for r in rows]


def revision(engine: Engine, merchant: str, version: int) -> Revision:
    with Session(engine) as session:
        row = session.scalars(select(ConfigRevision).where(ConfigRevision.merchant_id == merchant,
                                                           ConfigRevision.kiosk_id == "",
                                                           ConfigRevision.version == version)).first()
        if row is None:
            raise ConfigError(f"no version {version} of this programme")
        return _revision(row)


def parse_draft(source: str) -> Program:
    """A draft from the editor; raises ConfigError with one ``[field] message`` line per error."""
    if len(source) > MAX_SOURCE:
        raise ConfigError(f"the programme has {len(source):,} characters; at most {MAX_SOURCE:,} are allowed")
    try:
        raw = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"draft: [toml] not valid TOML: {exc}") from None
    return parse_program(raw, "draft")


def diff(old: Revision, new: Revision) -> str:
    """A unified diff of two versions' TOML."""
    return "".join(difflib.unified_diff(old.source.splitlines(keepends=True), new.source.splitlines(keepends=True),
                                        f"version {old.version}", f"version {new.version}"))


@dataclass(frozen=True)
class Preview:
    members: int
    visits: int
    rewards_now: int
    rewards_draft: int
    balances_changed: int


def preview(engine: Engine, merchant: str, draft: Program, now: datetime, days: int = 90) -> Preview:
    """Replay the shop's real visits and redemptions of the last *days* through the engine under
    the programme in force and under *draft*: how many rewards each would have given."""
    since = now - timedelta(days=days)
    with Session(engine) as session:
        rows = session.execute(select(HubEvent).where(HubEvent.merchant_id == merchant, HubEvent.kind == "visit",
                                                      HubEvent.occurred_at >= since)
                               .order_by(HubEvent.occurred_at, HubEvent.event_id)).scalars().all()
        visits = [from_hub(r) for r in rows]
    csv_rows = [Row(i + 2, e.member or "", e.occurred_at, _amount(e.detail), None, None, None)
                for i, e in enumerate(visits) if e.member]
    before = simulate(program_of(engine, merchant), csv_rows)
    after = simulate(draft, csv_rows)
    changed = sum(1 for m in after.states if after.states[m].balance != before.states[m].balance)
    return Preview(len(after.states), len(csv_rows), _rewards(before, program_of(engine, merchant)),
                   _rewards(after, draft), changed)


def _amount(detail: dict) -> Decimal | None:
    return Decimal(detail["amount"]) if detail.get("amount") else None


def _rewards(run: Simulation, program: Program) -> int:
    """Rewards a run made available: one per cheapest-reward cost earned (redemptions are not
    replayed, so a member's whole earning counts)."""
    cheapest = min(r.cost for r in program.rewards)
    return sum(state.balance // cheapest for state in run.states.values())
