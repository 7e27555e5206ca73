"""The sampler registry, and the small tools every sampler shares.

A sampler is a function ``fn(params, ctx) -> World`` registered under a name next to its
definition, with the frozen dataclass of its parameters and the relation names its worlds
offer to rules::

    @SAMPLERS.register("family_tree", params=FamilyParams, relations=family_relations)
    def family_tree(p: FamilyParams, ctx: SampleContext) -> World: ...

Specs refer to samplers by name; an unknown name is an :class:`~kgtest.errors.InputError`
that lists the known ones with a did-you-mean (the lm-evaluation-harness convention).

Shared here: :class:`SampleContext` (the seeded generator and the knobs common to all
samplers: Zipf exponent, planted targets), :class:`WorldBuilder` (collects entities and
facts, then makes a :class:`~kgtest.worlds.world.World`), :func:`zipf_weights`,
:func:`invent_names` and :func:`check_planted`.

Examples
--------
>>> zipf_weights(4, 0.0, np.random.default_rng(0)).tolist()
[0.25, 0.25, 0.25, 0.25]
>>> w = zipf_weights(1000, 1.5, np.random.default_rng(0))
>>> bool(w.max() > 100 * np.median(w))  # a few heavy entities, a long tail
True
>>> invent_names(3, np.random.default_rng(0))
['menibua', 'daiboki', 'tridruasho']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kgtest.errors import InputError
from kgtest.registry import Registry, first_doc_line
from kgtest.symbolic.closure import Closure
from kgtest.symbolic.facts import Vocab, fact_keys
from kgtest.symbolic.rules import Rule
from kgtest.worlds.world import World

__all__ = [
    "Sampler",
    "Registry",
    "SAMPLERS",
    "SampleContext",
    "WorldBuilder",
    "zipf_weights",
    "invent_names",
    "check_planted",
    "planted_ks",
]


@dataclass(frozen=True)
class Sampler:
    """A registered sampler: its function, parameter dataclass and relation vocabulary."""

    name: str
    fn: Callable[[Any, SampleContext], World]
    params: type
    relations: Callable[[Any], tuple[str, ...]]  # params -> relation names rules may use
    needs_rules: bool  # True: the spec must name a rules file (no built-in rules)
    summary: str  # first line of the sampler's docstring


class SamplerRegistry(Registry[Sampler]):
    """Name -> :class:`Sampler`, filled by the ``register`` decorator.

    Examples
    --------
    >>> reg = SamplerRegistry("sampler")
    >>> @reg.register("toy", params=dict, relations=lambda p: ("r",), needs_rules=False)
    ... def toy(p, ctx):
    ...     '''A toy.'''
    >>> reg.get("toy").summary
    'A toy.'
    >>> reg.get("tyo")
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: unknown sampler 'tyo' (did you mean 'toy'? known: toy)
    """

    def register(
        self,
        name: str,
        *,
        params: type,
        relations: Callable[[Any], tuple[str, ...]],
        needs_rules: bool = True,
    ):
        """Decorator: register ``fn`` under ``name`` (a name may be registered once)."""

        def deco(fn):
            self.add(name, Sampler(name, fn, params, relations, needs_rules,
                                   first_doc_line(fn)))
            return fn

        return deco


SAMPLERS = SamplerRegistry("sampler")


@dataclass(frozen=True)
class SampleContext:
    """What every sampler gets besides its own parameters."""

    rng: np.random.Generator  # the only source of randomness a sampler may use
    rules: tuple[Rule, ...] | None  # from the spec's rules file; None = the sampler's own
    zipf: float = 0.0  # Zipf exponent for entity frequency (0 = uniform)
    n_planted: int = 0  # how many targets to plant
    planted_proofs: int | tuple[int, ...] = 2  # exact proof count per target (a list cycles)
    name: str = "world"  # label for the World

    def proofs_of(self, i: int) -> int:
        """The exact proof count of the ``i``-th planted target (see :func:`planted_ks`)."""
        return planted_ks(i + 1, self.planted_proofs)[i]


def planted_ks(n: int, planted_proofs) -> list[int]:
    """Proof count of each of ``n`` planted targets: an int for all, or a list cycled.

    >>> planted_ks(6, [1, 2, 4]), planted_ks(2, 3)
    ([1, 2, 4, 1, 2, 4], [3, 3])
    """
    ks = [int(planted_proofs)] if isinstance(planted_proofs, (int, np.integer)) \
        else [int(k) for k in planted_proofs]
    return [ks[i % len(ks)] for i in range(n)] if ks else []


def zipf_weights(n: int, s: float, rng: np.random.Generator) -> np.ndarray:
    """Selection probabilities ``p_i ∝ rank_i ** -s`` over ``n`` items in random rank order.

    ``s = 0`` is uniform. Ranks are a random permutation, so which items are frequent is
    random too (and not tied to their index).
    """
    if n <= 0:
        return np.zeros(0)
    ranks = rng.permutation(n) + 1.0
    w = ranks ** -float(s)
    return w / w.sum()


_ONSETS = ("b d f g k l m n p r s t v z br dr gr kr pr tr st sh ch th").split()
_VOWELS = ("a e i o u a e i o ai ea io ua").split()
_RESERVED = frozenset({"male", "female", "true", "false", "none", "unknown"})


def invent_names(n: int, rng: np.random.Generator, *, taken: Iterable[str] = ()) -> list[str]:
    """``n`` distinct pronounceable lowercase names (2-3 syllables), not in ``taken``.

    Invented names carry no meaning a pretrained model could know, and are valid Datalog
    constants.
    """
    seen = set(taken) | _RESERVED
    out: list[str] = []
    while len(out) < n:
        k = n - len(out)
        syl = rng.integers(2, 4, size=k)
        ons = rng.integers(0, len(_ONSETS), size=(k, 3))
        vow = rng.integers(0, len(_VOWELS), size=(k, 3))
        for i in range(k):
            name = "".join(_ONSETS[ons[i, j]] + _VOWELS[vow[i, j]] for j in range(syl[i]))
            if name not in seen:
                seen.add(name)
                out.append(name)
    return out


class WorldBuilder:
    """Collect typed entities and facts, then :meth:`build` a :class:`World`.

    Facts may be added one at a time or as arrays; duplicates are dropped at build time
    (first occurrence kept, so a fact's ``fixed``/``domain`` come from its first addition).

    Examples
    --------
    >>> b = WorldBuilder(("person", "gender"))
    >>> ann, male = b.entity("ann", "person"), b.entity("male", "gender")
    >>> b.add(ann, "gender", male, fixed=True)
    >>> w = b.build([], name="tiny")
    >>> w.facts.tolist(), w.fixed.tolist(), w.type_names
    ([[0, 0, 1]], [True], ('person', 'gender'))
    """

    def __init__(self, type_names: Sequence[str], domain_names: Sequence[str] = ("default",)):
        self.entities = Vocab()
        self.relations = Vocab()
        self.type_names = tuple(type_names)
        self.domain_names = tuple(domain_names)
        self._etype: list[int] = []
        self._rows: list[np.ndarray] = []  # each (n, 5): s, r, o, fixed, domain

    def entity(self, name: str, etype: str | int = 0) -> int:
        """Intern an entity of type ``etype`` (a type name or index); returns its id."""
        t = self.type_names.index(etype) if isinstance(etype, str) else int(etype)
        i = self.entities.add(name)
        if i == len(self._etype):
            self._etype.append(t)
        return i

    def new_entities(self, names: Iterable[str], etype: str | int | np.ndarray = 0) -> np.ndarray:
        """Intern many entities of one type (or one type each, an array); returns their ids."""
        names = list(names)
        if isinstance(etype, np.ndarray):
            return np.array([self.entity(n, int(t)) for n, t in zip(names, etype, strict=True)],
                            dtype=np.int64)
        return np.array([self.entity(n, etype) for n in names], dtype=np.int64)

    def etype(self, entity: int) -> int:
        return self._etype[entity]

    def add(self, s, relation: str | int, o, *, fixed: bool = False, domain: int = 0) -> None:
        """Add fact(s) ``relation(s, o)``; ``s`` and ``o`` are ids or equal-length id arrays."""
        r = self.relations.add(relation) if isinstance(relation, str) else int(relation)
        s, o = np.atleast_1d(np.asarray(s, dtype=np.int64)), np.atleast_1d(np.asarray(o))
        s, o = np.broadcast_arrays(s, o.astype(np.int64))
        if len(s) == 0:
            return
        rows = np.empty((len(s), 5), dtype=np.int64)
        rows[:, 0], rows[:, 1], rows[:, 2] = s, r, o
        rows[:, 3], rows[:, 4] = int(fixed), int(domain)
        self._rows.append(rows)

    def triples(self) -> np.ndarray:
        """All facts added so far, ``(n, 3)`` (duplicates included)."""
        if not self._rows:
            return np.zeros((0, 3), dtype=np.int64)
        return np.concatenate(self._rows)[:, :3]

    def build(
        self,
        rules: Sequence[Rule],
        *,
        planted: Sequence[Sequence[int]] = (),
        name: str = "world",
        meta: dict | None = None,
    ) -> World:
        """The :class:`World` of everything added (rule relations are interned too)."""
        for rule in rules:
            for rel in rule.relations:
                self.relations.add(rel)
        rows = np.concatenate(self._rows) if self._rows else np.zeros((0, 5), dtype=np.int64)
        _, first = np.unique(fact_keys(rows[:, :3], len(self.entities)), return_index=True)
        rows = rows[np.sort(first)]
        return World(
            entities=self.entities,
            relations=self.relations,
            entity_type=np.asarray(self._etype, dtype=np.int64),
            type_names=self.type_names,
            facts=np.ascontiguousarray(rows[:, :3]),
            rules=tuple(rules),
            fixed=rows[:, 3].astype(bool),
            domain=rows[:, 4].copy(),
            domain_names=self.domain_names,
            planted=np.asarray(planted, dtype=np.int64).reshape(-1, 3),
            name=name,
            meta=dict(meta or {}),
        )


def check_planted(world: World, k, closure: Closure | None = None) -> Closure:
    """Check that every planted target has exactly ``k`` independent derivations.

    ``k`` is one count for every target, or a list cycled over the targets in planting
    order (:func:`planted_ks`).

    *Independent* means the derivations' premise sets are pairwise disjoint once fixed
    attribute facts (which are never deleted) are set aside. Returns the closure.

    Raises
    ------
    InputError
        Naming the first target that is missing, stated as a base fact, has a different
        proof count, or shares a premise between two of its derivations (this happens
        when a spec's rules add derivations the sampler did not plan for).
    """
    c = world.close() if closure is None else closure
    ids = c.index(world.planted)
    fixed = world.fixed_mask(c)
    ks = planted_ks(len(ids), k)
    for row, fid, k in zip(world.planted, ids.tolist(), ks, strict=True):
        s, r, o = world.entities.name(row[0]), world.relations.name(row[1]), row[2]
        what = f"planted target {r}({s}, {world.entities.name(o)})"
        if fid < 0 or fid < c.n_base:
            state = "not derived" if fid < 0 else "stated as a base fact"
            raise InputError(f"key 'world.n_planted': {what} is {state}")
        got = int(c.proof_count[fid])
        if got != k:
            raise InputError(f"key 'world.planted_proofs': {what} has {got} derivations under "
                             f"these rules, not exactly {k}")
        seen: set[int] = set()
        for d in c.derivations_of(fid).tolist():
            prem = {p for p in c.premises(d) if not fixed[p]}
            if prem & seen:
                raise InputError(f"key 'world.planted_proofs': {what} has {k} derivations but "
                                 "they share premises (not independent)")
            seen |= prem
    return c
