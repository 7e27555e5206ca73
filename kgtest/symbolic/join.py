"""The join engine behind :func:`kgtest.symbolic.closure.forward_chain`.

A rule body is evaluated atom by atom on tables of variable bindings (one numpy column per
variable, one per premise). Each relation keeps its facts sorted by join key in a cached
index that grows with every round, so a join is a ``searchsorted`` (or a direct lookup
when the key range is compact), never per-fact Python. Semi-naive evaluation uses, in round
t, for body position i: the facts new in round t-1 at position i, older facts before i, and
all facts after i, so each derivation is found exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kgtest.errors import InputError
from kgtest.symbolic.facts import Vocab
from kgtest.symbolic.rules import Atom, Rule

# A term of a compiled atom: (is_var, variable index or entity id)
_Term = tuple[bool, int]


@dataclass(frozen=True)
class _CompiledRule:
    head_rel: int
    head_args: tuple[_Term, _Term]
    atoms: tuple[tuple[int, tuple[_Term, _Term]], ...]  # (relation id, (subject, object))
    neq: tuple[tuple[_Term, _Term], ...]
    n_vars: int


def _compile(rule: Rule, entities: Vocab, relations: Vocab) -> _CompiledRule:
    # rules built in code (not parsed) get the parser's safety check here
    bound = {t.name for a in rule.atoms for t in a.args if t.is_var}
    free = [t.name for t in (*rule.head.args, *(x for q in rule.inequalities
                                                 for x in (q.left, q.right)))
            if t.is_var and t.name not in bound]
    if not rule.atoms or free:
        why = "no body atom" if not rule.atoms else f"variable {free[0]} is not bound"
        raise InputError(f"forward_chain: unsafe rule '{rule}': {why}")
    var_ix = {v: i for i, v in enumerate(rule.variables)}

    def term(t):
        return (True, var_ix[t.name]) if t.is_var else (False, entities.add(t.name))

    def atom(a: Atom):
        return relations.add(a.relation), (term(a.args[0]), term(a.args[1]))

    head_rel, head_args = atom(rule.head)
    return _CompiledRule(
        head_rel=head_rel,
        head_args=head_args,
        atoms=tuple(atom(a) for a in rule.atoms),
        neq=tuple((term(q.left), term(q.right)) for q in rule.inequalities),
        n_vars=len(var_ix),
    )


def _atom_filter(args: tuple[_Term, _Term]) -> tuple[int, int, bool]:
    """(subject constant or -1, object constant or -1, subject == object required)."""
    (sv, s), (ov, o) = args
    return (-1 if sv else s, -1 if ov else o, sv and ov and s == o)


def _keep(s: np.ndarray, o: np.ndarray, filt: tuple[int, int, bool]) -> np.ndarray | None:
    """Rows passing an atom's constants / repeated variable (None: all of them)."""
    cs, co, same = filt
    keep = None
    for cond, col, other in ((cs >= 0, s, cs), (co >= 0, o, co), (same, s, o)):
        if cond:
            k = col == other
            keep = k if keep is None else keep & k
    return keep


def _ranges(lo: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(l, l + c) for l, c in zip(lo, counts)])``, vectorised."""
    total = int(counts.sum())
    shift = np.repeat(lo - (np.cumsum(counts) - counts), counts)  # (total,)
    return shift + np.arange(total, dtype=np.int64)


def _stable_sort(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted keys, stable argsort)`` of non-negative int64 keys.

    Sorting the distinct values ``key << b | position`` (``b`` bits hold a position) is
    several times faster than a stable argsort of unordered keys (numpy sorts plain values
    with SIMD) and gives the same order; already sorted keys (common: facts arrive
    grouped) are detected first. Falls back to the stable argsort where the packing could
    overflow.
    """
    n = len(keys)
    if n < 2 or bool((keys[1:] >= keys[:-1]).all()):
        return keys, np.arange(n, dtype=np.int64)
    b = (n - 1).bit_length()
    if int(keys.max()) < 1 << (62 - b):
        packed = keys << b  # (n,) a fresh array: sorted in place below
        packed |= np.arange(n, dtype=np.int64)
        packed.sort()
        perm = packed & ((1 << b) - 1)
        packed >>= b
        return packed, perm
    perm = np.argsort(keys, kind="stable")
    return keys[perm], perm


def _merge(k1: np.ndarray, v1: np.ndarray, k2: np.ndarray, v2: np.ndarray):
    """Merge two sorted runs of keys (with values); on ties run 1 comes first. Linear."""
    at2 = np.searchsorted(k1, k2, "right") + np.arange(len(k2))  # run 2's slots
    in1 = np.ones(len(k1) + len(k2), dtype=bool)
    in1[at2] = False
    keys, vals = np.empty(len(in1), dtype=k1.dtype), np.empty(len(in1), dtype=v1.dtype)
    keys[at2], vals[at2] = k2, v2
    keys[in1], vals[in1] = k1, v1
    return keys, vals


@dataclass(frozen=True)
class _JoinIndex:
    """Rows ``[0, n)`` of one relation (after an atom's filter) sorted by a join key.

    ``perm`` holds relation-local row numbers in key order, ``keys`` the sorted keys.
    ``starts`` (CSR offsets, one per entity + 1) is set for single-entity keys when the
    entity range is not much larger than the relation: then a lookup is two gathers
    instead of two binary searches.
    """

    n: int
    keys: np.ndarray
    perm: np.ndarray
    starts: np.ndarray | None

    def match(self, left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All ``(i, row)`` with ``left[i]`` equal to the key of relation row ``row``."""
        if self.starts is not None:
            lo, hi = self.starts[left], self.starts[left + 1]
        else:
            lo = np.searchsorted(self.keys, left, "left")
            hi = np.searchsorted(self.keys, left, "right")
        counts = hi - lo
        if len(counts) == 0 or counts.max() <= 1:  # functional relations: no expansion
            li = np.flatnonzero(counts)
            return li, self.perm[lo[li]]
        li = np.repeat(np.arange(len(left), dtype=np.int64), counts)
        return li, self.perm[_ranges(lo, counts)]


class _RelIndex:
    """Facts grouped by relation; ids within a relation ascend, so id ranges are slices.

    Join indexes on a relation's first ``n`` rows are cached per (relation, atom filter,
    key columns) and extended with the rows added since, so a relation is sorted once, not
    once per rule and round.
    """

    def __init__(self, n_relations: int, n_entities: int):
        empty = np.zeros(0, dtype=np.int64)
        self.ids = [empty] * n_relations
        self.s = [empty] * n_relations
        self.o = [empty] * n_relations
        self.n_entities = max(n_entities, 1)
        self._joins: dict[tuple, list[_JoinIndex]] = {}

    def extend(self, triples: np.ndarray, first_id: int, *, by_relation: bool = False) -> None:
        """Append facts numbered from ``first_id`` (``by_relation``: already sorted so)."""
        ids = np.arange(first_id, first_id + len(triples), dtype=np.int64)
        rel = triples[:, 1]
        if not by_relation and not bool((rel[1:] >= rel[:-1]).all()):  # group by relation
            _, order = _stable_sort(rel)
            triples, rel, ids = triples[order], rel[order], ids[order]
        bounds = np.searchsorted(rel, np.arange(len(self.ids) + 1))
        for r in np.flatnonzero(np.diff(bounds)).tolist():
            a, b = bounds[r], bounds[r + 1]
            self.ids[r] = np.concatenate([self.ids[r], ids[a:b]])
            self.s[r] = np.concatenate([self.s[r], triples[a:b, 0]])
            self.o[r] = np.concatenate([self.o[r], triples[a:b, 2]])

    def span(self, r: int, lo: int, hi: int) -> tuple[int, int]:
        """Relation-local rows ``[a, b)`` holding the facts with ids in ``[lo, hi)``."""
        ids = self.ids[r]
        return int(np.searchsorted(ids, lo)), int(np.searchsorted(ids, hi))

    def rows(self, r: int, a: int, b: int, filt) -> np.ndarray:
        """Relation-local row numbers in ``[a, b)`` that pass the atom filter."""
        keep = _keep(self.s[r][a:b], self.o[r][a:b], filt)
        rows = np.arange(a, b, dtype=np.int64)
        return rows if keep is None else rows[keep]

    def key(self, r: int, rows: np.ndarray, cols: tuple[int, ...]) -> np.ndarray:
        """Join keys of relation rows: the chosen columns (0 subject, 1 object) packed."""
        arrays = (self.s[r], self.o[r])
        k = arrays[cols[0]][rows]
        for c in cols[1:]:
            k = k * self.n_entities + arrays[c][rows]
        return k

    def join_index(self, r: int, filt, cols: tuple[int, ...], n: int) -> _JoinIndex:
        """The join index of rows ``[0, n)`` of relation ``r`` (cached, grown in place)."""
        cache = self._joins.setdefault((r, filt, cols), [])
        for jx in cache:
            if jx.n == n:
                return jx
        # grow the largest cached index that is a prefix of the one asked for
        older = [jx for jx in cache if jx.n < n]
        base = max(older, key=lambda jx: jx.n) if older else None
        tail = self.rows(r, base.n if base else 0, n, filt)
        tail_keys = self.key(r, tail, cols)
        keys, order = _stable_sort(tail_keys)
        perm = tail[order]
        if base is not None:  # older rows first among equal keys
            keys, perm = _merge(base.keys, base.perm, keys, perm)
        starts = None
        e = self.n_entities
        if len(cols) == 1 and e <= 8 * len(keys) + 4096:
            starts = np.zeros(e + 1, dtype=np.int64)
            np.cumsum(np.bincount(keys, minlength=e), out=starts[1:])
        jx = _JoinIndex(n, keys, perm, starts)
        # keep the two newest: semi-naive asks for the previous and the current prefix
        cache[:] = sorted([*cache, jx], key=lambda j: j.n)[-2:]
        return jx


@dataclass(frozen=True)
class _Step:
    """One body atom in a rule's join order (precomputed once per rule and delta position)."""

    pos: int  # body position: its premise column
    rel: int
    filt: tuple[int, int, bool]  # see _atom_filter
    binds: tuple[tuple[int, int], ...]  # (variable, column 0/1) this atom binds
    shared: tuple[tuple[int, int], ...]  # (variable, column) bound before: the join key
    keep: frozenset[int]  # variables still needed after this step
    neq: tuple[tuple[_Term, _Term], ...]  # inequalities checkable from this step on


def _plan(cr: _CompiledRule, delta_pos: int) -> tuple[_Step, ...]:
    """Join order: the delta atom first, then atoms sharing the most bound variables
    (constants count as bound), ties broken by body order."""
    remaining = [i for i in range(len(cr.atoms)) if i != delta_pos]
    order = [delta_pos]
    bound = {v for is_var, v in cr.atoms[delta_pos][1] if is_var}
    while remaining:
        nxt = max(remaining, key=lambda i, b=frozenset(bound): (
            sum(1 for is_var, v in cr.atoms[i][1] if not is_var or v in b), -i))
        remaining.remove(nxt)
        order.append(nxt)
        bound |= {v for is_var, v in cr.atoms[nxt][1] if is_var}
    need = {v for is_var, v in cr.head_args if is_var} | {t[1] for q in cr.neq for t in q
                                                          if t[0]}
    keeps = []
    for pos in reversed(order):
        keeps.append(frozenset(need))
        need |= {v for is_var, v in cr.atoms[pos][1] if is_var}
    keeps.reverse()
    steps, bound, pending = [], set(), list(cr.neq)
    for pos, keep in zip(order, keeps, strict=True):
        rel, args = cr.atoms[pos]
        filt = _atom_filter(args)
        binds = tuple((v, c) for c, (is_var, v) in enumerate(args) if is_var)
        if filt[2]:  # p(X, X): one variable, bound from the subject
            binds = binds[:1]
        shared = tuple((v, c) for v, c in binds if v in bound)
        bound |= {v for v, _ in binds}
        ready = tuple(q for q in pending if all(not t[0] or t[1] in bound for t in q))
        pending = [q for q in pending if q not in ready]
        steps.append(_Step(pos, rel, filt, binds, shared, keep, ready))
    return tuple(steps)


def _eval_rule(
    steps: tuple[_Step, ...],
    cr: _CompiledRule,
    idx: _RelIndex,
    old_end: int,
    new_end: int,
) -> tuple[np.ndarray, dict[int, np.ndarray]] | None:
    """Derivations whose premise at ``steps[0].pos`` is new (id in [old_end, new_end)).

    Returns ``(head keys (m,), {body position: premise fact ids (m,)})`` or None.
    """
    e = np.int64(idx.n_entities)
    delta_pos = steps[0].pos
    cols: dict[int, np.ndarray] = {}  # variable -> values, one per binding row
    prem: dict[int, np.ndarray] = {}  # body position -> premise fact ids
    n_rows = 0
    for j, st in enumerate(steps):
        r = st.rel
        if j == 0:  # the delta atom: facts new in the last round
            a, b = idx.span(r, old_end, new_end)
            if a == b:
                return None
            rows = idx.rows(r, a, b, st.filt)
        else:  # earlier body positions see only older facts, later ones all
            n = idx.span(r, 0, old_end if st.pos < delta_pos else new_end)[1]
            if st.shared:
                left = cols[st.shared[0][0]]
                for v, _ in st.shared[1:]:
                    left = left * e + cols[v]
                cs = tuple(c for _, c in st.shared)
                li, rows = idx.join_index(r, st.filt, cs, n).match(left)
            else:  # cross product (a body atom unconnected to the others)
                right = idx.rows(r, 0, n, st.filt)
                li = np.repeat(np.arange(n_rows, dtype=np.int64), len(right))
                rows = np.tile(right, n_rows)
            cols = {v: c[li] for v, c in cols.items() if v in st.keep}
            prem = {p: c[li] for p, c in prem.items()}
        arrays = (idx.s[r], idx.o[r])
        for v, c in st.binds:
            if v not in cols and v in st.keep:
                cols[v] = arrays[c][rows]
        prem[st.pos] = idx.ids[r][rows]
        n_rows = len(rows)
        for (av, a_), (bv, b_) in st.neq:
            ok = np.asarray((cols[a_] if av else a_) != (cols[b_] if bv else b_))
            if ok.ndim == 0:  # between two constants
                ok = np.full(n_rows, bool(ok))
            if not ok.all():
                cols = {v: c[ok] for v, c in cols.items()}
                prem = {p: c[ok] for p, c in prem.items()}
                n_rows = int(np.count_nonzero(ok))
        if n_rows == 0:
            return None
        if j == 0:
            cols = {v: c for v, c in cols.items() if v in st.keep}
    (sv, s), (ov, o) = cr.head_args
    hs = cols[s] if sv else np.int64(s)
    ho = cols[o] if ov else np.int64(o)
    keys = (np.int64(cr.head_rel) * e + hs) * e + ho  # fact_keys of the heads
    if keys.ndim == 0:
        keys = np.full(n_rows, keys, dtype=np.int64)
    return keys, prem


class _KeySet:
    """Fact key -> fact id, as a few sorted runs (one per round, merged LSM-style so
    that there are O(log N) runs and each key is copied O(log N) times in all)."""

    def __init__(self, keys: np.ndarray, ids: np.ndarray):
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []
        self.add(keys, ids)

    def add(self, keys: np.ndarray, ids: np.ndarray) -> None:
        """Add distinct, sorted keys that are not present yet."""
        self.runs.append((keys, ids))
        while len(self.runs) > 1 and len(self.runs[-2][0]) <= 2 * len(self.runs[-1][0]):
            (k1, i1), (k2, i2) = self.runs.pop(), self.runs.pop()
            self.runs.append(_merge(k2, i2, k1, i1))

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Fact ids of sorted ``keys`` (-1 where absent)."""
        out = np.full(len(keys), -1, dtype=np.int64)
        for rk, ri in self.runs:
            if len(rk) == 0:
                continue
            pos = np.minimum(np.searchsorted(rk, keys), len(rk) - 1)
            hit = rk[pos] == keys
            out[hit] = ri[pos[hit]]
        return out
