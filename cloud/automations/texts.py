"""The owner's words for the automated messages (issue 11): per merchant, message key and language,
in ``message_texts`` (cloud/models.py MessageText). Without a row the built-in words of
templates.py apply.

A key is a trigger (``winback``) or a template key an A/B test's message variant names
(``varies = "message"``, e.g. ``winback-short``; kiosk/rules/experiments.py). Which words a
member gets is ``words_for``: their variant's key first, then the owner's words for the trigger,
then None — the built-in ones. The worker asks it for every channel (e-mail, webhook) and the
card's inbox asks it when it writes a message, so all three carry the same words.

Owner texts are ``string.Template`` texts checked when saved, never at sending: one-line subject,
bounded body, no bare ``$``, and only the placeholders the trigger's values always hold
(compose.values): the tier and expiry ones only for their triggers. ``$bonus`` and ``$nps_url``
are never ones (only some members have them): templates.render adds the win-back offer's and the
NPS question's paragraphs to the owner's words as to the built-in ones.

A message A/B test may name any trigger (the programme checks ``target`` against
kiosk/rules/program.py ``MESSAGE_TRIGGERS``, which a test keeps equal to templates.py's).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.automations.templates import LANGUAGES, TEXTS, Text, check_words
from cloud.metrics.activity import utc
from cloud.models import MessageText
from kiosk.common.errors import ConfigError
from kiosk.protocol.ids import ID_PATTERN
from kiosk.rules.calendar import local
from kiosk.rules.experiments import message_for
from kiosk.rules.program import Program

log = logging.getLogger(__name__)

TRIGGERS: tuple[str, ...] = tuple(dict.fromkeys(trigger for trigger, _ in TEXTS))
LABELS = {"welcome": "Welcome", "birthday": "Birthday", "winback": "Win-back", "almost_there": "Almost there",
          "tier_reached": "Tier reached", "tier_loss": "Tier about to run out",
          "reward_expiry": "Reward about to expire"}
COMMON = frozenset({"first_name", "shop", "balance", "unit", "reward", "remaining", "card_url"})
_EXTRA = {"tier_reached": {"tier", "tier_until"}, "tier_loss": {"tier", "tier_until"},
          "reward_expiry": {"expiring", "expires"}}  # card_extras.py: empty for other members, so not offered
_SAVE_ATTEMPTS = 2  # a second owner inserting the same row at once: the retry updates it

Bind = Engine | Connection | Session


@dataclass(frozen=True)
class Variant:
    """A template key the programme's message experiments name, and the triggers they name it for."""

    key: str
    triggers: tuple[str, ...]
    experiments: tuple[str, ...]


def check_key(key: str) -> str:
    """*key* if it is a trigger or a variant's template key; raises ConfigError naming the fix."""
    if key in TRIGGERS or (isinstance(key, str) and ID_PATTERN.fullmatch(key)):
        return key
    raise ConfigError(f"message key {key!r}: use a trigger ({', '.join(TRIGGERS)}) or an A/B test's template "
                      "key of 1-32 characters a-z, 0-9 and '-', e.g. 'winback-short'")


def variants(program: Program) -> dict[str, Variant]:
    """The template keys of *program*'s message experiments that are no trigger, by key."""
    found: dict[str, tuple[list[str], list[str]]] = {}
    for experiment in program.experiments:
        if experiment.varies != "message":
            continue
        for variant in experiment.variants:
            key = str(variant.value)
            if key in TRIGGERS:
                continue
            triggers, names = found.setdefault(key, ([], []))
            triggers.append(experiment.target)
            names.append(experiment.id)
    return {key: Variant(key, tuple(dict.fromkeys(t)), tuple(dict.fromkeys(n))) for key, (t, n) in found.items()}


def triggers_of(key: str, program: Program) -> tuple[str, ...]:
    """The triggers a text for *key* is written for: the trigger itself, or those of the
    experiments naming the variant key (none if the programme names it nowhere)."""
    if key in TRIGGERS:
        return (key,)
    found = variants(program).get(key)
    return found.triggers if found else ()


def placeholders(key: str, program: Program) -> frozenset[str]:
    """The placeholders a text for *key* may use: those every trigger it is written for provides."""
    triggers = triggers_of(key, program)
    if not triggers:
        return COMMON
    return frozenset.intersection(*(COMMON | _EXTRA.get(trigger, frozenset()) for trigger in triggers))


def check_text(key: str, language: str, subject: str, body: str, program: Program) -> Text:
    """The owner's words for *key* in *language* as a Text; raises ConfigError naming the field and the fix."""
    if language not in LANGUAGES:
        raise ConfigError(f"language {language!r}: write the words in one of {', '.join(LANGUAGES)}")
    return check_words(language, subject, body, placeholders(key, program), LABELS.get(key, key),
                       "to use the built-in words again, choose 'back to the built-in words'")


def _select(bind: Bind, query):
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return conn.execute(query).all()
    return bind.execute(query).all()


def _texts(bind: Bind, merchant: str, language: str, keys: list[str]) -> dict[str, Text]:
    M = MessageText
    rows = _select(bind, select(M.key, M.subject, M.body).where(M.merchant_id == merchant, M.language == language,
                                                                M.key.in_(keys)))
    return {key: Text(subject, body) for key, subject, body in rows}


def get(bind: Bind, merchant: str, key: str, language: str) -> Text | None:
    """The owner's words for *key* in *language*, or None (the built-in ones apply)."""
    return _texts(bind, merchant, language, [key]).get(key)


def owned(bind: Bind, merchant: str) -> dict[tuple[str, str], tuple[datetime, str]]:
    """(key, language) -> (when, by whom) for each of *merchant*'s own texts."""
    M = MessageText
    rows = _select(bind, select(M.key, M.language, M.updated_at, M.updated_by).where(M.merchant_id == merchant))
    return {(key, language): (utc(at), by) for key, language, at, by in rows}


def save(engine: Engine, merchant: str, key: str, language: str, subject: str, body: str, program: Program,
         by: str, now: datetime) -> Text:
    """Check and store the owner's words for *key* in *language* (replacing earlier ones); the
    next message uses them. Raises ConfigError naming the field and the fix; nothing is stored then."""
    check_key(key)
    text = check_text(key, language, subject, body, program)
    M = MessageText
    values = {"subject": text.subject, "body": text.body, "updated_at": utc(now), "updated_by": by[:254]}
    where = (M.merchant_id == merchant, M.key == key, M.language == language)
    for attempt in range(_SAVE_ATTEMPTS):
        try:
            with engine.begin() as conn:
                if conn.execute(update(M).where(*where).values(**values)).rowcount == 0:
                    conn.execute(insert(M).values(merchant_id=merchant, key=key, language=language, **values))
            break
        except IntegrityError:  # another save inserted the row between our update and insert
            if attempt + 1 == _SAVE_ATTEMPTS:
                raise
    log.info("automations.text_saved", extra={"merchant": merchant, "key": key, "language": language})
    return text


def reset(engine: Engine, merchant: str, key: str, language: str) -> bool:
    """Remove the owner's words for *key* in *language* (the built-in ones apply again); whether there were any."""
    M = MessageText
    with engine.begin() as conn:
        gone = conn.execute(delete(M).where(M.merchant_id == merchant, M.key == key, M.language == language)).rowcount
    log.info("automations.text_reset", extra={"merchant": merchant, "key": key, "language": language})
    return gone > 0


def words_for(bind: Bind, program: Program, merchant: str, member_id: str, trigger: str, language: str,
              now: datetime) -> Text | None:
    """The owner's words *member_id* gets for *trigger* in *language* at *now*: their A/B variant's
    key (message_for, on the shop's local day), else the owner's words for the trigger, else None
    (the built-in words). A variant key without words in *language* falls back the same way."""
    override = message_for(program, member_id, trigger, local(now, program.zone).date())
    keys = list(dict.fromkeys([str(override.value), trigger] if override is not None else [trigger]))
    found = _texts(bind, merchant, language, keys)
    return next((found[key] for key in keys if key in found), None)


def effective(bind: Bind, program: Program, merchant: str, key: str, language: str) -> tuple[str | None, Text | None]:
    """(trigger, words) a message written with *key* in *language* carries now, as the owner's
    page previews it: the key's own words, else its trigger's owner words, else the built-in ones.
    The trigger is None (and the words may be None) for a key no trigger uses."""
    trigger = next(iter(triggers_of(key, program)), None)
    keys = list(dict.fromkeys([key] + ([trigger] if trigger else [])))
    found = _texts(bind, merchant, language, keys)
    text = next((found[k] for k in keys if k in found), None)
    return trigger, text or (TEXTS.get((trigger, language)) if trigger else None)
