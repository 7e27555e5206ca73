"""Minimal deletion sets: validity, minimality, exact minimum, determinism, scoring."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgtest.errors import InputError
from kgtest.symbolic.closure import forward_chain_names
from kgtest.symbolic.deletion import (
    DeletionResult,
    deep_unlearns,
    is_minimal,
    minimal_deletion_sets,
    recall_accuracy,
)
from kgtest.symbolic.rules import parse_rules

RELS = ("p", "q", "r")  # deletable relations; "g" is a fixed attribute relation


@st.composite
def small_worlds(draw):
    """A tiny world: facts over p/q/r plus fixed g facts, and 1-4 random rules.

    Every rule has a p/q/r body atom and g is never a head, so no p/q/r fact is derivable
    from the fixed g facts alone: every non-fixed fact is a valid target.
    """
    ents = [f"e{i}" for i in range(draw(st.integers(2, 3)))]
    triples = [(s, r, o) for s in ents for r in RELS for o in ents]
    facts = draw(st.lists(st.sampled_from(triples), min_size=3, max_size=14, unique=True))
    attrs = [(e, "g", v) for e in ents for v in ("m", "f")]
    fixed = draw(st.lists(st.sampled_from(attrs), max_size=4, unique=True))
    rules = []
    for _ in range(draw(st.integers(2, 6))):
        length = draw(st.sampled_from([1, 2, 2, 3]))  # a chain X0 -> X1 -> ... of body atoms
        body = []
        for i in range(length):
            rel = draw(st.sampled_from(RELS))
            a, b = f"X{i}", f"X{i + 1}"
            body.append(f"{rel}({a}, {b})" if draw(st.booleans()) else f"{rel}({b}, {a})")
        if draw(st.booleans()):  # a fixed attribute condition on some variable
            v = draw(st.integers(0, length))
            body.append(f"g(X{v}, {draw(st.sampled_from(['m', 'f']))})")
        if draw(st.booleans()):
            body.append(f"X0 != X{length}")
        head_args = ("X0", f"X{length}") if draw(st.booleans()) else (f"X{length}", "X0")
        rules.append(f"{draw(st.sampled_from(RELS))}({', '.join(head_args)}) :- "
                     f"{', '.join(body)}.")
    rules = parse_rules("\n".join(rules))
    c = forward_chain_names(facts + fixed, rules)
    fixed_mask = np.zeros(len(c), dtype=bool)
    fixed_mask[len(facts) : c.n_base] = True
    base_only = draw(st.booleans())  # KB: the stated facts only, or the whole closure
    kb = np.arange(len(facts)) if base_only else np.flatnonzero(~fixed_mask)
    # mostly targets with at least one derivation (the interesting ones), some without
    derivable = np.flatnonzero(~fixed_mask & (c.proof_count > 0)).tolist()
    pool = derivable if derivable and draw(st.integers(0, 4)) else np.flatnonzero(~fixed_mask)
    target = draw(st.sampled_from(list(pool)))
    return c, kb, fixed_mask, int(target)


def derivable_from_scratch(c, kept_ids, target) -> bool:
    """Re-run forward chaining on the kept facts alone (no proof graph involved)."""
    kept = c.named_all(kept_ids)
    return c.named(target) in set(map(tuple, forward_chain_names(kept, c.rules).named_all()))


def brute_force_min(c, target, kb_ids, fixed_ids) -> int:
    """Size of the smallest deep-unlearning set, by trying all subsets in size order."""
    known = sorted(set(kb_ids) | set(fixed_ids))
    cone = set(c.cone(target).facts.tolist())
    candidates = [f for f in kb_ids if f in cone and f not in set(fixed_ids)]
    for k in range(len(candidates) + 1):
        for u in itertools.combinations(candidates, k):
            kept = np.setdiff1d(known, u)
            if not c.closure_mask(kept, stop_at=target)[target]:
                return k
    raise AssertionError("no deletion set at all")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=small_worlds(), expansion=st.sampled_from(["cut", "descent"]),
       seed=st.integers(0, 2**16))
def test_sets_are_valid_minimal_distinct_and_exact(world, expansion, seed):
    c, kb, fixed, t = world
    kb_before, fixed_before = kb.copy(), fixed.copy()
    res = minimal_deletion_sets(c, t, kb=kb, fixed=fixed, restarts=20, seed=seed,
                                count=None, expansion=expansion)
    np.testing.assert_array_equal(kb, kb_before)  # inputs untouched
    np.testing.assert_array_equal(fixed, fixed_before)
    known = np.union1d(kb, np.flatnonzero(fixed))
    keys = [tuple(s.tolist()) for s in res.sets]
    assert len(set(keys)) == len(keys) == res.n_found >= 1  # distinct
    assert [len(k) for k in keys] == sorted(len(k) for k in keys)  # smallest first
    for s in res.sets:
        assert np.isin(s, kb).all() and not fixed[s].any()  # only deletable KB facts
        kept = np.setdiff1d(known, s)
        assert not derivable_from_scratch(c, kept, t)  # valid
        for m in s:  # minimal: putting back any one member re-derives the target
            assert c.closure_mask(np.append(kept, m), stop_at=t)[t]
        assert deep_unlearns(c, t, s, kb=kb, fixed=fixed)
        assert is_minimal(c, t, s, kb=kb, fixed=fixed)
    # tiny proof graphs: the exact search finishes and agrees with brute force
    assert res.proven_minimum and res.lower_bound == res.min_size
    assert res.min_size == brute_force_min(c, t, kb.tolist(), np.flatnonzero(fixed).tolist())
    # from a single greedy restart the exact search must still reach the minimum
    one = minimal_deletion_sets(c, t, kb=kb, fixed=fixed, restarts=1, seed=seed)
    assert one.proven_minimum and one.min_size == res.min_size
    assert is_minimal(c, t, one.smallest, kb=kb, fixed=fixed)


@settings(max_examples=25, deadline=None)
@given(world=small_worlds(), seed=st.integers(0, 2**16))
def test_same_seed_same_sets(world, seed):
    c, kb, fixed, t = world
    a = minimal_deletion_sets(c, t, kb=kb, fixed=fixed, restarts=15, seed=seed, exact=False)
    b = minimal_deletion_sets(c, t, kb=kb, fixed=fixed, restarts=15, seed=seed, exact=False)
    assert [s.tolist() for s in a.sets] == [s.tolist() for s in b.sets]
    assert a.lower_bound is None and not a.proven_minimum


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 2**9 - 1), min_size=1, max_size=12),
       st.integers(1, 11))
def test_branch_and_bound_hitting_set_matches_brute_force(sets, bound):
    from kgtest.symbolic.hitting import min_hitting_set

    def hits(h):
        return all(h & s for s in sets)

    smallest = min(h.bit_count() for h in range(2**9) if hits(h))
    got = min_hitting_set(sets, bound, deadline=float("inf"))
    if smallest < bound:
        assert got is not None and hits(got) and got.bit_count() == smallest
    else:
        assert got is None


def _proofs_world(k: int):
    """t(x, y) stated, with k independent two-premise proofs a_i(x, y) ∧ b_i(x, y)."""
    rules = parse_rules("\n".join(f"t(X, Y) :- a{i}(X, Y), b{i}(X, Y)." for i in range(k)))
    facts = [("x", "t", "y")] + [("x", f"{r}{i}", "y") for i in range(k) for r in "ab"]
    return forward_chain_names(facts, rules)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_k_independent_proofs_need_k_plus_one(k):
    c = _proofs_world(k)
    res = minimal_deletion_sets(c, ("x", "t", "y"), seed=0, count=None, restarts=200)
    assert res.proven_minimum and res.min_size == k + 1 and res.lower_bound == k + 1
    assert set(res.sizes) == {k + 1}  # every minimal set: t plus one premise per proof
    assert res.n_found == 2**k  # and 200 restarts find all of them
    assert all(0 in s for s in res.sets)  # the stated target itself is always deleted


def test_shared_premise_exact_beats_greedy_sizes():
    # t :- a, b_i for i < 4: {t, a} is the minimum; {t, b0, b1, b2, b3} is minimal too
    rules = parse_rules("\n".join(f"t(X, Y) :- a(X, Y), b{i}(X, Y)." for i in range(4)))
    c = forward_chain_names([("x", r, "y") for r in ["t", "a", "b0", "b1", "b2", "b3"]], rules)
    res = minimal_deletion_sets(c, ("x", "t", "y"), seed=3, count=None)
    assert res.proven_minimum and res.smallest.tolist() == [0, 1]
    assert res.sizes == [2, 5]
    only_greedy = minimal_deletion_sets(c, ("x", "t", "y"), seed=3, restarts=1, exact=True)
    assert only_greedy.smallest.tolist() == [0, 1]  # exact finds it even from one restart


def test_derived_target_outside_kb_and_fixed_premises():
    # grand(X, Z) :- par(X, Y), par(Y, Z), g(X, m): KB = the two par facts; g is fixed
    rules = parse_rules("grand(X, Z) :- par(X, Y), par(Y, Z), g(X, m).")
    c = forward_chain_names([("a", "par", "b"), ("b", "par", "c"), ("a", "g", "m")], rules)
    t = c.find("a", "grand", "c")
    res = minimal_deletion_sets(c, t, kb=[0, 1], fixed=[2], seed=0, count=None)
    assert [s.tolist() for s in res.sets] == [[0], [1]]
    # default KB: every non-fixed closure fact, so the target itself must go too
    res = minimal_deletion_sets(c, t, fixed=[2], seed=0, count=None)
    assert [s.tolist() for s in res.sets] == [[0, t], [1, t]]
    assert not deep_unlearns(c, t, [0], fixed=[2]) and deep_unlearns(c, t, [0, t], fixed=[2])
    with pytest.raises(InputError, match="fixed fact"):
        deep_unlearns(c, t, [2], fixed=[2])


def test_count_truncates_but_keeps_smallest_first():
    c = _proofs_world(3)
    res = minimal_deletion_sets(c, 0, seed=0, count=3, restarts=100)
    assert len(res.sets) == 3 and res.n_found == 8
    assert [s.tolist() for s in res.sets] == sorted(s.tolist() for s in res.sets)


def test_time_limit_zero_reports_unproven():
    c = _proofs_world(3)
    res = minimal_deletion_sets(c, 0, seed=0, time_limit=0.0)
    assert not res.proven_minimum and 1 <= res.lower_bound <= res.min_size == 4


def test_is_minimal_rejects_supersets_and_non_kb_members():
    c = _proofs_world(2)  # ids: 0 t, 1 a0, 2 b0, 3 a1, 4 b1
    assert is_minimal(c, 0, [0, 1, 3])
    assert not is_minimal(c, 0, [0, 1, 2, 3])  # b0 is redundant
    assert not is_minimal(c, 0, [0, 1])  # not even valid
    assert not is_minimal(c, 0, [0, 1, 3], kb=[0, 1, 2, 3])  # b1 unknown: a1 not needed


def test_bad_input_raises_one_line_input_error():
    rules = parse_rules("t(X, Y) :- a(X, Y), g(X, m).")
    c = forward_chain_names([("x", "a", "y"), ("x", "g", "m"), ("x", "t", "y")], rules)
    cases = [
        (dict(target=("x", "t", "nobody")), "not in the closure"),
        (dict(target=99), "not in the closure"),
        (dict(target=1, fixed=[1]), "is a fixed fact"),
        (dict(target=("x", "t", "y"), fixed=[0, 1]), "fixed facts alone"),
        (dict(target=0, kb=[2], fixed=[1]), "nothing to unlearn"),
        (dict(target=0, expansion="magic"), "unknown expansion 'magic'; known: cut, descent"),
        (dict(target=0, count=0), "count must be"),
    ]
    for kwargs, message in cases:
        target = kwargs.pop("target")
        with pytest.raises(InputError, match=message) as err:
            minimal_deletion_sets(c, target, **kwargs)
        assert "\n" not in str(err.value)


def test_recall_accuracy_hand_computed():
    # KB of 10 facts; minimal sets M1 = {1, 2, 3}, M2 = {4, 5}
    sets = [[1, 2, 3], [4, 5]]
    # U' = {1, 2, 7}: recall 2/3 via M1 (0 via M2); accuracy 1 - |{7}| / (10 - 3)
    r, a = recall_accuracy([1, 2, 7], sets, kb_size=10)
    assert r == pytest.approx(2 / 3) and a == pytest.approx(1 - 1 / 7)
    # U' = {1, 4, 8, 9}: recall 1/3 via M1, 1/2 via M2 -> M2; accuracy 1 - |{1, 8, 9}| / 8
    r, a = recall_accuracy([1, 4, 8, 9], sets, kb_size=10)
    assert (r, a) == (0.5, 1 - 3 / 8)
    # U' = {1, 2, 4, 5}: recall 2/3 via M1, 1 via M2 -> M2; accuracy 1 - |{1, 2}| / 8
    r, a = recall_accuracy(np.array([1, 2, 4, 5]), sets, kb_size=10)
    assert (r, a) == (1.0, 1 - 2 / 8)
    r, a = recall_accuracy([1, 2, 9], [[1, 2, 3, 4], [1, 5]], kb_size=8)  # tie: 1/2 and 1/2
    assert (r, a) == (0.5, 0.75)  # M1 leaves 1 wrong of 4; M2 would leave 2 of 6
    assert recall_accuracy([], sets, kb_size=10) == (0.0, 1.0)
    with pytest.raises(InputError):
        recall_accuracy([1], [], kb_size=10)


def test_recall_accuracy_of_a_result_unlearning_only_the_target():
    c = _proofs_world(3)
    res = minimal_deletion_sets(c, 0, seed=0, count=None)
    assert isinstance(res, DeletionResult)
    r, a = recall_accuracy([0], res, kb_size=len(c))
    assert r == pytest.approx(1 / 4) and a == 1.0  # SCIENCE.md: ~1/min|M|
