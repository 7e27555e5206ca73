"""Symbolic claims about closures: each a hypothesis property over random worlds.

Every test states its claim in its docstring; docs/claims.md lists them all.
"""

from dataclasses import replace

import numpy as np
from hypothesis import given, note, settings
from hypothesis import strategies as st

from kgtest.claims import closure_of, describe
from kgtest.strategies import rules, worlds

FAST = settings(max_examples=100, deadline=None)


def fact_set(world):
    c = closure_of(world)
    return set(map(tuple, c.named_all()))


@FAST
@given(worlds())
def test_closure_is_idempotent(world):
    """Closing the closure adds nothing: closure(closure(KB)) == closure(KB)."""
    c = closure_of(world)
    closed = replace(world, facts=c.facts, fixed=np.zeros(len(c), bool),
                     domain=np.zeros(len(c), np.int64))
    note(describe(world))
    assert fact_set(closed) == fact_set(world)


@FAST
@given(worlds(max_rules=2), st.data())
def test_adding_a_rule_never_shrinks_the_closure(world, data):
    """closure(KB, R) ⊆ closure(KB, R + [r]) for any rule r over the world's relations."""
    extra = data.draw(rules(world.relations.names), label="extra rule")
    bigger = replace(world, rules=world.rules + (extra,))
    note(describe(world))
    assert fact_set(world) <= fact_set(bigger)


@FAST
@given(worlds(), st.data())
def test_adding_base_facts_never_shrinks_the_closure(world, data):
    """closure(KB) ⊆ closure(KB ∪ F) for any set F of extra base facts."""
    n_e, n_r = len(world.entities), len(world.relations)
    extra = data.draw(st.lists(st.tuples(st.integers(0, n_e - 1), st.integers(0, n_r - 1),
                                         st.integers(0, n_e - 1)), max_size=4), label="extra")
    facts = np.concatenate([world.facts, np.array(extra, dtype=np.int64).reshape(-1, 3)])
    _, first = np.unique(facts, axis=0, return_index=True)
    facts = facts[np.sort(first)]
    bigger = replace(world, facts=facts, fixed=np.zeros(len(facts), bool),
                     domain=np.zeros(len(facts), np.int64))
    note(describe(world))
    assert fact_set(world) <= fact_set(bigger)


@FAST
@given(worlds(planted=1))
def test_depth_is_one_more_than_the_shallowest_derivation(world):
    """A derived fact's depth is 1 + min over its derivations of its deepest premise;
    a base fact's depth is 0. (Depth = length of the shortest derivation chain.)"""
    c = closure_of(world)
    note(describe(world))
    assert (c.depth[: c.n_base] == 0).all()
    for f in range(c.n_base, len(c)):
        best = min(max(int(c.depth[p]) for p in c.premises(d)) for d in c.derivations_of(f))
        assert c.depth[f] == best + 1
