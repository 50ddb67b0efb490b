"""An invalid programme is rejected as a whole, with the field and the fix in the message."""

import pytest

from kiosk.common.errors import ConfigError
from kiosk.rules import load_program, parse_program

REWARD = {"id": "r", "name": "R", "cost": 10}


@pytest.mark.parametrize("doc, field, fix", [
    ({"rewards": [{"id": "r", "name": "R", "cost": -5}]}, "rewards.0.cost", "greater than or equal to 1"),
    ({"rewards": [REWARD], "campaigns": [{"id": "c", "name": "C", "weekdays": ["tus"], "multiplier": 2}]},
     "campaigns.0.weekdays", "use mon, tue"),
    ({"rewards": [REWARD], "tiers": {"levels": [{"name": "a", "threshold": 0}, {"name": "b", "threshold": 0}]}},
     "tiers", "rising thresholds"),
    ({"rewards": [REWARD], "campaigns": [{"id": "c", "name": "C", "multiplier": 2,
                                         "start_date": "2026-05-10", "end_date": "2026-05-01"}]},
     "campaigns.0", "end_date is before start_date"),
    ({"rewards": [{**REWARD, "tiers": ["gold"]}]}, "programme", "unknown tier 'gold'; no one can reach it"),
    ({"rewards": [{**REWARD, "tiers": []}]}, "programme", "no one qualifies"),
    ({"rewards": []}, "programme", "add at least one reward"),
    ({"rewards": [REWARD], "timezone": "Europe/Berlln"}, "timezone", "IANA name"),
    ({"rewards": [REWARD], "campaigns": [{"id": "c", "name": "C"}]}, "campaigns.0", "exactly one of 'multiplier'"),
    ({"rewards": [REWARD], "campaigns": [{"id": "c", "name": "C", "bonus": 1, "start_time": "16:00",
                                         "end_time": "14:00"}]}, "campaigns.0", "end_time must be after"),
    ({"rewards": [REWARD], "earning": {"type": "points", "bands": [{"rate": 5}, {"up_to": 50, "rate": 10}]}},
     "earning", "last band must have no 'up_to'"),
    ({"rewards": [REWARD], "tiers": {"levels": [{"name": "a", "threshold": 3}]}}, "tiers", "start at threshold 0"),
    ({"rewards": [REWARD], "earning": {"typ": "points"}}, "earning.typ", "unknown field"),
    ({"rewards": [REWARD], "language": "fr"}, "language", "'en' or 'de'"),
])
def test_invalid_programme_names_field_and_fix(doc, field, fix):
    with pytest.raises(ConfigError) as info:
        parse_program(doc, "shop.toml")
    message = str(info.value)
    assert f"shop.toml: [{field}]" in message and fix in message


def test_all_errors_are_reported_at_once():
    doc = {"rewards": [{"id": "r", "name": "R", "cost": -1}], "limits": {"cooldown_minutes": -3}}
    with pytest.raises(ConfigError) as info:
        parse_program(doc)
    assert "rewards.0.cost" in str(info.value) and "limits.cooldown_minutes" in str(info.value)


@pytest.mark.parametrize("name", ["cafe", "boutique", "salon"])
def test_example_programmes_load(name):
    program = load_program(f"examples/{name}.toml")
    assert program.rewards and program.timezone == "Europe/Berlin"


def test_a_rejected_programme_leaves_the_kiosk_on_the_previous_one(kiosk, tmp_path):
    before = kiosk.program
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rewards]]\nid = "x"\nname = "X"\ncost = 0\n')
    with pytest.raises(ConfigError):
        kiosk.apply_program(load_program(bad))
    assert kiosk.program is before


# -- every number is bounded: a typo is refused with the field, never stamped into the ledger --------
POINTS = {"type": "points", "rate": 10}
TOO_BIG = [2_000_000, 2**63, 2**64]  # a typo, and values SQLite cannot store (they crashed the scan)


def _with(path: str, value) -> dict:
    """A valid programme with *value* at *path* (dotted; a number picks a list item)."""
    doc = {"rewards": [dict(REWARD)], "earning": dict(POINTS),
           "tiers": {"levels": [{"name": "a", "threshold": 0}, {"name": "b", "threshold": 5}]},
           "campaigns": [{"id": "c", "name": "C", "multiplier": 2}, {"id": "d", "name": "D", "bonus": 5}],
           "bonuses": {"signup": 1, "birthday": {"amount": 5}, "spend": [{"min_amount": 45, "bonus": 20}],
                       "milestones": [{"visit": 10, "bonus": 5}], "referral": {"referrer": 5, "referee": 5}},
           "limits": {"cooldown_minutes": 0, "daily_cap": 100, "max_per_scan": 50},
           "expiry": {"inactive_months": 12}}
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = value
    return doc


NUMBERS = ["rewards.0.cost", "rewards.0.expires_after_days", "earning.rate", "tiers.window_days",
           "tiers.levels.1.threshold", "tiers.levels.1.multiplier", "campaigns.0.multiplier", "campaigns.1.bonus",
           "bonuses.signup", "bonuses.birthday.amount", "bonuses.birthday.window_days", "bonuses.spend.0.min_amount",
           "bonuses.spend.0.bonus", "bonuses.milestones.0.visit", "bonuses.milestones.0.bonus",
           "bonuses.referral.referrer", "bonuses.referral.referee", "limits.cooldown_minutes", "limits.daily_cap",
           "limits.max_per_scan", "expiry.inactive_months"]


def test_the_bound_document_is_valid_as_it_stands():
    parse_program(_with("name", "Shop"))


@pytest.mark.parametrize("path", NUMBERS)
@pytest.mark.parametrize("value", TOO_BIG)
def test_every_programme_number_is_bounded_with_the_field_named(path, value):
    with pytest.raises(ConfigError) as info:
        parse_program(_with(path, value), "shop.toml")
    message = str(info.value)
    where = path if path != "tiers.levels.1.threshold" or value > 10**8 else "tiers] levels.1.threshold:"
    assert f"shop.toml: [{where}" in message, message
    assert "less than or equal" in message or "check the value for a typo" in message, message


@pytest.mark.parametrize("path, value", [("earning.per_visit", 101), ("earning.bands", [{"up_to": 10**9, "rate": 1},
                                                                                       {"rate": 1}]),
                                         ("earning.bands", [{"rate": 10**6}]), ("earning.rate", "0.00001")])
def test_stamps_per_visit_bands_and_precision_are_bounded_too(path, value):
    doc = _with(path, value)
    if path == "earning.per_visit":
        doc["earning"] = {"type": "stamps", "per_visit": value}
    with pytest.raises(ConfigError, match=r"shop.toml: \[earning\."):
        parse_program(doc, "shop.toml")


def test_a_rate_that_overflows_one_entry_names_the_fix():
    doc = {"rewards": [REWARD], "earning": {"type": "points", "rate": 1000},
           "campaigns": [{"id": "c", "name": "C", "multiplier": 10}]}
    with pytest.raises(ConfigError, match="lower the rate or the multipliers, or set limits.max_per_scan"):
        parse_program(doc, "shop.toml")
    doc["limits"] = {"max_per_scan": 1000}  # the cap trims every earn entry: fine
    assert parse_program(doc).max_amount == 100_000


def test_an_id_with_a_trailing_newline_is_refused():
    with pytest.raises(ConfigError, match=r"\[rewards.0.id\].*is not an id"):
        parse_program({"rewards": [{**REWARD, "id": "r\n"}]}, "shop.toml")


def test_the_bound_is_the_wire_bound():
    """A programme can never make an entry the sender cannot put on the wire."""
    from kiosk.protocol.messages import WireEvent
    from kiosk.rules.program import MAX_DELTA

    bounds = {(k, getattr(m, k)) for m in WireEvent.model_fields["delta"].metadata for k in ("ge", "le")
              if hasattr(m, k)}
    assert bounds == {("ge", -MAX_DELTA), ("le", MAX_DELTA)}


@pytest.mark.slow  # the stempel-kiosk CLI
def test_the_signup_typo_is_refused_by_the_kiosk_cli(tmp_path):
    """`signup = 2000000` used to pass and then stop sync for good; now the kiosk refuses to start on it."""
    import subprocess
    import sys
    from pathlib import Path

    config = tmp_path / "kiosk.toml"
    config.write_text(f'[kiosk]\ndata_dir = "{tmp_path}"\n[program.bonuses]\nsignup = 2000000\n'
                      '[[program.rewards]]\nid = "free-coffee"\nname = "Free coffee"\ncost = 10\n')
    run = subprocess.run([str(Path(sys.executable).parent / "stempel-kiosk"), "run", "--simulate", "--config",
                          str(config)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "[program.bonuses.signup] 2000000 is more than 1,000,000" in run.stderr
    assert "Traceback" not in run.stderr
