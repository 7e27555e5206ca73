"""Rendering a closed world into documents: the data the models train on.

:func:`render` turns a closure, its world and a :class:`~kgtest.corpus.splits.Split` into a
:class:`Corpus`. Every document is a dict::

    {"id": int, "kind": "statement" | "qa" | "cot" | "in_context" | "unknown",
     "prompt": str, "completion": str, "text": prompt + completion,
     "facts": [{"id": closure fact id, "role": role}, ...], ...extras}

Roles: ``stated`` (a statement), ``answer`` (the fact asked, its object given by the
completion), ``question`` (asked but not answered: ``unknown`` documents), ``premise``
(a step of a chain of thought, or a fact given in context). Statements have prompt ``""``
(fully supervised). Extras: ``variant`` (copy index, ``0 <= variant < multiplicity``),
``inverse`` (True on object-first statements), ``derivation`` (the derivation a CoT or
in-context document follows), ``probe`` (on evaluation documents), ``target``
(on ``unknown`` documents: ``forget`` or ``validation``).

What is trained, per fact category:

- base facts: statements (``multiplicity`` copies; one per document with ``group =
  "fact"``, all of a subject's together with ``"subject"``, and with ``"chain"`` the
  stated premises of each held-out derived fact's chain together, the facts in no such
  chain one per document), and QA documents for the facts of a seeded ``qa_fraction`` of
  subjects; with ``inverse``, the stated facts of a seeded ``inverse_fraction`` of
  subjects are also stated object first;
- derived facts not held out: ``derived = "stated"`` (statements + QA, memorised),
  ``"cot"`` (chain-of-thought documents) or ``"both"``;
- held-out derived facts: nothing, ever (implied only);
- forget and validation targets under ``split.target_presentation = "stated"`` (the
  default): statements + QA only, whatever ``derived`` says: no chain of thought and no
  in-context document answers a target, and other facts' chains write a target as one
  step (it is stated), never expand its chain.

A chain of thought follows one derivation of the fact: among its shortest derivations,
the one with the fewest held-out premises, then the lowest index. Each premise that is
not itself stated in training (a derived fact trained only by CoT, or held out) is
expanded recursively: its own chain comes first, then the premise itself as a step unless
it is held out. So every step is either a fact the model has seen stated, or follows
from the steps before it, and no held-out fact is ever written.

Evaluation documents (``Corpus.eval``, never trained) carry ``probe``: ``direct`` (QA),
``statement`` (statement cut before the object), ``paraphrase`` (held-out templates,
natural surface only) for every closure fact, and ``cot`` for every derived fact.
``in_context`` documents give the premises of one derivation of each derived fact and
``icl.distractors`` true facts about other entities, shuffled, then the question
(:mod:`kgtest.corpus.in_context`). ``unknown`` documents answer ``unknown`` to each forget
and validation target. Neither is trained, except that ``train_in_context`` trains
``icl.copies`` in-context documents of each derived fact that is neither a target nor held
out (and has a derivation with no such premise).

Examples
--------
>>> from kgtest.symbolic.rules import parse_rules
>>> from kgtest.worlds.world import World
>>> from kgtest.corpus.splits import SplitConfig, choose_split
>>> w = World.from_names([("ann", "parent", "bob"), ("bob", "parent", "cy")],
...                      parse_rules("grandparent(X, Z) :- parent(X, Y), parent(Y, Z)."))
>>> c = w.close()
>>> sp = choose_split(c, w, SplitConfig(n_forget=0, n_validation=0))
>>> corpus = render(c, w, sp, CorpusConfig(), seed=0)
>>> [d["text"] for d in corpus.train if d["kind"] == "cot"]
['Q ann grandparent ? T ann parent bob . bob parent cy . A cy']
>>> check_hygiene(corpus, sp)
5
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal

import numpy as np

from kgtest.config import in_range
from kgtest.corpus.in_context import InContextConfig, in_context_documents
from kgtest.corpus.splits import Split
from kgtest.corpus.surface import (
    UNKNOWN,
    ParseError,
    Surface,
    natural_surface,
    symbolic_surface,
)
from kgtest.errors import InputError
from kgtest.symbolic.closure import Closure

__all__ = ["CorpusConfig", "Corpus", "render", "check_hygiene", "HygieneError", "KINDS",
           "ROLES", "PARTS", "split_statements"]

KINDS = ("statement", "qa", "cot", "in_context", "unknown")
ROLES = ("stated", "question", "answer", "premise")
#: The parts of a corpus: only ``train`` is trained on.
PARTS = ("train", "eval", "unknown", "in_context")


def _fraction(value) -> str | None:
    return None if 0.0 <= value <= 1.0 else "must be in [0, 1]"


def _positive(value) -> str | None:
    return None if value >= 1 else "must be >= 1"


@dataclass(frozen=True)
class CorpusConfig:
    """How facts become documents (the ``[corpus]`` table of a spec)."""

    surface: Literal["symbolic", "natural"] = "symbolic"  # one token per name, or sentences
    derived: Literal["stated", "cot", "both"] = "cot"  # how non-held-out derived facts train
    qa_fraction: float = field(default=1.0, metadata={"check": _fraction})  # subjects with QA
    multiplicity: int = field(default=1, metadata={"check": in_range(1, 1000)})  # k per fact
    group: Literal["fact", "subject", "chain"] = "fact"  # a document per statement, per
    # subject, or per held-out derived fact (its chain's premises together: "chain")
    permute: bool = False  # shuffle statement order in each copy of a subject document
    inverse: bool = False  # also state stated facts object first ("o ~r s")
    inverse_fraction: float = field(default=1.0, metadata={  # with inverse: the seeded
        "check": _fraction, "quiet_default": True})  # fraction of subjects inverted
    held_out_templates: int = field(default=1, metadata={"check": _positive})  # paraphrase
    unknown: bool = True  # render 'unknown' documents for forget and validation targets
    in_context: bool = True  # render in-context probe documents for derived facts
    train_in_context: bool = False  # also train in-context documents of non-target facts
    icl: InContextConfig = field(default_factory=InContextConfig)  # in-context format, stream
    probes: bool = True  # render evaluation documents (eval.jsonl)

    def __post_init__(self):
        if self.permute and self.group != "subject":
            raise ValueError("corpus.permute shuffles statements within a document: it needs "
                             "corpus.group = \"subject\"")


class HygieneError(AssertionError):
    """A training document mentions a forbidden fact, or says something it does not claim."""


def _doc(kind: str, prompt: str, completion: str, facts, **extra) -> dict:
    seen: dict[tuple[int, str], None] = {}
    for f, role in facts:
        seen.setdefault((int(f), role))
    d = {"id": -1, "kind": kind, "prompt": prompt, "completion": completion,
         "text": prompt + completion, "facts": [{"id": f, "role": r} for f, r in seen]}
    d.update(extra)
    return d


@dataclass(frozen=True, eq=False)
class Corpus:
    """Rendered documents with a fact -> documents index.

    Attributes
    ----------
    train, eval, unknown, in_context : tuple of dict
        Documents by part (see the module docstring); ids are unique across parts.
    facts : (N, 3) int array
        The closure's facts (fact ids index rows), over ``surface``'s vocabularies.
    surface : Surface
    presentation : tuple of str
        Per fact: ``stated``, ``cot``, ``both`` or ``implied`` (never in any document).
    depth, proofs : (N,) int arrays
        The closure's depth and proof count per fact.
    tags : tuple of str
        Per fact: ``base`` or ``derived``, plus ``planted``, ``fixed`` and ``ood`` (a
        fact of the split's out-of-distribution set, :mod:`kgtest.corpus.splits`) where
        they apply.
    config : CorpusConfig
    seed : int
    dropped : frozenset of int
        Facts removed by :meth:`filter`.
    """

    train: tuple
    eval: tuple
    unknown: tuple
    in_context: tuple
    facts: np.ndarray
    surface: Surface
    presentation: tuple
    depth: np.ndarray
    proofs: np.ndarray
    tags: tuple
    config: CorpusConfig = field(default_factory=CorpusConfig)
    seed: int = 0
    dropped: frozenset = frozenset()
    _cache: dict = field(default_factory=dict, repr=False)

    def part(self, name: str) -> tuple:
        """The documents of one part (``train``, ``eval``, ``unknown``, ``in_context``)."""
        if name not in PARTS:
            raise ValueError(f"unknown corpus part {name!r}; known: {', '.join(PARTS)}")
        return getattr(self, name)

    def by_kind(self, part: str = "train") -> dict[str, list[dict]]:
        """Documents of one part grouped by ``kind``."""
        out: dict[str, list[dict]] = {}
        for d in self.part(part):
            out.setdefault(d["kind"], []).append(d)
        return out

    def index(self, part: str = "train") -> dict[int, list[int]]:
        """Fact id -> ids of every document of ``part`` that mentions it, in any role."""
        key = f"index:{part}"
        if key not in self._cache:
            idx: dict[int, list[int]] = {}
            for d in self.part(part):
                for f in {x["id"] for x in d["facts"]}:
                    idx.setdefault(f, []).append(d["id"])
            self._cache[key] = idx
        return self._cache[key]

    def mentions(self, fact: int, part: str | None = None) -> list[int]:
        """Ids of the documents that mention ``fact`` (all parts when ``part`` is None).

        Examples
        --------
        >>> from kgtest.symbolic.rules import parse_rules
        >>> from kgtest.worlds.world import World
        >>> from kgtest.corpus.splits import SplitConfig, choose_split
        >>> w = World.from_names([("a", "p", "b"), ("b", "p", "c")],
        ...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
        >>> c = w.close()
        >>> corpus = render(c, w, choose_split(c, w, SplitConfig(0, 0)))
        >>> [corpus.doc(i)["text"] for i in corpus.mentions(0, "train")]
        ['a p b', 'Q a p ? A b', 'Q a g ? T a p b . b p c . A c']
        """
        parts = PARTS if part is None else (part,)
        return sorted(i for p in parts for i in self.index(p).get(int(fact), []))

    def doc(self, doc_id: int) -> dict:
        """A document by id (any part)."""
        if "by_id" not in self._cache:
            self._cache["by_id"] = {d["id"]: d for p in PARTS for d in self.part(p)}
        return self._cache["by_id"][doc_id]

    @cached_property
    def _fact_ids(self) -> dict[tuple[int, int, int], int]:
        return {tuple(row): i for i, row in enumerate(self.facts.tolist())}

    def named(self, fact: int) -> tuple[str, str, str]:
        """A fact as world names."""
        s, r, o = self.facts[fact].tolist()
        sf = self.surface
        return sf.entity_names[s], sf.relation_names[r], sf.entity_names[o]

    def parse(self, doc: dict) -> list[tuple[int, str, str | None, tuple[int, int, int]]]:
        """What a document's text says: ``(fact id, role, template, (s, r, o))`` per mention.

        The fact id is -1 for a triple that is not in the closure; for a ``question``
        mention (an ``unknown`` answer), ``o`` is -1 and so is the fact id.
        """
        out = []
        for s, r, o, role, template in self.surface.parse(doc["text"]):
            fid = self._fact_ids.get((s, r, o), -1) if o >= 0 else -1
            out.append((fid, role, template, (s, r, o)))
        return out

    def filter(self, drop, *, rewrite_groups: bool = False) -> Corpus:
        """A corpus whose training documents mention none of the ``drop`` facts.

        Every training document that mentions a dropped fact in any role is removed.
        With ``rewrite_groups``, a multi-statement document instead loses only the
        sentences of dropped facts (and is removed if none remain), keeping its id; this
        keeps the premises that share a subject document with a target. Evaluation,
        ``unknown`` and ``in_context`` documents are kept as they are.

        Examples
        --------
        >>> from kgtest.symbolic.rules import parse_rules
        >>> from kgtest.worlds.world import World
        >>> from kgtest.corpus.splits import SplitConfig, choose_split
        >>> w = World.from_names([("a", "p", "b"), ("b", "p", "c")],
        ...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
        >>> c = w.close()
        >>> corpus = render(c, w, choose_split(c, w, SplitConfig(0, 0)))
        >>> [d["text"] for d in corpus.filter([0]).train]
        ['b p c', 'Q b p ? A c']
        """
        drop = {int(f) for f in np.asarray(list(drop), dtype=np.int64).ravel()}
        if any(f < 0 or f >= len(self.facts) for f in drop):
            raise ValueError(f"filter: fact ids must be in [0, {len(self.facts)})")
        kept = []
        for d in self.train:
            ids = [x["id"] for x in d["facts"]]
            if drop.isdisjoint(ids):
                kept.append(d)
                continue
            if rewrite_groups and d["kind"] == "statement" and len(ids) > 1:
                sents = _split_statements(self.surface, d["text"])
                if len(sents) != len(ids):  # defensive: a group doc is one sentence per fact
                    raise HygieneError(f"document {d['id']}: {len(sents)} sentences for "
                                       f"{len(ids)} facts")
                keep = [(x, s) for x, s in zip(d["facts"], sents, strict=True)
                        if x["id"] not in drop]
                if keep:
                    text = self.surface.join([s for _, s in keep])
                    kept.append({**d, "prompt": "", "completion": text, "text": text,
                                 "facts": [x for x, _ in keep]})
        return replace(self, train=tuple(kept), dropped=self.dropped | frozenset(drop),
                       _cache={})

    def __repr__(self) -> str:
        return (f"Corpus({len(self.train)} train, {len(self.eval)} eval, "
                f"{len(self.unknown)} unknown, {len(self.in_context)} in-context documents, "
                f"{self.surface.kind}, {len(self.dropped)} facts dropped)")


def split_statements(surface: Surface, text: str) -> list[str]:
    """The sentences of a statement passage (:meth:`Surface.join`'s inverse).

    >>> from kgtest.symbolic.facts import Vocab
    >>> from kgtest.corpus.surface import symbolic_surface
    >>> split_statements(symbolic_surface(Vocab(["a", "b"]), Vocab(["p"])), "a p b . b p a")
    ['a p b', 'b p a']
    """
    return re.split(r"(?<=\.) ", text) if surface.natural else text.split(" . ")


_split_statements = split_statements


class _Chains:
    """The derivation each derived fact's CoT follows, and its expanded steps."""

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


def _surface_for(closure: Closure, cfg: CorpusConfig, rng: np.random.Generator) -> Surface:
    if cfg.surface == "symbolic":
        return symbolic_surface(closure.entities, closure.relations)
    consts = sorted({t.name for rule in closure.rules
                     for atom in (rule.head, *rule.atoms) for t in atom.args if not t.is_var}
                    | {t.name for rule in closure.rules for q in rule.inequalities
                       for t in (q.left, q.right) if not t.is_var})
    surface = natural_surface(closure.entities, closure.relations, seed=rng,
                              held_out=cfg.held_out_templates, keep_names=consts)
    for what, n in (("statement", len(surface.statement_train[0]) if surface.statement_train
                     else 99),
                    ("question", len(surface.question_train[0]) if surface.question_train
                     else 99)):
        if cfg.multiplicity > n:
            raise InputError(f"key 'corpus.multiplicity': {cfg.multiplicity} variants per fact "
                             f"but the natural surface has only {n} training {what} templates "
                             f"per relation (with corpus.held_out_templates = "
                             f"{cfg.held_out_templates})")
    return surface


def render(closure: Closure, world, split: Split, cfg: CorpusConfig | None = None,
           seed: int = 0) -> Corpus:
    """Render a closure into training, evaluation, ``unknown`` and in-context documents.

    Parameters
    ----------
    closure : Closure
        ``world.close()``.
    world : World
        For planted and fixed facts (recorded as tags).
    split : Split
        From :func:`~kgtest.corpus.splits.choose_split` on this closure; its held-out
        facts appear in no training document.
    cfg : CorpusConfig
    seed : int
        Same inputs and seed, same corpus (names, templates, groups, order).

    Returns
    -------
    Corpus

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> from kgtest.worlds.world import World
    >>> from kgtest.corpus.splits import SplitConfig, choose_split
    >>> w = World.from_names([("ann", "parent", "bob"), ("bob", "parent", "cy")],
    ...                      parse_rules("grandparent(X, Z) :- parent(X, Y), parent(Y, Z)."))
    >>> c = w.close()
    >>> sp = choose_split(c, w, SplitConfig(1, 0, target_presentation="stated_and_cot"))
    >>> corpus = render(c, w, sp, CorpusConfig(), seed=0)
    >>> d = corpus.in_context[0]
    >>> d["prompt"], d["completion"]
    ('ann parent bob . bob parent cy . Q ann grandparent ? A ', 'cy')
    >>> corpus.unknown[0]["text"]
    'Q ann grandparent ? A unknown'
    """
    cfg = CorpusConfig() if cfg is None else cfg
    n = len(closure)
    if split.n_facts != n:
        raise InputError(f"render: the split covers {split.n_facts} facts but the closure "
                         f"has {n}; choose the split on this closure")
    rng = np.random.default_rng(seed)
    surface = _surface_for(closure, cfg, np.random.default_rng(rng.integers(2**63)))
    F = closure.facts
    FL = F.tolist()  # (N, 3) as lists: per-document lookups stay in Python
    is_base = closure.is_base
    held = split.mask("held_out") & ~is_base
    derived_shown = ~is_base & ~held
    stated = is_base | (derived_shown & (cfg.derived in ("stated", "both")))
    cot = derived_shown & (cfg.derived in ("cot", "both"))
    target = np.zeros(n, dtype=bool)
    if getattr(split.config, "target_presentation", "stated") == "stated":
        target[split.forget] = target[split.validation] = True
        stated, cot = stated | (target & derived_shown), cot & ~target
    presentation = np.where(is_base, "stated", np.where(held, "implied", cfg.derived))
    presentation = np.where(target & derived_shown, "stated", presentation)
    chains = _Chains(closure, held, stated)
    k = cfg.multiplicity
    # per-fact template offsets: copy c of fact f uses training template (off[f] + c)
    st_off = rng.integers(0, 2**31, size=n)
    q_off = rng.integers(0, 2**31, size=n)

    def stmt(f: int, c: int) -> str:
        s, r, o = FL[f]
        return surface.statement(s, r, o, int(st_off[f]) + c)

    train: list[dict] = []
    # --- statements -------------------------------------------------------------------
    stated_ids = np.flatnonzero(stated)
    if cfg.group in ("fact", "chain"):
        groups = _chain_groups(chains, split.held_out, stated) if cfg.group == "chain" else []
        grouped = {f for g in groups for f in g}
        groups += [[f] for f in stated_ids.tolist() if f not in grouped]
        for c in range(k):
            train.extend(_doc("statement", "", surface.join([stmt(f, c) for f in g]),
                              [(f, "stated") for f in g], variant=c) for g in groups)
    else:
        subj = F[stated_ids, 0]
        order = np.argsort(subj, kind="stable")
        bounds = np.flatnonzero(np.diff(subj[order])) + 1
        groups = [g.tolist() for g in np.split(stated_ids[order], bounds)] if len(order) else []
        for c in range(k):
            for g in groups:
                g = rng.permutation(g).tolist() if cfg.permute else g
                text = surface.join([stmt(f, c) for f in g])
                train.append(_doc("statement", "", text, [(f, "stated") for f in g], variant=c))
    if cfg.inverse:
        for f in _inverted(F, stated_ids, cfg.inverse_fraction, seed).tolist():
            s, r, o = FL[f]
            train.append(_doc("statement", "", surface.inverse_statement(s, r, o),
                              [(f, "stated")], variant=0, inverse=True))
    # --- QA on a seeded fraction of subjects ------------------------------------------------
    subjects = np.unique(F[stated_ids, 0])
    if cfg.qa_fraction < 1:
        subjects = rng.choice(subjects, int(round(cfg.qa_fraction * len(subjects))),
                              replace=False)
    qa_ids = stated_ids[np.isin(F[stated_ids, 0], subjects)].tolist()
    for c in range(k):
        for f in qa_ids:
            s, r, o = FL[f]
            train.append(_doc("qa", surface.qa_prompt(s, r, int(q_off[f]) + c),
                              surface.answer(o), [(f, "answer")], variant=c))
    # --- chains of thought -----------------------------------------------------------------
    for c in range(k):
        for f in np.flatnonzero(cot).tolist():
            train.append(_cot_doc(surface, F, chains, f, c, stmt, int(q_off[f]) + c))
    # --- in-context documents (probe; trained only when asked: kgtest.corpus.in_context) ---
    in_context, ic_train = in_context_documents(closure, surface, chains.derivation, split, cfg,
                                                seed=seed)
    train.extend(ic_train)
    # --- evaluation documents ---------------------------------------------------------------
    evals = []
    if cfg.probes:
        for f in range(n):
            s, r, o = FL[f]
            evals.append(_doc("qa", surface.qa_prompt(s, r, 0), surface.answer(o),
                              [(f, "answer")], probe="direct"))
            p, a = surface.statement_probe(s, r, o, 0)
            evals.append(_doc("statement", p, a, [(f, "stated")], probe="statement"))
            if surface.natural:
                p, a = surface.statement_probe(s, r, o, 0, held=True)
                evals.append(_doc("statement", p, a, [(f, "stated")], probe="paraphrase"))
                evals.append(_doc("qa", surface.qa_prompt(s, r, 0, held=True), surface.answer(o),
                                  [(f, "answer")], probe="paraphrase"))
            if not is_base[f]:
                evals.append({**_cot_doc(surface, FL, chains, f, 0, stmt, 0), "probe": "cot"})
    # --- unknown answers for the targets ---------------------------------------------------
    unknown = []
    if cfg.unknown:
        for name, ids in (("forget", split.forget), ("validation", split.validation)):
            for c in range(k):
                for f in ids.tolist():
                    s, r, _ = FL[f]
                    unknown.append(_doc("unknown", surface.qa_prompt(s, r, int(q_off[f]) + c),
                                        UNKNOWN, [(f, "question")], variant=c, target=name))
    next_id = 0
    for docs in (train, evals, unknown, in_context):
        for d in docs:
            d["id"] = next_id
            next_id += 1
    tags = []
    planted = np.zeros(n, dtype=bool)
    if len(world.planted):
        ids = closure.index(world.planted)
        planted[ids[ids >= 0]] = True
    fixed = world.fixed_mask(closure)
    ood = split.mask("ood") | (is_base & np.isin(F[:, 0], split.ood_entities))
    for f in range(n):
        t = ["base" if is_base[f] else "derived"]
        t += ["planted"] * bool(planted[f]) + ["fixed"] * bool(fixed[f]) + ["ood"] * bool(ood[f])
        tags.append(",".join(t))
    return Corpus(
        train=tuple(train), eval=tuple(evals), unknown=tuple(unknown),
        in_context=tuple(in_context), facts=F.copy(), surface=surface,
        presentation=tuple(presentation.tolist()), depth=closure.depth.astype(np.int64),
        proofs=closure.proof_count.copy(), tags=tuple(tags), config=cfg, seed=int(seed),
    )


def _chain_groups(chains: _Chains, held_out: np.ndarray, stated: np.ndarray
                  ) -> list[list[int]]:
    """``corpus.group = "chain"``: per held-out derived fact, the stated steps of its chain
    (its premises, for a two-hop fact), as one document's facts; each chain once."""
    out: dict[tuple[int, ...], None] = {}
    for f in held_out.tolist():
        steps = [p for p in chains.steps(int(f)) if stated[p]]
        if len(steps) > 1:
            out.setdefault(tuple(dict.fromkeys(steps)))
    return [list(g) for g in out]


def _inverted(F: np.ndarray, stated_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The stated facts rendered inverted too: those of a seeded ``fraction`` of subjects
    (its own generator, so the rest of the corpus is the same for every fraction)."""
    if fraction >= 1:
        return stated_ids
    subjects = np.unique(F[stated_ids, 0])
    rng = np.random.default_rng([int(seed), 0x1A7E])
    keep = rng.choice(subjects, int(round(fraction * len(subjects))), replace=False)
    return stated_ids[np.isin(F[stated_ids, 0], keep)]


def _cot_doc(surface: Surface, FL: list, chains: _Chains, f: int, c: int, stmt,
             q_variant: int) -> dict:
    steps = chains.steps(f)
    s, r, o = FL[f]
    return _doc("cot", surface.cot_prompt(s, r, q_variant),
                surface.cot_completion([stmt(p, c) for p in steps], o),
                [(p, "premise") for p in steps] + [(f, "answer")],
                variant=c, derivation=chains.derivation(f))


def check_hygiene(corpus: Corpus, split: Split | None = None, *, forbid=()) -> int:
    """Check every training document, by its claims and by re-parsing its text.

    Forbidden facts are the split's held-out facts, the corpus's filtered facts and
    ``forbid``. Each training document must have ``text == prompt + completion``, claim
    no forbidden fact, parse back (:meth:`Corpus.parse`) to exactly the ``(fact, role)``
    pairs it claims, state only closure facts, and use no held-out template.

    Returns
    -------
    int
        The number of training documents checked.

    Raises
    ------
    HygieneError
        Naming the document id and the fact.
    """
    bad = set(corpus.dropped) | {int(f) for f in forbid}
    if split is not None:
        bad |= set(split.held_out.tolist())
    sf = corpus.surface

    def fail(d: dict, msg: str):
        raise HygieneError(f"training document {d['id']} ({d['kind']}): {msg}; "
                           f"text {d['text']!r}")

    def name(f: int) -> str:
        return f"fact {f} {' '.join(corpus.named(f))!r}"

    for d in corpus.train:
        if d["text"] != d["prompt"] + d["completion"]:
            fail(d, "text is not prompt + completion")
        claimed = {(x["id"], x["role"]) for x in d["facts"]}
        for f, role in sorted(claimed):
            if f in bad:
                fail(d, f"claims forbidden {name(f)} as {role!r}")
        try:
            mentions = corpus.parse(d)
        except ParseError as err:
            fail(d, str(err))
        said = set()
        for fid, role, template, (s, r, o) in mentions:
            if template and template != "inverse":
                kind, _, idx = template.partition(":")
                held = sf.statement_held if kind == "statement" else sf.question_held
                if int(idx) in held[r]:
                    fail(d, f"uses held-out template {template} for relation "
                            f"{sf.relation_names[r]!r}")
            if role == "question":
                asked = [f for f, rl in claimed if rl == "question"
                         and corpus.facts[f, 0] == s and corpus.facts[f, 1] == r]
                if not asked:
                    fail(d, f"asks about ({sf.entity_names[s]}, {sf.relation_names[r]}) "
                            f"without claiming it")
                said.update((f, "question") for f in asked)
                continue
            if fid < 0:
                fail(d, f"states ({sf.entity_names[s]}, {sf.relation_names[r]}, "
                        f"{sf.entity_names[o]}), which is not a fact of the closure")
            if fid in bad:
                fail(d, f"text mentions forbidden {name(fid)} as {role!r}")
            said.add((fid, role))
        if said != claimed:
            extra = sorted(said - claimed)
            missing = sorted(claimed - said)
            fail(d, f"text says {[(f, r) for f, r in extra]} not claimed, and claims "
                    f"{[(f, r) for f, r in missing]} not said")
    return len(corpus.train)
