"""An invalid programme is rejected as a whole, with the field and the fix in the message."""

import pytest

from kiosk.errors import ConfigError
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
