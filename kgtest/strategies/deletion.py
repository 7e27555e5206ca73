"""Strategies for what deep unlearning deletes: :func:`targets` (a fact with a proof count
and depth in given ranges), :func:`worlds_with_targets` (a world with such a target by
construction) and :func:`deletion_sets` (a set whose deletion deep-unlearns a target).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from kgtest.claims import KB, closure_of, derivation_depth, fact_id, kb_mask
from kgtest.strategies.datalog import _check, _check_range
from kgtest.strategies.random_worlds import worlds
from kgtest.worlds.world import World

__all__ = ["targets", "worlds_with_targets", "deletion_sets"]



def _deletable(world: World, t: int) -> bool:
    if not world.fixed.any():  # nothing is fixed: every fact can be deleted
        return True
    c = closure_of(world)
    fixed = world.fixed_mask(c)
    return not fixed[t] and not c.derivable(t, kept=fixed)


def targets(
    world: World,
    *,
    min_proofs: int = 1,
    max_proofs: int | None = None,
    min_depth: int = 1,
    max_depth: int | None = None,
    stated: bool | None = None,
    deletable: bool = True,
) -> st.SearchStrategy[int]:
    """A closure fact id of ``world`` whose proof count and depth lie in the given ranges.

    Depth is :func:`kgtest.claims.derivation_depth` (0 for a fact the other base facts
    cannot derive), so a stated target's depth is that of its derivations. ``stated``
    picks base facts (True), implied facts (False) or either (None). ``deletable`` keeps
    only facts that some deletion set can make underivable (not fixed, not derivable from
    the fixed facts alone). Tail facts: ``min_proofs=0, max_proofs=0, min_depth=0``.

    The candidates are computed when the strategy is made; if there are none, this raises
    ``InvalidArgument`` at once rather than filtering. Draw the world from
    :func:`worlds` with a matching ``planted=...`` (or use :func:`worlds_with_targets`)
    to have a candidate by construction.

    Examples
    --------
    >>> from hypothesis import find
    >>> w = find(worlds(planted=1, planted_proofs=(3, 3), planted_depth=(1, 1)),
    ...          lambda w: True)
    >>> t = find(targets(w, min_proofs=3), lambda t: True)
    >>> from kgtest.claims import proof_count, derivation_depth
    >>> proof_count(w, t), derivation_depth(w, t)
    (3, 1)
    """
    _check(min_proofs >= 0 and min_depth >= 0, "targets: bounds must be >= 0")
    c = closure_of(world)
    hi_p = np.inf if max_proofs is None else max_proofs
    hi_d = np.inf if max_depth is None else max_depth
    pc = c.proof_count
    cands = []
    for f in np.flatnonzero((pc >= min_proofs) & (pc <= hi_p)).tolist():
        if stated is not None and (f < c.n_base) != stated:
            continue
        depth = derivation_depth(world, f) or 0
        if not min_depth <= depth <= hi_d:
            continue
        if deletable and not _deletable(world, f):
            continue
        cands.append(f)
    if not cands:
        raise InvalidArgument(
            f"targets: the world has no fact with proofs in [{min_proofs}, {max_proofs}], "
            f"depth in [{min_depth}, {max_depth}], stated={stated}; draw it from "
            f"worlds(planted=1, planted_proofs=..., planted_depth=...) or use "
            f"worlds_with_targets(...) so that one exists by construction")
    return st.sampled_from(cands)


def worlds_with_targets(
    *,
    min_proofs: int = 1,
    max_proofs: int = 3,
    min_depth: int = 1,
    max_depth: int = 2,
    stated: bool | None = None,
    **world_bounds,
) -> st.SearchStrategy[tuple[World, int]]:
    """A ``(world, target)`` pair: a :func:`worlds` draw with one planted target in the
    ranges, then a :func:`targets` draw among *all* matching facts (planted or not).

    Keyword arguments other than the target's go to :func:`worlds`.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from kgtest.claims import proof_count
    >>> @settings(max_examples=20, database=None, derandomize=True)
    ... @given(worlds_with_targets(min_proofs=2, max_proofs=2, max_entities=4))
    ... def two_proofs(case):
    ...     world, target = case
    ...     assert proof_count(world, target) == 2
    >>> two_proofs()
    """
    _check_range("worlds_with_targets: proofs", min_proofs, max_proofs, least=1)
    _check_range("worlds_with_targets: depth", min_depth, max_depth, least=1)
    _check("planted" not in world_bounds, "worlds_with_targets plants its own target")
    ws = worlds(planted=1, planted_proofs=(min_proofs, max_proofs),
                planted_depth=(min_depth, max_depth), planted_stated=stated, **world_bounds)
    return _with_target(ws, min_proofs, max_proofs, min_depth, max_depth, stated)


@st.composite
def _with_target(draw, ws, min_proofs, max_proofs, min_depth, max_depth, stated):
    w = draw(ws)
    t = draw(targets(w, min_proofs=min_proofs, max_proofs=max_proofs, min_depth=min_depth,
                     max_depth=max_depth, stated=stated))
    return w, t


def deletion_sets(
    world: World,
    target: int | Sequence[str],
    *,
    kb: KB = "base",
    minimal: bool = True,
) -> st.SearchStrategy[tuple[int, ...]]:
    """A set of closure fact ids whose deletion deep-unlearns ``target``, sorted.

    Built by greedy pruning: start from every deletable KB fact in the target's backward
    cone (which always deep-unlearns it), then, in a drawn order, put back each fact whose
    return keeps the target underivable. The result is inclusion-minimal, and every
    minimal deletion set is reachable (order the facts outside it first). It shrinks to
    the set that the identity order gives. With ``minimal=False``, extra deletable KB
    facts are added (a superset still deep-unlearns). ``kb`` as in :mod:`kgtest.claims`.

    Raises ``InvalidArgument`` at once when no deletion set exists (the fixed facts alone
    derive the target).

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> from kgtest.claims import all_minimal_deletion_sets
    >>> w = World.from_names([("a", "p", "b"), ("b", "p", "c"), ("a", "g", "c")],
    ...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    >>> from hypothesis import find
    >>> find(deletion_sets(w, ("a", "g", "c")), lambda s: True)
    (1, 2)
    >>> sorted(map(sorted, all_minimal_deletion_sets(w, ("a", "g", "c"))))
    [[0, 2], [1, 2]]
    """
    t = fact_id(world, target)
    _check(_deletable(world, t), f"deletion_sets: fact {t} is fixed or derivable from the "
                                 "fixed facts alone; no deletion set exists")
    c = closure_of(world)
    kbm = kb_mask(world, kb)
    cone_kb = [int(f) for f in c.cone(t).facts if kbm[f]]
    present = kbm | world.fixed_mask(c)
    others = np.flatnonzero(kbm).tolist()
    return _deletion_sets(c, t, present, tuple(cone_kb), tuple(others), minimal)


@st.composite
def _deletion_sets(draw, c, t, present, cone_kb, others, minimal):
    order = draw(st.permutations(cone_kb))
    deleted = set(cone_kb)
    for f in order:
        deleted.discard(f)
        kept = present.copy()
        kept[list(deleted)] = False
        if c.derivable(t, kept):
            deleted.add(f)
    if not minimal and others:
        deleted |= set(draw(st.lists(st.sampled_from(others), unique=True)))
    return tuple(sorted(deleted))
