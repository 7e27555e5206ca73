"""Minimum hitting sets over bitsets, and the implicit hitting-set loop that proves a
deletion set minimum (the exact search of :func:`kgtest.symbolic.deletion.minimal_deletion_sets`).

Sets are Python ints used as bitsets (bit ``i`` = element ``i``). A set ``U`` *hits* a
family when it meets every member. The minimum deletion set of a target is the minimum
set hitting every *support* (a set of facts from which the target is derivable), but the
supports are too many to list: :func:`implicit_hitting_set` alternates a minimum hitting
set of the supports found so far (:func:`min_hitting_set`, branch and bound) with asking
for new supports that hitting set misses, until a hitting set leaves the target
underivable (it is minimum) or none beats the best known set.

Examples
--------
>>> bin(min_hitting_set([0b011, 0b110, 0b100], bound=3, deadline=float("inf")))  # {0, 2}
'0b101'
>>> min_hitting_set([0b01, 0b10], bound=2, deadline=float("inf")) is None  # needs 2
True
>>> bit_indices(0b1010)
[1, 3]
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["bit_indices", "min_hitting_set", "implicit_hitting_set", "Timeout"]


class Timeout(Exception):
    """The search ran past its deadline."""


def bit_indices(mask: int) -> list[int]:
    """Indices of the set bits of a Python int (a bitset), lowest first."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def min_hitting_set(sets: list[int], bound: int, deadline: float) -> int | None:
    """A minimum hitting set of ``sets`` (int bitmasks) if one has size < ``bound``, else None.

    Raises :class:`Timeout` past ``deadline`` (a ``time.perf_counter()`` value). Branch and
    bound: branch on the elements of the smallest unhit set (an element tried
    first is excluded from its siblings' subtrees); bound by a greedy packing of pairwise
    disjoint unhit sets, each of which needs its own element.
    """
    best: list = [None, bound]
    nodes = [0]

    def packing(rem: list[int]) -> int:
        used, k = 0, 0
        for s in rem:  # rem is kept sorted by size: small sets first pack best
            if not s & used:
                used |= s
                k += 1
        return k

    def search(chosen: int, size: int, rem: list[int]) -> None:
        nodes[0] += 1
        if nodes[0] % 512 == 0 and time.perf_counter() > deadline:
            raise Timeout
        if not rem:
            best[0], best[1] = chosen, size
            return
        if size + packing(rem) >= best[1]:
            return
        smallest = rem[0]
        freq = {e: sum(1 for s in rem if s >> e & 1) for e in bit_indices(smallest)}
        banned = 0
        for e in sorted(freq, key=lambda x: (-freq[x], x)):
            bit = 1 << e
            sub = [s & ~banned for s in rem if not s & bit]
            if all(sub):
                sub.sort(key=int.bit_count)
                search(chosen | bit, size + 1, sub)
            banned |= bit
            if size + 1 >= best[1]:
                return

    search(0, 0, sorted(set(sets), key=int.bit_count))
    return best[0]


def implicit_hitting_set(best: int, alive: Callable[[int], bool],
                         support: Callable[[int], int], deadline: float
                         ) -> tuple[int, int, bool]:
    """Prove ``best`` (a deletion that works) minimum, or find a smaller one.

    Parameters
    ----------
    best : int
        A bitset whose deletion leaves the target underivable.
    alive : callable
        ``alive(deleted)``: is the target still derivable once ``deleted`` is removed?
    support : callable
        ``support(deleted)``: a minimal support disjoint from ``deleted`` (called only
        while ``alive(deleted)``).
    deadline : float
        A ``time.perf_counter()`` value; past it the search stops unproven.

    Returns
    -------
    (mask, lower_bound, proven)
        The smallest deletion found, a proven lower bound on the minimum size, and
        whether ``mask`` is proven minimum.

    Examples
    --------
    The target needs ``{0, 1}`` or ``{2}``: deleting ``{0, 2}`` or ``{1, 2}`` works.

    >>> supports = [0b011, 0b100]
    >>> def alive(d): return any(not s & d for s in supports)
    >>> def support(d): return next(s for s in supports if not s & d)
    >>> mask, lower, proven = implicit_hitting_set(0b111, alive, support, float("inf"))
    >>> bin(mask), lower, proven
    ('0b101', 2, True)
    """
    bound, supports, lower = best.bit_count(), set(), 1  # deleting nothing never works
    try:
        while True:
            hs = min_hitting_set(list(supports), bound, deadline)
            if hs is None:
                return best, bound, True
            lower = max(lower, hs.bit_count())
            if not alive(hs):
                return hs, hs.bit_count(), True
            deleted = hs  # add disjoint supports from what this hitting set leaves
            while alive(deleted):
                if time.perf_counter() > deadline:
                    raise Timeout
                s = support(deleted)
                supports.add(s)
                deleted |= s
    except Timeout:
        return best, lower, False
