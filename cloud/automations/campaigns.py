"""Campaign announcements: the owner writes a subject and a text (English and/or German) and sends
them to a segment (segments.py). Sending plans one message row per member (trigger ``campaign``,
occasion = the campaign's id) through outbox.record, so consent, the weekly cap, quiet hours,
channels, unsubscribe and "never twice" work as for every automated message; a second send of the
same campaign records nothing new.

The words live in the hub database, table ``campaigns`` (models.CampaignRow, migration 0008), so
every web and automations worker reads them wherever it runs, with no shared data directory.

The previous release kept each campaign as a JSON file, ``<data_dir>/campaigns/<merchant>/<id>.json``.
A store made with the hub's data directory imports the files it still finds there, once
(import_files): a row is inserted only if its id is new (ON CONFLICT DO NOTHING, so several
workers starting together import each campaign once), then the file is renamed
``<id>.json.imported`` and kept. A file that is malformed, in another merchant's folder or whose
id is taken by another merchant stays where it is, with one warning naming it and the reason.

Owner texts are ``string.Template`` texts with the placeholders of templates.py; a misspelt or
unknown placeholder, or a bare ``$``, is refused when the campaign is saved, never at sending.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cloud.automations import outbox, segments
from cloud.automations.planner import candidates
from cloud.automations.templates import LANGUAGES, Text, check_words
from cloud.automations.triggers import Due
from cloud.events.sql import Dialect
from cloud.metrics.activity import utc
from cloud.metrics.queries import snapshot
from cloud.models import CampaignRow
from kiosk.common.errors import ConfigError
from kiosk.protocol.ids import ID_PATTERN
from kiosk.rules.program import Program

log = logging.getLogger(__name__)

CAMPAIGN = "campaign"
PLACEHOLDERS = frozenset({"first_name", "shop", "balance", "unit", "reward", "remaining", "card_url", "tier"})
VALID = timedelta(days=7)  # a campaign message held back longer (cap, quiet hours) is dropped
_ID = re.compile(r"\Ac\d{14}-[0-9a-f]{4}\Z")  # 20 characters: fits the messages' occasion with '@webhook'


@dataclass(frozen=True)
class Campaign:
    id: str
    merchant: str
    segment: str
    texts: dict[str, Text]  # language -> words; at least one
    created_at: datetime
    created_by: str
    tier: str | None = None
    sent_at: datetime | None = None
    planned: int = 0
    sent_by: str | None = None

    def text(self, language: str) -> Text:
        """The words in *language*, else in the other language written."""
        return self.texts.get(language) or next(iter(self.texts.values()))

    def to_json(self) -> dict:
        """The previous release's file format (``<data_dir>/campaigns/<merchant>/<id>.json``)."""
        return {"id": self.id, "merchant": self.merchant, "segment": self.segment, "tier": self.tier,
                "texts": {lang: {"subject": t.subject, "body": t.body} for lang, t in self.texts.items()},
                "created_at": self.created_at.isoformat(), "created_by": self.created_by,
                "sent_at": self.sent_at.isoformat() if self.sent_at else None, "planned": self.planned,
                "sent_by": self.sent_by}

    @classmethod
    def from_json(cls, doc: dict) -> "Campaign":
        """A campaign from the previous release's file; raises KeyError, TypeError or ValueError."""
        return cls(doc["id"], doc["merchant"], doc["segment"],
                   {lang: Text(t["subject"], t["body"]) for lang, t in doc["texts"].items()},
                   datetime.fromisoformat(doc["created_at"]), doc["created_by"], doc.get("tier"),
                   datetime.fromisoformat(doc["sent_at"]) if doc.get("sent_at") else None, doc.get("planned", 0),
                   doc.get("sent_by"))


def check_text(language: str, subject: str, body: str) -> Text:
    """The owner's words as a Text; raises ConfigError naming the fix."""
    return check_words(language, subject, body, PLACEHOLDERS, "campaign", "or leave both empty")


def new_campaign(merchant: str, segment: str, tier: str | None, words: dict[str, tuple[str, str]],
                 program: Program, by: str, now: datetime) -> Campaign:
    """A checked, unsent campaign; *words* maps a language to (subject, body), empty ones skipped.
    Raises ConfigError naming the fix."""
    segments.check(segment, tier, program)
    texts = {lang: check_text(lang, s, b) for lang, (s, b) in words.items()
             if lang in LANGUAGES and (s.strip() or b.strip())}
    if not texts:
        raise ConfigError("write a subject and a message in English or German (or both)")
    campaign_id = f"c{utc(now):%Y%m%d%H%M%S}-{secrets.token_hex(2)}"
    return Campaign(campaign_id, merchant, segment, texts, utc(now), by, tier if segment == "tier" else None)


class CampaignStore:
    """The owner's campaigns in the ``campaigns`` table. Made with the hub's *data_dir*, it first
    imports the previous release's campaign files found there (import_files; ``imported`` says
    what that did): every web and automations worker makes its store so, and the first one to
    start imports them."""

    def __init__(self, engine: Engine, data_dir: Path | None = None) -> None:
        self.engine = engine
        self.imported = import_files(engine, data_dir) if data_dir is not None else Imported()

    def save(self, campaign: Campaign) -> None:
        """Insert *campaign* or replace its row (one statement: a reader never sees half). Raises
        ConfigError for a malformed id or merchant, or an id that is another merchant's."""
        if not ID_PATTERN.fullmatch(campaign.merchant) or not _ID.fullmatch(campaign.id):
            raise ConfigError(f"campaign id {campaign.id!r} or merchant {campaign.merchant!r} is malformed")
        values = _row(campaign)
        statement = (Dialect(self.engine).upsert(CampaignRow.__table__).values(values)
                     .on_conflict_do_update(index_elements=["id"], set_=values,
                                            where=CampaignRow.__table__.c.merchant_id == campaign.merchant)
                     .returning(CampaignRow.__table__.c.id))
        with self.engine.begin() as conn:
            if conn.execute(statement).first() is None:
                raise ConfigError(f"campaign id {campaign.id} is another merchant's: write the campaign anew")

    def get(self, merchant: str, campaign_id: str) -> Campaign | None:
        """*merchant*'s campaign *campaign_id*, or None (another merchant's is None too)."""
        if not ID_PATTERN.fullmatch(merchant) or not _ID.fullmatch(campaign_id):
            return None
        with Session(self.engine) as session:
            row = session.get(CampaignRow, campaign_id)
            return _campaign(row) if row is not None and row.merchant_id == merchant else None

    def list(self, merchant: str) -> list[Campaign]:
        """*merchant*'s campaigns, newest first."""
        if not ID_PATTERN.fullmatch(merchant):
            return []
        with Session(self.engine) as session:
            rows = session.scalars(select(CampaignRow).where(CampaignRow.merchant_id == merchant)
                                   .order_by(CampaignRow.created_at.desc(), CampaignRow.id.desc()))
            return [_campaign(r) for r in rows]

    def text(self, merchant: str, campaign_id: str, language: str) -> Text:
        """The words of a campaign message; raises ConfigError if the campaign is gone."""
        campaign = self.get(merchant, campaign_id)
        if campaign is None:
            raise ConfigError(f"campaign {campaign_id} of {merchant} is not in the hub's database")
        return campaign.text(language)


def _row(campaign: Campaign) -> dict:
    """*campaign* as the values of its ``campaigns`` row."""
    return {"id": campaign.id, "merchant_id": campaign.merchant, "segment": campaign.segment, "tier": campaign.tier,
            "texts": {lang: {"subject": t.subject, "body": t.body} for lang, t in campaign.texts.items()},
            "created_at": utc(campaign.created_at), "created_by": campaign.created_by,
            "sent_at": utc(campaign.sent_at) if campaign.sent_at else None, "planned": campaign.planned,
            "sent_by": campaign.sent_by}


def _campaign(row: CampaignRow) -> Campaign:
    return Campaign(row.id, row.merchant_id, row.segment,
                    {lang: Text(t["subject"], t["body"]) for lang, t in row.texts.items()},
                    utc(row.created_at), row.created_by, row.tier, utc(row.sent_at) if row.sent_at else None,
                    row.planned, row.sent_by)


# -- the one-time import of the previous release's files ------------------------------------------

IMPORTED = ".imported"  # ``<id>.json`` becomes ``<id>.json.imported`` once its row is in the table


@dataclass
class Imported:
    """What one import_files did: ids inserted now, ids already in the table (imported before,
    or by another worker at the same moment), and the files left in place with the reason."""

    imported: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    refused: dict[Path, str] = field(default_factory=dict)


def import_files(engine: Engine, data_dir: Path) -> Imported:
    """Insert each campaign file of ``<data_dir>/campaigns/<merchant>/`` whose id is not in the
    table yet, then rename it ``<id>.json.imported``. A malformed file is left in place and
    logged once, as a warning naming it and the reason; the others are imported all the same.
    Safe to run in several processes at once. Raises only the database's errors."""
    done = Imported()
    root = Path(data_dir) / "campaigns"
    if not root.is_dir():
        return done
    for path in sorted(root.glob("*/*.json")):
        try:
            campaign = _legacy(path)
        except FileNotFoundError:
            continue  # another worker imported and renamed it a moment ago
        except (OSError, ValueError) as exc:
            done.refused[path] = str(exc)
            continue
        owner = _insert(engine, campaign)
        if owner is None:
            done.imported.append(campaign.id)
        elif owner == campaign.merchant:
            done.present.append(campaign.id)
        else:
            done.refused[path] = f"campaign id {campaign.id} is already merchant {owner}'s"
            continue
        try:
            path.rename(path.with_name(path.name + IMPORTED))
        except FileNotFoundError:
            pass  # renamed by another worker importing at the same time
    for path, why in done.refused.items():
        log.warning("automations.campaign_file_refused", extra={"file": str(path), "reason": why})
    if done.imported:
        log.info("automations.campaign_files_imported", extra={"imported": len(done.imported),
                                                               "folder": str(root)})
    return done


def _insert(engine: Engine, campaign: Campaign) -> str | None:
    """Insert *campaign* unless its id is taken: None if inserted, else the merchant that has it."""
    statement = (Dialect(engine).upsert(CampaignRow.__table__).values(_row(campaign))
                 .on_conflict_do_nothing(index_elements=["id"]).returning(CampaignRow.__table__.c.id))
    with engine.begin() as conn:
        if conn.execute(statement).first() is not None:
            return None
        return conn.scalar(select(CampaignRow.merchant_id).where(CampaignRow.id == campaign.id))


def _legacy(path: Path) -> Campaign:
    """The campaign in the previous release's file *path*; raises ValueError saying what is wrong
    (OSError if it cannot be read)."""
    merchant, campaign_id = path.parent.name, path.name.removesuffix(".json")
    if not ID_PATTERN.fullmatch(merchant):
        raise ValueError(f"the folder {merchant!r} is no merchant id")
    if not _ID.fullmatch(campaign_id):
        raise ValueError(f"the file name {path.name!r} is no campaign id (c<14 digits>-<4 hex digits>.json)")
    try:
        doc = json.loads(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("id") != campaign_id:
        raise ValueError(f"its id {doc.get('id')!r} is not its file name's {campaign_id!r}")
    if doc.get("merchant") != merchant:
        raise ValueError(f"it is merchant {doc.get('merchant')!r}'s campaign, in merchant {merchant!r}'s folder")
    try:
        campaign = Campaign.from_json(doc)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"a field is missing or of the wrong type ({type(exc).__name__}: {exc})") from None
    _check_legacy(campaign)
    return campaign


def _check_legacy(campaign: Campaign) -> None:
    """What the table and the sending need of a campaign from a file; raises ValueError."""
    if campaign.segment not in segments.SEGMENTS:
        raise ValueError(f"unknown segment {campaign.segment!r}")
    texts = campaign.texts
    if not texts or not set(texts) <= set(LANGUAGES):
        raise ValueError(f"texts in {sorted(texts)!r}: give one or both of {', '.join(LANGUAGES)}")
    for language, words in texts.items():
        if not isinstance(words.subject, str) or not isinstance(words.body, str):
            raise ValueError(f"the {language} subject and body must be text")
        try:
            check_text(language, words.subject, words.body)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    for name, value, most in (("tier", campaign.tier, 32), ("created_by", campaign.created_by, 254),
                              ("sent_by", campaign.sent_by, 254)):
        if (value is not None or name == "created_by") and (not isinstance(value, str) or len(value) > most):
            raise ValueError(f"{name} must be text of at most {most} characters")
    if type(campaign.planned) is not int or campaign.planned < 0:
        raise ValueError(f"planned must be a whole number of messages, not {campaign.planned!r}")


@dataclass
class Planned:
    """What sending a campaign did: members in the segment, of them reachable, rows recorded."""

    in_segment: int = 0
    reachable: int = 0
    recorded: dict[str, int] = field(default_factory=dict)


def plan(engine: Engine, campaign: Campaign, program: Program, now: datetime,
         channels: tuple[str, ...] | list[str] = (outbox.EMAIL,)) -> Planned:
    """Record one ``campaign`` row per member of the segment who may get marketing (consent, not
    erased or revoked; an address for e-mail), per channel. Raises ConfigError (segment)."""
    done = Planned()
    with snapshot(engine) as conn:
        wanted = segments.members(conn, campaign.merchant, now, program, campaign.segment, campaign.tier)
        people = candidates(conn, campaign.merchant, now, need_email=False)
    done.in_segment = len(wanted)
    chosen = [(c.member_id, email) for c, email in people if c.member_id in wanted]
    done.reachable = len(chosen)
    until = utc(now) + VALID
    with engine.begin() as conn:
        for channel in channels:
            dues = [Due(m, CAMPAIGN, campaign.id, until) for m, email in chosen if email or channel != outbox.EMAIL]
            done.recorded[channel] = outbox.record(conn, campaign.merchant, dues, now, channel)
    log.info("automations.campaign_planned", extra={"merchant": campaign.merchant, "campaign": campaign.id,
                                                    "segment": campaign.segment, "in_segment": done.in_segment,
                                                    "recorded": sum(done.recorded.values())})
    return done


def mark_sent(store: CampaignStore, campaign: Campaign, planned: Planned, by: str, now: datetime) -> Campaign:
    done = replace(campaign, sent_at=utc(now), planned=sum(planned.recorded.values()), sent_by=by)
    store.save(done)
    return done
