"""Members who join during an A/B test are dealt into its arms in permuted blocks (cloud/balanced_ids.py):
the hub picks the new member's id so that its hash-arm — the one every kiosk computes alone —
is the arm the block owes. What must hold: among joiners the arms never differ by more than K,
exactly equal after every full block; the kiosk-side ``assign`` of each id agrees; tests that
enrol a share, and tests not running, are left to the hash; a join never fails for balance."""

from __future__ import annotations

import random
import tomllib
from collections import Counter
from datetime import datetime, timezone

import pytest
from hubdb import hub_url, pg_database  # noqa: F401
from sqlalchemy import select
from sqlalchemy.orm import Session
from webapp import _quick_password_hashes, broker, make_site  # noqa: F401

from cloud import balanced_ids
from cloud.models import Member
from kiosk.rules import parse_program
from kiosk.rules.experiments import K, assign

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc)


def programme(*experiments: str) -> str:
    return ('[earning]\ntype = "stamps"\nper_visit = 1\n\n[[rewards]]\nid = "free-coffee"\nname = "Free coffee"\n'
            'cost = 10\n' + "".join(experiments))


def experiment(exp_id: str, values: list[int], started: str = "2026-11-01", extra: str = "",
               target: str = "signup") -> str:
    variants = "".join(f'\n[[experiments.variants]]\nid = "{chr(97 + i)}"\nvalue = {v}\n' for i, v in enumerate(values))
    return (f'\n[[experiments]]\nid = "{exp_id}"\nname = "Test {exp_id}"\nvaries = "bonus"\ntarget = "{target}"\n'
            f"started = {started}\n{extra}" + variants)


TWO = programme(experiment("signup-size", [2, 5]))
TWO_AND_THREE = programme(experiment("signup-size", [2, 5]), experiment("stamps", [1, 2, 3], target="per_visit"))


@pytest.mark.parametrize("arms", [2, 3, 4])
def test_every_block_of_joiners_owes_exactly_k_of_each_arm(arms):
    exp = parse_program(tomllib.loads(programme(experiment("x", list(range(1, arms + 1)))))).experiments[0]
    owed = [balanced_ids.owed_arm(exp, n) for n in range(arms * K * 50)]
    for start in range(0, len(owed), arms * K):
        assert Counter(owed[start:start + arms * K]) == {v.id: K for v in exp.variants}
    assert owed[:arms * K] != sorted(owed[:arms * K]) or arms == 1  # shuffled, not a, a, a, a, b, ...
    assert owed == [balanced_ids.owed_arm(exp, n) for n in range(len(owed))]  # the same every time


def ids(seed: int):
    rng = random.Random(seed)
    return lambda: "m" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(9))


@pytest.mark.parametrize("extra, started", [('share = 0.5\n', "2026-11-01"), ("", "2026-11-21"),
                                            ('ended = 2026-11-10\nwinner = "b"\n', "2026-11-01")])
def test_a_share_a_test_not_started_and_an_ended_one_take_the_first_id(tmp_path, extra, started):
    prog = parse_program(tomllib.loads(programme(experiment("x", [1, 2], started=started, extra=extra))))
    first = ids(7)()
    with Session() as session:  # no query is needed: nothing to balance
        assert balanced_ids.member_id(session, "cafe", prog, NOW, ids(7)) == first


def test_after_too_many_draws_the_join_goes_ahead_unbalanced(caplog):
    prog = parse_program(tomllib.loads(TWO))
    exp = prog.experiments[0]

    class Nobody:
        def scalar(self, _query):
            return 0  # the first joiner: owed_arm(exp, 0)
    owed = balanced_ids.owed_arm(exp, 0)
    stuck = next(f"m{i:09d}" for i in range(100) if assign(exp, f"m{i:09d}") != owed)
    assert balanced_ids.member_id(Nobody(), "cafe", prog, NOW, lambda: stuck) == stuck
    assert any(r.message == "join.unbalanced" for r in caplog.records)


@pytest.mark.parametrize("source, joins", [(TWO, 61), (TWO_AND_THREE, 50)])
def test_members_joining_through_the_page_fill_the_arms_in_blocks(tmp_path, hub_url, source, joins):
    """Through the real join page (the app's clock at NOW): after each join the arms differ by at
    most K, and after each full block they are equal — where random ids drift like coin flips."""
    site = make_site(tmp_path, hub_url, web__joins_per_ip=10_000, web__joins_per_shop=10_000)
    site.clock[0] = NOW
    try:
        owner = site.login()
        assert site.post(owner, "/owner/programme/", source=source, action="publish").status_code == 302
        prog = parse_program(tomllib.loads(source))
        seen: list[str] = []
        for n in range(joins):
            site.join(name=f"Member {n}")
            with Session(site.hub.engine) as session:
                seen = list(session.scalars(select(Member.id).where(Member.merchant_id == "cafe")
                                            .order_by(Member.created_at, Member.id)))
            for exp in prog.experiments:
                arms = Counter(assign(exp, m) for m in seen)
                width = len(exp.variants) * K
                assert max(arms.values()) - min(arms.get(v.id, 0) for v in exp.variants) <= K
                if len(seen) % width == 0:
                    assert set(arms.values()) == {len(seen) // len(exp.variants)}
        assert len(seen) == joins
    finally:
        site.hub.close()
