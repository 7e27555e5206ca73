"""``family_tree``: genealogies with gender, like EDU-RELAT (Wu et al. 2024).

Founding couples have children, children marry (each other across families, or people
who marry in) and have children in turn, for ``generations`` generations. Base facts::

    parent(X, Y)    X is a parent of Y        (both parents of every child born here)
    spouse(X, Y)    X is married to Y         (stated once per couple, husband first)
    gender(X, g)    g is male or female       (a *fixed* attribute: never deleted)

Every relation reads ``rel(X, Y)``: "X is Y's rel". The kinship rules come from the spec's
``.dl`` file (``generators/family.dl``: child, father/mother via gender constants,
sibling with ``X != Y``, grandparent, uncle/aunt, spouse symmetry, ...).

The Zipf knob skews family sizes: children are dealt to couples with Zipf weights, so a
few couples have many children and many people have none (tail entities).

Planting: a target is a ``sibling(c, x)`` fact for a newly born child ``c``. Full siblings
share two parents, so ``sibling`` has exactly 2 derivations; half siblings (``c`` born to
one of ``x``'s parents and a new partner) have exactly 1. A genealogy has no natural
kinship fact with more independent derivations, so ``planted_proofs`` must be 1 or 2 here
(use ``random_composition`` or ``taxonomy`` for more).

Examples
--------
>>> from kgtest.symbolic.rules import parse_rules
>>> from kgtest.worlds.registry import SampleContext
>>> rules = parse_rules("sibling(X, Y) :- parent(Z, X), parent(Z, Y), X != Y.")
>>> ctx = SampleContext(np.random.default_rng(1), tuple(rules), n_planted=1, planted_proofs=2)
>>> w = family_tree(FamilyParams(n_families=2, generations=2), ctx)
>>> c = w.close()
>>> int(c.proof_count[c.index(w.planted)[0]])
2
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kgtest.config import nonneg
from kgtest.errors import InputError
from kgtest.worlds.composition import fraction
from kgtest.worlds.registry import (
    SAMPLERS,
    SampleContext,
    WorldBuilder,
    invent_names,
    planted_ks,
    zipf_weights,
)
from kgtest.worlds.world import World

__all__ = ["FamilyParams", "family_tree", "FAMILY_RELATIONS"]

# Base relations, then derived relations a family rules file may define.
FAMILY_RELATIONS = (
    "parent", "spouse", "gender",
    "child", "father", "mother", "son", "daughter", "sibling", "brother", "sister",
    "grandparent", "grandfather", "grandmother", "grandchild", "grandson", "granddaughter",
    "uncle", "aunt", "nephew", "niece", "cousin", "husband", "wife", "ancestor", "descendant",
    "parent_in_law", "child_in_law", "sibling_in_law",
)


@dataclass(frozen=True)
class FamilyParams:
    """Sizes of a ``family_tree`` world ([world.params] in a spec)."""

    n_families: int = field(default=3, metadata={"check": nonneg})  # founding couples
    generations: int = field(default=3, metadata={"check": nonneg})  # after the founders
    children: float = field(default=2.0, metadata={"check": nonneg})  # mean children per couple
    marry_prob: float = field(default=0.8, metadata={"check": fraction})  # chance a child marries
    # chance the spouse is another family's child rather than someone marrying in
    intermarry: float = field(default=0.5, metadata={"check": fraction})


class _Family:
    """Mutable genealogy under construction."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.b = WorldBuilder(("person", "gender"))
        self.male = self.b.entity("male", "gender")
        self.female = self.b.entity("female", "gender")
        self.is_male: dict[int, bool] = {}
        self.parents: dict[int, tuple[int, int]] = {}
        self.children: dict[tuple[int, int], list[int]] = {}
        self._names: list[str] = []

    def person(self, male: bool | None = None) -> int:
        if not self._names:
            self._names = invent_names(64, self.rng, taken=self.b.entities.names)
        pid = self.b.entity(self._names.pop(), "person")
        male = bool(self.rng.random() < 0.5) if male is None else male
        self.is_male[pid] = male
        self.b.add(pid, "gender", self.male if male else self.female, fixed=True)
        return pid

    def marry(self, a: int, c: int) -> tuple[int, int]:
        h, w = (a, c) if self.is_male[a] else (c, a)
        self.b.add(h, "spouse", w)
        self.children[(h, w)] = []
        return h, w

    def child_of(self, p1: int, p2: int) -> int:
        c = self.person()
        self.b.add(p1, "parent", c)
        self.b.add(p2, "parent", c)
        self.parents[c] = (p1, p2)
        self.children.setdefault((p1, p2), []).append(c)
        return c


def family_relations(p: FamilyParams) -> tuple[str, ...]:
    return FAMILY_RELATIONS


@SAMPLERS.register("family_tree", params=FamilyParams, relations=family_relations)
def family_tree(p: FamilyParams, ctx: SampleContext) -> World:
    """Genealogies with gender (fixed attributes) and kinship rules from a .dl file.

    Parameters
    ----------
    p : FamilyParams
    ctx : SampleContext
        ``ctx.rules`` must be given (the spec's rules file). ``planted_proofs`` must be
        1 (half siblings) or 2 (full siblings).

    Returns
    -------
    World
        Types ``("person", "gender")``; gender facts are ``fixed``.
    """
    if ctx.rules is None:
        raise InputError("key 'world.rules': family_tree needs a rules file (e.g. family.dl)")
    bad = [k for k in planted_ks(ctx.n_planted, ctx.planted_proofs) if k not in (1, 2)]
    if bad:
        raise InputError(f"key 'world.planted_proofs': family_tree plants siblings, who share "
                         f"1 (half) or 2 (full) parents; got {bad[0]}")
    rng, f = ctx.rng, _Family(ctx.rng)
    couples = [f.marry(f.person(True), f.person(False)) for _ in range(p.n_families)]
    for gen in range(1, p.generations + 1):
        total = int(rng.poisson(p.children * len(couples))) if couples else 0
        per = rng.multinomial(total, zipf_weights(len(couples), ctx.zipf, rng)) if couples else []
        born = [f.child_of(h, w) for (h, w), n in zip(couples, per, strict=True)
                for _ in range(int(n))]
        if gen == p.generations:
            break
        couples, single = [], [c for c in born if rng.random() < p.marry_prob]
        rng.shuffle(single)
        taken: set[int] = set()
        for c in single:
            if c in taken:
                continue
            taken.add(c)
            mate = None
            if rng.random() < p.intermarry:  # another family's child, opposite gender
                mate = next((d for d in single if d not in taken and f.is_male[d] != f.is_male[c]
                             and set(f.parents[d]).isdisjoint(f.parents[c])), None)
            if mate is None:
                mate = f.person(not f.is_male[c])  # marries in: no parents in the tree
            taken.add(mate)
            couples.append(f.marry(c, mate))

    planted = []
    families = [(pw, kids) for pw, kids in f.children.items() if kids]
    if ctx.n_planted and not families and f.children:
        # no couple had children (a small Poisson draw): the first founders get one, so a
        # requested target can always be planted (only a world without couples cannot)
        (h, w), = list(f.children)[:1]
        families = [((h, w), [f.child_of(h, w)])]
    if ctx.n_planted and not families:
        raise InputError("key 'world.n_planted': the family tree has no couple to plant on "
                         "(world.params.n_families = 0)")
    picks = (rng.permutation(max(len(families), 1)).tolist() * ctx.n_planted)[: ctx.n_planted]
    for j, i in enumerate(picks):
        (p1, p2), kids = families[i]
        x = kids[int(rng.integers(len(kids)))]
        if ctx.proofs_of(j) == 2:  # a full sibling of x
            c = f.child_of(p1, p2)
        else:  # a half sibling: one of x's parents with a new partner
            shared = (p1, p2)[int(rng.integers(2))]
            c = f.child_of(shared, f.person(not f.is_male[shared]))
        planted.append((c, f.b.relations.add("sibling"), x))
    return f.b.build(ctx.rules, planted=planted, name=ctx.name)
