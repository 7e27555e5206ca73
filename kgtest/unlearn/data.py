"""What to forget, what to keep, and how to score it: forget sets from a corpus and targets.

- :func:`deletion_sets`: for deep unlearning, the smallest minimal deletion set of each
  target found by the symbolic core (:func:`kgtest.symbolic.deletion.minimal_deletion_sets`).
- :func:`forget_set`: what one unlearning run forgets: the training documents that render
  a forgotten fact (of the kinds in ``kinds``: by default every kind it was trained in) and,
  for deep runs, every document that *uses* a deleted fact (CoT chains, in-context
  premises). **Every method gets the same documents**: each becomes one *forget unit* per
  forgotten fact it renders, and a unit has two aligned forms,

  ``docs``       ``(prompt, completion)`` for likelihood methods (GradAscent, GradDiff,
                 NPO, SimNPO, RMU): a statement's loss is masked to the target's sentence
                 (in a subject document, the sentences before it are the prompt, the ones
                 after it are dropped); a question, chain or in-context document is kept
                 as it is (loss on its completion);
  ``pair_docs``  the same unit as a pair at the object position, for pair methods
                 (IdkSFT, IdkDPO): a statement is cut before its object (the completion is
                 the object), a question keeps its prompt; ``idk_docs`` answers the same
                 prompts ``unknown``.

  :func:`method_docs` is what a method is given. Each unit records ``source`` (the
  training document's id) and ``fact`` (the forgotten fact it is masked to).
- :func:`retain_docs`: training documents that mention none of a set of facts; subject
  documents lose only those facts' sentences, so the retain loss never sees a target's
  sentence and still sees its neighbours.
- :func:`direct_docs`, :func:`direct_accuracy`, :func:`chance_level`,
  :func:`majority_floor`: the direct probe (greedy answer to ``Q s r ?``, exact match) on
  chosen facts, its chance level and its most-frequent-object floor.

Examples
--------
>>> from kgtest.symbolic.rules import parse_rules
>>> from kgtest.worlds.world import World
>>> from kgtest.corpus.render import render, CorpusConfig
>>> from kgtest.corpus.splits import SplitConfig, choose_split
>>> w = World.from_names([("a", "p", "b"), ("b", "p", "c")],
...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
>>> c = w.close()
>>> corpus = render(c, w, choose_split(c, w, SplitConfig(0, 0)), CorpusConfig(derived="both"))
>>> fs = forget_set(corpus, [2])
>>> [d["text"] for d in fs.docs]
['a g c', 'Q a g ? A c', 'Q a g ? T a p b . b p c . A c']
>>> for p, q in zip(fs.pair_docs, fs.idk_docs):
...     print(repr(p["prompt"]), repr(p["completion"]), repr(q["completion"]))
'a g ' 'c' 'unknown'
'Q a g ? A ' 'c' 'unknown'
'Q a g ? T ' 'a p b . b p c . A c' 'unknown'
>>> forget_set(corpus, [2], kinds=("statement", "qa")).n_by_kind
{'qa': 1, 'statement': 1}
>>> fs = forget_set(corpus, [2], deep=True, closure=c)
>>> fs.extra, [c.named(f) for f in fs.facts], fs.n_using
(1, [('a', 'p', 'b'), ('a', 'g', 'c')], 0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kgtest.corpus.render import Corpus, split_statements
from kgtest.corpus.surface import UNKNOWN
from kgtest.errors import InputError
from kgtest.scoring import greedy_complete
from kgtest.several import direct_hits, question_truth, true_objects
from kgtest.symbolic.closure import Closure
from kgtest.symbolic.deletion import minimal_deletion_sets

__all__ = ["ForgetSet", "deletion_sets", "forget_set", "method_docs", "retain_docs",
           "direct_docs", "FORGET_KINDS",
           "direct_accuracy", "chance_level", "majority_floor", "check_targets"]

#: Roles in which a document renders a fact itself (rather than using it).
OWN_ROLES = ("stated", "answer")
#: Training document kinds a forget set may take (``unlearn.forget_kinds``).
FORGET_KINDS = ("statement", "qa", "cot", "in_context")


@dataclass(frozen=True)
class ForgetSet:
    """The documents and facts one unlearning run forgets (see the module docstring).

    Attributes
    ----------
    targets : (k,) int array
        The fact ids asked for.
    facts : (m,) int array
        Every fact forgotten: the targets plus, when deep, their deletion sets (sorted).
    extra : int
        ``m - k``: facts beyond the targets (what deep unlearning cost).
    docs, pair_docs, idk_docs : tuple of dict
        Forget units, aligned: the likelihood form, the pair form, and the pair form
        answered ``unknown``. Each has ``source`` (training document id) and ``fact``.
    source_ids : tuple of int
        Distinct training documents the units come from, sorted.
    n_by_kind : dict
        Training documents forgotten, by kind.
    n_using : int
        Of them, documents that only *use* a forgotten fact (a CoT step, an in-context
        premise): what deep unlearning adds beyond the documents stating a deleted fact.
    deletion_sets : dict
        Target -> the smallest minimal deletion set found (deep only; includes the target).
    kinds : tuple of str
        The document kinds forgotten.
    """

    targets: np.ndarray
    facts: np.ndarray
    extra: int
    docs: tuple
    pair_docs: tuple
    idk_docs: tuple
    source_ids: tuple = ()
    n_by_kind: dict = field(default_factory=dict)
    n_using: int = 0
    deletion_sets: dict = field(default_factory=dict)
    kinds: tuple = FORGET_KINDS

    def summary(self) -> dict:
        """JSON-able ids and counts (for ``unlearn.json``)."""
        return {"targets": self.targets.tolist(), "facts": self.facts.tolist(),
                "extra_facts": self.extra, "kinds": list(self.kinds),
                "n_docs": len(self.source_ids), "n_units": len(self.docs),
                "n_by_kind": self.n_by_kind, "n_using": self.n_using,
                "doc_ids": list(self.source_ids),
                "deletion_sets": {str(k): v for k, v in self.deletion_sets.items()}}


def method_docs(fs: ForgetSet, pairs: bool) -> tuple[tuple, tuple | None]:
    """``(forget documents, idk documents or None)`` for a method: the same units for all.

    ``pairs``: the method's ``MethodSpec.pairs`` (IdkSFT, IdkDPO).
    """
    return (fs.pair_docs, fs.idk_docs) if pairs else (fs.docs, None)


def check_targets(corpus: Corpus, targets: Iterable[int], *, what: str = "targets"
                  ) -> np.ndarray:
    """Targets as a sorted int array; ids outside the world's facts or none at all refused.

    >>> from types import SimpleNamespace
    >>> c = SimpleNamespace(facts=np.zeros((5, 3)))
    >>> check_targets(c, [3, 1]).tolist()
    [1, 3]
    >>> check_targets(c, [7])
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: unlearn: targets [7] are not facts of this world (fact ids ...)
    """
    arr = np.unique(np.asarray(list(targets), dtype=np.int64).ravel())
    if len(arr) == 0:
        raise InputError(f"unlearn: no {what} to forget (the forget set is empty)")
    bad = arr[(arr < 0) | (arr >= len(corpus.facts))]
    if len(bad):
        raise InputError(f"unlearn: {what} {bad.tolist()} are not facts of this world "
                         f"(fact ids are 0..{len(corpus.facts) - 1})")
    return arr


def deletion_sets(closure: Closure, targets: Iterable[int], *, kb=None, fixed=None,
                  restarts: int = 100, time_limit: float | None = 5.0,
                  seed: int = 0) -> dict[int, list[int]]:
    """The smallest minimal deletion set found for each target (each includes the target).

    ``kb`` (the facts the model may be said to know; default: every closure fact not
    fixed) and ``fixed`` (never deleted) are as in
    :func:`~kgtest.symbolic.deletion.minimal_deletion_sets`.
    """
    out = {}
    for t in targets:
        res = minimal_deletion_sets(closure, int(t), kb=kb, fixed=fixed, count=1,
                                    restarts=restarts, time_limit=time_limit,
                                    seed=seed + int(t))
        out[int(t)] = res.smallest.tolist()
    return out


def _idk_text(corpus: Corpus) -> str:
    return corpus.unknown[0]["completion"] if corpus.unknown else UNKNOWN


def _sentences(corpus: Corpus, doc: dict) -> list[str]:
    """A statement document's sentences, one per fact it claims."""
    if len(doc["facts"]) == 1:
        return [doc["text"]]
    sents = split_statements(corpus.surface, doc["text"])
    if len(sents) != len(doc["facts"]):
        raise InputError(f"unlearn: training document {doc['id']}: {len(sents)} sentences "
                         f"for {len(doc['facts'])} facts")
    return sents


def _cut_object(corpus: Corpus, sentence: str, fact: int, inverse: bool) -> tuple[str, str]:
    """A statement sentence cut at its object: ``(before, object)`` (inverse: object first)."""
    obj = corpus.surface.entity_display[int(corpus.facts[fact, 2])]
    if inverse and sentence.startswith(obj):
        return "", obj
    for tail in (obj + ".", obj):
        if sentence.endswith(tail):
            return sentence[: len(sentence) - len(tail)], obj
    return "", sentence  # defensive: no object at the end, the whole sentence is the answer


def _units(corpus: Corpus, doc: dict, wanted: set, idk: str) -> list[tuple[dict, dict, dict]]:
    """A forget document's units: (likelihood form, pair form, idk form) per forgotten fact."""
    base = {"source": doc["id"], "kind": doc["kind"]}
    if doc["kind"] != "statement":
        fact = next((x["id"] for x in doc["facts"] if x["id"] in wanted
                     and x["role"] in OWN_ROLES), None)
        if fact is None:
            fact = next(x["id"] for x in doc["facts"] if x["id"] in wanted)
        unit = {**base, "prompt": doc["prompt"], "completion": doc["completion"],
                "text": doc["text"], "fact": int(fact), "facts": list(doc["facts"])}
        return [(unit, unit, {**unit, "completion": idk, "text": doc["prompt"] + idk})]
    out = []
    sents = _sentences(corpus, doc)
    sep = " " if corpus.surface.natural else " . "
    for i, (x, sent) in enumerate(zip(doc["facts"], sents, strict=True)):
        if x["id"] not in wanted:
            continue
        before = sep.join(sents[:i]) + sep if i else ""
        unit = {**base, "prompt": before, "completion": sent, "text": before + sent,
                "fact": int(x["id"]), "facts": [dict(x)]}
        head, obj = _cut_object(corpus, sent, x["id"], bool(doc.get("inverse")))
        pair = {**unit, "prompt": before + head, "completion": obj, "text": before + head + obj}
        out.append((unit, pair, {**pair, "completion": idk, "text": before + head + idk}))
    return out


def forget_set(corpus: Corpus, targets: Iterable[int], *, deep: bool = False,
               closure: Closure | None = None, kb=None, fixed=None,
               kinds: Sequence[str] | None = None, include_cot_premise_docs: bool = False,
               restarts: int = 100, time_limit: float | None = 5.0, seed: int = 0
               ) -> ForgetSet:
    """The forget set of some target facts (see the module docstring).

    Parameters
    ----------
    corpus : Corpus
    targets : iterable of int
        Closure fact ids.
    deep : bool
        Also forget the smallest minimal deletion set of each target (needs ``closure``;
        ``kb`` and ``fixed`` as in :func:`deletion_sets`), and every document that uses a
        forgotten fact as a premise (CoT chains, in-context premises).
    kinds : sequence of str, optional
        Document kinds to forget (:data:`FORGET_KINDS`); None: every kind.
    include_cot_premise_docs : bool
        Also forget documents that use a forgotten fact as a premise when not deep.

    Raises
    ------
    InputError
        No targets, targets not in the world, an unknown kind, or no training document of
        those kinds renders them.
    """
    targets = check_targets(corpus, targets)
    kinds = FORGET_KINDS if kinds is None else tuple(kinds)
    bad = [k for k in kinds if k not in FORGET_KINDS]
    if bad or not kinds:
        raise InputError(f"unlearn.forget_kinds: unknown or empty kinds {bad} (known: "
                         f"{', '.join(FORGET_KINDS)})")
    sets: dict[int, list[int]] = {}
    facts = targets
    if deep:
        if closure is None:
            raise ValueError("forget_set: deep=True needs the closure")
        sets = deletion_sets(closure, targets, kb=kb, fixed=fixed, restarts=restarts,
                             time_limit=time_limit, seed=seed)
        facts = np.unique(np.concatenate([targets, *[np.asarray(s, dtype=np.int64)
                                                      for s in sets.values()]]))
    wanted = set(facts.tolist())
    roles = OWN_ROLES + (("premise",) if deep or include_cot_premise_docs else ())
    docs = [d for d in corpus.train if d["kind"] in kinds
            and any(x["id"] in wanted and x["role"] in roles for x in d["facts"])]
    if not docs:
        raise InputError(f"unlearn: no training document of kinds {', '.join(kinds)} renders "
                         f"the targets {targets.tolist()[:10]}: nothing to forget (the "
                         f"forget set is empty)")
    idk = _idk_text(corpus)
    units = [u for d in docs for u in _units(corpus, d, wanted, idk)]
    using = sum(1 for d in docs if not any(x["id"] in wanted and x["role"] in OWN_ROLES
                                           for x in d["facts"]))
    by_kind: dict[str, int] = {}
    for d in docs:
        by_kind[d["kind"]] = by_kind.get(d["kind"], 0) + 1
    return ForgetSet(targets=targets, facts=facts, extra=len(facts) - len(targets),
                     docs=tuple(u[0] for u in units), pair_docs=tuple(u[1] for u in units),
                     idk_docs=tuple(u[2] for u in units),
                     source_ids=tuple(sorted(d["id"] for d in docs)),
                     n_by_kind=dict(sorted(by_kind.items())), n_using=using,
                     deletion_sets=sets, kinds=kinds)


def retain_docs(corpus: Corpus, avoid: Iterable[int]) -> tuple:
    """Training documents that mention none of ``avoid`` in any role; a subject document
    loses only the sentences of ``avoid`` facts (:meth:`Corpus.filter` with
    ``rewrite_groups``), so the retain loss never sees a forgotten fact's sentence."""
    avoid = [int(f) for f in avoid]
    if not avoid:
        return tuple(corpus.train)
    return corpus.filter(avoid, rewrite_groups=True).train


def direct_docs(corpus: Corpus, facts: Iterable[int]) -> tuple:
    """The direct-probe evaluation documents (``Q s r ? A`` -> object) of some facts.

    A fact whose ``(s, r)`` has several true objects gets a copy of its document with a
    ``several`` key (:func:`kgtest.several.question_truth`, every entity a candidate), so
    :func:`direct_accuracy` judges it as the probes do.
    """
    want = {int(f) for f in facts}
    docs = [d for d in corpus.eval if d.get("probe") == "direct"
            and any(x["role"] == "answer" and x["id"] in want for x in d["facts"])]
    truth = true_objects(corpus.facts)
    if all(len(v) == 1 for v in truth.values()):
        return tuple(docs)
    out = []
    for d in docs:
        f = next(x["id"] for x in d["facts"] if x["role"] == "answer")
        t = question_truth(corpus, f, truth=truth)
        out.append(d if t is None else {**d, "several": t})
    return tuple(out)


def direct_accuracy(model, tokenizer, docs: Sequence[dict]) -> float:
    """Fraction of documents whose greedy completion is the true answer: exactly, or for a
    document with several true objects (its ``several`` key, :func:`direct_docs`) by the
    probes' rule (:mod:`kgtest.several`: filtered rank 1 and a true object).

    Returns nan for no documents.
    """
    if not docs:
        return float("nan")
    longest = max(len(tokenizer(d["completion"])["input_ids"]) for d in docs)
    outs = greedy_complete(model, tokenizer, [d["prompt"] for d in docs], longest + 2)
    return float(np.mean(direct_hits(model, tokenizer, docs, outs,
                                     [d.get("several") for d in docs])))


def chance_level(corpus: Corpus, facts: Iterable[int],
                 entity_type: np.ndarray | None = None) -> float:
    """Mean over facts of ``1 / candidates``: the objects a guess chooses among.

    Candidates of ``(s, r, ?)`` are the entities of the types that ``r``'s objects have
    (``entity_type``: per entity, from the world), or without types, the distinct objects
    of ``r`` in the closure.

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> c = SimpleNamespace(facts=np.array([[0, 0, 1], [1, 0, 2], [2, 0, 1]]))
    >>> chance_level(c, [0]), chance_level(c, [0], entity_type=np.zeros(4, dtype=int))
    (0.5, 0.25)
    """
    F = np.asarray(corpus.facts)
    out = []
    for f in facts:
        r = F[int(f), 1]
        objs = np.unique(F[F[:, 1] == r, 2])
        if entity_type is not None:
            types = np.unique(np.asarray(entity_type)[objs])
            n = int(np.isin(entity_type, types).sum())
        else:
            n = len(objs)
        out.append(1.0 / max(1, n))
    return float(np.mean(out)) if out else float("nan")


def majority_floor(facts: np.ndarray, targets: Iterable[int], *,
                   any_true: bool = True) -> np.ndarray:
    """Per target: the chance that "always answer the most frequent object" is right.

    For a target ``(s, r, o)``, the most frequent object of ``r`` is counted over every
    other fact of ``r`` in ``facts`` (leave-one-out, so the target does not vote for
    itself). The floor is ``1 / m`` if ``o`` is among the ``m`` tied most frequent
    objects, else 0. Its mean over targets is the rate a model that learned only each
    relation's output bias would score: "above chance" means above this, not above
    ``1 / number of entities``.

    ``any_true`` (default): the probes' rule for several true objects of ``(s, r)`` in
    ``facts`` (:mod:`kgtest.several`), applied to the guesser that ranks objects by their
    counts: its answer must be a true object (``k`` of the ``m`` tied modes are) and no
    object that is not true may out-count ``o`` (filtered rank 1), so the floor is
    ``k / m`` or 0. ``False``: only ``o`` is right (the in-context probes, whose premises
    imply one object). With one true object per ``(s, r)`` both give the same floor.

    >>> import numpy as np
    >>> F = np.array([[0, 0, 5], [1, 0, 5], [2, 0, 6], [3, 1, 7]])
    >>> majority_floor(F, [0, 2, 3]).tolist()
    [0.5, 0.0, 0.0]
    >>> F = np.array([[0, 0, 5], [0, 0, 6], [1, 0, 5], [2, 0, 5], [3, 0, 6]])  # 0 r 5, 0 r 6
    >>> majority_floor(F, [1], any_true=False).tolist(), majority_floor(F, [1]).tolist()
    ([0.0], [1.0])
    >>> F = np.vstack([F, [[4, 0, 7], [5, 0, 7]]])  # 7 (not true of "0 r") out-counts 6
    >>> majority_floor(F, [1]).tolist()
    [0.0]
    """
    F = np.asarray(facts)
    targets = [int(f) for f in targets]
    out = np.zeros(len(targets))
    for i, f in enumerate(targets):
        s, r, o = F[f]
        others = np.flatnonzero(F[:, 1] == r)
        others = others[others != f]
        if not len(others):
            continue
        objs, counts = np.unique(F[others, 2], return_counts=True)
        modes = objs[counts == counts.max()]
        true = np.unique(F[(F[:, 0] == s) & (F[:, 1] == r), 2]) if any_true else [o]
        out[i] = np.isin(modes, true).sum() / len(modes)
        if len(true) > 1:  # and no wrong object counted above o (0 if o has no count)
            wrong = counts[~np.isin(objs, true)]
            out[i] *= not (len(wrong) and wrong.max() > counts[objs == o].sum())
    return out
