"""`simulate-program` (try a programme on a CSV of visits) and `explain` (why a balance is what it is)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the stempel-kiosk CLI

KIOSK = str(Path(sys.executable).parent / "stempel-kiosk")


def simulate(program: str, csv: str, tmp_path: Path, check=True) -> subprocess.CompletedProcess:
    visits = tmp_path / "visits.csv"
    visits.write_text(csv)
    return subprocess.run([KIOSK, "simulate-program", "--program", f"examples/{program}.toml",
                           "--visits", str(visits), "--json"], capture_output=True, text=True, check=check, timeout=60)


def test_boutique_simulation_balances_and_ledger(tmp_path):
    out = simulate("boutique", (
        "member,time,amount,birthday,referred_by,redeem\n"
        "anna,2026-03-02T09:00:00+01:00,12.90,1990-03-04,,\n"
        "ben,2026-03-03T10:00:00+01:00,50,,anna,\n"
        "anna,2026-03-10T11:00:00+01:00,40,,,voucher-5\n"), tmp_path).stdout
    doc = json.loads(out)
    assert doc["balances"] == {
        "anna": {"points": 120 + 100 + 50 + 400 - 500, "tier": None, "rewards_ready": []},
        "ben": {"points": 500 + 20 + 50, "tier": None, "rewards_ready": ["voucher-5"]},
    }
    rules = [(e["member"], e["rule"], e["delta"]) for e in doc["ledger"] if e["delta"]]
    assert ("anna", "birthday-bonus", 100) in rules and ("anna", "referral-bonus:referrer", 50) in rules
    assert ("anna", "reward:voucher-5", -500) in rules
    assert set(doc["ledger"][0]) >= {"member", "time", "kind", "delta", "rule"}


def test_cafe_simulation_with_tuesday_and_cooldown(tmp_path):
    doc = json.loads(simulate("cafe", (
        "member,time\n"
        "anna,2026-03-02T09:00:00+01:00\n"      # Monday: 1 + signup 1
        "anna,2026-03-02T09:30:00+01:00\n"      # inside the 60-minute cooldown
        "anna,2026-03-03T09:00:00+01:00\n"), tmp_path).stdout)  # Tuesday: 2
    assert doc["balances"]["anna"] == {"stamps": 4, "tier": None, "rewards_ready": []}
    assert doc["notes"] == ["row 3: anna: already_stamped"]


def test_salon_simulation_reports_tiers(tmp_path):
    rows = "".join(f"eva,2026-0{1 + i // 4}-{10 + i:02d}T10:00:00+01:00,60\n" for i in range(6))
    doc = json.loads(simulate("salon", "member,time,amount\n" + rows, tmp_path).stdout)
    assert doc["balances"]["eva"]["tier"] == "Silver"
    assert doc["balances"]["eva"]["rewards_ready"] == ["free-treatment"]


def test_bad_rows_are_reported_by_number_and_nothing_is_applied(tmp_path):
    for csv, message in [
        ("member,time\nanna,2026-03-02T09:00:00+01:00\nanna,yesterday\n", "row 3: time"),
        ("member,time,redeem\nanna,2026-03-02T09:00:00+01:00,free-tea\n", "row 2: redeem: unknown reward 'free-tea'"),
        ("member,time,amount\nanna,2026-03-02T09:00:00+01:00,12,50\n", "row 2: more fields than the header"),
        ("member,time,colour\nanna,2026-03-02T09:00:00+01:00,red\n", "unknown column 'colour'"),
        ("member,time\nanna,2026-03-02T09:00:00\n", "row 2: time: add the UTC offset"),
        ("member,when\nanna,2026-03-02T09:00:00+01:00\n", "lacks time"),
    ]:
        result = simulate("cafe", csv, tmp_path, check=False)
        assert result.returncode == 2 and message in result.stderr, (csv, result.stderr)
        assert result.stdout == ""


def test_explain_prints_each_entry_with_its_rule(hub, kiosk_dir, tmp_path):
    import numpy as np
    from PIL import Image

    from kiosk.hardware import scenes

    anna = hub.issue("Anna")
    frame = tmp_path / "anna.png"
    Image.fromarray(scenes.render(anna.url, np.random.default_rng(3), scenes.Look())).save(frame)
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[kiosk]\ndata_dir = "{kiosk_dir}"\nprogram_file = "{Path("examples/cafe.toml").resolve()}"\n')
    subprocess.run([KIOSK, "scan-image", str(frame), "--config", str(config)], check=True, capture_output=True)
    text = subprocess.run([KIOSK, "explain", "--config", str(config), "--member", anna.member],
                          check=True, capture_output=True, text=True).stdout
    assert "base-rate" in text and "signup-bonus" in text
    doc = json.loads(subprocess.run([KIOSK, "explain", "--config", str(config), "--member", anna.member, "--json"],
                                    check=True, capture_output=True, text=True).stdout)
    assert doc["stamps"] == sum(e["delta"] for e in doc["entries"]) == doc["entries"][-1]["balance"]
