"""Wang et al.'s out-of-distribution split: facts of some entities seen only atomically.

Wang et al. (2024, "Grokked Transformers are Implicit Reasoners") test latent composition
out of distribution on facts whose bridge entity's atomic facts were trained, but never as
a premise of a trained composition. :func:`draw_ood` picks those OOD entities for
``split.ood_fraction`` (:mod:`kgtest.corpus.splits` holds out what they taint) and
:func:`ood_facts` says which facts are out of distribution for a set of entities.
"""

from __future__ import annotations

import numpy as np

from kgtest.symbolic.closure import Closure

__all__ = ["ood_facts", "draw_ood"]


def ood_facts(closure: Closure, entities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Facts out of distribution for a set of OOD entities (Wang et al. 2024).

    Returns ``(base, derived)``: ``(N,)`` bool masks of the base facts whose subject is an
    OOD entity, and of the derived facts with an OOD premise in any of their derivations
    (a base fact of the first mask or, for deeper rules, such a derived fact).

    Examples
    --------
    >>> from kgtest.worlds.world import World
    >>> w = World.example()  # a p b, b p c, c p d; g(X, Z) :- p(X, Y), p(Y, Z).
    >>> c = w.close()
    >>> base, derived = ood_facts(c, np.array([c.entities.get("c")]))
    >>> [c.named(f) for f in np.flatnonzero(base)], [c.named(f) for f in np.flatnonzero(derived)]
    ([('c', 'p', 'd')], [('b', 'g', 'd')])
    """
    n = len(closure)
    base = closure.is_base & np.isin(closure.facts[:, 0], entities)
    bad = base.copy()
    if closure.n_derivations:
        prem = closure.deriv_premises  # (D, max body) fact ids, -1 padded
        while True:  # deeper rules: a derived OOD fact taints what it derives in turn
            uses = (np.where(prem >= 0, bad[np.maximum(prem, 0)], False)).any(1)
            new = np.zeros(n, dtype=bool)
            new[closure.deriv_head[uses]] = True
            new &= ~closure.is_base
            if not (new & ~bad).any():
                break
            bad |= new
    return base, bad & ~closure.is_base


def draw_ood(closure: Closure, world, frac: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OOD entities (a ``frac`` of the base facts' non-fixed subjects, at least one when
    ``frac > 0``) and their masks (:func:`ood_facts`), with a generator of its own, so
    that ``frac = 0`` leaves the rest of a split as it was before the option existed.

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> from kgtest.worlds.world import World
    >>> w = World.from_names([("a", "p", "b"), ("b", "p", "c")],
    ...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    >>> ents, base, derived = draw_ood(w.close(), w, 0.5, seed=0)
    >>> len(ents), int(base.sum()), int(derived.sum())
    (1, 1, 1)
    """
    n = len(closure)
    if frac <= 0:
        z = np.zeros(n, dtype=bool)
        return np.zeros(0, dtype=np.int64), z, z
    subj = np.unique(closure.facts[closure.is_base & ~world.fixed_mask(closure), 0])
    k = min(len(subj), max(1, int(round(frac * len(subj)))))
    ents = np.sort(np.random.default_rng([seed, 0x00D]).choice(subj, k, replace=False))
    return (ents.astype(np.int64), *ood_facts(closure, ents))
