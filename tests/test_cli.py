"""The console scripts, run as real processes the way an installer or a script would."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kiosk.hardware import scenes

pytestmark = pytest.mark.slow  # every test runs the stempel-hub / stempel-kiosk CLIs

BIN = Path(sys.executable).parent


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, check=check, timeout=120)


def save_frame(path: Path, texts, seed: int = 1) -> Path:
    look = scenes.Look(rotation_deg=15, blur=0.5, noise=4, glare=40, contrast=0.8)
    Image.fromarray(scenes.render(texts, np.random.default_rng(seed), look)).save(path)
    return path


def test_hub_cli_makes_a_pass_the_kiosk_cli_decodes(tmp_path):
    env_hub = ["stempel-hub", "--data-dir", str(tmp_path / "hub")]
    assert "created" in run(*env_hub, "init", "--merchant", "cafe-rosa", "--name", "Cafe Rosa").stdout
    assert "already exists" in run(*env_hub, "init", "--merchant", "cafe-rosa", "--name", "Cafe Rosa").stdout
    out = run(*env_hub, "issue-pass", "--merchant", "cafe-rosa", "--member-name", "Anna",
              "--out", str(tmp_path / "anna.png")).stdout
    url = out.strip().splitlines()[-1]
    decoded = json.loads(run("stempel-kiosk", "decode", "--json", str(tmp_path / "anna.png")).stdout)
    assert decoded["codes"] == [url]
    run(*env_hub, "issue-pass", "--merchant", "cafe-rosa", "--member-name", "Anna", "--out", str(tmp_path / "a.svg"))
    assert (tmp_path / "a.svg").read_text().startswith("<?xml")
    keys = json.loads(run(*env_hub, "export-keys", "--merchant", "cafe-rosa").stdout)
    assert keys["schema"] == "stempel.keys.v1" and keys["keys"][0]["merchant"] == "cafe-rosa"
    hub_keys = list((tmp_path / "hub" / "keys" / "cafe-rosa").glob("*.pem"))
    assert len(hub_keys) == 1 and hub_keys[0].stat().st_mode & 0o077 == 0  # private key is owner-only


def test_hub_cli_names_the_fix_for_an_unknown_merchant(tmp_path):
    result = run("stempel-hub", "--data-dir", str(tmp_path), "export-keys", "--merchant", "nobody", check=False)
    assert result.returncode == 2
    assert "stempel-hub init --merchant nobody" in result.stderr


def test_scan_image_runs_the_whole_pipeline_and_writes_display_frames(hub, kiosk_dir, tmp_path):
    anna = hub.issue("Anna")
    images = [save_frame(tmp_path / "anna1.png", anna.url, 1), save_frame(tmp_path / "anna2.png", anna.url, 2)]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    empty = tmp_path / "empty.png"
    Image.new("L", (640, 480), 128).save(empty)
    foreign = save_frame(tmp_path / "menu.png", "https://example.com/menu", 3)
    out = run("stempel-kiosk", "scan-image", *map(str, [images[0], bad, empty, foreign, images[1]]),
              "--data-dir", str(kiosk_dir), "--display-out", str(tmp_path / "screens"), "--json").stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["outcome"], r["reason"]) for r in rows] == [
        ("stamped", None), ("no_code", "unreadable_image"), ("no_code", None),
        ("rejected", "not_a_pass"), ("already_stamped", None)]
    assert rows[0]["member"] == anna.member and rows[0]["balance"] == 1
    assert all({"image", "decode_ms", "total_ms"} <= r.keys() for r in rows)
    shots = sorted((tmp_path / "screens").glob("*.png"))
    assert len(shots) == 5
    with Image.open(shots[0]) as shot:
        assert shot.size == (128, 64)


def test_redeem_cli_redeems_for_the_customer_at_the_counter(hub, kiosk_dir, tmp_path):
    anna = hub.issue("Anna")
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[kiosk]\ndata_dir = "{kiosk_dir}"\n'
                      '[[program.rewards]]\nid = "free-coffee"\nname = "Free coffee"\ncost = 1\n')
    frame = save_frame(tmp_path / "anna.png", anna.url)
    first = json.loads(run("stempel-kiosk", "scan-image", str(frame), "--config", str(config), "--json").stdout)
    assert first["outcome"] == "reward_ready"
    redeemed = json.loads(run("stempel-kiosk", "redeem", "--config", str(config), "--json").stdout)
    assert (redeemed["outcome"], redeemed["member"], redeemed["balance"]) == ("redeemed", anna.member, 0)
    again = json.loads(run("stempel-kiosk", "redeem", "--config", str(config), "--json").stdout)
    assert (again["outcome"], again["reason"]) == ("nothing_to_redeem", "no_reward_ready")


def test_kiosk_cli_explains_a_bad_config(tmp_path):
    config = tmp_path / "kiosk.toml"
    config.write_text('[[program.rewards]]\nid = "x"\nname = "X"\ncost = -3\n[program.earning]\ncolour = "red"\n')
    result = run("stempel-kiosk", "redeem", "--config", str(config), check=False)
    assert result.returncode == 2
    assert "[program.rewards.0.cost]" in result.stderr and "[program.earning.colour]" in result.stderr


def test_revoked_pass_is_listed_for_the_kiosks(tmp_path):
    hub = ["stempel-hub", "--data-dir", str(tmp_path / "hub")]
    run(*hub, "init", "--merchant", "cafe-rosa", "--name", "Cafe Rosa")
    out = run(*hub, "issue-pass", "--merchant", "cafe-rosa", "--member-name", "Anna", "--out", str(tmp_path / "a.png"))
    member, serial = out.stdout.split()[1].rstrip(":"), out.stdout.split()[3]
    assert "revoked" in run(*hub, "revoke-pass", "--merchant", "cafe-rosa", "--member", member).stdout
    assert "already" in run(*hub, "revoke-pass", "--merchant", "cafe-rosa", "--member", member).stdout
    keys = json.loads(run(*hub, "export-keys", "--merchant", "cafe-rosa").stdout)
    assert (keys["revoked_passes"], keys["revoked_members"]) == ([serial], [])  # the pass, not the member
    unknown = run(*hub, "revoke-pass", "--merchant", "cafe-rosa", "--member", "mnobody", check=False)
    assert unknown.returncode == 2 and "no member 'mnobody'" in unknown.stderr


def test_run_simulated_replays_frames_through_the_live_loop(hub, kiosk_dir, tmp_path):
    """`run --simulate --replay`: the live loop on simulated hardware, one result per code held up."""
    anna, ben = hub.issue("Anna"), hub.issue("Ben")
    frames = tmp_path / "frames"
    frames.mkdir()
    save_frame(frames / "01.png", anna.url, 1)
    save_frame(frames / "02.png", anna.url, 2)  # the same pass still in view: one hold, one scan
    Image.new("L", (640, 480), 128).save(frames / "03.png")  # nothing in view
    save_frame(frames / "04.png", ben.url, 4)
    out = run("stempel-kiosk", "run", "--simulate", "--replay", str(frames), "--data-dir", str(kiosk_dir),
              "--json").stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["member"], r["outcome"]) for r in rows] == [(anna.member, "stamped"), (ben.member, "stamped")]
