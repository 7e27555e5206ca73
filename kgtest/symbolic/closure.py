"""Semi-naive forward chaining with vectorised joins, and the AND/OR proof graph.

:func:`forward_chain` computes the closure of a set of facts under Datalog rules and
records **every** one-step derivation of every fact (rule id + premise fact ids). The
result, a :class:`Closure`, is the symbolic ground truth the rest of kgtest reads:

``facts``            ``(N, 3)`` int64 triples. Rows ``[0, n_base)`` are the input facts
                     (deduplicated, in input order); derived facts follow, in order of
                     their derivation round, so ``depth`` is non-decreasing after ``n_base``.
``depth``            ``(N,)`` shortest derivation from the input facts (0 for input facts).
``deriv_head``       ``(D,)`` the fact each derivation derives.
``deriv_rule``       ``(D,)`` index into ``rules``.
``deriv_premises``   ``(D, K)`` premise fact ids in body-atom order, padded with -1
                     (``K`` = most body atoms of any rule).

Input facts can have derivations too (a stated fact that is also derivable): these are
recorded, which is what deletion sets need. A derivation that uses its own head as a
premise is dropped (it can never make a fact derivable).

How the join works: a rule body is evaluated atom by atom on tables of variable
bindings (one numpy column per variable, one per premise); there is no per-fact Python.
Facts are grouped by relation in id order, and the facts an atom joins against are kept
sorted by the join key (one or two shared variables packed into one int64), with CSR
offsets per entity where that is compact. These join indexes are cached per relation,
atom filter and key and grown with each round's new facts, so a relation is sorted once,
not once per rule and round; a lookup is a gather (or a binary search). Semi-naive
evaluation uses, in round t, for body position i: the facts new in round t-1 at position
i, facts older than that at positions before i, and all facts at positions after i. Each
derivation is therefore found exactly once, in the round after its last premise appeared,
and a fact's round of first derivation is its depth. A round's heads are deduplicated with
one sort of their keys and looked up in a few sorted runs of known keys (merged as they
grow), so new facts are numbered in key order within their round.

Examples
--------
>>> from kgtest.symbolic.rules import parse_rules
>>> rules = parse_rules("grandparent(X, Z) :- parent(X, Y), parent(Y, Z).")
>>> c = forward_chain_names([("ann", "parent", "bob"), ("bob", "parent", "cy")], rules)
>>> c.named(2), int(c.depth[2]), int(c.proof_count[2])
(('ann', 'grandparent', 'cy'), 1, 1)
>>> c.derivable(2, kept=[0]), c.derivable(2, kept=[0, 1])
(False, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from kgtest.errors import InputError
from kgtest.symbolic.facts import Vocab, decode, encode, fact_keys
from kgtest.symbolic.rules import Atom, Rule

__all__ = ["Closure", "forward_chain", "forward_chain_names"]


@dataclass(frozen=True, eq=False)
class Closure:
    """A closed fact set with its AND/OR proof graph (see the module docstring)."""

    entities: Vocab
    relations: Vocab
    rules: tuple[Rule, ...]
    facts: np.ndarray
    n_base: int
    depth: np.ndarray
    deriv_head: np.ndarray
    deriv_rule: np.ndarray
    deriv_premises: np.ndarray
    _cache: dict = field(default_factory=dict, repr=False)

    # --- sizes and per-fact views ------------------------------------------------
    def __len__(self) -> int:
        return len(self.facts)

    @property
    def n_derivations(self) -> int:
        return len(self.deriv_head)

    @cached_property
    def is_base(self) -> np.ndarray:
        """``(N,)`` bool: the fact was in the input."""
        m = np.zeros(len(self), dtype=bool)
        m[: self.n_base] = True
        return m

    @cached_property
    def proof_count(self) -> np.ndarray:
        """``(N,)`` number of distinct one-step derivations (0 for underivable input facts)."""
        return np.bincount(self.deriv_head, minlength=len(self)).astype(np.int64)

    @cached_property
    def _deriv_order(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.deriv_head, kind="stable")
        starts = np.searchsorted(self.deriv_head[order], np.arange(len(self) + 1))
        return order, starts

    def derivations_of(self, fact: int) -> np.ndarray:
        """Derivation indices (rows of ``deriv_*``) whose head is ``fact``."""
        order, starts = self._deriv_order
        return order[starts[fact] : starts[fact + 1]]

    def rules_of(self, fact: int) -> list[int]:
        """Sorted distinct rule ids that derive ``fact``."""
        return sorted(set(self.deriv_rule[self.derivations_of(fact)].tolist()))

    def premises(self, derivation: int) -> list[int]:
        """Premise fact ids of one derivation, in body order."""
        row = self.deriv_premises[derivation]
        return row[row >= 0].tolist()

    # --- lookup --------------------------------------------------------------------
    @cached_property
    def _key_index(self) -> tuple[np.ndarray, np.ndarray]:
        keys = fact_keys(self.facts, len(self.entities))
        order = np.argsort(keys, kind="stable")
        return keys[order], order

    def index(self, triples: np.ndarray) -> np.ndarray:
        """Fact ids of ``(n, 3)`` id triples; -1 where a triple is not in the closure."""
        t = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
        skeys, order = self._key_index
        if len(skeys) == 0:
            return np.full(len(t), -1, dtype=np.int64)
        ok = (t >= 0).all(1) & (t[:, 0] < len(self.entities)) & (t[:, 2] < len(self.entities))
        ok &= t[:, 1] < len(self.relations)
        keys = fact_keys(np.where(ok[:, None], t, 0), len(self.entities))
        pos = np.clip(np.searchsorted(skeys, keys), 0, len(skeys) - 1)
        found = ok & (skeys[pos] == keys)
        return np.where(found, order[pos], -1)

    def find(self, subject: str, relation: str, obj: str) -> int:
        """Fact id of a named fact, or -1 if it is not in the closure."""
        ids = (self.entities.get(subject), self.relations.get(relation), self.entities.get(obj))
        if min(ids) < 0:
            return -1
        return int(self.index(np.array([ids]))[0])

    def named(self, fact: int) -> tuple[str, str, str]:
        """The fact as a ``(subject, relation, object)`` string triple."""
        return decode(self.facts[fact : fact + 1], self.entities, self.relations)[0]

    def named_all(self, facts: Iterable[int] | None = None) -> list[tuple[str, str, str]]:
        rows = self.facts if facts is None else self.facts[np.asarray(list(facts), dtype=int)]
        return decode(rows, self.entities, self.relations)

    # --- derivability --------------------------------------------------------------
    @cached_property
    def _padded_premises(self) -> np.ndarray:
        # -1 padding points at an extra always-true slot N, so .all(1) ignores it
        p = self.deriv_premises.copy()
        p[p < 0] = len(self)
        return p

    def as_mask(self, facts: Iterable[int] | np.ndarray | None) -> np.ndarray:
        """A fact-id list or bool mask as an ``(N,)`` bool mask (None -> all facts)."""
        if facts is None:
            return np.ones(len(self), dtype=bool)
        a = np.asarray(facts if not isinstance(facts, (set, frozenset)) else sorted(facts))
        if a.dtype == bool:
            if a.shape != (len(self),):
                raise ValueError(f"mask has shape {a.shape}, expected ({len(self)},)")
            return a.copy()
        m = np.zeros(len(self), dtype=bool)
        m[a.astype(np.int64)] = True
        return m

    def closure_mask(self, kept: Iterable[int] | np.ndarray, stop_at: int | None = None):
        """``(N,)`` bool mask of the closure of the ``kept`` facts (ids or a mask).

        Every derivation of the closure of a subset is a derivation of the full closure,
        so the recorded proof graph answers this without re-running the join. With
        ``stop_at``, returns as soon as that fact is reached.
        """
        alive = np.append(self.as_mask(kept), True)  # slot N: padding, always true
        heads, prem = self.deriv_head, self._padded_premises
        while True:
            fire = alive[prem].all(1)
            new = heads[fire & ~alive[heads]]
            if len(new) == 0:
                break
            alive[new] = True
            if stop_at is not None and alive[stop_at]:
                break
        return alive[:-1]

    def derivable(self, target: int, kept: Iterable[int] | np.ndarray) -> bool:
        """Is fact ``target`` in the closure of the ``kept`` facts (ids or an (N,) mask)?

        Uses only the part of the proof graph that can reach ``target`` (cached per
        target), so repeated calls on a 10k-fact world take well under a millisecond.
        """
        if isinstance(kept, np.ndarray) and kept.dtype == bool and kept.shape == (len(self),):
            kept_mask = kept  # read only: no copy
        else:
            kept_mask = self.as_mask(kept)
        if kept_mask[target]:
            return True
        cone = self.cone(target)
        alive = np.append(kept_mask[cone.facts], True)
        heads, prem = cone.head, cone.premises
        t = cone.target
        while True:
            fire = alive[prem].all(1)
            new = heads[fire & ~alive[heads]]
            if len(new) == 0:
                return False
            alive[new] = True
            if alive[t]:
                return True

    def cone(self, target: int) -> Cone:
        """The sub-proof-graph of facts and derivations that can lead to ``target``."""
        cones = self._cache.setdefault("cones", {})
        if target not in cones:
            cones[target] = _cone(self, target)
        return cones[target]

    def __repr__(self) -> str:
        return (f"Closure({self.n_base} input + {len(self) - self.n_base} derived facts, "
                f"{self.n_derivations} derivations, {len(self.rules)} rules)")


@dataclass(frozen=True)
class Cone:
    """A target's backward cone, renumbered locally.

    ``facts`` maps local -> global fact id (``facts[target] == global target``);
    ``head`` and ``premises`` are derivations in local ids, premises padded with
    ``len(facts)`` (an always-true slot); ``derivations`` are their global indices.
    """

    facts: np.ndarray
    target: int
    head: np.ndarray
    premises: np.ndarray
    derivations: np.ndarray


def _cone(c: Closure, target: int) -> Cone:
    # breadth-first over derivations, on cone-sized sorted arrays (no O(N) work per cone)
    order, starts = c._deriv_order
    facts = np.array([target], dtype=np.int64)  # sorted fact ids reached so far
    frontier, used = facts, []
    while len(frontier):
        lo = starts[frontier]
        d = order[_ranges(lo, starts[frontier + 1] - lo)]  # derivations of the frontier
        if len(d) == 0:
            break
        used.append(d)
        p = np.unique(c.deriv_premises[d])
        p = p[p >= 0]
        pos = np.minimum(np.searchsorted(facts, p), len(facts) - 1)
        frontier = p[facts[pos] != p]  # premises not reached before
        facts = np.union1d(facts, frontier)
    derivs = np.sort(np.concatenate(used)) if used else np.zeros(0, dtype=np.int64)
    prem = c.deriv_premises[derivs]
    local_prem = np.searchsorted(facts, prem)
    local_prem[prem < 0] = len(facts)  # -1 padding -> an always-true slot
    return Cone(
        facts=facts,
        target=int(np.searchsorted(facts, target)),
        head=np.searchsorted(facts, c.deriv_head[derivs]),
        premises=local_prem,
        derivations=derivs,
    )


# --- the join engine -------------------------------------------------------------------

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

    Sorting the distinct values ``key * n + position`` is several times faster than a
    stable argsort of unordered keys (numpy sorts plain values with SIMD) and gives the
    same order; already sorted keys (common: facts arrive grouped) are detected first.
    Falls back to the stable argsort where the packing could overflow.
    """
    n = len(keys)
    if n < 2 or bool((keys[1:] >= keys[:-1]).all()):
        return keys, np.arange(n, dtype=np.int64)
    if (int(keys.max()) + 1) <= (2**62) // n:
        packed = keys * n + np.arange(n, dtype=np.int64)
        packed.sort()
        perm = packed % n
        return (packed - perm) // n, perm
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
        if not by_relation:
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


def forward_chain(
    facts: np.ndarray,
    rules: Sequence[Rule],
    entities: Vocab,
    relations: Vocab,
    *,
    max_rounds: int | None = None,
) -> Closure:
    """Close ``facts`` under ``rules``, recording every one-step derivation.

    Parameters
    ----------
    facts : (n, 3) int array
        Input facts as ``(subject, relation, object)`` ids into ``entities`` and
        ``relations``. Duplicates are dropped (first occurrence kept). Not modified.
    rules : sequence of Rule
        Datalog rules; their relation and constant names are interned into copies of
        the vocabularies (the inputs are not modified).
    entities, relations : Vocab
        The vocabularies the ids refer to.
    max_rounds : int, optional
        Stop after this many derivation rounds (facts of greater depth are not derived).

    Returns
    -------
    Closure
        See the module docstring for its arrays.

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> ents, rels = Vocab(["a", "b", "c"]), Vocab(["e"])
    >>> rules = parse_rules("path(X, Y) :- e(X, Y).\\npath(X, Z) :- e(X, Y), path(Y, Z).")
    >>> c = forward_chain(np.array([[0, 0, 1], [1, 0, 2]]), rules, ents, rels)
    >>> c.facts.tolist()
    [[0, 0, 1], [1, 0, 2], [0, 1, 1], [1, 1, 2], [0, 1, 2]]
    >>> c.depth.tolist(), c.proof_count.tolist()
    ([0, 0, 1, 1, 2], [0, 0, 1, 1, 1])
    """
    entities, relations = entities.copy(), relations.copy()
    rules = tuple(rules)
    compiled = [_compile(r, entities, relations) for r in rules]
    base = np.asarray(facts, dtype=np.int64).reshape(-1, 3)
    if len(base) and (base.min() < 0 or base[:, [0, 2]].max() >= len(entities)
                      or base[:, 1].max() >= len(relations)):
        raise InputError("forward_chain: fact ids out of range of the vocabularies")
    n_ent = len(entities)
    e = np.int64(max(n_ent, 1))
    # drop repeated input facts (first occurrence kept) with one sort of the keys
    keys, order = _stable_sort(fact_keys(base, n_ent))
    first = np.ones(len(order), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    kept = np.sort(order[first])  # input rows kept, in input order
    base = base[kept]
    known = _KeySet(keys[first], np.searchsorted(kept, order[first]))

    idx = _RelIndex(len(relations), n_ent)
    idx.extend(base, 0)
    plans = [(ri, cr, _plan(cr, pos)) for ri, cr in enumerate(compiled)
             for pos in range(len(cr.atoms))]
    can_self = [cr.head_rel in {a[0] for a in cr.atoms} for cr in compiled]
    all_facts = [base]
    depths = [np.zeros(len(base), dtype=np.int32)]
    d_head, d_rule, d_prem = [], [], []
    kmax = max((len(r.atoms) for r in compiled), default=1)
    old_end, new_end, rnd = 0, len(base), 0
    while new_end > old_end and (max_rounds is None or rnd < max_rounds):
        rnd += 1
        outs = [(ri, _eval_rule(steps, cr, idx, old_end, new_end))
                for ri, cr, steps in plans]
        outs = [(ri, out) for ri, out in outs if out is not None]
        old_end = new_end
        if not outs:
            break
        hk = np.concatenate([out[0] for _, out in outs])  # (m,) head keys of the round
        # one sort of the head keys: group equal heads, look the groups up all at once
        shk, order = _stable_sort(hk)
        first = np.ones(len(shk), dtype=bool)
        first[1:] = shk[1:] != shk[:-1]
        uniq = shk[first]  # sorted distinct head keys
        uid = known.lookup(uniq)
        new = uid < 0
        n_new = int(np.count_nonzero(new))
        if n_new:  # new facts are numbered in key order
            new_keys = uniq[new]
            uid[new] = np.arange(new_end, new_end + n_new)
            known.add(new_keys, uid[new])
            r, so = np.divmod(new_keys, e * e)
            new_triples = np.stack([so // e, r, so % e], axis=1)
            idx.extend(new_triples, new_end, by_relation=True)
            all_facts.append(new_triples)
            depths.append(np.full(n_new, rnd, dtype=np.int32))
            new_end += n_new
        head_id = np.empty(len(hk), dtype=np.int64)
        head_id[order] = uid[np.cumsum(first) - 1]
        p = np.full((len(hk), kmax), -1, dtype=np.int64)  # premises, padded with -1
        at = 0
        for _, (keys, prem) in outs:
            for col, ids in prem.items():
                p[at : at + len(keys), col] = ids
            at += len(keys)
        rule_id = np.repeat(np.array([ri for ri, _ in outs], dtype=np.int32),
                            [len(out[0]) for _, out in outs])
        if any(can_self[ri] for ri, _ in outs):  # a fact never supports itself
            ok = ~(p == head_id[:, None]).any(1)
            head_id, p, rule_id = head_id[ok], p[ok], rule_id[ok]
        d_head.append(head_id)
        d_rule.append(rule_id)
        d_prem.append(p)

    return Closure(
        entities=entities,
        relations=relations,
        rules=rules,
        facts=np.concatenate(all_facts),
        n_base=len(base),
        depth=np.concatenate(depths),
        deriv_head=np.concatenate(d_head) if d_head else np.zeros(0, dtype=np.int64),
        deriv_rule=np.concatenate(d_rule) if d_rule else np.zeros(0, dtype=np.int32),
        deriv_premises=(np.concatenate(d_prem) if d_prem
                        else np.zeros((0, kmax), dtype=np.int64)),
    )


def forward_chain_names(
    facts: Iterable[Sequence[str]], rules: Sequence[Rule], **kwargs
) -> Closure:
    """:func:`forward_chain` on string triples (interns names into fresh vocabularies)."""
    entities, relations = Vocab(), Vocab()
    triples = encode(facts, entities, relations)
    return forward_chain(triples, rules, entities, relations, **kwargs)
