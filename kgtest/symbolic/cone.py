"""One target's deletion problem over its backward cone, and batched derivability in it.

:func:`cone_problem` restricts the closure's proof graph to the facts that can take part
in deriving a target (:meth:`~kgtest.symbolic.closure.Closure.cone`), in cone-local ids,
with which of them are known, deletable and forced (derivable from the fixed facts
alone). :func:`ranks` and :func:`target_alive` run forward chaining inside the cone for
many kept-sets at once (a numpy batch dimension): the inner loop of
:mod:`kgtest.symbolic.deletion`'s searches.

Examples
--------
>>> from kgtest.symbolic.closure import forward_chain_names
>>> from kgtest.symbolic.rules import parse_rules
>>> rules = parse_rules("grandparent(X, Z) :- parent(X, Y), parent(Y, Z).")
>>> c = forward_chain_names([("ann", "parent", "bob"), ("bob", "parent", "cy")], rules)
>>> t = resolve_target(c, ("ann", "grandparent", "cy"))
>>> p = cone_problem(c, t, *fact_masks(c, None, None))
>>> kept = np.ones((2, p.n), dtype=bool)  # row 0 keeps every fact, row 1 only ann-bob
>>> kept[1] = p.global_ids == c.find("ann", "parent", "bob")
>>> target_alive(p, kept).tolist()
[True, False]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from kgtest.errors import InputError
from kgtest.symbolic.closure import Closure

__all__ = ["ConeProblem", "Target", "resolve_target", "fact_mask", "fact_masks", "cone_problem",
           "inf_rank", "ranks", "target_alive"]

Target = int | np.integer | Sequence[str]


@dataclass(frozen=True)
class ConeProblem:
    """One target's deletion problem in cone-local ids (``n`` = padding slot, always true).

    Derivations are sorted by head so that ``logical_or.reduceat`` over ``starts`` gives,
    per head in ``uheads``, whether any of its derivations fires.
    """

    global_ids: np.ndarray  # (n,) local -> closure fact id
    target: int  # local id
    present: np.ndarray  # (n,) known: in KB or fixed
    deletable: np.ndarray  # (n,) in KB and not fixed
    head: np.ndarray  # (D,) sorted
    prem: np.ndarray  # (D, K) premises, padded with n
    uheads: np.ndarray  # distinct heads
    starts: np.ndarray  # first derivation of each distinct head
    dstart: np.ndarray  # (n + 2,) derivations of local fact f: [dstart[f], dstart[f + 1])
    forced: np.ndarray  # (n + 1,) in the closure of the fixed facts alone (padding True)

    @property
    def n(self) -> int:
        return len(self.global_ids)


def resolve_target(closure: Closure, target: Target) -> int:
    """A closure fact id from an id or a ``(subject, relation, object)`` of names."""
    if isinstance(target, (int, np.integer)):
        t = int(target)
        if not 0 <= t < len(closure):
            raise InputError(f"target id {t} is not in the closure (it has {len(closure)} facts)")
        return t
    triple = tuple(target)
    if len(triple) != 3 or not all(isinstance(x, str) for x in triple):
        raise InputError(f"target must be a fact id or a (subject, relation, object), "
                         f"got {target!r}")
    t = closure.find(*triple)
    if t < 0:
        raise InputError(f"target '{' '.join(triple)}' is not in the closure")
    return t


def fact_mask(closure: Closure, facts, what: str) -> np.ndarray:
    """Fact ids or a mask as an (N,) bool mask; :class:`InputError` naming ``what``."""
    try:
        return closure.as_mask(facts)
    except (ValueError, IndexError, TypeError) as err:
        raise InputError(f"{what}: {err}") from None


def fact_masks(closure: Closure, kb, fixed) -> tuple[np.ndarray, np.ndarray]:
    """``(kb, fixed)`` as (N,) bool masks: kb defaults to every non-fixed fact; fixed wins."""
    fixed_m = (np.zeros(len(closure), dtype=bool) if fixed is None
               else fact_mask(closure, fixed, "fixed"))
    kb_m = ~fixed_m if kb is None else fact_mask(closure, kb, "kb") & ~fixed_m
    return kb_m, fixed_m


def cone_problem(closure: Closure, t: int, kb_m: np.ndarray, fixed_m: np.ndarray
                 ) -> ConeProblem:
    """Target ``t``'s problem over its backward cone (:meth:`Closure.cone`)."""
    if fixed_m[t]:
        raise InputError(f"target '{' '.join(closure.named(t))}' is a fixed fact; "
                         "fixed facts are never deleted")
    cone = closure.cone(t)
    n = len(cone.facts)
    order = np.argsort(cone.head, kind="stable")
    head, prem = cone.head[order], cone.premises[order]
    uheads, starts = np.unique(head, return_index=True)
    dstart = np.searchsorted(head, np.arange(n + 2))
    present = (kb_m | fixed_m)[cone.facts]
    deletable = kb_m[cone.facts]
    p = ConeProblem(cone.facts, cone.target, present, deletable, head, prem, uheads, starts,
                 dstart, forced=np.ones(n + 1, dtype=bool))  # forced: filled in below
    # facts the fixed facts derive alone can never be cut (the padding slot counts as one)
    forced = ranks(p, (present & ~deletable)[None])[0] < inf_rank(p)
    return replace(p, forced=forced)


def inf_rank(p: ConeProblem) -> int:
    """The rank :func:`ranks` gives a fact that is not derivable."""
    return p.n + 2


def ranks(p: ConeProblem, kept: np.ndarray) -> np.ndarray:
    """``(R, n + 1)`` round at which each fact enters the closure of each row of ``kept``.

    0 for kept facts, ``inf_rank(p)`` for facts not derivable, -1 for the padding slot. A
    derivation whose premises all have rank < its head's rank is well-founded.
    """
    r_count, n = kept.shape[0], p.n
    inf = inf_rank(p)
    rank = np.full((r_count, n + 1), inf, dtype=np.int32)
    rank[:, :n][kept] = 0
    rank[:, n] = -1
    alive = rank < inf
    if len(p.head) == 0:
        return rank
    rnd = 0
    while True:
        rnd += 1
        fire = alive[:, p.prem].all(2)  # (R, D)
        hit = np.logical_or.reduceat(fire, p.starts, axis=1)  # (R, distinct heads)
        new = hit & ~alive[:, p.uheads]
        if not new.any():
            return rank
        rows, cols = np.nonzero(new)
        alive[rows, p.uheads[cols]] = True
        rank[rows, p.uheads[cols]] = rnd


def target_alive(p: ConeProblem, kept: np.ndarray) -> np.ndarray:
    """``(R,)`` is the target in the closure of each row of ``kept`` (R, n)?"""
    r_count, n, t = kept.shape[0], p.n, p.target
    alive = np.ones((r_count, n + 1), dtype=bool)
    alive[:, :n] = kept
    if len(p.head) == 0:
        return alive[:, t].copy()
    while not alive[:, t].all():
        fire = alive[:, p.prem].all(2)  # (R, D)
        hit = np.logical_or.reduceat(fire, p.starts, axis=1)
        new = hit & ~alive[:, p.uheads]
        if not new.any():
            break
        alive[:, p.uheads] |= hit
    return alive[:, t].copy()
