"""Symbolic claims about deep unlearning and deletion sets (SCIENCE.md), as properties.

``kb="base"`` unless a test says otherwise: the model knows the world's stated facts.
Every test states its claim in its docstring; docs/claims.md lists them all.
"""

import numpy as np
from hypothesis import given, note, settings
from hypothesis import strategies as st

from kgtest.claims import (
    all_minimal_deletion_sets,
    closure_of,
    deep_unlearns,
    describe,
    independent_proofs,
    is_stated,
    kb_mask,
    min_deletion_size,
    supports,
)
from kgtest.strategies import deletion_sets, targets, worlds, worlds_with_targets
from kgtest.symbolic import deletion

FAST = settings(max_examples=100, deadline=None)


@FAST
@given(worlds(min_facts=1, planted=1, fixed=True), st.data())
def test_tail_facts_can_be_unlearned(world, data):
    """SCIENCE claim 2: a stated fact with no derivation is deep-unlearned by deleting it
    alone."""
    t = data.draw(targets(world, min_proofs=0, max_proofs=0, min_depth=0), label="tail")
    note(describe(world, target=t))
    assert deep_unlearns(world, t, [t])


@FAST
@given(worlds_with_targets(stated=True, recursive=False, fixed=True))
def test_interconnected_facts_come_back_without_recursion(case):
    """SCIENCE claim 1: with non-recursive rules, deleting only a stated target that has a
    derivation never deep-unlearns it: its premises re-derive it."""
    world, t = case
    note(describe(world, target=t, deleted=[t]))
    assert not deep_unlearns(world, t, [t])


@FAST
@given(worlds_with_targets(fixed=True), st.data())
def test_deleting_more_never_brings_a_fact_back(case, data):
    """If U deep-unlearns t, so does every U' ⊇ U (closure is monotone)."""
    world, t = case
    u = data.draw(deletion_sets(world, t, minimal=False), label="superset")
    note(describe(world, target=t, deleted=u))
    assert deep_unlearns(world, t, u)


@FAST
@given(worlds_with_targets(fixed=True, max_entities=4), st.sampled_from(["base", "closure"]))
def test_every_minimal_deletion_set_of_a_known_target_contains_it(case, kb):
    """Every minimal deletion set of a target the model knows (stated, or any target
    when kb="closure") contains the target; none contains a fixed fact."""
    world, t = case
    c = closure_of(world)
    fixed = world.fixed_mask(c)
    note(describe(world, target=t))
    sets = all_minimal_deletion_sets(world, t, kb=kb)
    assert sets, "a planted or drawn target is deletable"
    for m in sets:
        assert not fixed[sorted(m)].any()
        if kb == "closure" or is_stated(world, t):
            assert t in m


@FAST
@given(worlds_with_targets(fixed=True, max_entities=4))
def test_minimal_deletion_sets_are_minimal(case):
    """Each exhaustive minimal deletion set deep-unlearns the target, and putting back
    any one of its facts makes the target derivable again."""
    world, t = case
    note(describe(world, target=t))
    for m in all_minimal_deletion_sets(world, t):
        assert deep_unlearns(world, t, m)
        for f in m:
            assert not deep_unlearns(world, t, m - {f})


@FAST
@given(worlds_with_targets(fixed=True), st.sampled_from(["base", "closure"]))
def test_k_independent_proofs_need_k_deletions(case, kb):
    """A target with k independent proofs (pairwise-disjoint supports) needs a deletion
    set of at least k facts."""
    world, t = case
    note(describe(world, target=t))
    assert min_deletion_size(world, t, kb=kb) >= independent_proofs(world, t, kb=kb)


@FAST
@given(worlds(planted=1, planted_proofs=(1, 4), planted_depth=(1, 3)))
def test_planted_target_needs_exactly_its_proofs(world):
    """A planted target with k disjoint proofs needs exactly k deletions, k + 1 if it is
    stated (kb="base"), and always k + 1 when the model knows the closure."""
    meta = world.meta["planted"][0]
    t = int(closure_of(world).index(world.planted)[0])
    note(describe(world, target=t))
    k = meta["proofs"]
    assert independent_proofs(world, t) == k + meta["stated"]
    assert min_deletion_size(world, t) == k + meta["stated"]
    assert min_deletion_size(world, t, kb="closure") == k + 1


@FAST
@given(worlds_with_targets(fixed=True, max_entities=4), st.sampled_from(["base", "closure"]))
def test_deletion_search_agrees_with_exhaustive_enumeration(case, kb):
    """kgtest.symbolic.deletion (randomised search + exact minimum) agrees with brute
    force: every set it returns is a minimal deletion set, its proven minimum is the true
    minimum, and the greedy-pruned draws of `deletion_sets` are minimal sets too."""
    world, t = case
    c = closure_of(world)
    note(describe(world, target=t))
    exhaustive = set(all_minimal_deletion_sets(world, t, kb=kb))
    res = deletion.minimal_deletion_sets(c, t, kb=kb_mask(world, kb),
                                         fixed=world.fixed_mask(c), count=None, seed=0)
    found = {frozenset(s.tolist()) for s in res.sets}
    assert found <= exhaustive
    assert res.proven_minimum and res.min_size == min(map(len, exhaustive))


@FAST
@given(worlds_with_targets(fixed=True), st.data())
def test_a_deleted_target_has_no_surviving_derivation(case, data):
    """If U deep-unlearns t, every derivation of t has a premise that is not derivable
    from what remains (A ∧ B ⇒ C: keep A and B, and C comes back)."""
    world, t = case
    c = closure_of(world)
    u = data.draw(deletion_sets(world, t), label="deleted")
    note(describe(world, target=t, deleted=u))
    kept = (kb_mask(world) | world.fixed_mask(c))
    kept[list(u)] = False
    alive = c.closure_mask(kept)
    assert not alive[t]
    for d in c.derivations_of(t).tolist():
        assert not alive[c.premises(d)].all()


@FAST
@given(worlds_with_targets(fixed=True, max_entities=4))
def test_supports_are_minimal_and_sufficient(case):
    """Each minimal support S derives the target from S ∪ fixed facts alone, and no
    proper subset of S does."""
    world, t = case
    c = closure_of(world)
    fixed = world.fixed_mask(c)
    note(describe(world, target=t))
    for s in supports(world, t):
        kept = fixed.copy()
        kept[list(s)] = True
        assert c.derivable(t, kept)
        for f in s:
            kept[f] = False
            assert not c.derivable(t, kept)
            kept[f] = True
    assert not np.any([len(s) == 0 for s in supports(world, t)])
