"""The public hypothesis strategies: valid by construction, bounded, shrinking small."""

import inspect

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import kgtest.claims
import kgtest.strategies
from kgtest.claims import (
    all_minimal_deletion_sets,
    closure_of,
    deep_unlearns,
    derivation_depth,
    independent_proofs,
    is_recursive,
    is_stated,
    proof_count,
)
from kgtest.strategies import (
    deletion_sets,
    rule_sets,
    rules,
    targets,
    worlds,
    worlds_with_targets,
)
from kgtest.symbolic.rules import parse_rule, parse_rules
from kgtest.worlds.world import World

FAST = settings(max_examples=60, deadline=None)


def public_names(module):
    """Functions and classes defined in ``module`` or, for a package, in its submodules."""
    return {name for name, obj in vars(module).items() if not name.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and (obj.__module__ + ".").startswith(module.__name__ + ".")}


@pytest.mark.parametrize("module", [kgtest.strategies, kgtest.claims])
def test_all_is_curated(module):
    assert set(module.__all__) == public_names(module)
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        doc = inspect.getdoc(getattr(module, name))
        assert doc, f"{module.__name__}.{name} has no docstring"


@pytest.mark.parametrize("name", kgtest.strategies.__all__)
def test_every_strategy_has_a_runnable_example(name):
    doc = inspect.getdoc(getattr(kgtest.strategies, name))
    assert "Examples\n--------" in doc and ">>> " in doc


@FAST
@given(rules(["p", "q"], heads=["h"], min_body=2, max_body=3, max_variables=4,
             constants=["alice"]))
def test_rules_are_safe_and_bounded(rule):
    assert parse_rule(str(rule)) == rule  # the parser refuses unsafe rules
    assert 2 <= len(rule.atoms) <= 3 and len(rule.variables) <= 4
    assert rule.head.relation == "h" and set(rule.relations) <= {"h", "p", "q"}
    assert len(rule.inequalities) <= 1


@FAST
@given(rule_sets(["a", "b", "c"], min_rules=1, max_rules=4, recursive=False, inputs=["x"]))
def test_stratified_rule_sets_are_not_recursive(rs):
    assert 1 <= len(rs) <= 4 and len({str(r) for r in rs}) == len(rs)
    assert not is_recursive(rs)
    assert all(r.head.relation in {"b", "c"} or set(r.relations) <= {"a", "x"} for r in rs)


@FAST
@given(worlds(min_entities=2, max_entities=4, max_relations=2, max_facts=5, max_rules=2,
              fixed=True, constants=True))
def test_worlds_are_valid_and_bounded(world):
    n_random = sum(1 for name in world.entities if name.startswith("e"))
    assert 2 <= n_random <= 4 and len(world.relations) <= 2
    assert len(world.facts) <= 5 and len(world.rules) <= 2
    assert len(np.unique(world.facts, axis=0)) == len(world.facts)
    for r in world.rules:
        assert set(r.relations) <= set(world.relations)
    assert parse_rules("".join(f"{r}\n" for r in world.rules) or "p(X, X) :- p(X, X).")
    assert closure_of(world).n_base == len(world.facts)


def test_worlds_shrink_to_the_smallest():
    w = find(worlds(min_entities=3), lambda w: True)
    assert len(w.entities) == 3 and len(w.relations) == 1
    assert len(w.facts) == 0 and len(w.rules) == 0
    r = find(rules(), lambda r: True)
    assert str(r) == "r0(X, X) :- r0(X, X)."


@FAST
@given(worlds(planted=2, planted_proofs=(1, 3), planted_depth=(1, 3), fixed=True))
def test_planted_targets_are_exact(world):
    c = closure_of(world)
    ids = c.index(world.planted)
    assert (ids >= 0).all()
    for t, meta in zip(ids.tolist(), world.meta["planted"], strict=True):
        assert proof_count(world, t) == meta["proofs"]
        assert derivation_depth(world, t) == meta["depth"]
        assert is_stated(world, t) == meta["stated"]
        assert independent_proofs(world, t) == meta["proofs"] + meta["stated"]


@FAST
@given(worlds_with_targets(min_proofs=2, max_proofs=3, min_depth=2, max_depth=3, stated=True,
                           fixed=True))
def test_targets_respect_their_ranges(case):
    world, t = case
    assert 2 <= proof_count(world, t) <= 3
    assert 2 <= derivation_depth(world, t) <= 3
    assert is_stated(world, t)
    assert not world.fixed_mask(closure_of(world))[t]


def test_targets_refuses_an_impossible_request_at_once():
    w = World.from_names([("a", "p", "b")], parse_rules("q(X, Y) :- p(X, Y)."))
    with pytest.raises(InvalidArgument, match="worlds_with_targets"):
        targets(w, min_proofs=2)
    assert find(targets(w), lambda t: True) == 1
    w = World.from_names([], parse_rules("q(X, Y) :- p(X, Y)."), fixed=[("a", "p", "b")])
    with pytest.raises(InvalidArgument, match="no deletion set"):
        deletion_sets(w, ("a", "q", "b"))
    with pytest.raises(InvalidArgument):
        worlds(max_entities=0)


@FAST
@given(worlds_with_targets(fixed=True), st.sampled_from(["base", "closure"]), st.data())
def test_deletion_sets_are_minimal_and_supersets_work(case, kb, data):
    world, t = case
    u = data.draw(deletion_sets(world, t, kb=kb))
    assert frozenset(u) in set(all_minimal_deletion_sets(world, t, kb=kb))
    more = data.draw(deletion_sets(world, t, kb=kb, minimal=False))
    assert deep_unlearns(world, t, more, kb=kb)
    assert not world.fixed[[f for f in more if f < len(world.facts)]].any()


def test_every_minimal_deletion_set_can_be_drawn():
    w = World.from_names(
        [("a", "p", "b"), ("b", "p", "c"), ("a", "q", "c"), ("a", "g", "c")],
        parse_rules("g(X, Z) :- p(X, Y), p(Y, Z). g(X, Y) :- q(X, Y)."),
    )
    t = ("a", "g", "c")
    every = all_minimal_deletion_sets(w, t)
    assert [sorted(m) for m in every] == [[0, 2, 3], [1, 2, 3]]
    for m in every:
        assert frozenset(find(deletion_sets(w, t), lambda u, m=m: frozenset(u) == m)) == m
