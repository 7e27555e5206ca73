"""``taxonomy``: an is-a hierarchy with property inheritance.

Kinds form a forest ``depth`` levels deep below ``n_roots`` roots (``zebra is_a mammal``,
``mammal is_a animal``); with probability ``multi_parent`` a kind also has a second parent
one level up (multiple inheritance). Properties are stated on some kinds
(``has_property(mammal, warm_blooded)``). The rules file (``generators/taxonomy.dl``) makes
``is_a`` transitive and properties inherited::

    is_a(X, Z) :- is_a(X, Y), is_a(Y, Z).
    has_property(X, P) :- is_a(X, Y), has_property(Y, P).

The Zipf knob skews both the number of sub-kinds per kind and how common each property is.

Planting: a new kind ``x`` gets ``k`` new parent kinds ``y_i`` (each under an existing kind
that lacks property ``p``), each stating ``p``; then ``has_property(x, p)`` has exactly
``k`` derivations, one through each ``y_i``.

Examples
--------
>>> import numpy as np
>>> from kgtest.symbolic.rules import parse_rules
>>> from kgtest.worlds.registry import SampleContext
>>> rules = parse_rules("is_a(X, Z) :- is_a(X, Y), is_a(Y, Z).\\n"
...                     "has_property(X, P) :- is_a(X, Y), has_property(Y, P).")
>>> ctx = SampleContext(np.random.default_rng(0), tuple(rules), n_planted=2, planted_proofs=3)
>>> w = taxonomy(TaxonomyParams(depth=2), ctx)
>>> c = w.close()
>>> c.proof_count[c.index(w.planted)].tolist()
[3, 3]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kgtest.config import nonneg
from kgtest.errors import InputError
from kgtest.worlds.composition import fraction
from kgtest.worlds.registry import SAMPLERS, SampleContext, WorldBuilder, invent_names, zipf_weights
from kgtest.worlds.world import World

__all__ = ["TaxonomyParams", "taxonomy", "TAXONOMY_RELATIONS"]

# Base relations, then derived relations a taxonomy rules file may define.
TAXONOMY_RELATIONS = ("is_a", "has_property", "subsumes", "shares_property", "sibling_kind")


@dataclass(frozen=True)
class TaxonomyParams:
    """Sizes of a ``taxonomy`` world ([world.params] in a spec)."""

    depth: int = field(default=3, metadata={"check": nonneg})  # levels below the roots
    n_roots: int = field(default=1, metadata={"check": nonneg})  # top-level kinds
    branching: float = field(default=3.0, metadata={"check": nonneg})  # mean sub-kinds per kind
    n_properties: int = field(default=12, metadata={"check": nonneg})  # distinct properties
    properties_per_kind: float = field(default=1.0, metadata={"check": nonneg})  # mean stated
    multi_parent: float = field(default=0.1, metadata={"check": fraction})  # second-parent chance


def taxonomy_relations(p: TaxonomyParams) -> tuple[str, ...]:
    return TAXONOMY_RELATIONS


@SAMPLERS.register("taxonomy", params=TaxonomyParams, relations=taxonomy_relations)
def taxonomy(p: TaxonomyParams, ctx: SampleContext) -> World:
    """An is-a forest with stated properties; the rules make is-a transitive and inherited.

    Parameters
    ----------
    p : TaxonomyParams
    ctx : SampleContext
        ``ctx.rules`` must be given (the spec's rules file).

    Returns
    -------
    World
        Types ``("kind", "property")``.
    """
    if ctx.rules is None:
        raise InputError("key 'world.rules': taxonomy needs a rules file (e.g. taxonomy.dl)")
    rng = ctx.rng
    t = _Kinds(WorldBuilder(("kind", "property")), rng)
    props = t.b.new_entities((t.name() for _ in range(p.n_properties)), "property")
    prop_w = zipf_weights(len(props), ctx.zipf, rng)
    kinds = t.forest(p, ctx.zipf)
    if len(props):
        for k in kinds:  # top-down; a kind states only properties it does not inherit
            t.inherited[k] |= set().union(*(t.inherited[q] for q in t.parents_of[k]))
            for j in rng.choice(len(props), size=int(rng.poisson(p.properties_per_kind)),
                                p=prop_w).tolist():
                if int(props[j]) not in t.inherited[k]:
                    t.state(k, int(props[j]))
    planted = [t.plant(props, prop_w, kinds, ctx.proofs_of(i)) for i in range(ctx.n_planted)]
    return t.b.build(ctx.rules, planted=planted, name=ctx.name)


class _Kinds:
    """A taxonomy being built: kinds, their parents, and what each inherits."""

    def __init__(self, b: WorldBuilder, rng):
        self.b, self.rng = b, rng
        self._names = iter(invent_names(16, rng))
        self.parents_of: dict[int, list[int]] = {}
        self.inherited: dict[int, set[int]] = {}  # kind -> properties on it or an ancestor

    def name(self) -> str:
        """A fresh invented name (more are drawn when the first batch runs out)."""
        out = next(self._names, None)
        if out is None:
            self._names = iter(invent_names(256, self.rng, taken=self.b.entities.names))
            out = next(self._names)
        return out

    def add_kind(self, parents: list[int]) -> int:
        k = self.b.entity(self.name(), "kind")
        self.parents_of[k] = parents
        for q in parents:
            self.b.add(k, "is_a", q)
        self.inherited[k] = set().union(*(self.inherited[q] for q in parents))
        return k

    def state(self, k: int, prop: int) -> None:
        self.b.add(k, "has_property", prop)
        self.inherited[k].add(prop)

    def forest(self, p: TaxonomyParams, zipf: float) -> list[int]:
        """The roots, then ``depth`` levels of sub-kinds (a second parent by chance)."""
        rng = self.rng
        level = [self.add_kind([]) for _ in range(p.n_roots)]
        kinds = list(level)
        for _ in range(p.depth):
            if not level:
                break
            total = max(int(rng.poisson(p.branching * len(level))), 1)
            per = rng.multinomial(total, zipf_weights(len(level), zipf, rng))
            new = []
            for q, n in zip(level, per.tolist(), strict=True):
                for _ in range(n):
                    parents = [q]
                    if len(level) > 1 and rng.random() < p.multi_parent:
                        other = level[int(rng.integers(len(level)))]
                        parents += [other] if other != q else []
                    new.append(self.add_kind(parents))
            kinds += new
            level = new
        return kinds

    def plant(self, props, prop_w, kinds: list[int], proofs: int) -> tuple[int, int, int]:
        """A new kind with ``proofs`` new parents that each state a property it lacks."""
        rng = self.rng
        prop = int(props[rng.choice(len(props), p=prop_w)]) if len(props) else -1
        hosts = [k for k in kinds if prop not in self.inherited[k]]
        if not hosts:  # every kind has it: plant a new property
            prop = self.b.entity(self.name(), "property")
            hosts = list(kinds)
        if not hosts:
            raise InputError("key 'world.n_planted': the taxonomy has no kinds to plant on")
        mixins = []
        for _ in range(proofs):
            y = self.add_kind([hosts[int(rng.integers(len(hosts)))]])
            self.state(y, prop)
            mixins.append(y)
        x = self.add_kind(mixins)
        return x, self.b.relations.add("has_property"), prop
