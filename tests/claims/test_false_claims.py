"""Claims that are FALSE as stated, and the counterexamples hypothesis finds for them.

Each test asserts that hypothesis *refutes* the claim and checks the counterexample, so
the suite passes while showing that the tool can refute, not only confirm. The shrunk
counterexamples are recorded in docs/claims.md.
"""

import pytest
from hypothesis import Phase, given, note, seed, settings
from hypothesis import strategies as st

from kgtest.claims import (
    counterexample,
    deep_unlearns,
    describe,
    independent_proofs,
    is_recursive,
    is_stated,
    min_deletion_size,
    premise_disjoint_derivations,
    proof_count,
)
from kgtest.strategies import targets, worlds, worlds_with_targets


def proofs_need_deletions(case) -> bool:
    """FALSE: a target with proof count k needs >= k deletions (k + 1 if stated)."""
    world, t = case
    return min_deletion_size(world, t) >= proof_count(world, t) + is_stated(world, t)


# Small worlds over one relation make counterexamples common (about one draw in a hundred)
# and shrinking quick; they are still worlds the claim speaks about.
TWO_PROOFS = worlds_with_targets(min_proofs=2, max_proofs=2, max_depth=1, max_entities=2,
                                 max_relations=1, max_facts=3, min_rules=1, max_rules=2)


def test_proof_count_bounds_deletion_size_is_false():
    """Refuted: two derivations can share a premise, so deleting that one premise kills
    both. Proof count is not the number of independent proofs."""
    failing = []

    @seed(0)
    @settings(max_examples=500, deadline=None, database=None, print_blob=True,
              phases=[Phase.generate, Phase.shrink])
    @given(TWO_PROOFS)
    def claim(case):
        note(describe(case[0], target=case[1]))
        ok = proofs_need_deletions(case)
        if not ok:
            failing[:] = [case]  # hypothesis replays the shrunk example last
        assert ok

    with pytest.raises(AssertionError) as failure:
        claim()
    report = "\n".join(getattr(failure.value, "__notes__", []))
    assert "Failing test case" in report and "% target" in report
    assert "@reproduce_failure" in report

    world, t = failing[0]
    k = proof_count(world, t)
    assert k >= 2 and min_deletion_size(world, t) < k + is_stated(world, t)
    # the true bound uses independent proofs (disjoint supports) instead
    assert min_deletion_size(world, t) >= independent_proofs(world, t)


def premise_disjoint_need_deletions(case) -> bool:
    """FALSE: k derivations with pairwise-disjoint premises need >= k deletions."""
    world, t = case
    need = premise_disjoint_derivations(world, t) + is_stated(world, t)
    return min_deletion_size(world, t) >= need


def test_premise_disjoint_derivations_bound_deletion_size_is_false():
    """Refuted: premises can be disjoint at the last step and still share a support
    deeper down (q(a, b) derived from p(a, b) and both proving t(a, b))."""
    one_relation = worlds_with_targets(min_proofs=2, max_proofs=2, max_depth=1,
                                       max_entities=2, max_relations=1, max_facts=2,
                                       min_rules=2, max_rules=2, max_body=1)
    found = counterexample(one_relation, premise_disjoint_need_deletions)
    assert found is not None
    world, t = found
    k = premise_disjoint_derivations(world, t)
    assert k >= 2 and min_deletion_size(world, t) < k + is_stated(world, t)


@st.composite
def stated_derivable_targets(draw):
    """A stated target with at least one derivation (not necessarily from other facts),
    in small worlds over one relation, where rules are recursive."""
    world = draw(worlds(planted=1, planted_stated=True, planted_proofs=(1, 1),
                        planted_depth=(1, 1), max_entities=2, max_relations=1, min_facts=1,
                        max_facts=3, min_rules=1, max_rules=2, max_body=1))
    return world, draw(targets(world, stated=True, min_depth=0))


def deleting_target_alone_fails(case) -> bool:
    """FALSE with recursive rules: deleting only a stated target that has a derivation
    never deep-unlearns it."""
    world, t = case
    return not deep_unlearns(world, t, [t])


def test_deleting_a_derivable_target_alone_never_works_is_false():
    """Refuted: with recursive rules a derivation's premise can itself depend on the
    target (r0(e0, e1) -> r0(e1, e0) -> r0(e0, e1) under a symmetry rule), so deleting
    the target alone removes it. Without recursion the claim holds
    (test_interconnected_facts_come_back_without_recursion)."""
    world, t = counterexample(stated_derivable_targets(), deleting_target_alone_fails)
    assert is_recursive(world) and proof_count(world, t) >= 1
    assert deep_unlearns(world, t, [t])
