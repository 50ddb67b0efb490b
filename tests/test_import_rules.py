"""The dependency rule of DESIGN.md, checked on the source: the hub imports only what both
sides share (``kiosk.protocol``, ``kiosk.rules``, ``kiosk.common``), the shared packages import
nothing else of the kiosk, and nothing under ``kiosk/`` imports ``cloud``.

``cloud/demo.py`` and its history filler ``cloud/demo_history.py`` are the exceptions: ``make
demo`` runs a hub and simulated kiosks side by side in one process, so they may import both.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ("kiosk.protocol", "kiosk.rules", "kiosk.common")
BOTH_SIDES = {"cloud/demo.py", "cloud/demo_history.py"}


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module *path* imports (absolute names; relative imports are not used here)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def offences(folder: str, allowed, forbidden_root: str) -> list[str]:
    bad = []
    for path in sources(folder):
        rel = path.relative_to(ROOT).as_posix()
        if rel in BOTH_SIDES:
            continue
        for line, name in imports(path):
            if within(name, (forbidden_root,)) and not allowed(rel, name):
                bad.append(f"{rel}:{line} imports {name}")
    return bad


def test_the_hub_imports_only_what_both_sides_share():
    assert offences("cloud", lambda rel, name: within(name, SHARED), "kiosk") == []


def test_the_shared_packages_import_nothing_else_of_the_kiosk():
    for package in SHARED:
        folder = package.replace(".", "/")
        assert offences(folder, lambda rel, name: within(name, SHARED), "kiosk") == []


def test_nothing_under_kiosk_imports_the_hub():
    assert offences("kiosk", lambda rel, name: False, "cloud") == []


@pytest.mark.parametrize("source, expected", [
    ("from kiosk.bus import MqttBus", ["cloud/x.py:1 imports kiosk.bus.MqttBus"]),
    ("import kiosk.ledger", ["cloud/x.py:1 imports kiosk.ledger"]),
    ("from kiosk import wiring", ["cloud/x.py:1 imports kiosk.wiring"]),
    ("from kiosk.protocol import topics\nfrom kiosk.common.bus import Bus", []),
])
def test_the_check_sees_each_form_of_import(tmp_path, monkeypatch, source, expected):
    (tmp_path / "cloud").mkdir()
    (tmp_path / "cloud" / "x.py").write_text(source)
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert offences("cloud", lambda rel, name: within(name, SHARED), "kiosk") == expected
