"""The :class:`World`: what a sampler returns and every later stage starts from.

A world is typed entities, relations, base facts and Datalog rules, plus per-fact
labels the experiments need: which facts are *fixed* attributes (taking part in
derivations but never deleted, e.g. gender), each fact's *domain* (for dual-use worlds),
and *planted* targets (derived facts built to have an exact number of proofs).

Examples
--------
>>> from kgtest.symbolic.rules import parse_rules
>>> w = World.from_names(
...     [("ann", "parent", "bob"), ("bob", "parent", "cy")],
...     parse_rules("grandparent(X, Z) :- parent(X, Y), parent(Y, Z)."),
... )
>>> c = w.close()
>>> c.named(len(c) - 1)
('ann', 'grandparent', 'cy')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kgtest.symbolic.closure import Closure, forward_chain
from kgtest.symbolic.facts import Vocab, encode
from kgtest.symbolic.rules import Rule, parse_rules

__all__ = ["World"]


@dataclass(frozen=True, eq=False)
class World:
    """A sampled (or user-supplied) world. Arrays are never mutated after construction.

    Attributes
    ----------
    entities, relations : Vocab
        Interned names. Every relation named by a rule is in ``relations``.
    entity_type : (E,) int array
        Type id of each entity, indexing ``type_names``.
    type_names : tuple of str
        Names of entity types (``("person",)``, ``("person", "city")``...).
    facts : (n, 3) int64 array
        Base facts (subject, relation, object); no duplicates.
    rules : tuple of Rule
    fixed : (n,) bool array
        Attribute facts that are known and never deleted (take part in derivations).
    domain : (n,) int array
        Domain id of each base fact, indexing ``domain_names`` (one domain by default).
    domain_names : tuple of str
    planted : (m, 3) int64 array
        Derived facts the sampler planted with an exact proof count (may be empty).
    name : str
        The sampler (or file) the world came from.
    meta : dict
        Sampler-specific extras (JSON-able), e.g. the spec it was built from.
    """

    entities: Vocab
    relations: Vocab
    entity_type: np.ndarray
    type_names: tuple[str, ...]
    facts: np.ndarray
    rules: tuple[Rule, ...]
    fixed: np.ndarray
    domain: np.ndarray
    domain_names: tuple[str, ...] = ("default",)
    planted: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    name: str = "world"
    meta: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"World({self.name!r}: {len(self.entities)} entities, {len(self.facts)} base "
                f"facts ({int(self.fixed.sum())} fixed), {len(self.rules)} rules, "
                f"{len(self.planted)} planted)")

    def __post_init__(self):
        n = len(self.facts)
        if self.fixed.shape != (n,) or self.domain.shape != (n,):
            raise ValueError("fixed and domain must have one entry per base fact")
        if self.entity_type.shape != (len(self.entities),):
            raise ValueError("entity_type must have one entry per entity")

    @classmethod
    def example(cls) -> World:
        """The three-fact chain the docstrings use: ``a p b``, ``b p c``, ``c p d`` and
        the two-hop rule ``g(X, Z) :- p(X, Y), p(Y, Z).``, whose closure adds ``a g c``
        and ``b g d``.

        >>> c = World.example().close()
        >>> [" ".join(c.named(f)) for f in range(len(c))]
        ['a p b', 'b p c', 'c p d', 'a g c', 'b g d']
        """
        return cls.from_names([("a", "p", "b"), ("b", "p", "c"), ("c", "p", "d")],
                              parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."), name="example")

    @classmethod
    def from_names(
        cls,
        facts: Iterable[Sequence[str]],
        rules: Sequence[Rule],
        *,
        fixed: Iterable[Sequence[str]] = (),
        name: str = "world",
    ) -> World:
        """A one-type, one-domain world from string triples (``fixed`` facts appended)."""
        ents, rels = Vocab(), Vocab()
        base = encode(facts, ents, rels)
        fix = encode(fixed, ents, rels)
        for r in rules:
            for rel in r.relations:
                rels.add(rel)
        triples = np.concatenate([base, fix]) if len(fix) else base
        keys = (triples[:, 1] * len(ents) + triples[:, 0]) * len(ents) + triples[:, 2]
        _, first = np.unique(keys, return_index=True)
        first.sort()
        is_fixed = np.zeros(len(triples), dtype=bool)
        is_fixed[len(base):] = True
        return cls(
            entities=ents,
            relations=rels,
            entity_type=np.zeros(len(ents), dtype=np.int64),
            type_names=("entity",),
            facts=triples[first],
            rules=tuple(rules),
            fixed=is_fixed[first],
            domain=np.zeros(len(first), dtype=np.int64),
            name=name,
        )

    def close(self, **kwargs) -> Closure:
        """The closure of the base facts under the rules (see :func:`forward_chain`).

        Closure fact ids ``[0, len(self.facts))`` are this world's base facts in order.
        """
        return forward_chain(self.facts, self.rules, self.entities, self.relations, **kwargs)

    def fixed_mask(self, closure: Closure) -> np.ndarray:
        """``(N,)`` bool over closure facts: True for fixed attribute facts."""
        m = np.zeros(len(closure), dtype=bool)
        m[: len(self.facts)] = self.fixed
        return m
