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
bindings (one numpy column per variable, one per premise). Each join sorts the smaller
side's key (one or two shared variables packed into one int64) and matches with
``searchsorted``; there is no per-fact Python. Semi-naive evaluation uses, in round t,
for body position i: the facts new in round t-1 at position i, facts older than that at
positions before i, and all facts at positions after i. Each derivation is therefore found
exactly once, in the round after its last premise appeared, and a fact's round of first
derivation is its depth.

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
    order, starts = c._deriv_order
    in_cone = np.zeros(len(c), dtype=bool)
    in_cone[target] = True
    frontier = np.array([target])
    used = []
    while len(frontier):
        # derivations of the frontier facts
        d = np.concatenate([order[starts[f] : starts[f + 1]] for f in frontier.tolist()])
        if len(d) == 0:
            break
        used.append(d)
        p = c.deriv_premises[d].ravel()
        p = np.unique(p[p >= 0])
        frontier = p[~in_cone[p]]
        in_cone[frontier] = True
    derivs = np.unique(np.concatenate(used)) if used else np.zeros(0, dtype=np.int64)
    facts = np.flatnonzero(in_cone)
    local = np.full(len(c) + 1, len(facts), dtype=np.int64)  # -1 padding -> slot len(facts)
    local[facts] = np.arange(len(facts))
    prem = c.deriv_premises[derivs]
    return Cone(
        facts=facts,
        target=int(local[target]),
        head=local[c.deriv_head[derivs]],
        premises=local[np.where(prem < 0, len(c), prem)],
        derivations=derivs,
    )


# --- the join engine -------------------------------------------------------------------


class _RelIndex:
    """Facts grouped by relation; ids within a relation ascend, so id ranges are slices."""

    def __init__(self, n_relations: int):
        empty = np.zeros(0, dtype=np.int64)
        self.ids = [empty] * n_relations
        self.s = [empty] * n_relations
        self.o = [empty] * n_relations

    def extend(self, triples: np.ndarray, first_id: int) -> None:
        ids = np.arange(first_id, first_id + len(triples), dtype=np.int64)
        rel = triples[:, 1]
        order = np.argsort(rel, kind="stable")
        bounds = np.searchsorted(rel[order], np.arange(len(self.ids) + 1))
        for r in range(len(self.ids)):
            sel = order[bounds[r] : bounds[r + 1]]
            if len(sel):
                self.ids[r] = np.concatenate([self.ids[r], ids[sel]])
                self.s[r] = np.concatenate([self.s[r], triples[sel, 0]])
                self.o[r] = np.concatenate([self.o[r], triples[sel, 2]])

    def slice(self, r: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = self.ids[r]
        a, b = np.searchsorted(ids, [lo, hi])
        return ids[a:b], self.s[r][a:b], self.o[r][a:b]


@dataclass(frozen=True)
class _CompiledRule:
    head_rel: int
    head_args: tuple[tuple[bool, int], tuple[bool, int]]  # (is_var, var index or entity id)
    atoms: tuple[tuple[int, tuple[tuple[bool, int], tuple[bool, int]]], ...]
    neq: tuple[tuple[tuple[bool, int], tuple[bool, int]], ...]
    n_vars: int


def _compile(rule: Rule, entities: Vocab, relations: Vocab) -> _CompiledRule:
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


def _expand_matches(left_keys: np.ndarray, right_keys: np.ndarray):
    """All (i, j) with left_keys[i] == right_keys[j], as two index arrays."""
    order = np.argsort(right_keys, kind="stable")
    sk = right_keys[order]
    lo = np.searchsorted(sk, left_keys, "left")
    hi = np.searchsorted(sk, left_keys, "right")
    counts = hi - lo
    total = int(counts.sum())
    li = np.repeat(np.arange(len(left_keys)), counts)
    offs = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    ri = order[np.repeat(lo, counts) + offs]
    return li, ri


def _join_score(args, bound, i):
    # prefer atoms sharing bound variables or with constants (selective joins first)
    return (sum(1 for a in args if a[0] and a[1] in bound) + sum(1 for a in args if not a[0]), -i)


def _eval_rule(
    cr: _CompiledRule,
    idx: _RelIndex,
    delta_pos: int,
    old_end: int,
    new_end: int,
    n_entities: int,
):
    """Derivations of ``cr`` whose premise at ``delta_pos`` is new (id in [old_end, new_end))."""
    k = len(cr.atoms)
    e = np.int64(max(n_entities, 1))
    # order: the delta atom first, then atoms sharing the most bound variables
    remaining = [i for i in range(k) if i != delta_pos]
    plan = [delta_pos]
    bound = {a[1] for a in cr.atoms[delta_pos][1] if a[0]}
    while remaining:
        nxt = max(remaining, key=lambda i, b=frozenset(bound): _join_score(cr.atoms[i][1], b, i))
        remaining.remove(nxt)
        plan.append(nxt)
        bound |= {a[1] for a in cr.atoms[nxt][1] if a[0]}

    cols: dict[int, np.ndarray] = {}  # variable -> values
    prem: dict[int, np.ndarray] = {}  # body position -> premise fact ids
    n_rows = None
    for pos in plan:
        rel, args = cr.atoms[pos]
        if pos == delta_pos:
            lo, hi = old_end, new_end
        elif pos < delta_pos:
            lo, hi = 0, old_end
        else:
            lo, hi = 0, new_end
        ids, s, o = idx.slice(rel, lo, hi)
        vals = (s, o)
        # constants and repeated variables filter the candidates
        keep = np.ones(len(ids), dtype=bool)
        for (is_var, v), col in zip(args, vals, strict=True):
            if not is_var:
                keep &= col == v
        if args[0][0] and args[1][0] and args[0][1] == args[1][1]:
            keep &= s == o
        if not keep.all():
            ids, s, o = ids[keep], s[keep], o[keep]
            vals = (s, o)
        var_args = [(v, col) for (is_var, v), col in zip(args, vals, strict=True) if is_var]
        if args[0][0] and args[1][0] and args[0][1] == args[1][1]:
            var_args = var_args[:1]
        if n_rows is None:
            for v, col in var_args:
                cols[v] = col
            prem[pos] = ids
            n_rows = len(ids)
        else:
            shared = [(v, col) for v, col in var_args if v in cols]
            if shared:
                lk = np.zeros(n_rows, dtype=np.int64)
                rk = np.zeros(len(ids), dtype=np.int64)
                for v, col in shared:
                    lk = lk * e + cols[v]
                    rk = rk * e + col
                li, ri = _expand_matches(lk, rk)
            else:  # cross product (a body atom unconnected to the others)
                li = np.repeat(np.arange(n_rows), len(ids))
                ri = np.tile(np.arange(len(ids)), n_rows)
            cols = {v: c[li] for v, c in cols.items()}
            prem = {p: c[li] for p, c in prem.items()}
            for v, col in var_args:
                if v not in cols:
                    cols[v] = col[ri]
            prem[pos] = ids[ri]
            n_rows = len(li)
        # apply every inequality whose variables are now bound
        for a, b in cr.neq:
            if all((not t[0]) or t[1] in cols for t in (a, b)):
                av = cols[a[1]] if a[0] else a[1]
                bv = cols[b[1]] if b[0] else b[1]
                ok = np.asarray(av != bv)
                if ok.ndim == 0:
                    ok = np.full(n_rows, bool(ok))
                if not ok.all():
                    cols = {v: c[ok] for v, c in cols.items()}
                    prem = {p: c[ok] for p, c in prem.items()}
                    n_rows = int(ok.sum())
        if n_rows == 0:
            break
    if not n_rows:
        return None
    head = np.empty((n_rows, 3), dtype=np.int64)
    for j, (is_var, v) in zip((0, 2), cr.head_args, strict=True):
        head[:, j] = cols[v] if is_var else v
    head[:, 1] = cr.head_rel
    premises = np.stack([prem[p] for p in range(k)], axis=1)
    return head, premises


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
        ``relations``. Duplicates are dropped (first occurrence kept).
    rules : sequence of Rule
        Datalog rules; their relation and constant names are interned into copies of
        the vocabularies (the inputs are not modified).
    max_rounds : int, optional
        Stop after this many derivation rounds (facts of greater depth are not derived).

    Returns
    -------
    Closure
        See the module docstring for its arrays.
    """
    entities, relations = entities.copy(), relations.copy()
    rules = tuple(rules)
    compiled = [_compile(r, entities, relations) for r in rules]
    base = np.asarray(facts, dtype=np.int64).reshape(-1, 3)
    if len(base) and (base.min() < 0 or base[:, [0, 2]].max() >= len(entities)
                      or base[:, 1].max() >= len(relations)):
        raise InputError("forward_chain: fact ids out of range of the vocabularies")
    n_ent = len(entities)
    keys = fact_keys(base, n_ent)
    _, first = np.unique(keys, return_index=True)
    first.sort()
    base, keys = base[first], keys[first]

    idx = _RelIndex(len(relations))
    idx.extend(base, 0)
    all_facts = [base]
    depths = [np.zeros(len(base), dtype=np.int32)]
    key_order = np.argsort(keys, kind="stable")
    sorted_keys, sorted_ids = keys[key_order], key_order.astype(np.int64)
    d_head, d_rule, d_prem = [], [], []
    kmax = max((len(r.atoms) for r in compiled), default=1)
    old_end, new_end, rnd = 0, len(base), 0
    while new_end > old_end and (max_rounds is None or rnd < max_rounds):
        rnd += 1
        heads, rule_ids, prems = [], [], []
        for ri, cr in enumerate(compiled):
            for pos in range(len(cr.atoms)):
                out = _eval_rule(cr, idx, pos, old_end, new_end, n_ent)
                if out is None:
                    continue
                h, p = out
                heads.append(h)
                rule_ids.append(np.full(len(h), ri, dtype=np.int32))
                pad = np.full((len(p), kmax), -1, dtype=np.int64)
                pad[:, : p.shape[1]] = p
                prems.append(pad)
        old_end = new_end
        if not heads:
            break
        h = np.concatenate(heads)
        hk = fact_keys(h, n_ent)
        pos = np.clip(np.searchsorted(sorted_keys, hk), 0, max(len(sorted_keys) - 1, 0))
        known = (sorted_keys[pos] == hk) if len(sorted_keys) else np.zeros(len(hk), bool)
        head_id = np.where(known, sorted_ids[pos] if len(sorted_ids) else 0, -1)
        new_keys, inv = np.unique(hk[~known], return_inverse=True)
        if len(new_keys):
            first_new = np.zeros(len(new_keys), dtype=np.int64)
            first_new[inv] = np.flatnonzero(~known)  # any representative row
            new_triples = h[first_new]
            head_id[~known] = new_end + inv
            idx.extend(new_triples, new_end)
            all_facts.append(new_triples)
            depths.append(np.full(len(new_triples), rnd, dtype=np.int32))
            new_end += len(new_triples)
            merged = np.concatenate([sorted_keys, new_keys])
            merged_ids = np.concatenate([sorted_ids, np.arange(old_end, new_end)])
            o = np.argsort(merged, kind="stable")
            sorted_keys, sorted_ids = merged[o], merged_ids[o]
        p = np.concatenate(prems)
        not_self = ~(p == head_id[:, None]).any(1)
        d_head.append(head_id[not_self])
        d_rule.append(np.concatenate(rule_ids)[not_self])
        d_prem.append(p[not_self])

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
