"""State a claim about re-derivation in a few lines, and let hypothesis test it.

A *symbolic claim* is a statement about worlds, targets and deletion sets that the
symbolic reasoner can check exactly, e.g. "a target with ``k`` independent proofs needs a
deletion set of at least ``k`` facts". Write it as a hypothesis property over the
strategies of :mod:`kgtest.strategies`, using the helpers here to ask the ground truth::

    from hypothesis import given, settings
    from kgtest.claims import independent_proofs, min_deletion_size
    from kgtest.strategies import worlds_with_targets

    @settings(max_examples=200, deadline=None)
    @given(worlds_with_targets(max_proofs=3))
    def test_independent_proofs_need_deletions(case):
        world, target = case
        assert min_deletion_size(world, target) >= independent_proofs(world, target)

Every helper takes a :class:`~kgtest.worlds.world.World` and a target given as a closure
fact id (what :func:`kgtest.strategies.targets` draws) or as a ``(subject, relation,
object)`` name triple. Fact ids are ids in ``closure_of(world)``; ids below
``len(world.facts)`` are the world's base facts, in order.

**What the model "knows" (``kb``).** Deep unlearning (docs/science.md) deletes a set ``U`` from
a knowledge base ``KB`` and asks whether the target is still in ``closure(KB \\ U)``.
Fixed facts (``world.fixed``) are always kept and never deleted. Two choices of ``KB``
are common and every deletion helper takes ``kb=``:

- ``"base"`` (default): the world's non-fixed base facts, the facts that are *stated*.
  A derived fact that is not stated is not stored anywhere, so it cannot be deleted; it
  goes away only when its supports do. Deleting a stated derived target costs one fact
  more than deleting an implied one.
- ``"closure"``: every non-fixed fact of the closure, as in Wu et al. 2024 (the model
  knows the closed KB, derived facts included), which is also the default of
  :func:`kgtest.symbolic.deletion.minimal_deletion_sets`.

Model-level claims (train a tiny model on a world, unlearn, probe) are not available yet:
they need the probes and unlearning stages, which are not built. See ``docs/claims.md``.

Examples
--------
>>> from kgtest.symbolic.rules import parse_rules
>>> from kgtest.worlds.world import World
>>> w = World.from_names(
...     [("ann", "parent", "bob"), ("bob", "parent", "cy"), ("ann", "grandparent", "cy")],
...     parse_rules("grandparent(X, Z) :- parent(X, Y), parent(Y, Z)."),
... )
>>> t = ("ann", "grandparent", "cy")
>>> deep_unlearns(w, t, [2]), deep_unlearns(w, t, [0, 2])
(False, True)
>>> [sorted(m) for m in all_minimal_deletion_sets(w, t)], min_deletion_size(w, t)
([[0, 2], [1, 2]], 2)
>>> print(describe(w, target=t, deleted=[0, 2]))
% 3 entities, 2 relations, 3 base facts (0 fixed), 1 rules, 3 closure facts
grandparent(X, Z) :- parent(X, Y), parent(Y, Z).
parent(ann, bob).  % [0] deleted
parent(bob, cy).  % [1]
grandparent(ann, cy).  % [2] deleted
% target [2] grandparent(ann, cy): stated, 1 proof(s), derivation depth 1
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from random import Random
from typing import Any, Literal, TypeVar

import numpy as np

from kgtest.errors import InputError
from kgtest.symbolic import deletion
from kgtest.symbolic.closure import Closure
from kgtest.symbolic.rules import Rule
from kgtest.worlds.world import World

__all__ = [
    "closure_of",
    "fact_id",
    "kb_mask",
    "is_stated",
    "proof_count",
    "derivation_depth",
    "is_recursive",
    "deep_unlearns",
    "supports",
    "all_minimal_deletion_sets",
    "min_deletion_size",
    "independent_proofs",
    "premise_disjoint_derivations",
    "describe",
    "counterexample",
]

KB = Literal["base", "closure"]
Target = int | np.integer | Sequence[str]
_T = TypeVar("_T")

_CLOSURES: weakref.WeakKeyDictionary[World, Closure] = weakref.WeakKeyDictionary()


# --- the ground truth of one world ----------------------------------------------------------


def closure_of(world: World) -> Closure:
    """``world.close()``, computed once per world object and cached.

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> w = World.from_names([("a", "p", "b")], parse_rules("q(Y, X) :- p(X, Y)."))
    >>> c = closure_of(w)
    >>> c is closure_of(w), c.named_all()
    (True, [('a', 'p', 'b'), ('b', 'q', 'a')])
    """
    c = _CLOSURES.get(world)
    if c is None:
        c = _CLOSURES[world] = world.close()
    return c


def fact_id(world: World, fact: Target) -> int:
    """The closure fact id of ``fact`` (an id, or a name triple); InputError if absent.

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> w = World.from_names([("a", "p", "b")], parse_rules("q(Y, X) :- p(X, Y)."))
    >>> fact_id(w, ("b", "q", "a")), fact_id(w, 0)
    (1, 0)
    """
    c = closure_of(world)
    if isinstance(fact, (int, np.integer)):
        if not 0 <= int(fact) < len(c):
            raise InputError(f"fact id {int(fact)} is not in the closure ({len(c)} facts)")
        return int(fact)
    triple = tuple(fact)
    if len(triple) != 3:
        raise InputError(f"a fact is an id or (subject, relation, object), got {fact!r}")
    i = c.find(*triple)
    if i < 0:
        raise InputError(f"fact '{' '.join(triple)}' is not in the closure of the world")
    return i


def _fixed(world: World) -> np.ndarray:
    return world.fixed_mask(closure_of(world))


def kb_mask(world: World, kb: KB = "base") -> np.ndarray:
    """``(N,)`` bool over closure facts: the deletable facts of the KB (never fixed ones).

    ``kb="base"``: the non-fixed base facts; ``kb="closure"``: every non-fixed closure fact.

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> w = World.from_names([("a", "p", "b")], parse_rules("q(Y, X) :- p(X, Y)."))
    >>> kb_mask(w).tolist(), kb_mask(w, "closure").tolist()
    ([True, False], [True, True])
    """
    c = closure_of(world)
    if kb == "base":
        m = c.is_base.copy()
    elif kb == "closure":
        m = np.ones(len(c), dtype=bool)
    else:
        raise InputError(f"kb must be 'base' or 'closure', got {kb!r}")
    return m & ~_fixed(world)


def is_stated(world: World, target: Target) -> bool:
    """Is the fact one of the world's base facts (stated), rather than only implied?"""
    return fact_id(world, target) < closure_of(world).n_base


def proof_count(world: World, target: Target) -> int:
    """Number of distinct one-step derivations (rule + premises) of the fact."""
    return int(closure_of(world).proof_count[fact_id(world, target)])


def derivation_depth(world: World, target: Target) -> int | None:
    """Rounds of rule application that derive the fact from the *other* base facts.

    For an implied fact this is its closure depth. For a stated fact it is the depth it
    would have if it were not stated; ``None`` when the other base facts do not derive it
    (a tail fact, or one whose every derivation leans on itself).

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> w = World.from_names([("a", "p", "b"), ("b", "p", "c"), ("a", "g", "c")],
    ...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    >>> derivation_depth(w, ("a", "g", "c")), derivation_depth(w, ("a", "p", "b"))
    (1, None)
    """
    c = closure_of(world)
    t = fact_id(world, target)
    if t >= c.n_base:
        return int(c.depth[t])
    cone = c.cone(t)
    alive = np.append(cone.facts < c.n_base, True)  # the padding slot is always true
    alive[cone.target] = False
    for rnd in range(1, len(cone.facts) + 1):
        fire = alive[cone.premises].all(1)
        new = cone.head[fire & ~alive[cone.head]]
        if len(new) == 0:
            return None
        alive[new] = True
        if alive[cone.target]:
            return rnd
    return None


def is_recursive(rules: World | Iterable[Rule]) -> bool:
    """Does some relation depend on itself through the rules (a cycle of head <- body)?

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> is_recursive(parse_rules("anc(X, Z) :- par(X, Y), anc(Y, Z). anc(X, Y) :- par(X, Y)."))
    True
    >>> is_recursive(parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    False
    """
    rs = rules.rules if isinstance(rules, World) else tuple(rules)
    deps: dict[str, set[str]] = {}
    for r in rs:
        deps.setdefault(r.head.relation, set()).update(a.relation for a in r.atoms)
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def cyclic(rel: str) -> bool:
        state[rel] = 1
        for nxt in deps.get(rel, ()):
            if state.get(nxt) == 1 or (nxt not in state and cyclic(nxt)):
                return True
        state[rel] = 2
        return False

    return any(rel not in state and cyclic(rel) for rel in deps)


# --- deletion -----------------------------------------------------------------------------


def deep_unlearns(world: World, target: Target, deleted: Iterable[int], *, kb: KB = "base") -> bool:
    """Does deleting ``deleted`` (closure fact ids) make ``target`` underivable?

    True iff the target is not in ``closure((KB ∪ fixed) \\ deleted)``. Deleting a fact
    outside the KB (an implied fact, with ``kb="base"``) is a no-op; deleting a fixed fact
    is an error. Delegates to :func:`kgtest.symbolic.deletion.deep_unlearns`.
    """
    t = fact_id(world, target)
    c = closure_of(world)
    ids = np.asarray(sorted({int(x) for x in deleted}), dtype=np.int64)
    return deletion.deep_unlearns(c, t, ids, kb=kb_mask(world, kb), fixed=_fixed(world))


def _minimize(masks: Iterable[int]) -> list[int]:
    """Inclusion-minimal members of a family of bitmask sets (smallest first)."""
    kept: list[int] = []
    for m in sorted(set(masks), key=lambda x: (x.bit_count(), x)):
        if not any(k & m == k for k in kept):
            kept.append(m)
    return kept


def _support_masks(world: World, t: int, kb: KB, limit: int) -> tuple[list[int], np.ndarray]:
    """Minimal supports of ``t`` as bitmasks over cone-local ids, and the local->global map.

    The least fixpoint of ``sup(f) = {{f}} if f deletable, {{}} if f fixed`` united with,
    for each derivation of ``f``, the unions of one support per premise (minimised).
    """
    c = closure_of(world)
    cone = c.cone(t)
    n = len(cone.facts)
    deletable = kb_mask(world, kb)[cone.facts]
    fixed = _fixed(world)[cone.facts]
    sup: list[list[int]] = [[] for _ in range(n + 1)]
    sup[n] = [0]  # the padding slot: always true, costs nothing
    for f in range(n):
        if fixed[f]:
            sup[f] = [0]
        elif deletable[f]:
            sup[f] = [1 << f]
    changed = True
    while changed:
        changed = False
        for h, prem in zip(cone.head.tolist(), cone.premises.tolist(), strict=True):
            combos = [0]
            for p in dict.fromkeys(prem):
                combos = _minimize(a | b for a in combos for b in sup[p])
                if not combos or len(combos) > limit:
                    break
            if not combos:
                continue
            if len(combos) > limit:
                raise InputError(f"more than {limit} supports in the cone of fact {t}; "
                                 "this helper is meant for small worlds")
            merged = _minimize(sup[h] + combos)
            if merged != sup[h]:
                sup[h], changed = merged, True
    return sup[cone.target], cone.facts


def supports(world: World, target: Target, *, kb: KB = "base", limit: int = 10_000
             ) -> list[frozenset[int]]:
    """All minimal supports: inclusion-minimal sets ``S`` of deletable KB facts such that
    the target is in ``closure(S ∪ fixed)``. Smallest first.

    ``[frozenset()]`` means the fixed facts alone derive the target. Exponential in the
    worst case: meant for the small worlds of property tests (``limit`` guards it).

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> w = World.from_names([("a", "p", "b"), ("b", "p", "c")],
    ...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    >>> supports(w, ("a", "g", "c")), supports(w, ("a", "g", "c"), kb="closure")
    ([frozenset({0, 1})], [frozenset({2}), frozenset({0, 1})])
    """
    t = fact_id(world, target)
    masks, glob = _support_masks(world, t, kb, limit)
    return [frozenset(int(glob[i]) for i in deletion.bit_indices(m)) for m in masks]


def _transversals(family: list[int]) -> list[int]:
    """Minimal hitting sets of a family of bitmask sets (Berge's algorithm)."""
    hs = [0]
    for s in sorted(family, key=int.bit_count):
        hs = _minimize(h if h & s else h | (1 << b)
                       for h in hs for b in ([0] if h & s else deletion.bit_indices(s)))
    return hs


def all_minimal_deletion_sets(world: World, target: Target, *, kb: KB = "base",
                              limit: int = 10_000) -> list[frozenset[int]]:
    """Every inclusion-minimal deletion set of the target, exhaustively (small worlds).

    A set deep-unlearns the target iff it hits every minimal support, so these are the
    minimal hitting sets of :func:`supports`. Smallest first, ties by ids. ``[]`` when no
    deletion set exists (the fixed facts alone derive the target). Independent of
    :mod:`kgtest.symbolic.deletion`, whose randomised search finds some of them quickly
    on large worlds; use this one as the oracle when testing claims.
    """
    t = fact_id(world, target)
    masks, glob = _support_masks(world, t, kb, limit)
    if 0 in masks:
        return []
    out = [frozenset(int(glob[i]) for i in deletion.bit_indices(h)) for h in _transversals(masks)]
    return sorted(out, key=lambda s: (len(s), sorted(s)))


def min_deletion_size(world: World, target: Target, *, kb: KB = "base",
                      time_limit: float = 5.0) -> int:
    """Size of the smallest deletion set, proven minimum by
    :func:`kgtest.symbolic.deletion.minimal_deletion_sets` (its exact search).

    Raises InputError when no deletion set exists, when the target is underivable already,
    or when the exact search does not finish within ``time_limit`` seconds.
    """
    t = fact_id(world, target)
    res = deletion.minimal_deletion_sets(
        closure_of(world), t, kb=kb_mask(world, kb), fixed=_fixed(world), count=1,
        restarts=1, seed=0, exact=True, time_limit=time_limit)
    if not res.proven_minimum:
        raise InputError(f"minimum deletion set of fact {t} not proven in {time_limit} s "
                         f"(lower bound {res.lower_bound}, best {res.min_size})")
    return res.min_size


def _max_packing(sets: list[int]) -> int:
    """Most pairwise-disjoint members of a family of bitmask sets (exact, small inputs)."""
    sets = sorted(set(sets), key=int.bit_count)
    best = [0]

    def search(i: int, used: int, k: int) -> None:
        best[0] = max(best[0], k)
        if k + (len(sets) - i) <= best[0]:
            return
        for j in range(i, len(sets)):
            if not sets[j] & used:
                search(j + 1, used | sets[j], k + 1)

    search(0, 0, 0)
    return best[0]


def independent_proofs(world: World, target: Target, *, kb: KB = "base") -> int:
    """Most pairwise-disjoint minimal supports of the target: independent proofs.

    Each one must lose a fact for the target to go, so ``min_deletion_size`` is at least
    this. 0 when the fixed facts alone derive the target (nothing can be deleted).

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> w = World.from_names([("a", "p", "b"), ("a", "q", "b"), ("a", "p", "c")],
    ...                      parse_rules("t(X, Y) :- p(X, Y). t(X, Y) :- q(X, Y)."))
    >>> independent_proofs(w, ("a", "t", "b")), min_deletion_size(w, ("a", "t", "b"))
    (2, 2)
    """
    masks, _ = _support_masks(world, fact_id(world, target), kb, 10_000)
    if 0 in masks:
        return 0
    return _max_packing(masks)


def premise_disjoint_derivations(world: World, target: Target) -> int:
    """Most one-step derivations of the target whose premise sets are pairwise disjoint.

    Disjoint *premises* are not independent *proofs*: two premises can share a support
    deeper down (see the false claims in ``docs/claims.md``).
    """
    c = closure_of(world)
    t = fact_id(world, target)
    sets = [sum(1 << p for p in set(c.premises(d))) for d in c.derivations_of(t).tolist()]
    return _max_packing(sets)


# --- reading and refuting -----------------------------------------------------------------


def describe(world: World, *, target: Target | None = None, deleted: Iterable[int] = ()) -> str:
    """The world as Datalog-style text: rules, base facts (``% [id]`` and marks), target.

    Meant for ``hypothesis.note(describe(world, target=t))`` in a property test, so that
    a falsifying example prints readably. See the module example.
    """
    c = closure_of(world)
    gone = {int(x) for x in deleted}
    lines = [f"% {len(world.entities)} entities, {len(world.relations)} relations, "
             f"{len(world.facts)} base facts ({int(world.fixed.sum())} fixed), "
             f"{len(world.rules)} rules, {len(c)} closure facts"]
    lines += [str(r) for r in world.rules]
    for i, (s, r, o) in enumerate(c.named_all(range(c.n_base))):
        marks = [f"[{i}]"] + (["fixed"] if world.fixed[i] else []) + (
            ["deleted"] if i in gone else [])
        lines.append(f"{r}({s}, {o}).  % {' '.join(marks)}")
    implied = sorted(x for x in gone if x >= c.n_base)
    for i in implied:
        s, r, o = c.named(i)
        lines.append(f"% [{i}] {r}({s}, {o}) deleted (a derived fact)")
    if target is not None:
        t = fact_id(world, target)
        s, r, o = c.named(t)
        depth = derivation_depth(world, t)
        lines.append(f"% target [{t}] {r}({s}, {o}): "
                     f"{'stated' if t < c.n_base else 'implied'}, "
                     f"{int(c.proof_count[t])} proof(s), derivation depth "
                     f"{'none' if depth is None else depth}")
    return "\n".join(lines)


def counterexample(strategy: Any, claim: Callable[[_T], bool], *, max_examples: int = 1000,
                   seed: int = 0) -> _T | None:
    """The simplest example of ``strategy`` on which ``claim`` returns False, or None.

    A thin wrapper of :func:`hypothesis.find` (shrinking included, no example database,
    seeded, so the same call finds the same counterexample). Use it to show a claim is
    false; use ``@given`` to test that one holds.

    Examples
    --------
    >>> from hypothesis import strategies as st
    >>> counterexample(st.integers(0, 100), lambda n: n * n < 50)
    8
    >>> counterexample(st.integers(0, 100), lambda n: n >= 0) is None
    True
    """
    from hypothesis import HealthCheck, find, settings
    from hypothesis.errors import NoSuchExample

    try:
        return find(strategy, lambda x: not claim(x),
                    settings=settings(max_examples=max_examples, database=None, deadline=None,
                                      suppress_health_check=list(HealthCheck)),
                    random=Random(seed))
    except NoSuchExample:
        return None
