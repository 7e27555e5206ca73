"""Worlds a tiny model can learn, for model-level claims (:mod:`kgtest.claims_model`).

:func:`composition_worlds` draws them; :func:`composition_world` rebuilds one from the
numbers a failing claim prints. Every base relation is a total function and every rule a
two-hop chain ``a_b(X, Z) :- a(X, Y), b(Y, Z).``, so each rule derives one fact per entity
and is demonstrated on many entities besides any target.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from kgtest.errors import InputError
from kgtest.symbolic.rules import Atom, Rule, Term
from kgtest.worlds.world import World

__all__ = ["composition_worlds", "composition_world"]


def composition_worlds(
    *,
    min_entities: int = 12,
    max_entities: int = 30,
    min_relations: int = 2,
    max_relations: int = 4,
    min_rules: int = 1,
    max_rules: int = 3,
) -> st.SearchStrategy[World]:
    """Random composition worlds: functional base relations and two-hop chain rules.

    Entities ``e0, e1, ...``; base relations ``r0, r1, ...``, each a total function (every
    entity has exactly one object, drawn uniformly by a seeded generator); rules
    ``a_b(X, Z) :- a(X, Y), b(Y, Z).`` for distinct drawn pairs ``(a, b)`` of base
    relations (``a = b`` allowed). Valid by construction for
    :func:`kgtest.claims_model.model_records`: each rule derives exactly one fact per
    entity, so a world has ``rules x entities`` derived facts, each with one proof at depth
    1, and every rule is demonstrated on many entities besides any target. Sizes shrink
    toward the lower bounds; the edges come from one drawn seed (shrinking toward seed 0),
    because a model-level example is too expensive to shrink edge by edge.

    Parameters
    ----------
    min_entities, max_entities : int
        Entities (>= 2). A world hosts ``n_forget + n_validation`` targets when
        ``min_rules * min_entities`` is at least that (see
        :func:`kgtest.claims_model.check_trainable`).
    min_relations, max_relations : int
        Base relations (>= 1).
    min_rules, max_rules : int
        Composition rules (>= 1; at most ``relations ** 2`` distinct pairs exist).

    Examples
    --------
    >>> from hypothesis import find
    >>> w = find(composition_worlds(min_rules=2), lambda w: True)
    >>> len(w.entities), len(w.facts), len(w.rules), len(w.close()) - len(w.facts)
    (12, 24, 2, 24)
    """
    if not 2 <= min_entities <= max_entities:
        raise InvalidArgument(f"composition_worlds: need 2 <= min_entities <= max_entities, "
                              f"got {min_entities}, {max_entities}")
    if not 1 <= min_relations <= max_relations:
        raise InvalidArgument(f"composition_worlds: need 1 <= min_relations <= max_relations, "
                              f"got {min_relations}, {max_relations}")
    if not 1 <= min_rules <= max_rules:
        raise InvalidArgument(f"composition_worlds: need 1 <= min_rules <= max_rules, "
                              f"got {min_rules}, {max_rules}")
    if min_rules > min_relations**2:
        raise InvalidArgument(f"composition_worlds: {min_rules} distinct rules do not fit in "
                              f"{min_relations} relations ({min_relations**2} pairs)")
    return _composition_worlds(min_entities, max_entities, min_relations, max_relations,
                               min_rules, max_rules)


@st.composite
def _composition_worlds(draw, min_entities, max_entities, min_relations, max_relations,
                        min_rules, max_rules):
    n_ent = draw(st.integers(min_entities, max_entities), label="entities")
    n_rel = draw(st.integers(min_relations, max_relations), label="relations")
    pairs = draw(st.lists(st.tuples(st.integers(0, n_rel - 1), st.integers(0, n_rel - 1)),
                          min_size=min_rules, max_size=min(max_rules, n_rel * n_rel),
                          unique=True), label="rules")
    seed = draw(st.integers(0, 2**32 - 1), label="edge seed")
    return composition_world(n_ent, n_rel, pairs, edge_seed=seed)


def composition_world(n_entities: int, n_relations: int, rules: Sequence[tuple[int, int]],
                      *, edge_seed: int = 0) -> World:
    """The world :func:`composition_worlds` draws for these sizes, rules and edge seed.

    ``rules`` lists ``(a, b)`` pairs: one rule ``ra_rb(X, Z) :- ra(X, Y), rb(Y, Z).`` each.
    Rebuilds a counterexample from the numbers a failing claim prints (``describe`` shows
    the sizes and rules, the ``World(...)`` repr its ``meta['edge_seed']``).

    Examples
    --------
    >>> w = composition_world(4, 2, [(0, 1)], edge_seed=7)
    >>> [str(r) for r in w.rules], len(w.facts), w.meta["edge_seed"]
    (['r0_r1(X, Z) :- r0(X, Y), r1(Y, Z).'], 8, 7)
    >>> w.facts.tolist() == composition_world(4, 2, [(0, 1)], edge_seed=7).facts.tolist()
    True
    """
    if n_entities < 1 or n_relations < 1:
        raise InputError(f"composition_world: need >= 1 entity and relation, got "
                         f"{n_entities}, {n_relations}")
    bad = [p for p in rules if not all(0 <= i < n_relations for i in p)]
    if bad:
        raise InputError(f"composition_world: rule {bad[0]} names a relation outside "
                         f"r0..r{n_relations - 1}")
    rng = np.random.default_rng(int(edge_seed))
    ents = [f"e{i}" for i in range(n_entities)]
    facts = [(ents[s], f"r{r}", ents[o]) for r in range(n_relations)
             for s, o in enumerate(rng.integers(0, n_entities, size=n_entities).tolist())]
    x, y, z = Term("X"), Term("Y"), Term("Z")
    rule_list = [Rule(Atom(f"r{a}_r{b}", (x, z)), (Atom(f"r{a}", (x, y)),
                                                   Atom(f"r{b}", (y, z))))
                 for a, b in rules]
    world = World.from_names(facts, rule_list, name="composition")
    world.meta.update({"strategy": "composition_worlds", "n_entities": n_entities,
                       "n_relations": n_relations, "rules": [list(p) for p in rules],
                       "edge_seed": int(edge_seed)})
    return world
