"""A/B tests at the kiosk: who is in which arm, and the programme each member runs under.

Pure and deterministic, so the kiosk (offline), the hub's card page and the hub's statistics
all agree on a member's arm without asking anyone: the assignment is a function of the
experiment id and the member id alone, and it travels with the programme.

The scheme (``assign``):

1. *Enrolment*: ``SHA-256("share/<experiment>/<member>")`` read as a fraction in [0, 1); the
   member is enrolled when it is below ``share``.
2. *Slot*: ``SHA-256("slot/<experiment>/<member>")`` picks one of ``BLOCKS × arms × K`` slots,
   grouped into blocks of ``arms × K`` consecutive slots.
3. *Block permutation*: inside each block, a Fisher–Yates shuffle driven by
   ``SHA-256("block/<experiment>/<block>/<i>")`` deals exactly K slots to each arm.

Every block holds exactly K slots of each arm, so the assignment is exactly balanced over
the slot space: each arm gets exactly 1/arms of it, whatever the number of arms, with no
rounding of a modulus. What a stateless rule cannot do is balance a *particular* set of
random member ids exactly: two members may land in the same block, so realised arm sizes
vary like fair coin flips (about ±√n/2 per arm: ±50 of 10,000 over two arms). Exact
sequential blocking needs the order in which members enrol, which only the hub knows: the
hub uses it when it makes a new member's id (cloud/balanced_ids.py draws ids until the id's
arm here is the one a permuted block owes), so members who join during a test fill its arms
in blocks, and a kiosk still needs to ask nothing. The per-arm figures and their confidence interval account for
unequal arm sizes (cloud/experiments.py).

The shuffle is our own (SHA-256 counters), not ``random.shuffle``, so a kiosk and the hub on
different Python versions deal the same arms.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from kiosk.rules.calendar import local
from kiosk.rules.program import Experiment, Program

if TYPE_CHECKING:
    from kiosk.rules.state import Entry

K = 4  # slots of each arm in one block: a block is arms × K slots
WINBACK = ("bonus", "winback")  # (varies, target) of the win-back offer's test: the hub applies it, not the programme
BLOCKS = 1 << 56  # blocks in the slot space; SHA-256's 128 bits reduced modulo it have no bias worth naming
_UNIT = 1 << 64


def _number(text: str, nbytes: int = 16) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:nbytes], "big")


def enrolled(experiment: Experiment, member: str) -> bool:
    """True if *member* takes part (a fraction ``share`` of members does; the rest are not counted)."""
    return experiment.share >= 1 or _fraction(experiment.id, member) < experiment.share


@lru_cache(maxsize=65536)
def _fraction(experiment_id: str, member: str) -> float:
    return _number(f"share/{experiment_id}/{member}", 8) / _UNIT


def slot(experiment_id: str, member: str, arms: int) -> int:
    """The member's slot in the slot space of ``BLOCKS × arms × K`` slots."""
    return _number(f"slot/{experiment_id}/{member}") % (BLOCKS * arms * K)


@lru_cache(maxsize=4096)
def block_arms(experiment_id: str, block: int, arms: int) -> tuple[int, ...]:
    """The arm of each of the ``arms × K`` slots of *block*: exactly K of each arm, shuffled."""
    deck = [arm for arm in range(arms) for _ in range(K)]
    for i in range(len(deck) - 1, 0, -1):  # Fisher–Yates, j uniform in 0..i
        j = _number(f"block/{experiment_id}/{block}/{i}") % (i + 1)
        deck[i], deck[j] = deck[j], deck[i]
    return tuple(deck)


def arm_of_slot(experiment_id: str, position: int, arms: int) -> int:
    block, offset = divmod(position, arms * K)
    return block_arms(experiment_id, block, arms)[offset]


@lru_cache(maxsize=65536)
def _arm(experiment_id: str, member: str, arms: int) -> int:
    return arm_of_slot(experiment_id, slot(experiment_id, member, arms), arms)


def assign(experiment: Experiment, member: str) -> str | None:
    """The id of *member*'s variant in *experiment*, or None if the member is not enrolled."""
    if not enrolled(experiment, member):
        return None
    return experiment.variants[_arm(experiment.id, member, len(experiment.variants))].id


def status(experiment: Experiment, day: date) -> str:
    """``pending`` before ``started``; ``running``; from ``ended``: ``kept`` (a winner applies to
    everyone) or ``over`` (the programme's own value applies again)."""
    if day < experiment.started:
        return "pending"
    if experiment.ended is None or day < experiment.ended:
        return "running"
    return "kept" if experiment.winner is not None else "over"


@dataclass(frozen=True)
class Override:
    """One value a member gets from an experiment instead of the programme's."""

    experiment: str
    variant: str
    varies: str
    target: str
    value: int | str


def overrides(program: Program, member: str, day: date) -> tuple[Override, ...]:
    """What the experiments of *program* change for *member* on the shop's local *day*."""
    out = []
    for experiment in program.experiments:
        state = status(experiment, day)
        variant = assign(experiment, member) if state == "running" else \
            experiment.winner if state == "kept" else None
        if variant is not None:
            out.append(Override(experiment.id, variant, experiment.varies, experiment.target,
                                experiment.variant(variant).value))
    return tuple(out)


def _day(program: Program, at: datetime) -> date:
    return local(at, program.zone).date()


_MEMBER_PROGRAMS: dict[tuple[int, tuple[Override, ...]], tuple[Program, Program]] = {}


def for_member(program: Program, member: str, at: datetime | None) -> Program:
    """*program* as *member* runs it at *at*: their variants' bonuses and costs in place of the
    programme's, and no experiments left (applying it again changes nothing). Without
    experiments, the programme itself, at no cost."""
    if not program.experiments or at is None:
        return program
    changes = tuple(o for o in overrides(program, member, _day(program, at))
                    if o.varies != "message" and (o.varies, o.target) != WINBACK)
    if not changes:
        return program
    key = (id(program), changes)
    hit = _MEMBER_PROGRAMS.get(key)
    if hit is not None and hit[0] is program:  # the same object, not a new one at a reused id
        return hit[1]
    mine = _with(program, changes)
    if len(_MEMBER_PROGRAMS) > 256:
        _MEMBER_PROGRAMS.clear()
    _MEMBER_PROGRAMS[key] = (program, mine)
    return mine


def _with(program: Program, changes: Iterable[Override]) -> Program:
    """*program* with *changes* applied; a win-back offer's arm is no programme value (the hub
    writes it into the member's offer entry), so it changes nothing here."""
    bonuses, earning, rewards = program.bonuses, program.earning, program.rewards
    for o in changes:
        if (o.varies, o.target) == ("bonus", "signup"):
            bonuses = bonuses.model_copy(update={"signup": o.value})
        elif (o.varies, o.target) == ("bonus", "per_visit"):
            earning = earning.model_copy(update={"per_visit": o.value})
        elif o.varies == "reward":
            rewards = tuple(r.model_copy(update={"cost": o.value}) if r.id == o.target else r for r in rewards)
    return program.model_copy(update={"bonuses": bonuses, "earning": earning, "rewards": rewards, "experiments": ()})


def _rules(o: Override) -> tuple[str, ...]:
    """The rules whose entries carry *o*'s value (their details name the experiment and variant).

    A win-back offer's arm shows in the ``winback-bonus`` entry that grants the offer: the hub
    made the offer with the arm's bonus, so the grant is the arm's too. (An offer made before a
    test began and granted during it is attributed to the arm as well; the hub's per-arm figures
    come from ``assign``, not from these labels, so only the label is approximate then.)"""
    if (o.varies, o.target) == WINBACK:
        from kiosk.rules.state import WINBACK_RULE  # here: state imports this module
        return (WINBACK_RULE,)
    if o.varies == "bonus":
        return ("signup-bonus",) if o.target == "signup" else ("base-rate",)
    if o.varies == "reward":
        return (f"reward:{o.target}", f"reward-expiry:{o.target}")
    return ()


def label(entries: tuple[Entry, ...], program: Program, member: str, at: datetime) -> tuple[Entry, ...]:
    """*entries* with ``experiment`` and ``variant`` in the detail of each one a variant made,
    so the hub can attribute it (kiosk/protocol/event_schema.py allows both on those kinds)."""
    if not program.experiments:
        return entries
    by_rule = {rule: o for o in overrides(program, member, _day(program, at)) for rule in _rules(o)}
    if not by_rule:
        return entries
    return tuple(replace(e, detail={**e.detail, "experiment": by_rule[e.rule].experiment,
                                    "variant": by_rule[e.rule].variant})
                 if e.member == member and e.rule in by_rule else e for e in entries)


def message_for(program: Program, member: str, trigger: str, day: date) -> Override | None:
    """The template key *member* gets for *trigger*'s message (``varies = "message"``), if any:
    the automations (cloud/automations) ask this before rendering."""
    return next((o for o in overrides(program, member, day)
                 if o.varies == "message" and o.target == trigger), None)
