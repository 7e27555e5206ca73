"""``random_composition``: the Grokked-Transformers world (Wang et al. 2024).

``n_entities`` typed entities and ``n_relations`` base relations ``r0, r1, ...``. Each base
relation maps one entity type to one type and is *functional* by default: every subject
has exactly one object (``out_degree`` objects if raised, for a ``density`` fraction of the
subjects). Derived relations are compositions, named after their parts::

    r0_r2(X, Z) :- r0(X, Y), r2(Y, Z).          % hop 2
    r0_r2_r1(X, Z) :- r0_r2(X, Y), r1(Y, Z).    % hop 3: a derived relation composed again

``n_derived`` new relations per hop level, up to ``hops``. The rules are generated (a spec
may instead name a ``.dl`` file over ``r0..`` plus its ``extra_relations``).

The functional core (:class:`FunctionalFacts`) is shared with ``dual_use``: it samples the
edges with Zipf-weighted objects and plants targets with exactly ``k`` derivations by
giving a fresh subject ``x`` ``k`` fresh bridges ``y_i`` with ``a(x, y_i)`` and
``b(y_i, z)`` for a chain rule ``h(X, Z) :- a(X, Y), b(Y, Z)``.

Examples
--------
>>> from kgtest.worlds.registry import SampleContext
>>> ctx = SampleContext(rng=np.random.default_rng(0), rules=None)
>>> w = random_composition(CompositionParams(n_entities=10, n_relations=2, n_derived=1), ctx)
>>> len(w.facts), len(w.rules), str(w.rules[0]).count(":-")
(20, 2, 1)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kgtest.config import nonneg
from kgtest.errors import InputError
from kgtest.symbolic.rules import Atom, Rule, Term
from kgtest.worlds.registry import SAMPLERS, SampleContext, WorldBuilder, planted_ks, zipf_weights
from kgtest.worlds.world import World

__all__ = ["CompositionParams", "random_composition", "FunctionalFacts", "chain_rules"]


def fraction(value) -> str | None:
    """A ``check`` for probabilities and fractions: refuse values outside [0, 1]."""
    if not 0.0 <= value <= 1.0:
        return "must be between 0 and 1"
    return None


@dataclass(frozen=True)
class CompositionParams:
    """Sizes of a ``random_composition`` world ([world.params] in a spec)."""

    n_entities: int = field(default=40, metadata={"check": nonneg})  # entities, split over types
    n_types: int = field(default=1, metadata={"check": nonneg})  # entity types (>= 1)
    n_relations: int = field(default=4, metadata={"check": nonneg})  # base relations r0, r1, ...
    # objects per (subject, relation); 1 = functional
    out_degree: int = field(default=1, metadata={"check": nonneg})
    density: float = field(default=1.0, metadata={"check": fraction})  # share of subjects
    n_derived: int = field(default=3, metadata={"check": nonneg})  # new relations per hop
    hops: int = field(default=3, metadata={"check": nonneg})  # deepest composition (2 = a∘b only)


def composition_relations(p: CompositionParams) -> tuple[str, ...]:
    """Relations a user rules file may use: the base relations ``r0..``."""
    return tuple(f"r{i}" for i in range(p.n_relations))


def chain_rules(rules, base: set[str]) -> list[tuple[int, str, str, str]]:
    """Rules ``h(X, Z) :- a(X, Y), b(Y, Z).`` with ``a, b`` in ``base`` and ``h`` defined by
    no other rule: ``(rule index, h, a, b)``. Planting uses these."""
    heads: dict[str, int] = {}
    for r in rules:
        heads[r.head.relation] = heads.get(r.head.relation, 0) + 1
    out = []
    for i, r in enumerate(rules):
        atoms = r.atoms
        if len(r.body) != 2 or len(atoms) != 2 or heads[r.head.relation] != 1:
            continue
        (a, b), h = atoms, r.head
        terms = [h.args[0], h.args[1], *a.args, *b.args]
        if not all(t.is_var for t in terms) or a.relation not in base or b.relation not in base:
            continue
        x, z, y = h.args[0].name, h.args[1].name, a.args[1].name
        if len({x, y, z}) == 3 and (a.args[0].name, b.args[0].name, b.args[1].name) == (x, y, z):
            out.append((i, h.relation, a.relation, b.relation))
    return out


class FunctionalFacts:
    """Typed base relations with Zipf-weighted objects, in one domain of a builder.

    ``relations`` maps a relation name to ``(subject type, object type)``; ``pools`` maps a
    type to its entity ids. Call :meth:`sample` once, then :meth:`plant` for targets.
    """

    def __init__(self, b: WorldBuilder, rng: np.random.Generator, *, relations: dict,
                 pools: dict[int, np.ndarray], out_degree: int, density: float, zipf: float,
                 domain: int = 0, prefix: str = "e"):
        self.b, self.rng, self.relations, self.pools = b, rng, relations, pools
        self.out_degree, self.density = out_degree, density
        self.domain, self.prefix = domain, prefix
        self.weights = {t: zipf_weights(len(ids), zipf, rng) for t, ids in pools.items()}
        self.n_fresh = 0

    def _objects(self, otype: int, size: int) -> np.ndarray:
        pool = self.pools[otype]
        return pool[self.rng.choice(len(pool), size=size, p=self.weights[otype])]

    def _edges(self, rel: str, subjects: np.ndarray) -> None:
        _, otype = self.relations[rel]
        if len(subjects) == 0 or len(self.pools[otype]) == 0 or self.out_degree == 0:
            return
        s = np.repeat(subjects, self.out_degree)
        self.b.add(s, rel, self._objects(otype, len(s)), domain=self.domain)

    def sample(self) -> None:
        """Each relation: a ``density`` share of its subject type (Zipf-weighted), each with
        ``out_degree`` objects (duplicates collapse, so the degree is at most that)."""
        for rel, (stype, _) in self.relations.items():
            pool = self.pools[stype]
            n = int(round(self.density * len(pool)))
            if n == len(pool):
                subjects = pool
            else:
                subjects = np.sort(pool[self.rng.choice(len(pool), n, replace=False,
                                                        p=self.weights[stype])])
            self._edges(rel, subjects)

    def _fresh(self, etype: int) -> int:
        self.n_fresh += 1
        return self.b.entity(f"{self.prefix}_p{self.n_fresh}", etype)

    def _fill(self, entity: int, skip: str) -> None:
        """Give a fresh entity the base relations its type has (all but ``skip``)."""
        t = self.b.etype(entity)
        for rel, (stype, _) in self.relations.items():
            if stype == t and rel != skip:
                self._edges(rel, np.array([entity]))

    def plant(self, chains: list, n: int, k) -> list[tuple[int, int, int]]:
        """Plant ``n`` targets ``h(x, z)`` with exactly ``k`` bridges, on random chain rules
        (``k``: one count, or a list cycled over the targets)."""
        if n and not chains:
            raise InputError("key 'world.n_planted': no rule of the form "
                             "h(X, Z) :- a(X, Y), b(Y, Z) over base relations to plant on")
        out, ks = [], planted_ks(n, k)
        for j, i in enumerate(self.rng.integers(0, len(chains), size=n).tolist() if n else []):
            _, h, a, rel_b = chains[i]
            (xt, yt), (_, zt) = self.relations[a], self.relations[rel_b]
            if len(self.pools[zt]) == 0:
                raise InputError(f"key 'world.n_planted': no entity to plant {h} targets on")
            x = self._fresh(xt)
            z = int(self._objects(zt, 1)[0])
            self._fill(x, skip=a)
            for _ in range(ks[j]):
                y = self._fresh(yt)
                self.b.add(x, a, y, domain=self.domain)
                self.b.add(y, rel_b, z, domain=self.domain)
                self._fill(y, skip=rel_b)
            out.append((x, self.b.relations.add(h), z))
        return out


def _compose(head: str, a: str, b: str) -> Rule:
    x, y, z = Term("X"), Term("Y"), Term("Z")
    return Rule(Atom(head, (x, z)), (Atom(a, (x, y)), Atom(b, (y, z))))


@SAMPLERS.register("random_composition", params=CompositionParams,
                   relations=composition_relations, needs_rules=False)
def random_composition(p: CompositionParams, ctx: SampleContext) -> World:
    """Typed functional relations and composition rules r_a ∘ r_b ⇒ r_c, several hops deep.

    Parameters
    ----------
    p : CompositionParams
    ctx : SampleContext
        Seeded generator, Zipf exponent (object frequency), planted targets, and the
        spec's rules if it names a file (then no rules are generated).

    Returns
    -------
    World
    """
    rng = ctx.rng
    n_types = max(p.n_types, 1)
    types = tuple(f"t{i}" for i in range(n_types)) if n_types > 1 else ("entity",)
    b = WorldBuilder(types)
    etypes = np.arange(p.n_entities) % n_types
    ids = b.new_entities((f"e{i}" for i in range(p.n_entities)), etypes)
    pools = {t: ids[etypes == t] for t in range(n_types)}
    sig = rng.integers(0, n_types, size=(p.n_relations, 2))
    relations = {f"r{i}": (int(sig[i, 0]), int(sig[i, 1])) for i in range(p.n_relations)}
    for rel in relations:
        b.relations.add(rel)
    facts = FunctionalFacts(b, rng, relations=relations, pools=pools, out_degree=p.out_degree,
                            density=p.density, zipf=ctx.zipf)
    facts.sample()

    if ctx.rules is not None:
        rules = list(ctx.rules)
    else:
        rules, level = [], dict(relations)  # relations of the previous hop level
        for _hop in range(2, p.hops + 1):
            pairs = [(a, c) for a in level for c in relations if level[a][1] == relations[c][0]]
            pick = rng.permutation(len(pairs))[: p.n_derived]
            new = {}
            for j in sorted(pick.tolist()):
                a, c = pairs[j]
                new[f"{a}_{c}"] = (level[a][0], relations[c][1])
                rules.append(_compose(f"{a}_{c}", a, c))
            if not new:
                break
            level = new
    planted = facts.plant(chain_rules(rules, set(relations)), ctx.n_planted, ctx.planted_proofs)
    return b.build(rules, planted=planted, name=ctx.name,
                   meta={"relation_types": {r: list(t) for r, t in relations.items()}})
