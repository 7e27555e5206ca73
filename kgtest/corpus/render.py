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

A chain of thought follows one shortest derivation of the fact and writes only facts the
model has seen stated, or that follow from the steps before them: never a held-out fact
(:mod:`kgtest.corpus.chains`). Every training document passes :func:`check_hygiene`
(:mod:`kgtest.corpus.hygiene`).

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

from kgtest.config import in_range, positive
from kgtest.corpus.chains import Chains, chain_groups
from kgtest.corpus.hygiene import HygieneError, check_hygiene
from kgtest.corpus.in_context import InContextConfig, in_context_documents
from kgtest.corpus.splits import Split
from kgtest.corpus.surface import (
    UNKNOWN,
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
    held_out_templates: int = field(default=1, metadata={"check": positive})  # paraphrase
    unknown: bool = True  # render 'unknown' documents for forget and validation targets
    in_context: bool = True  # render in-context probe documents for derived facts
    train_in_context: bool = False  # also train in-context documents of non-target facts
    icl: InContextConfig = field(default_factory=InContextConfig)  # in-context format, stream
    probes: bool = True  # render evaluation documents (eval.jsonl)

    def __post_init__(self):
        if self.permute and self.group != "subject":
            raise ValueError("corpus.permute shuffles statements within a document: it needs "
                             "corpus.group = \"subject\"")


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
                sents = split_statements(self.surface, d["text"])
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
    held, stated, cot, presentation = _presentation(closure, split, cfg)
    # per-fact template offsets: copy c of fact f uses training template (off[f] + c)
    st_off = rng.integers(0, 2**31, size=n)
    q_off = rng.integers(0, 2**31, size=n)
    w = _Writer(surface, closure.facts.tolist(), Chains(closure, held, stated), st_off, q_off)
    train = _statements(w, closure, split, cfg, stated, rng, seed)
    train += _qa(w, closure, cfg, stated, rng)
    train += [w.cot(f, c, int(q_off[f]) + c)
              for c in range(cfg.multiplicity) for f in np.flatnonzero(cot).tolist()]
    # in-context documents (probe; trained only when asked: kgtest.corpus.in_context)
    in_context, ic_train = in_context_documents(closure, surface, w.chains.derivation, split,
                                                cfg, seed=seed)
    train.extend(ic_train)
    evals = _eval_docs(w, closure) if cfg.probes else []
    unknown = _unknown_docs(w, split, cfg) if cfg.unknown else []
    next_id = 0
    for docs in (train, evals, unknown, in_context):
        for d in docs:
            d["id"] = next_id
            next_id += 1
    return Corpus(
        train=tuple(train), eval=tuple(evals), unknown=tuple(unknown),
        in_context=tuple(in_context), facts=closure.facts.copy(), surface=surface,
        presentation=tuple(presentation.tolist()), depth=closure.depth.astype(np.int64),
        proofs=closure.proof_count.copy(), tags=_tags(closure, world, split),
        config=cfg, seed=int(seed),
    )


def _presentation(closure: Closure, split: Split, cfg: CorpusConfig
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(N,)`` masks of the held-out derived facts, the facts stated and those trained by
    CoT, and each fact's presentation (``stated``, ``cot``, ``both`` or ``implied``)."""
    is_base = closure.is_base
    held = split.mask("held_out") & ~is_base
    derived_shown = ~is_base & ~held
    stated = is_base | (derived_shown & (cfg.derived in ("stated", "both")))
    cot = derived_shown & (cfg.derived in ("cot", "both"))
    target = np.zeros(len(closure), dtype=bool)
    if getattr(split.config, "target_presentation", "stated") == "stated":
        target[split.forget] = target[split.validation] = True
        stated, cot = stated | (target & derived_shown), cot & ~target
    presentation = np.where(is_base, "stated", np.where(held, "implied", cfg.derived))
    presentation = np.where(target & derived_shown, "stated", presentation)
    return held, stated, cot, presentation


@dataclass(frozen=True)
class _Writer:
    """The text of single facts: the surface, the facts ``(N, 3)`` as lists (per-document
    lookups stay in Python), their chains and their template offsets."""

    surface: Surface
    FL: list
    chains: Chains
    st_off: np.ndarray
    q_off: np.ndarray

    def stmt(self, f: int, c: int) -> str:
        """Copy ``c`` of fact ``f``'s statement."""
        s, r, o = self.FL[f]
        return self.surface.statement(s, r, o, int(self.st_off[f]) + c)

    def cot(self, f: int, c: int, q_variant: int) -> dict:
        """Copy ``c`` of fact ``f``'s chain-of-thought document."""
        steps = self.chains.steps(f)
        s, r, o = self.FL[f]
        return _doc("cot", self.surface.cot_prompt(s, r, q_variant),
                    self.surface.cot_completion([self.stmt(p, c) for p in steps], o),
                    [(p, "premise") for p in steps] + [(f, "answer")],
                    variant=c, derivation=self.chains.derivation(f))


def _statements(w: _Writer, closure: Closure, split: Split, cfg: CorpusConfig,
                stated: np.ndarray, rng: np.random.Generator, seed: int) -> list[dict]:
    """Statement documents, grouped by ``corpus.group``, then the inverted ones."""
    train: list[dict] = []
    F, k = closure.facts, cfg.multiplicity
    stated_ids = np.flatnonzero(stated)
    if cfg.group in ("fact", "chain"):
        groups = chain_groups(w.chains, split.held_out, stated) if cfg.group == "chain" else []
        grouped = {f for g in groups for f in g}
        groups += [[f] for f in stated_ids.tolist() if f not in grouped]
        for c in range(k):
            train.extend(_doc("statement", "", w.surface.join([w.stmt(f, c) for f in g]),
                              [(f, "stated") for f in g], variant=c) for g in groups)
    else:
        subj = F[stated_ids, 0]
        order = np.argsort(subj, kind="stable")
        bounds = np.flatnonzero(np.diff(subj[order])) + 1
        groups = [g.tolist() for g in np.split(stated_ids[order], bounds)] if len(order) else []
        for c in range(k):
            for g in groups:
                g = rng.permutation(g).tolist() if cfg.permute else g
                text = w.surface.join([w.stmt(f, c) for f in g])
                train.append(_doc("statement", "", text, [(f, "stated") for f in g], variant=c))
    if cfg.inverse:
        for f in _inverted(F, stated_ids, cfg.inverse_fraction, seed).tolist():
            s, r, o = w.FL[f]
            train.append(_doc("statement", "", w.surface.inverse_statement(s, r, o),
                              [(f, "stated")], variant=0, inverse=True))
    return train


def _qa(w: _Writer, closure: Closure, cfg: CorpusConfig, stated: np.ndarray,
        rng: np.random.Generator) -> list[dict]:
    """QA documents for the stated facts of a seeded ``qa_fraction`` of subjects."""
    F = closure.facts
    stated_ids = np.flatnonzero(stated)
    subjects = np.unique(F[stated_ids, 0])
    if cfg.qa_fraction < 1:
        subjects = rng.choice(subjects, int(round(cfg.qa_fraction * len(subjects))),
                              replace=False)
    qa_ids = stated_ids[np.isin(F[stated_ids, 0], subjects)].tolist()
    out = []
    for c in range(cfg.multiplicity):
        for f in qa_ids:
            s, r, o = w.FL[f]
            out.append(_doc("qa", w.surface.qa_prompt(s, r, int(w.q_off[f]) + c),
                            w.surface.answer(o), [(f, "answer")], variant=c))
    return out


def _eval_docs(w: _Writer, closure: Closure) -> list[dict]:
    """Evaluation documents (never trained): direct, statement, paraphrase, cot probes."""
    evals = []
    surface = w.surface
    for f in range(len(closure)):
        s, r, o = w.FL[f]
        evals.append(_doc("qa", surface.qa_prompt(s, r, 0), surface.answer(o),
                          [(f, "answer")], probe="direct"))
        p, a = surface.statement_probe(s, r, o, 0)
        evals.append(_doc("statement", p, a, [(f, "stated")], probe="statement"))
        if surface.natural:
            p, a = surface.statement_probe(s, r, o, 0, held=True)
            evals.append(_doc("statement", p, a, [(f, "stated")], probe="paraphrase"))
            evals.append(_doc("qa", surface.qa_prompt(s, r, 0, held=True), surface.answer(o),
                              [(f, "answer")], probe="paraphrase"))
        if not closure.is_base[f]:
            evals.append({**w.cot(f, 0, 0), "probe": "cot"})
    return evals


def _unknown_docs(w: _Writer, split: Split, cfg: CorpusConfig) -> list[dict]:
    """``unknown`` answers to every forget and validation target's question."""
    unknown = []
    for name, ids in (("forget", split.forget), ("validation", split.validation)):
        for c in range(cfg.multiplicity):
            for f in ids.tolist():
                s, r, _ = w.FL[f]
                unknown.append(_doc("unknown", w.surface.qa_prompt(s, r, int(w.q_off[f]) + c),
                                    UNKNOWN, [(f, "question")], variant=c, target=name))
    return unknown


def _tags(closure: Closure, world, split: Split) -> tuple[str, ...]:
    """Per fact: ``base``/``derived``, plus ``planted``, ``fixed``, ``ood`` that apply."""
    n, F, is_base = len(closure), closure.facts, closure.is_base
    planted = np.zeros(n, dtype=bool)
    if len(world.planted):
        ids = closure.index(world.planted)
        planted[ids[ids >= 0]] = True
    fixed = world.fixed_mask(closure)
    ood = split.mask("ood") | (is_base & np.isin(F[:, 0], split.ood_entities))
    tags = []
    for f in range(n):
        t = ["base" if is_base[f] else "derived"]
        t += ["planted"] * bool(planted[f]) + ["fixed"] * bool(fixed[f]) + ["ood"] * bool(ood[f])
        tags.append(",".join(t))
    return tuple(tags)


def _inverted(F: np.ndarray, stated_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The stated facts rendered inverted too: those of a seeded ``fraction`` of subjects
    (its own generator, so the rest of the corpus is the same for every fraction)."""
    if fraction >= 1:
        return stated_ids
    subjects = np.unique(F[stated_ids, 0])
    rng = np.random.default_rng([int(seed), 0x1A7E])
    keep = rng.choice(subjects, int(round(fraction * len(subjects))), replace=False)
    return stated_ids[np.isin(F[stated_ids, 0], keep)]
