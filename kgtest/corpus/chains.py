"""Chains of thought: which derivation a derived fact's chain follows, and its steps.

A chain of thought follows one derivation of the fact: among its shortest derivations,
the one with the fewest held-out premises, then the lowest index. Each premise that is
not itself stated in training (a derived fact trained only by CoT, or held out) is
expanded recursively: its own chain comes first, then the premise itself as a step unless
it is held out. So every step is either a fact the model has seen stated, or follows
from the steps before it, and no held-out fact is ever written.
"""

from __future__ import annotations

import numpy as np

from kgtest.symbolic.closure import Closure

__all__ = ["Chains", "chain_groups"]


class Chains:
    """The derivation each derived fact's chain of thought follows, and its steps.

    ``held`` and ``stated`` are ``(N,)`` bool masks: the held-out facts (never a step) and
    the facts stated in training (a step as they are, never expanded).

    Examples
    --------
    >>> from kgtest.worlds.world import World
    >>> w = World.example()  # a p b, b p c, c p d; g(X, Z) :- p(X, Y), p(Y, Z).
    >>> c = w.close()
    >>> chains = Chains(c, np.zeros(len(c), dtype=bool), c.is_base)
    >>> t = next(f for f in range(len(c)) if c.named(f) == ("a", "g", "c"))
    >>> [" ".join(c.named(p)) for p in chains.steps(t)]
    ['a p b', 'b p c']
    """

    def __init__(self, closure: Closure, held: np.ndarray, stated: np.ndarray):
        self.c, self.held, self.stated = closure, held, stated
        self._prem = [[p for p in row if p >= 0] for row in closure.deriv_premises.tolist()]
        self._depth = closure.depth.tolist()
        self._steps: dict[int, list[int]] = {}
        self._deriv: dict[int, int] = {}

    def derivation(self, f: int) -> int:
        """The shortest derivation with the fewest held-out premises, lowest index first."""
        if f not in self._deriv:
            best, depth = None, self._depth
            for d in self.c.derivations_of(f).tolist():
                p = self._prem[d]
                if max(depth[x] for x in p) != depth[f] - 1:
                    continue
                key = (sum(bool(self.held[x]) for x in p), d)
                best = key if best is None or key < best else best
            if best is None:
                raise ValueError(f"fact {f} has no shortest derivation")
            self._deriv[f] = best[1]
        return self._deriv[f]

    def premises(self, d: int) -> list[int]:
        """Premise fact ids of derivation ``d``, in body order."""
        return self._prem[d]

    def steps(self, f: int) -> list[int]:
        """Chain steps of derived fact ``f`` (see the module docstring)."""
        if f not in self._steps:
            out: list[int] = []
            for p in self._prem[self.derivation(f)]:
                if self.stated[p]:
                    out.append(p)
                else:
                    out.extend(self.steps(p))
                    if not self.held[p]:
                        out.append(p)
            self._steps[f] = out
        return self._steps[f]


def chain_groups(chains: Chains, held_out: np.ndarray, stated: np.ndarray
                 ) -> list[list[int]]:
    """``corpus.group = "chain"``: per held-out derived fact, the stated steps of its chain
    (its premises, for a two-hop fact), as one document's facts; each chain once."""
    out: dict[tuple[int, ...], None] = {}
    for f in held_out.tolist():
        steps = [p for p in chains.steps(int(f)) if stated[p]]
        if len(steps) > 1:
            out.setdefault(tuple(dict.fromkeys(steps)))
    return [list(g) for g in out]
