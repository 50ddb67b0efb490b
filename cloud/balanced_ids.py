"""A new member's id, chosen so that the running A/B tests stay balanced as members join.

A member's arm is a pure function of the experiment and the member id
(kiosk/rules/experiments.py), so the kiosks need no hub call — but random ids land in the
arms like coin flips (±√n/2 per arm). The hub makes the ids, so it can do better for members
who join while a test runs, without the kiosks noticing: the n-th member to join since the
test began is owed the arm at position n of a permuted-block sequence (each block of
``arms × K`` joiners holds exactly K of each arm, shuffled as ``block_arms`` shuffles a slot
block), and the hub draws random ids until one falls in the owed arm of every running test.

So among the members who join during a test the arms never differ by more than K (plus one
per join that races another web worker for the same n); members who joined before the test
keep their hash-random arms. Tests with ``share`` < 1 are left to the hash (forcing the arm
would bend the enrolled share). The id stays a random 45-bit pseudonym: drawing until the
arms fit throws away on average ``arms`` ids per test, and after ``MAX_DRAWS`` the last id is
taken as it is (logged), so a join never fails for balance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.experiments import span
from cloud.models import Member
from kiosk.rules.experiments import K, assign, block_arms, status
from kiosk.rules.program import Experiment, Program

log = logging.getLogger(__name__)

MAX_DRAWS = 1000  # two tests of three arms need 9 draws on average; 1000 misses once in ~10^46


def owed_arm(experiment: Experiment, joined_before: int) -> str:
    """The variant owed to the member who joins after *joined_before* others since the start."""
    arms = len(experiment.variants)
    block, offset = divmod(joined_before, arms * K)
    return experiment.variants[block_arms(f"join/{experiment.id}", block, arms)[offset]].id


def balanced(experiments: list[Experiment], program: Program, now: datetime) -> list[Experiment]:
    """The tests whose arms a join can balance: running today and enrolling everyone."""
    day = now.astimezone(program.zone).date()
    return [e for e in experiments if e.share >= 1 and status(e, day) == "running"]


def member_id(session: Session, merchant: str, program: Program, now: datetime,
              new_id: Callable[[], str]) -> str:
    """A fresh id from *new_id* that takes the owed arm of every balanced test of *program*."""
    tests = balanced(list(program.experiments), program, now)
    if not tests:
        return new_id()
    owed = {}
    for experiment in tests:
        start, _ = span(experiment, program, now)
        joined = session.scalar(select(func.count()).select_from(Member)
                                .where(Member.merchant_id == merchant, Member.created_at >= start))
        owed[experiment.id] = owed_arm(experiment, int(joined or 0))
    candidate = new_id()
    for _ in range(MAX_DRAWS):
        if all(assign(e, candidate) == owed[e.id] for e in tests):
            return candidate
        candidate = new_id()
    log.warning("join.unbalanced", extra={"merchant": merchant, "tests": len(tests)})
    return candidate
