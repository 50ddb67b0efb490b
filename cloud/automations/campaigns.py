"""Campaign announcements: the owner writes a subject and a text (English and/or German) and sends
them to a segment (segments.py). Sending plans one message row per member (trigger ``campaign``,
occasion = the campaign's id) through outbox.record, so consent, the weekly cap, quiet hours,
channels, unsubscribe and "never twice" work as for every automated message; a second send of the
same campaign records nothing new.

The words are not in the database (no migration for this slice): each campaign is a small JSON
file, ``<data_dir>/campaigns/<merchant>/<id>.json``, written whole and renamed into place. The
worker reads the words from there when it writes each message, so every worker must see the same
data directory — as it must already for the merchants' signing keys (cloud/keys.py).

Owner texts are ``string.Template`` texts with the placeholders of templates.py; a misspelt or
unknown placeholder, or a bare ``$``, is refused when the campaign is saved, never at sending.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from string import Template

from sqlalchemy.engine import Engine

from cloud.automations import outbox, segments
from cloud.automations.planner import candidates
from cloud.automations.templates import LANGUAGES, Text
from cloud.automations.triggers import Due
from cloud.metrics.activity import utc
from cloud.metrics.queries import snapshot
from kiosk.common.errors import ConfigError
from kiosk.protocol.ids import ID_PATTERN
from kiosk.rules.program import Program

log = logging.getLogger(__name__)

CAMPAIGN = "campaign"
PLACEHOLDERS = frozenset({"first_name", "shop", "balance", "unit", "reward", "remaining", "card_url", "tier"})
SUBJECT_MAX, BODY_MAX = 150, 5000
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
        return {"id": self.id, "merchant": self.merchant, "segment": self.segment, "tier": self.tier,
                "texts": {lang: {"subject": t.subject, "body": t.body} for lang, t in self.texts.items()},
                "created_at": self.created_at.isoformat(), "created_by": self.created_by,
                "sent_at": self.sent_at.isoformat() if self.sent_at else None, "planned": self.planned,
                "sent_by": self.sent_by}

    @classmethod
    def from_json(cls, doc: dict) -> "Campaign":
        return cls(doc["id"], doc["merchant"], doc["segment"],
                   {lang: Text(t["subject"], t["body"]) for lang, t in doc["texts"].items()},
                   datetime.fromisoformat(doc["created_at"]), doc["created_by"], doc.get("tier"),
                   datetime.fromisoformat(doc["sent_at"]) if doc.get("sent_at") else None, doc.get("planned", 0),
                   doc.get("sent_by"))


def check_text(language: str, subject: str, body: str) -> Text:
    """The owner's words as a Text; raises ConfigError naming the fix."""
    what = {"en": "English", "de": "German"}[language]
    subject, body = subject.strip(), body.replace("\r\n", "\n").strip()
    if not subject or not body:
        raise ConfigError(f"the {what} text needs both a subject and a message (or leave both empty)")
    if "\n" in subject or len(subject) > SUBJECT_MAX or len(body) > BODY_MAX:
        raise ConfigError(f"the {what} subject must be one line of at most {SUBJECT_MAX} characters and the "
                          f"message at most {BODY_MAX}")
    for part in (subject, body):
        template = Template(part)
        if not template.is_valid():
            raise ConfigError(f"the {what} text has a '$' that is no placeholder: write $$ for a dollar sign, "
                              f"or one of {', '.join('$' + p for p in sorted(PLACEHOLDERS))}")
        unknown = set(template.get_identifiers()) - PLACEHOLDERS
        if unknown:
            raise ConfigError(f"the {what} text uses unknown placeholder(s) {', '.join(sorted(unknown))}: use "
                              f"{', '.join('$' + p for p in sorted(PLACEHOLDERS))}")
    return Text(subject, body)


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
    """``<data_dir>/campaigns/<merchant>/<id>.json``; the directories are 0700."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "campaigns"

    def _path(self, merchant: str, campaign_id: str) -> Path | None:
        if not ID_PATTERN.fullmatch(merchant) or not _ID.fullmatch(campaign_id):
            return None
        return self.root / merchant / f"{campaign_id}.json"

    def save(self, campaign: Campaign) -> None:
        """Write *campaign* whole (a temporary file renamed into place: a reader never sees half)."""
        path = self._path(campaign.merchant, campaign.id)
        if path is None:
            raise ConfigError(f"campaign id {campaign.id!r} or merchant {campaign.merchant!r} is malformed")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        temporary.write_text(json.dumps(campaign.to_json(), ensure_ascii=False, indent=1))
        os.replace(temporary, path)

    def get(self, merchant: str, campaign_id: str) -> Campaign | None:
        """*merchant*'s campaign *campaign_id*, or None (another merchant's is None too)."""
        path = self._path(merchant, campaign_id)
        if path is None or not path.is_file():
            return None
        campaign = Campaign.from_json(json.loads(path.read_text()))
        return campaign if campaign.merchant == merchant else None

    def list(self, merchant: str) -> list[Campaign]:
        """*merchant*'s campaigns, newest first."""
        folder = self.root / merchant
        if not ID_PATTERN.fullmatch(merchant) or not folder.is_dir():
            return []
        found = (self.get(merchant, p.stem) for p in folder.glob("c*.json"))
        return sorted((c for c in found if c is not None), key=lambda c: c.created_at, reverse=True)

    def text(self, merchant: str, campaign_id: str, language: str) -> Text:
        """The words of a campaign message; raises ConfigError if the campaign is gone."""
        campaign = self.get(merchant, campaign_id)
        if campaign is None:
            raise ConfigError(f"campaign {campaign_id} of {merchant} is not in {self.root}: every worker needs the "
                              "hub's data directory")
        return campaign.text(language)


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
