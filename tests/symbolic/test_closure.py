"""Tests for the closure engine: unit tests of the joins, and property tests against a
naive reference forward chainer written here over Python sets (slow, obviously right)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kgtest.errors import InputError
from kgtest.symbolic.closure import forward_chain, forward_chain_names
from kgtest.symbolic.facts import Vocab, encode
from kgtest.symbolic.rules import Atom, Inequality, Rule, Term, parse_rules

# --- helpers -------------------------------------------------------------------------------


def close(facts, rules_text, **kw):
    return forward_chain_names(facts, parse_rules(rules_text), **kw)


def fact_set(c):
    return set(c.named_all())


def derived_set(c):
    return set(c.named_all(range(c.n_base, len(c))))


def named_derivations(c):
    """Every derivation as ``(head, rule id, premises)`` over named triples."""
    names = c.named_all()
    return {
        (names[h], int(r), tuple(names[p] for p in prem if p >= 0))
        for h, r, prem in zip(c.deriv_head.tolist(), c.deriv_rule.tolist(),
                              c.deriv_premises.tolist(), strict=True)
    }


def trip(text):
    """``"a p b; b p c"`` -> ``[("a", "p", "b"), ("b", "p", "c")]``."""
    return [tuple(f.split()) for f in text.split(";") if f.strip()]


# --- the reference chainer -------------------------------------------------------------------


def _value(term, env):
    return env[term.name] if term.is_var else term.name


def _unify(atom, fact, env):
    """Extend ``env`` so that ``atom`` matches the named ``fact``; None if it cannot."""
    s, r, o = fact
    if r != atom.relation:
        return None
    env = dict(env)
    for term, value in zip(atom.args, (s, o), strict=True):
        if term.is_var:
            if env.setdefault(term.name, value) != value:
                return None
        elif term.name != value:
            return None
    return env


def ref_matches(rule, facts):
    """All ``(head, premises)`` of one rule over a set of named facts (backtracking)."""
    by_rel = defaultdict(list)
    for f in sorted(facts):
        by_rel[f[1]].append(f)
    atoms = rule.atoms
    out = []

    def rec(i, env, prem):
        if i == len(atoms):
            if all(_value(q.left, env) != _value(q.right, env) for q in rule.inequalities):
                h = rule.head
                out.append(((_value(h.args[0], env), h.relation, _value(h.args[1], env)),
                            tuple(prem)))
            return
        for f in by_rel[atoms[i].relation]:
            env2 = _unify(atoms[i], f, env)
            if env2 is not None:
                rec(i + 1, env2, prem + [f])

    rec(0, {}, [])
    return out


def ref_closure(base, rules):
    """Naive (not semi-naive) chaining: ``(depth per fact, set of derivations)``.

    Round t applies every rule to all facts known before it; a fact first derived in
    round t has depth t. Derivations are then every match over the fixpoint whose head
    is not one of its own premises.
    """
    depth = {f: 0 for f in base}
    rnd = 0
    while True:
        rnd += 1
        known = set(depth)
        new = {h for rule in rules for h, _ in ref_matches(rule, known) if h not in known}
        if not new:
            break
        depth.update(dict.fromkeys(new, rnd))
    derivs = {(h, i, p) for i, rule in enumerate(rules) for h, p in ref_matches(rule, set(depth))
              if h not in p}
    return depth, derivs


# --- strategies: random small worlds and rule sets, built valid --------------------------------

ENTITIES = ("a", "b", "c", "d")
BASE_RELS = ("p", "q", "r")
DERIVED_RELS = ("s", "t")
VARS = ("X", "Y", "Z", "W")


@st.composite
def terms(draw, pool=VARS):
    """A constant (1 in 10), else a variable from ``pool``."""
    if draw(st.integers(0, 9)) == 0:
        return Term(draw(st.sampled_from(ENTITIES)))
    return Term(draw(st.sampled_from(pool)))


@st.composite
def rules(draw):
    """A safe rule: 1-3 body atoms (mostly joined to earlier atoms on a shared variable,
    on either side), head terms drawn from the body's variables (or constants), an
    optional inequality over bound terms, literals in any order. Heads are mostly derived
    relations, which bodies also use, so rule sets are often recursive."""
    atoms, used = [], []
    for _ in range(draw(st.integers(1, 3))):
        joined = used and draw(st.integers(0, 3)) > 0
        args = [Term(draw(st.sampled_from(used))) if joined else draw(terms()), draw(terms())]
        if draw(st.booleans()):
            args.reverse()
        atoms.append(Atom(draw(st.sampled_from(BASE_RELS * 2 + DERIVED_RELS)), tuple(args)))
        used += [t.name for t in args if t.is_var and t.name not in used]
    bound_term = terms(tuple(used)) if used else st.sampled_from([Term(e) for e in ENTITIES])

    def two_terms():  # mostly two distinct body variables
        if len(used) >= 2 and draw(st.integers(0, 3)) > 0:
            a, b = draw(st.permutations(used))[:2]
            return Term(a), Term(b)
        return draw(bound_term), draw(bound_term)

    head = Atom(draw(st.sampled_from(DERIVED_RELS * 2 + BASE_RELS)), two_terms())
    body: list[Atom | Inequality] = list(atoms)
    if draw(st.integers(0, 2)) == 0:
        body.insert(draw(st.integers(0, len(body))), Inequality(*two_terms()))
    return Rule(head, tuple(body))


@st.composite
def worlds(draw, max_facts=16):
    """``(facts, rules)``: named facts over 2-4 entities (duplicates allowed; mostly base
    relations, some stated derived-relation facts) and 1-4 rules."""
    ents = ENTITIES[: draw(st.integers(2, len(ENTITIES)))]
    fact = st.tuples(st.sampled_from(ents), st.sampled_from(BASE_RELS * 3 + DERIVED_RELS),
                     st.sampled_from(ents))
    facts = draw(st.lists(fact, min_size=2, max_size=max_facts))
    return facts, draw(st.lists(rules(), min_size=1, max_size=4))


PROPS = settings(max_examples=150, deadline=None)


# --- unit tests of the joins ---------------------------------------------------------------


def test_composition_and_layout():
    c = close(trip("ann parent bob; bob parent cy; cy parent dee; ann parent bob"),
              "grandparent(X, Z) :- parent(X, Y), parent(Y, Z).")
    assert c.n_base == 3  # duplicate dropped, first occurrence kept, input order
    assert c.named_all(range(3)) == trip("ann parent bob; bob parent cy; cy parent dee")
    assert derived_set(c) == set(trip("ann grandparent cy; bob grandparent dee"))
    assert c.depth.tolist() == [0, 0, 0, 1, 1]
    assert c.deriv_premises.shape == (2, 2)
    g = c.find("ann", "grandparent", "cy")
    assert c.premises(c.derivations_of(g)[0]) == [0, 1]


def test_constants_in_body():
    c = close(trip("ann parent bob; bob parent cy; ann gender male; bob gender female"),
              "father(X, Y) :- parent(X, Y), gender(X, male).")
    assert derived_set(c) == {("ann", "father", "bob")}
    (d,) = c.derivations_of(c.find("ann", "father", "bob"))
    assert c.named_all(c.premises(d)) == trip("ann parent bob; ann gender male")


def test_constants_in_head_and_unseen_constants():
    c = close(trip("ann likes tea; bob likes tea; bob likes gin"),
              "drinker(X, yes) :- likes(X, Y).\nteafan(X, tea) :- likes(X, tea).")
    assert derived_set(c) == set(trip("ann drinker yes; bob drinker yes; "
                                      "ann teafan tea; bob teafan tea"))
    assert c.proof_count[c.find("bob", "drinker", "yes")] == 2


def test_atom_without_variables_is_a_cross_product_guard():
    rules = "ok(X, Y) :- q(X, Y), flag(on, now)."
    assert derived_set(close(trip("a q b"), rules)) == set()
    c = close(trip("a q b; c q d; on flag now"), rules)
    assert derived_set(c) == set(trip("a ok b; c ok d"))
    d = c.derivations_of(c.find("c", "ok", "d"))[0]
    assert c.named_all(c.premises(d)) == trip("c q d; on flag now")


def test_repeated_variables():
    c = close(trip("a e a; a e b; b e a; c e c; c f c; c f d"),
              "self(X, X) :- e(X, X).\nmutual(X, Y) :- e(X, Y), e(Y, X).\n"
              "both(X, Y) :- e(X, X), f(X, Y).")
    assert {f for f in derived_set(c) if f[1] == "self"} == set(trip("a self a; c self c"))
    assert {f for f in derived_set(c) if f[1] == "mutual"} == set(
        trip("a mutual a; a mutual b; b mutual a; c mutual c"))
    assert {f for f in derived_set(c) if f[1] == "both"} == set(trip("c both c; c both d"))


def test_inequalities():
    facts = trip("p parent x; p parent y; p parent z; q parent x")
    c = close(facts, "sibling(X, Y) :- parent(Z, X), parent(Z, Y), X != Y.")
    assert derived_set(c) == {(a, "sibling", b) for a in "xyz" for b in "xyz" if a != b}
    c = close(facts, "other(X, Y) :- parent(X, Y), Y != x.")
    assert derived_set(c) == set(trip("p other y; p other z"))
    c = close(facts, "never(X, Y) :- parent(X, Y), X != X.\nalways(X, Y) :- parent(X, Y), a != b.")
    assert {f[1] for f in derived_set(c)} == {"always"}
    # an inequality may come before the atoms that bind it
    c2 = close(facts, "sibling(X, Y) :- X != Y, parent(Z, X), parent(Z, Y).")
    assert derived_set(c2) == {(a, "sibling", b) for a in "xyz" for b in "xyz" if a != b}


def test_cross_product():
    c = close(trip("a r b; c r d; x s y; z s w"), "pair(X, W) :- r(X, Y), s(Z, W).")
    assert derived_set(c) == {(s, "pair", o) for s in "ac" for o in "yw"}
    assert c.n_derivations == 4


def test_three_and_four_body_atoms():
    chain = trip("a p b; b p c; c p d; d p e")
    c = close(chain, "ggp(X, W) :- p(X, Y), p(Y, Z), p(Z, W).\n"
                     "g3(X, V) :- p(X, Y), p(Y, Z), p(Z, W), p(W, V).")
    assert derived_set(c) == set(trip("a ggp d; b ggp e; a g3 e"))
    d = c.derivations_of(c.find("a", "g3", "e"))[0]
    assert c.premises(d) == [0, 1, 2, 3]
    assert c.deriv_premises.shape[1] == 4
    # a 2-atom rule next to a 4-atom one: its premise rows are padded with -1
    c = close(chain, "gp(X, Z) :- p(X, Y), p(Y, Z).\ng3(X, V) :- p(X, Y), p(Y, Z), p(Z, W), "
                     "p(W, V).")
    gp = c.deriv_rule == 0
    assert (c.deriv_premises[gp, 2:] == -1).all() and (c.deriv_premises[gp, :2] >= 0).all()


def test_transitive_closure_depths_and_proof_counts():
    n = 9
    facts = [(f"n{i}", "parent", f"n{i + 1}") for i in range(n - 1)]
    c = close(facts, "anc(X, Z) :- parent(X, Z).\nanc(X, Z) :- anc(X, Y), anc(Y, Z).")
    for i in range(n):
        for j in range(i + 1, n):
            f = c.find(f"n{i}", "anc", f"n{j}")
            d = j - i
            assert f >= 0
            assert c.depth[f] == 1 + int(np.ceil(np.log2(d)))  # doubling: 1 + ceil(log2 d)
            assert c.proof_count[f] == (1 if d == 1 else 0) + (d - 1)
    assert len(c) - c.n_base == n * (n - 1) // 2
    assert (np.diff(c.depth[c.n_base:]) >= 0).all()


def test_linear_recursion_depths():
    facts = [(f"n{i}", "e", f"n{i + 1}") for i in range(6)]
    c = close(facts, "path(X, Y) :- e(X, Y).\npath(X, Z) :- e(X, Y), path(Y, Z).")
    for i in range(7):
        for j in range(i + 1, 7):
            assert c.depth[c.find(f"n{i}", "path", f"n{j}")] == j - i


def test_derivable_base_fact_and_self_support():
    c = close(trip("a p b; b p c; a gp c"),
              "gp(X, Z) :- p(X, Y), p(Y, Z).\np(X, Y) :- p(X, Y).\nq(X, Y) :- q(X, Y), p(X, Y).")
    assert c.n_base == 3 and len(c) == 3  # the stated gp fact is not repeated
    assert c.proof_count.tolist() == [0, 0, 1]  # self-derivations dropped, base fact derivable
    assert c.deriv_head.tolist() == [2]
    assert c.derivable(2, kept=[0, 1]) and not c.derivable(2, kept=[0])


def test_max_rounds():
    facts = [(f"n{i}", "e", f"n{i + 1}") for i in range(6)]
    rules = "path(X, Y) :- e(X, Y).\npath(X, Z) :- e(X, Y), path(Y, Z)."
    c = close(facts, rules, max_rounds=2)
    assert c.depth.max() == 2 and len(c) - c.n_base == 6 + 5
    assert close(facts, rules, max_rounds=0).n_derivations == 0


def test_lookup_and_cones():
    c = close(trip("a p b; b p c; c p d"),
              "gp(X, Z) :- p(X, Y), p(Y, Z).\nggp(X, Z) :- gp(X, Y), p(Y, Z).")
    t = c.find("a", "ggp", "d")
    assert c.named(t) == ("a", "ggp", "d")
    assert c.find("a", "ggp", "zzz") == -1 and c.find("d", "p", "a") == -1
    assert c.index(np.array([[0, 0, 1], [1, 0, 0], [99, 0, 0], [-1, 0, 0]])).tolist() == [
        0, -1, -1, -1]
    cone = c.cone(t)
    assert set(c.named_all(cone.facts)) == set(trip("a p b; b p c; c p d; a gp c; a ggp d"))
    assert cone.facts[cone.target] == t
    assert c.rules_of(t) == [1]
    assert c.derivable(t, kept=[0, 1, 2]) and not c.derivable(t, kept=[0, 2])
    assert c.derivable(t, kept=[c.find("a", "gp", "c"), 2])
    mask = c.closure_mask([0, 1, 2])
    assert mask.all()
    expect = {1, 2, c.find("b", "gp", "d")}
    assert c.closure_mask([1, 2]).tolist() == [i in expect for i in range(len(c))]
    assert c.closure_mask([0, 1], stop_at=3)[3]


def test_inputs_not_mutated_and_bad_ids():
    ents, rels = Vocab(), Vocab()
    facts = encode(trip("a p b; b p c"), ents, rels)
    before = facts.copy()
    c = forward_chain(facts, parse_rules("gp(X, Z) :- p(X, Y), p(Y, Z), q(X, k)."), ents, rels)
    assert np.array_equal(facts, before) and len(ents) == 3 and len(rels) == 1
    assert "k" in c.entities and "gp" in c.relations
    with pytest.raises(InputError, match="out of range"):
        forward_chain(np.array([[0, 5, 1]]), [], ents, rels)
    with pytest.raises(InputError, match="out of range"):
        forward_chain(np.array([[0, 0, -1]]), [], ents, rels)


def test_unsafe_rules_built_in_code_are_refused():
    x, y, z = Term("X"), Term("Y"), Term("Z")
    unsafe = Rule(Atom("p", (x, z)), (Atom("q", (x, y)),))
    with pytest.raises(InputError, match=r"unsafe rule 'p\(X, Z\) :- q\(X, Y\).': variable Z"):
        forward_chain_names(trip("a q b"), [unsafe])
    no_atom = Rule(Atom("p", (x, y)), (Inequality(x, y),))
    with pytest.raises(InputError, match="no body atom"):
        forward_chain_names(trip("a q b"), [no_atom])


def test_empty_inputs():
    c = forward_chain(np.zeros((0, 3), dtype=np.int64),
                      parse_rules("gp(X, Z) :- p(X, Y), p(Y, Z)."), Vocab(), Vocab())
    assert len(c) == 0 and c.n_derivations == 0 and c.deriv_premises.shape == (0, 2)
    c = forward_chain_names(trip("a p b"), [])
    assert len(c) == 1 and c.n_derivations == 0


# --- properties ------------------------------------------------------------------------------


@PROPS
@given(worlds())
def test_matches_reference(world):
    facts, rule_list = world
    c = forward_chain_names(facts, rule_list)
    depth, derivs = ref_closure(list(dict.fromkeys(facts)), rule_list)
    names = c.named_all()
    # layout: input facts first, deduplicated in input order; derived facts by depth
    assert names[: c.n_base] == list(dict.fromkeys(facts))
    assert len(set(names)) == len(names)
    assert (c.depth[: c.n_base] == 0).all() and (c.depth[c.n_base:] >= 1).all()
    assert (np.diff(c.depth[c.n_base:]) >= 0).all()
    # same closure, same depths, same derivations
    assert set(names) == set(depth)
    assert {f: int(d) for f, d in zip(names, c.depth.tolist(), strict=True)} == depth
    assert named_derivations(c) == derivs
    assert c.n_derivations == len(derivs)  # no derivation recorded twice
    # per-fact views agree with the derivation rows
    kmax = max(len(r.atoms) for r in rule_list)
    assert c.deriv_premises.shape == (c.n_derivations, kmax)
    for d, r in enumerate(c.deriv_rule.tolist()):
        k = len(rule_list[r].atoms)
        assert (c.deriv_premises[d, :k] >= 0).all() and (c.deriv_premises[d, k:] == -1).all()
    assert c.proof_count.tolist() == [
        sum(1 for h, _, _ in derivs if h == f) for f in names]


@PROPS
@given(worlds())
def test_soundness(world):
    facts, rule_list = world
    c = forward_chain_names(facts, rule_list)
    names = c.named_all()
    for h, r, prem in zip(c.deriv_head.tolist(), c.deriv_rule.tolist(),
                          c.deriv_premises.tolist(), strict=True):
        rule = rule_list[r]
        ids = [p for p in prem if p >= 0]
        assert all(0 <= p < len(c) and p != h for p in ids)
        env = {}
        for atom, p in zip(rule.atoms, ids, strict=True):
            env = _unify(atom, names[p], env)
            assert env is not None  # premises match the body under one substitution
        assert all(_value(q.left, env) != _value(q.right, env) for q in rule.inequalities)
        assert (_value(rule.head.args[0], env), rule.head.relation,
                _value(rule.head.args[1], env)) == names[h]
        # depth is the shortest derivation: no derivation is shorter than it
        if h >= c.n_base:
            assert c.depth[h] <= 1 + max(c.depth[p] for p in ids)


@PROPS
@given(worlds())
def test_closed_and_idempotent(world):
    facts, rule_list = world
    c = forward_chain_names(facts, rule_list)
    closure = fact_set(c)
    for rule in rule_list:  # closedness: one more application adds nothing
        assert {h for h, _ in ref_matches(rule, closure)} <= closure
    again = forward_chain(c.facts, rule_list, c.entities, c.relations)
    assert np.array_equal(again.facts, c.facts) and again.n_base == len(c)
    assert (again.depth == 0).all()
    rows = np.column_stack([c.deriv_head, c.deriv_rule, c.deriv_premises])
    rows2 = np.column_stack([again.deriv_head, again.deriv_rule, again.deriv_premises])
    assert np.array_equal(np.unique(rows, axis=0), np.unique(rows2, axis=0))


@PROPS
@given(worlds(), st.lists(st.tuples(st.sampled_from(ENTITIES), st.sampled_from(BASE_RELS),
                                    st.sampled_from(ENTITIES)), max_size=5))
def test_monotone(world, extra):
    facts, rule_list = world
    small = forward_chain_names(facts, rule_list)
    big = forward_chain_names(facts + extra, rule_list)
    assert fact_set(small) <= fact_set(big)
    assert named_derivations(small) <= named_derivations(big)


@PROPS
@given(worlds(), st.data())
def test_derivable_agrees_with_rechaining(world, data):
    facts, rule_list = world
    c = forward_chain_names(facts, rule_list)
    kept = np.array(data.draw(st.lists(st.booleans(), min_size=len(c), max_size=len(c))),
                    dtype=bool).reshape(len(c))
    sub = forward_chain(c.facts[kept], rule_list, c.entities, c.relations)
    expect = np.zeros(len(c), dtype=bool)
    ids = c.index(sub.facts)
    assert (ids >= 0).all()  # closure of a subset stays inside the closure
    expect[ids] = True
    assert np.array_equal(c.closure_mask(kept), expect)
    assert np.array_equal(c.closure_mask(np.flatnonzero(kept)), expect)
    assert [c.derivable(t, kept) for t in range(len(c))] == expect.tolist()
    assert [c.derivable(t, np.flatnonzero(kept).tolist()) for t in range(len(c))] == \
        expect.tolist()


@settings(max_examples=50, deadline=None)
@given(worlds())
def test_deterministic(world):
    facts, rule_list = world
    a = forward_chain_names(facts, rule_list)
    b = forward_chain_names(list(facts), list(rule_list))
    for name in ("facts", "depth", "deriv_head", "deriv_rule", "deriv_premises"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.entities.names == b.entities.names and a.relations.names == b.relations.names


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_composition_world_matches_reference(seed):
    """Larger worlds: functional base relations, multi-hop composition rules."""
    rng = np.random.default_rng(seed)
    n, base_rels = 12, ["b0", "b1", "b2"]
    facts = [(f"e{s}", r, f"e{o}") for r in base_rels
             for s, o in enumerate(rng.integers(0, n, size=n).tolist())]
    text = ("d0(X, Z) :- b0(X, Y), b1(Y, Z).\nd1(X, Z) :- d0(X, Y), b2(Y, Z).\n"
            "d0(X, Z) :- b2(X, Y), b2(Y, Z).\nd2(X, W) :- d1(X, Y), d0(Y, Z), b0(Z, W).\n"
            "d3(X, Y) :- d2(X, Y), X != Y.")
    rule_list = parse_rules(text)
    c = forward_chain_names(facts, rule_list)
    depth, derivs = ref_closure(list(dict.fromkeys(facts)), rule_list)
    assert dict(zip(c.named_all(), c.depth.tolist(), strict=True)) == depth
    assert named_derivations(c) == derivs


@settings(max_examples=30, deadline=None)
@given(worlds())
def test_sparse_entity_range_matches_reference(world):
    """Many more entities than facts: joins use binary search instead of CSR offsets."""
    facts, rule_list = world
    ents, rels = Vocab(f"x{i}" for i in range(20_000)), Vocab()
    triples = encode(facts, ents, rels)
    c = forward_chain(triples, rule_list, ents, rels)
    depth, derivs = ref_closure(list(dict.fromkeys(facts)), rule_list)
    assert dict(zip(c.named_all(), c.depth.tolist(), strict=True)) == depth
    assert named_derivations(c) == derivs


def test_out_degree_world_matches_reference():
    """Non-functional relations (several objects per subject): joins that fan out."""
    rng = np.random.default_rng(7)
    facts = list(dict.fromkeys((f"e{s}", r, f"e{o}") for r in ("b0", "b1")
                               for s, o in rng.integers(0, 15, size=(45, 2)).tolist()))
    rule_list = parse_rules("d0(X, Z) :- b0(X, Y), b1(Y, Z).\nd1(X, Z) :- d0(X, Y), d0(Y, Z).\n"
                            "d1(X, Z) :- d1(X, Y), b0(Y, Z), X != Z.")
    c = forward_chain_names(facts, rule_list)
    depth, derivs = ref_closure(facts, rule_list)
    assert c.proof_count.max() > 3  # the world really has fan-out
    assert dict(zip(c.named_all(), c.depth.tolist(), strict=True)) == depth
    assert named_derivations(c) == derivs


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**62), max_size=30), st.integers(0, 60))
def test_sort_and_merge_helpers(values, shift):
    """The engine's stable sort (packed, sorted and fallback paths) and run merge."""
    from kgtest.symbolic.join import _merge, _stable_sort

    for keys in (np.array(values, dtype=np.int64) >> shift,  # small keys: packed path
                 np.array(values, dtype=np.int64),  # huge keys: stable argsort fallback
                 np.sort(np.array(values, dtype=np.int64))):  # already sorted
        sk, perm = _stable_sort(keys)
        assert np.array_equal(perm, np.argsort(keys, kind="stable"))
        assert np.array_equal(sk, keys[perm])
    k = np.sort(np.array(values, dtype=np.int64) >> shift)
    half = len(k) // 2
    mk, mv = _merge(k[:half], np.zeros(half), k[half:], np.ones(len(k) - half))
    assert np.array_equal(mk, k)
    # on ties the first run comes first
    for key in np.unique(mk):
        v = mv[mk == key]
        assert (np.diff(v) >= 0).all()
