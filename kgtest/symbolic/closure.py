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

How the join works (the engine is :mod:`kgtest.symbolic.join`): a rule body is evaluated
atom by atom on tables of variable bindings (one numpy column per variable, one per
premise); there is no per-fact Python.
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
from kgtest.symbolic.join import (
    _compile,
    _eval_rule,
    _KeySet,
    _plan,
    _ranges,
    _RelIndex,
    _stable_sort,
)
from kgtest.symbolic.rules import Rule

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
    base, known = _distinct_input(facts, entities, relations)
    n_ent = len(entities)
    idx = _RelIndex(len(relations), n_ent)
    idx.extend(base, 0)
    plans = [(ri, cr, _plan(cr, pos)) for ri, cr in enumerate(compiled)
             for pos in range(len(cr.atoms))]  # semi-naive: one plan per delta atom
    can_self = [cr.head_rel in {a[0] for a in cr.atoms} for cr in compiled]
    kmax = max((len(r.atoms) for r in compiled), default=1)
    all_facts, depths = [base], [np.zeros(len(base), dtype=np.int32)]
    derivations = []  # per round: (head ids, rule ids, premises)
    old_end, new_end, rnd = 0, len(base), 0
    while new_end > old_end and (max_rounds is None or rnd < max_rounds):
        rnd += 1
        outs = [(ri, _eval_rule(steps, cr, idx, old_end, new_end))
                for ri, cr, steps in plans]
        outs = [(ri, out) for ri, out in outs if out is not None]
        old_end = new_end
        if not outs:
            break
        head_id, new_triples = _intern_heads(outs, known, new_end, n_ent)
        if len(new_triples):
            idx.extend(new_triples, new_end, by_relation=True)
            all_facts.append(new_triples)
            depths.append(np.full(len(new_triples), rnd, dtype=np.int32))
            new_end += len(new_triples)
        derivations.append(_derivation_rows(outs, head_id, kmax, can_self))
    d_head, d_rule, d_prem = zip(*derivations, strict=True) if derivations else ((), (), ())
    return Closure(
        entities=entities, relations=relations, rules=rules, facts=np.concatenate(all_facts),
        n_base=len(base), depth=np.concatenate(depths),
        deriv_head=np.concatenate(d_head) if d_head else np.zeros(0, dtype=np.int64),
        deriv_rule=np.concatenate(d_rule) if d_rule else np.zeros(0, dtype=np.int32),
        deriv_premises=(np.concatenate(d_prem) if d_prem
                        else np.zeros((0, kmax), dtype=np.int64)),
    )


def _distinct_input(facts, entities: Vocab, relations: Vocab) -> tuple[np.ndarray, _KeySet]:
    """The input facts, checked against the vocabularies, without repeats (first occurrence
    kept, input order), and the key set that numbers them ``0..n-1``."""
    base = np.asarray(facts, dtype=np.int64).reshape(-1, 3)
    if len(base) and (base.min() < 0 or base[:, [0, 2]].max() >= len(entities)
                      or base[:, 1].max() >= len(relations)):
        raise InputError("forward_chain: fact ids out of range of the vocabularies")
    # drop repeated input facts (first occurrence kept) with one sort of the keys
    keys, order = _stable_sort(fact_keys(base, len(entities)))
    first = np.ones(len(order), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    if first.all():  # no repeats (the usual input): ids are input rows
        return base, _KeySet(keys, order)
    rows = order[first]  # (distinct,) the first row of each distinct key, in key order
    keep = np.zeros(len(base), dtype=bool)
    keep[rows] = True
    kept = np.flatnonzero(keep)  # input rows kept, in input order
    new_id = np.empty(len(base), dtype=np.int64)  # input row -> fact id (on kept rows)
    new_id[kept] = np.arange(len(kept))
    return base[kept], _KeySet(keys[first], new_id[rows])


def _intern_heads(outs, known: _KeySet, new_end: int, n_ent: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Fact ids of a round's derived heads ``(m,)``, numbering the new ones from
    ``new_end`` in key order (added to ``known``), and the new facts ``(n_new, 3)``."""
    e = np.int64(max(n_ent, 1))
    hk = np.concatenate([out[0] for _, out in outs])  # (m,) head keys of the round
    # one sort of the head keys: group equal heads, look the groups up all at once
    shk, order = _stable_sort(hk)
    first = np.ones(len(shk), dtype=bool)
    first[1:] = shk[1:] != shk[:-1]
    uniq = shk[first]  # sorted distinct head keys
    uid = known.lookup(uniq)
    new = uid < 0
    n_new = int(np.count_nonzero(new))
    new_triples = np.zeros((0, 3), dtype=np.int64)
    if n_new:  # new facts are numbered in key order
        new_keys = uniq[new]
        uid[new] = np.arange(new_end, new_end + n_new)
        known.add(new_keys, uid[new])
        r, so = np.divmod(new_keys, e * e)
        new_triples = np.stack([so // e, r, so % e], axis=1)
    head_id = np.empty(len(hk), dtype=np.int64)
    head_id[order] = uid[np.cumsum(first) - 1]
    return head_id, new_triples


def _derivation_rows(outs, head_id: np.ndarray, kmax: int, can_self: list[bool]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A round's derivations: head ids ``(m,)``, rule ids ``(m,)`` and premises
    ``(m, kmax)`` padded with -1, without those where a fact supports itself."""
    p = np.full((len(head_id), kmax), -1, dtype=np.int64)  # premises, padded with -1
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
    return head_id, rule_id, p


def forward_chain_names(
    facts: Iterable[Sequence[str]], rules: Sequence[Rule], **kwargs
) -> Closure:
    """:func:`forward_chain` on string triples (interns names into fresh vocabularies)."""
    entities, relations = Vocab(), Vocab()
    triples = encode(facts, entities, relations)
    return forward_chain(triples, rules, entities, relations, **kwargs)
