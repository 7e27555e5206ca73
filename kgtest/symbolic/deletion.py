"""Minimal deletion sets: what must be forgotten so that a fact cannot be re-derived.

Deep unlearning (Wu et al. 2024, docs/science.md): a model knows a set of facts ``KB`` and
some *fixed* attribute facts (gender, say) that take part in derivations but are never
deleted. A set ``U ⊆ KB`` **deep-unlearns** a target ``t`` iff ``t`` is not in
``closure((KB ∪ fixed) \\ U)``. A **minimal deletion set** is one that is
inclusion-minimal: putting back any one of its members makes ``t`` derivable again.

:func:`minimal_deletion_sets` finds several distinct minimal sets and the smallest:

1. **Randomised greedy expansion + pruning** (the published method), with all restarts run
   at once as a numpy batch dimension over the target's backward cone
   (:meth:`Closure.cone`). Expansion grows a deleted set from ``U = {t}``:

   - ``"cut"`` (default; what Wu et al.'s code does): until every derivation of every
     member of ``U`` has a premise in ``U``, break an unbroken one with a random premise;
   - ``"descent"``: while ``t`` is still derivable from what remains, walk from ``t`` down
     a random *well-founded* firing derivation (each step to a premise derived strictly
     earlier) to a deletable KB fact and delete it.

   Pruning then tries to put back each member in random order, keeping it out only if the
   rest still deep-unlearns; one pass gives an inclusion-minimal set (closure is
   monotone). ``"cut"`` finds many more distinct sets (about as many as the published
   runs on EDU-RELAT); both find the same smallest sizes there.
2. **An exact minimum** by implicit hitting sets: ``U`` deep-unlearns ``t`` iff it hits
   every *support* (a set of deletable facts from which, with the fixed facts, ``t`` is
   derivable). Alternate a branch-and-bound minimum hitting set over the supports found
   so far with extracting new minimal supports from what that hitting set leaves; when a
   minimum hitting set deep-unlearns ``t`` (or none beats the best greedy set) the minimum
   is proven. A time budget bounds it; ``proven_minimum`` says whether it finished.

:func:`deep_unlearns` and :func:`is_minimal` check a given set; :func:`recall_accuracy`
scores an unlearned set against minimal sets as docs/science.md defines.

Examples
--------
>>> from kgtest.symbolic.closure import forward_chain_names
>>> from kgtest.symbolic.rules import parse_rules
>>> rules = parse_rules("grandparent(X, Z) :- parent(X, Y), parent(Y, Z).")
>>> kb = [("ann", "parent", "bob"), ("bob", "parent", "cy"), ("ann", "grandparent", "cy")]
>>> c = forward_chain_names(kb, rules)
>>> res = minimal_deletion_sets(c, ("ann", "grandparent", "cy"), seed=0)
>>> [sorted(map(" ".join, c.named_all(s))) for s in res.sets]
[['ann grandparent cy', 'ann parent bob'], ['ann grandparent cy', 'bob parent cy']]
>>> res.proven_minimum, res.min_size
(True, 2)
>>> deep_unlearns(c, 2, [2]), deep_unlearns(c, 2, [0, 2]), is_minimal(c, 2, [0, 1, 2])
(False, True, False)
>>> recall_accuracy([2], res.sets, kb_size=3)
(0.5, 1.0)
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from kgtest.errors import InputError
from kgtest.symbolic.closure import Closure
from kgtest.symbolic.cone import (
    ConeProblem,
    Target,
    cone_problem,
    fact_mask,
    fact_masks,
    inf_rank,
    ranks,
    resolve_target,
    target_alive,
)
from kgtest.symbolic.hitting import bit_indices, implicit_hitting_set

__all__ = [
    "DeletionResult",
    "minimal_deletion_sets",
    "deep_unlearns",
    "is_minimal",
    "recall_accuracy",
]

FactIds = Iterable[int] | np.ndarray


@dataclass(frozen=True)
class DeletionResult:
    """Minimal deletion sets of one target.

    Attributes
    ----------
    target : int
        The target's fact id in the closure.
    sets : tuple of (k,) int64 arrays
        Distinct inclusion-minimal deletion sets (closure fact ids, each ascending),
        smallest first, ties in lexicographic order; at most ``count`` of them.
    n_found : int
        Distinct minimal sets found in all (before keeping ``count``).
    restarts : int
        Randomised greedy restarts run.
    proven_minimum : bool
        True when the exact search proved that ``sets[0]`` has the least possible size.
    lower_bound : int or None
        A proven lower bound on the minimum size (equal to ``min_size`` when proven);
        None when the exact search was not run.
    cone_size : int
        Facts in the target's backward cone (the part of the proof graph searched).
    seconds : float
        Wall time of the whole search.
    """

    target: int
    sets: tuple[np.ndarray, ...]
    n_found: int
    restarts: int
    proven_minimum: bool
    lower_bound: int | None
    cone_size: int
    seconds: float

    @property
    def smallest(self) -> np.ndarray:
        """The smallest set found (``sets[0]``)."""
        return self.sets[0]

    @property
    def min_size(self) -> int:
        return len(self.sets[0])

    @property
    def sizes(self) -> list[int]:
        return [len(s) for s in self.sets]

    def named(self, closure: Closure) -> list[list[tuple[str, str, str]]]:
        """The sets as lists of ``(subject, relation, object)`` name triples."""
        return [closure.named_all(s) for s in self.sets]


# --- the problem, restricted to the target's cone --------------------------------------


# --- randomised greedy expansion + pruning, restarts batched ------------------------------


def _expand_cut(p: ConeProblem, n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """``(R, n)`` bool: one deep-unlearning (not yet minimal) deleted set per restart.

    Wu et al.'s expansion: grow ``S = {t}`` until every derivation of every member has a
    premise in ``S``, each round breaking one random unbroken derivation per restart with
    a random premise the fixed facts cannot derive. No member of such an ``S`` can be
    derived first, so ``S ∩ KB`` deep-unlearns ``t``.
    """
    s = np.zeros((n_rows, p.n + 1), dtype=bool)  # column n: padding, never a member
    s[:, p.target] = True
    while True:
        unbroken = s[:, p.head] & ~s[:, p.prem].any(2)  # (R, D)
        rows = np.flatnonzero(unbroken.any(1))
        if len(rows) == 0:
            return s[:, : p.n] & p.deletable
        d = np.where(unbroken[rows], rng.random((len(rows), len(p.head))), -1.0).argmax(1)
        prem = p.prem[d]  # (m, K)
        ok = ~p.forced[prem]
        j = np.where(ok, rng.random(ok.shape), -1.0).argmax(1)
        s[rows, prem[np.arange(len(rows)), j]] = True


def _expand_descent(p: ConeProblem, n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """``(R, n)`` bool: one deep-unlearning (not yet minimal) deleted set per restart.

    While ``t`` is still derivable from what remains, walk from ``t`` down a random
    well-founded firing derivation (each step to a premise derived strictly earlier, so
    the walk ends) to a kept deletable fact, and delete it.
    """
    t, inf = p.target, inf_rank(p)
    removed = np.zeros((n_rows, p.n), dtype=bool)
    removed[:, t] = p.deletable[t]
    while True:
        rank = ranks(p, p.present & ~removed)
        rows = np.flatnonzero(rank[:, t] < inf)  # restarts where t is still derivable
        if len(rows) == 0:
            return removed
        rk = rank[rows]  # (m, n + 1)
        wf = rk[:, p.prem].max(2) < rk[:, p.head]  # (m, D) well-founded firing derivations
        cur = np.full(len(rows), t)
        pending = np.arange(len(rows))
        while len(pending):
            leaf = rk[pending, cur[pending]] == 0  # a kept fact; not forced, so deletable
            done = pending[leaf]
            removed[rows[done], cur[done]] = True
            pending = pending[~leaf]
            if len(pending) == 0:
                break
            # a random well-founded derivation of the current fact ...
            cand = wf[pending] & (p.head[None, :] == cur[pending][:, None])  # (k, D)
            d = np.where(cand, rng.random(cand.shape), -1.0).argmax(1)
            # ... and a random premise of it that the fixed facts cannot derive alone
            prem = p.prem[d]  # (k, K)
            ok = ~p.forced[prem]
            j = np.where(ok, rng.random(ok.shape), -1.0).argmax(1)
            cur[pending] = prem[np.arange(len(pending)), j]


_EXPANSIONS = {"cut": _expand_cut, "descent": _expand_descent}


def _prune(p: ConeProblem, removed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Put back members in random order while the rest still deep-unlearns (a copy)."""
    removed = removed.copy()
    keys = np.where(removed, rng.random(removed.shape), 2.0)
    order = np.argsort(keys, axis=1, kind="stable")
    counts = removed.sum(1)
    for j in range(int(counts.max(initial=0))):
        rows = np.flatnonzero(counts > j)
        member = order[rows, j]
        trial = removed[rows]
        trial[np.arange(len(rows)), member] = False
        ok = ~target_alive(p, p.present & ~trial)
        removed[rows[ok], member[ok]] = False
    return removed


# --- exact minimum: implicit hitting sets (kgtest.symbolic.hitting) ----------------------


def _to_int(mask: np.ndarray) -> int:
    return sum(1 << int(i) for i in np.flatnonzero(mask))


def _to_mask(bits: int, n: int) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[bit_indices(bits)] = True
    return m


def _support(p: ConeProblem, kept: np.ndarray, rng: np.random.Generator) -> int:
    """A minimal set of deletable facts in ``kept`` from which (with the fixed facts) the
    target is derivable; ``kept`` must derive it. Returned as an int bitmask."""
    rank = ranks(p, kept[None])[0]
    wf = rank[p.prem].max(1) < rank[p.head]  # (D,)
    seen = np.zeros(p.n + 1, dtype=bool)
    seen[p.n] = True
    stack, leaves = [p.target], []
    while stack:  # walk one random well-founded proof down to its kept leaves
        f = stack.pop()
        if seen[f] or p.forced[f]:
            continue
        seen[f] = True
        if rank[f] == 0:
            leaves.append(f)
            continue
        lo, hi = p.dstart[f], p.dstart[f + 1]
        options = lo + np.flatnonzero(wf[lo:hi])
        stack.extend(p.prem[options[rng.integers(len(options))]].tolist())
    fixed = p.present & ~p.deletable
    support = np.zeros(p.n, dtype=bool)
    support[leaves] = True
    for f in rng.permutation(leaves).tolist():  # drop leaves the proof does not need
        support[f] = False
        if not target_alive(p, (fixed | support)[None])[0]:
            support[f] = True
    return _to_int(support)


def _exact(p: ConeProblem, best: np.ndarray, rng: np.random.Generator, deadline: float):
    """Prove ``best`` (a valid deleted mask) minimum or find a smaller one
    (:func:`~kgtest.symbolic.hitting.implicit_hitting_set` over the target's supports).

    Returns ``(mask, lower_bound, proven)``.
    """
    def kept(deleted: int) -> np.ndarray:
        return p.present & ~_to_mask(deleted, p.n)

    bits, lower, proven = implicit_hitting_set(
        _to_int(best), lambda d: bool(target_alive(p, kept(d)[None])[0]),
        lambda d: _support(p, kept(d), rng), deadline)
    return _to_mask(bits, p.n), lower, proven


# --- public API -----------------------------------------------------------------------------


def minimal_deletion_sets(
    closure: Closure,
    target: Target,
    *,
    kb: FactIds | None = None,
    fixed: FactIds | None = None,
    count: int | None = 10,
    restarts: int = 100,
    seed: int | np.random.Generator | None = None,
    exact: bool = True,
    time_limit: float | None = 5.0,
    expansion: str = "cut",
) -> DeletionResult:
    """Find distinct inclusion-minimal deletion sets of ``target`` and the smallest one.

    Parameters
    ----------
    closure : Closure
        The closure (with proof graph) of the KB and the fixed facts.
    target : int or (str, str, str)
        A closure fact id, or a fact as names.
    kb : fact ids or (N,) bool mask, optional
        The facts the model knows and may delete, base and derived (default: every closure
        fact not fixed). Facts outside ``kb ∪ fixed`` still count as derivable from it.
    fixed : fact ids or (N,) bool mask, optional
        Known facts that are never deleted (attributes such as gender); wins over ``kb``.
    count : int or None
        Keep at most this many sets (smallest first); None keeps all found.
    restarts : int
        Randomised greedy restarts (run together as one numpy batch).
    seed : int, Generator or None
        Randomness; the same seed gives the same sets (unless the exact search times out
        on one run and not on another).
    exact : bool
        Also run the exact minimum search (implicit hitting sets, branch and bound).
    time_limit : float or None
        Seconds allowed to the exact search (None: no limit). If it runs out,
        ``proven_minimum`` is False and ``lower_bound`` is what it proved so far.
    expansion : {"cut", "descent"}
        How a restart grows its deleted set before pruning (see the module docstring).

    Returns
    -------
    DeletionResult

    Raises
    ------
    InputError
        The target is not in the closure, is fixed, is not derivable from ``kb ∪ fixed``
        (nothing to unlearn), or is derivable from the fixed facts alone (cannot be).

    Examples
    --------
    Two proofs of ``t`` (``a ∧ b`` and ``a ∧ c``) and ``t`` itself known: deleting ``t``
    and the shared premise ``a`` is the proven minimum; ``{t, b, c}`` is minimal too.

    >>> from kgtest.symbolic.closure import forward_chain_names
    >>> from kgtest.symbolic.rules import parse_rules
    >>> rules = parse_rules("t(X, Y) :- a(X, Y), b(X, Y).  t(X, Y) :- a(X, Y), c(X, Y).")
    >>> c = forward_chain_names([("x", r, "y") for r in "tabc"], rules)
    >>> res = minimal_deletion_sets(c, ("x", "t", "y"), seed=1)
    >>> res.sizes, res.proven_minimum, c.named_all(res.smallest)
    ([2, 3], True, [('x', 't', 'y'), ('x', 'a', 'y')])
    """
    start = time.perf_counter()
    t, p, expand = _checked_problem(closure, target, kb, fixed, restarts, count, expansion,
                                    exact)
    rng = np.random.default_rng(seed)
    found = _greedy(p, expand, restarts, rng)
    lower, proven = None, False
    if exact:  # the smallest greedy set, proven minimum or beaten
        deadline = np.inf if time_limit is None else time.perf_counter() + time_limit
        best, lower, proven = _exact(p, found[found.sum(1).argmin()], rng, deadline)
        found = np.concatenate([found, best[None]])
    sets = sorted((np.sort(p.global_ids[row]) for row in np.unique(found, axis=0)),
                  key=lambda s: (len(s), s.tolist()))
    return DeletionResult(target=t, sets=tuple(sets[:count]),
                          n_found=len(sets), restarts=max(restarts, 0),
                          proven_minimum=proven, lower_bound=lower, cone_size=p.n,
                          seconds=time.perf_counter() - start)


def _checked_problem(closure: Closure, target: Target, kb, fixed, restarts: int,
                     count: int | None, expansion: str, exact: bool):
    """The target's problem and expansion, after :func:`minimal_deletion_sets`' checks."""
    if restarts < 1 and not exact:
        raise InputError(f"restarts must be >= 1 (or exact=True), got {restarts}")
    if count is not None and count < 1:
        raise InputError(f"count must be >= 1 or None, got {count}")
    if expansion not in _EXPANSIONS:
        raise InputError(f"unknown expansion {expansion!r}; known: {', '.join(_EXPANSIONS)}")
    t = resolve_target(closure, target)
    kb_m, fixed_m = fact_masks(closure, kb, fixed)
    p = cone_problem(closure, t, kb_m, fixed_m)
    if p.forced[p.target]:
        raise InputError(f"target '{' '.join(closure.named(t))}' is derivable from the "
                         "fixed facts alone; no deletion set exists")
    if not target_alive(p, p.present[None])[0]:
        raise InputError(f"target '{' '.join(closure.named(t))}' is not derivable from "
                         "kb and fixed facts; there is nothing to unlearn")
    return t, p, _EXPANSIONS[expansion]


def _greedy(p: ConeProblem, expand, restarts: int, rng: np.random.Generator) -> np.ndarray:
    """(R, n) pruned minimal sets of ``restarts`` greedy runs (at least one row)."""
    found = np.zeros((0, p.n), dtype=bool)
    chunk = max(1, int(2e7 // max(1, p.prem.size)))  # bound the (R, D, K) gathers
    for lo in range(0, max(restarts, 0), chunk):
        rows = min(chunk, restarts - lo)
        found = np.concatenate([found, _prune(p, expand(p, rows, rng), rng)])
    if len(found) == 0:  # exact only: start from one pruned greedy set anyway
        found = _prune(p, expand(p, 1, rng), rng)
    return found


def _deleted_local(closure: Closure, target: Target, deleted: FactIds, kb, fixed):
    """The target's problem, the deleted facts as a local (n,) mask, and whether any
    deleted fact lies outside the target's cone."""
    t = resolve_target(closure, target)
    kb_m, fixed_m = fact_masks(closure, kb, fixed)
    p = cone_problem(closure, t, kb_m, fixed_m)
    d = fact_mask(closure, deleted, "deleted")
    if (d & fixed_m).any():
        bad = closure.named(int(np.flatnonzero(d & fixed_m)[0]))
        raise InputError(f"deleted set contains the fixed fact '{' '.join(bad)}'")
    local = d[p.global_ids]
    return p, local, int(d.sum()) > int(local.sum())


def deep_unlearns(
    closure: Closure,
    target: Target,
    deleted: FactIds,
    *,
    kb: FactIds | None = None,
    fixed: FactIds | None = None,
) -> bool:
    """Is ``target`` outside ``closure((kb ∪ fixed) \\ deleted)``?

    ``kb`` and ``fixed`` default as in :func:`minimal_deletion_sets`.

    Examples
    --------
    >>> from kgtest.symbolic.closure import forward_chain_names
    >>> from kgtest.symbolic.rules import parse_rules
    >>> c = forward_chain_names([("a", "p", "b"), ("b", "p", "c")],
    ...                         parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    >>> deep_unlearns(c, 2, [2]), deep_unlearns(c, 2, [1, 2])
    (False, True)
    """
    p, local, _ = _deleted_local(closure, target, deleted, kb, fixed)
    return not bool(target_alive(p, (p.present & ~local)[None])[0])


def is_minimal(
    closure: Closure,
    target: Target,
    deleted: FactIds,
    *,
    kb: FactIds | None = None,
    fixed: FactIds | None = None,
) -> bool:
    """Does ``deleted`` deep-unlearn ``target`` while no proper subset of it does?

    Equivalently (closure is monotone): it deep-unlearns, and putting back any one member
    makes the target derivable. A member outside ``kb`` can never be needed, so a set with
    one is not minimal.

    Examples
    --------
    >>> from kgtest.symbolic.closure import forward_chain_names
    >>> from kgtest.symbolic.rules import parse_rules
    >>> c = forward_chain_names([("a", "p", "b"), ("b", "p", "c")],
    ...                         parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    >>> is_minimal(c, 2, [0, 2]), is_minimal(c, 2, [0, 1, 2]), is_minimal(c, 2, [2])
    (True, False, False)
    """
    p, local, outside = _deleted_local(closure, target, deleted, kb, fixed)
    members = np.flatnonzero(local)
    if outside or not p.present[members].all():
        return False
    rows = np.repeat(local[None], len(members) + 1, axis=0)  # row 0: the set itself
    rows[np.arange(1, len(members) + 1), members] = False  # row i: member i put back
    alive = target_alive(p, p.present & ~rows)
    return bool(not alive[0] and alive[1:].all())


def recall_accuracy(
    deleted: FactIds,
    minimal_sets: Iterable[FactIds] | DeletionResult,
    kb_size: int,
) -> tuple[float, float]:
    """Recall and accuracy of an unlearned set ``U'`` against minimal deletion sets.

    As docs/science.md (Wu et al. 2024): recall = max over minimal sets ``M`` of
    ``|M ∩ U'| / |M|``; accuracy = ``1 - |U' \\ M| / (|KB| - |M|)`` for the ``M`` that
    achieves the recall (ties go to the higher accuracy; the published code takes the
    first). Accuracy is 1.0 when ``|KB| == |M|``.

    Parameters
    ----------
    deleted : fact ids
        ``U'``: the KB facts the unlearned model no longer knows.
    minimal_sets : iterable of fact-id collections, or a DeletionResult
    kb_size : int
        ``|KB|``, the number of facts the model knew.

    Examples
    --------
    Both sets are half recalled; the first leaves fewer wrong deletions (``9``):

    >>> recall_accuracy([1, 2, 9], [[1, 2, 3, 4], [1, 5]], kb_size=8)
    (0.5, 0.75)
    """
    u = {int(x) for x in np.asarray(list(deleted) if not isinstance(deleted, np.ndarray)
                                    else deleted).ravel()}
    sets = minimal_sets.sets if isinstance(minimal_sets, DeletionResult) else minimal_sets
    best: tuple[float, float] | None = None
    for m_ids in sets:
        m = {int(x) for x in np.asarray(list(m_ids)).ravel()}
        if not m:
            raise InputError("recall_accuracy: a minimal set is empty")
        if kb_size < len(m) or kb_size < len(u):
            raise InputError(f"recall_accuracy: kb_size {kb_size} is smaller than a set")
        rest = kb_size - len(m)
        score = (len(m & u) / len(m), 1.0 - len(u - m) / rest if rest else 1.0)
        if best is None or score > best:
            best = score
    if best is None:
        raise InputError("recall_accuracy: no minimal sets given")
    return best
