"""``edu_relat``: EDU-RELAT itself (Wu et al. 2024) as a world, whole or a connected part.

The bundled benchmark (:mod:`kgtest.symbolic.edu_relat`): 100 people, 400 kinship facts
(the KB: ``child``, ``father``, ``mother``, ``husband``, ``wife``, ``brother``, ``sister``,
``uncle``, ``aunt``, ``nephew``, ``niece``), their 100 genders (``gender(X, male)``:
*fixed*, never deleted) and the published 48 rules; closure 662 facts. EDU-RELAT's KB
lists facts the rules also derive (``husband`` from ``wife``), so its targets are *base*
facts with derivations: take them with ``split.targets_from = ["base"]`` and
``split.min_proofs = 1``.

``people = k > 0`` keeps a connected part: a breadth-first search over the KB from a
person drawn with the world seed, until ``k`` people are reached; the KB facts and genders
among them stay (so each seed gives another part). ``people = 0`` keeps everything.

The published rules misspell ``nephew`` as ``newphe`` in one rule body, which can never
fire; they are used as published (a rules file named by the spec replaces them and is
checked like any other).

Examples
--------
>>> import numpy as np
>>> from kgtest.worlds.registry import SampleContext
>>> w = edu_relat(EduRelatParams(), SampleContext(np.random.default_rng(0), None))
>>> len(w.facts), int(w.fixed.sum()), len(w.close())
(500, 100, 662)
>>> part = edu_relat(EduRelatParams(people=20), SampleContext(np.random.default_rng(0), None))
>>> int(part.fixed.sum())  # one gender fact per person kept
20
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from kgtest.config import in_range
from kgtest.errors import InputError
from kgtest.symbolic.edu_relat import load_edu_relat
from kgtest.worlds.registry import SAMPLERS, SampleContext, WorldBuilder
from kgtest.worlds.world import World

__all__ = ["EduRelatParams", "edu_relat", "PEOPLE"]

#: People in EDU-RELAT (checked against the bundled data when a world is built).
PEOPLE = 100


@dataclass(frozen=True)
class EduRelatParams:
    """Which part of EDU-RELAT to keep ([world.params] in a spec)."""

    people: int = field(default=0, metadata={"check": in_range(0, PEOPLE)}
                        )  # 0: all 100 people; k: a connected part of k of them


def edu_relat_relations(p: EduRelatParams) -> tuple[str, ...]:
    data = load_edu_relat()
    return tuple(dict.fromkeys([r for _, r, _ in data.facts + data.fixed]
                               + [x for rule in data.rules for x in rule.relations]))


def _connected(facts, start: str, k: int) -> set[str]:
    """The first ``k`` people a breadth-first search over ``facts`` reaches from ``start``."""
    nbrs: dict[str, list[str]] = {}
    for s, _, o in facts:
        nbrs.setdefault(s, []).append(o)
        nbrs.setdefault(o, []).append(s)
    seen, queue = {start}, deque([start])
    while queue and len(seen) < k:
        for x in sorted(set(nbrs[queue.popleft()])):
            if x not in seen and len(seen) < k:
                seen.add(x)
                queue.append(x)
    return seen


@SAMPLERS.register("edu_relat", params=EduRelatParams, relations=edu_relat_relations,
                   needs_rules=False)
def edu_relat(p: EduRelatParams, ctx: SampleContext) -> World:
    """EDU-RELAT (Wu et al. 2024): its KB, genders (fixed) and rules, whole or a part.

    Raises
    ------
    InputError
        ``world.n_planted`` or ``world.zipf`` set (the data is given, not sampled).
        (``people`` outside [0, 100] is refused when the spec loads.)
    """
    if ctx.n_planted:
        raise InputError("key 'world.n_planted': edu_relat plants nothing (its targets are "
                         "KB facts: split.targets_from = [\"base\"], split.min_proofs = 1)")
    if ctx.zipf:
        raise InputError("key 'world.zipf': edu_relat's people are given, not sampled; "
                         "use 0")
    data = load_edu_relat()
    people = sorted({x for s, _, o in data.facts for x in (s, o)})
    if len(people) != PEOPLE:  # a corrupted copy of the bundled data
        raise ValueError(f"bundled EDU-RELAT has {len(people)} people, expected {PEOPLE}")
    keep = set(people)
    if p.people:
        keep = _connected(data.facts, people[int(ctx.rng.integers(len(people)))], p.people)
    b = WorldBuilder(("person", "gender"))
    for s, r, o in data.facts:
        if s in keep and o in keep:
            b.add(b.entity(s, "person"), r, b.entity(o, "person"))
    for s, r, o in data.fixed:
        if s in keep:
            b.add(b.entity(s, "person"), r, b.entity(o, "gender"), fixed=True)
    rules = ctx.rules if ctx.rules is not None else data.rules
    return b.build(rules, name=ctx.name, meta={"people": len(keep)})
