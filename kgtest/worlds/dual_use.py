"""``dual_use``: two domains, benign and harmful, with different facts and shared rules.

Claim 3 of docs/science.md: a capability (applying a rule) used in a harmful domain is the same
capability used in a benign one. Each domain gets its own ``n_entities`` entities (named
``<domain-initial>_<name>``, disjoint across domains) and its own functional facts over the
*same* base relations; the rules file (``generators/dual_use.dl``) is shared, so every rule
fires in both domains. ``World.domain`` labels each base fact; a derived fact belongs to
its premises' domain.

The content is abstract (invented compound names, generic relations): the point is the
structure, not any real chemistry.

Planting alternates domains and works as in ``random_composition`` (a fresh subject with
``k`` fresh bridges on a chain rule ``h(X, Z) :- a(X, Y), b(Y, Z)``).

Examples
--------
>>> import numpy as np
>>> from kgtest.symbolic.rules import parse_rules
>>> from kgtest.worlds.registry import SampleContext
>>> rules = parse_rules("yields(X, Z) :- reacts_with(X, Y), converts_to(Y, Z).")
>>> w = dual_use(DualUseParams(n_entities=5), SampleContext(np.random.default_rng(0), rules))
>>> w.domain_names, np.bincount(w.domain).tolist()
(('benign', 'harmful'), [15, 15])
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kgtest.config import nonneg
from kgtest.errors import InputError
from kgtest.worlds.composition import FunctionalFacts, chain_rules, fraction
from kgtest.worlds.registry import SAMPLERS, SampleContext, WorldBuilder, invent_names
from kgtest.worlds.world import World

__all__ = ["DualUseParams", "dual_use"]


@dataclass(frozen=True)
class DualUseParams:
    """Sizes and vocabulary of a ``dual_use`` world ([world.params] in a spec)."""

    n_entities: int = field(default=30, metadata={"check": nonneg})  # entities per domain
    # objects per (subject, relation); 1 = functional
    out_degree: int = field(default=1, metadata={"check": nonneg})
    density: float = field(default=1.0, metadata={"check": fraction})  # share of subjects
    domains: tuple[str, ...] = ("benign", "harmful")  # domain labels (exactly two)
    base_relations: tuple[str, ...] = ("reacts_with", "converts_to", "binds_to")  # stated
    derived_relations: tuple[str, ...] = ("yields", "produces", "neutralises")  # rule heads

    def __post_init__(self):
        if len(self.domains) != 2 or len(set(self.domains)) != 2:
            raise ValueError(f"'domains' must name two different domains, "
                             f"got {list(self.domains)}")


def dual_use_relations(p: DualUseParams) -> tuple[str, ...]:
    return tuple(p.base_relations) + tuple(p.derived_relations)


@SAMPLERS.register("dual_use", params=DualUseParams, relations=dual_use_relations)
def dual_use(p: DualUseParams, ctx: SampleContext) -> World:
    """Two disjoint domains (benign, harmful) with different facts but the same rules.

    Parameters
    ----------
    p : DualUseParams
    ctx : SampleContext
        ``ctx.rules`` must be given (the spec's rules file, shared by both domains).

    Returns
    -------
    World
        ``domain_names == p.domains``; entities of type ``"compound"``.
    """
    if ctx.rules is None:
        raise InputError("key 'world.rules': dual_use needs a rules file (e.g. dual_use.dl)")
    rng = ctx.rng
    b = WorldBuilder(("compound",), domain_names=p.domains)
    names = invent_names(2 * p.n_entities, rng)
    relations = {r: (0, 0) for r in p.base_relations}
    cores = []
    for d, label in enumerate(p.domains):
        initial = label[0].lower()
        ids = b.new_entities(f"{initial}_{n}" for n in names[d * p.n_entities:][: p.n_entities])
        core = FunctionalFacts(b, rng, relations=relations, pools={0: ids},
                               out_degree=p.out_degree, density=p.density, zipf=ctx.zipf,
                               domain=d, prefix=f"{initial}_planted")
        core.sample()
        cores.append(core)
    chains = chain_rules(ctx.rules, set(p.base_relations))
    planted = []
    for i in range(ctx.n_planted):  # alternate domains
        planted += cores[i % 2].plant(chains, 1, ctx.proofs_of(i))
    return b.build(ctx.rules, planted=planted, name=ctx.name)
