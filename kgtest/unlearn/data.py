"""What to forget, what to keep, and how to score it: forget sets from a corpus and targets.

- :func:`deletion_sets`: for deep unlearning, the smallest minimal deletion set of each
  target found by the symbolic core (:func:`kgtest.symbolic.deletion.minimal_deletion_sets`).
- :func:`forget_set`: the training documents to forget for some target facts: every
  rendered form of each (statements in every variant, QA, CoT and in-context documents
  answering it), optionally the documents that use one as a premise; plus the
  ``(true answer, 'unknown')`` pairs of the documents that ask a question.
- :func:`retain_docs`: training documents that mention none of a set of facts.
- :func:`direct_docs`, :func:`direct_accuracy`, :func:`chance_level`: the direct probe
  (greedy answer to ``Q s r ?``, exact match) on chosen facts, and its chance level.

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
>>> [(p["text"], q["text"]) for p, q in zip(fs.pair_docs, fs.idk_docs)][0]
('Q a g ? A c', 'Q a g ? A unknown')
>>> fs = forget_set(corpus, [2], deep=True, closure=c)
>>> fs.extra, [c.named(f) for f in fs.facts]
(1, [('a', 'p', 'b'), ('a', 'g', 'c')])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kgtest.corpus.render import Corpus
from kgtest.corpus.surface import UNKNOWN
from kgtest.errors import InputError
from kgtest.probes.scoring import greedy_complete
from kgtest.symbolic.closure import Closure
from kgtest.symbolic.deletion import minimal_deletion_sets

__all__ = ["ForgetSet", "deletion_sets", "forget_set", "retain_docs", "direct_docs",
           "direct_accuracy", "chance_level", "majority_floor", "check_targets"]

#: Roles in which a document renders a fact itself (rather than using it).
OWN_ROLES = ("stated", "answer")


@dataclass(frozen=True)
class ForgetSet:
    """The documents and facts one unlearning run forgets.

    Attributes
    ----------
    targets : (k,) int array
        The fact ids asked for.
    facts : (m,) int array
        Every fact forgotten: the targets plus, when deep, their deletion sets (sorted).
    extra : int
        ``m - k``: facts beyond the targets (what deep unlearning cost).
    deletion_sets : dict
        Target -> the smallest minimal deletion set found (deep only; includes the target).
    docs : tuple of dict
        Training documents rendering a forgotten fact (and using one, if asked).
    pair_docs, idk_docs : tuple of dict
        The question-form documents among ``docs`` (non-empty prompt, a forgotten fact as
        answer) and the same prompts answered ``unknown``, aligned.
    """

    targets: np.ndarray
    facts: np.ndarray
    extra: int
    docs: tuple
    pair_docs: tuple
    idk_docs: tuple
    deletion_sets: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-able ids and counts (for ``unlearn.json``)."""
        return {"targets": self.targets.tolist(), "facts": self.facts.tolist(),
                "extra_facts": self.extra, "n_docs": len(self.docs),
                "n_pairs": len(self.pair_docs), "doc_ids": [d["id"] for d in self.docs],
                "deletion_sets": {str(k): v for k, v in self.deletion_sets.items()}}


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


def forget_set(corpus: Corpus, targets: Iterable[int], *, deep: bool = False,
               closure: Closure | None = None, kb=None, fixed=None,
               include_cot_premise_docs: bool = False, restarts: int = 100,
               time_limit: float | None = 5.0, seed: int = 0) -> ForgetSet:
    """The forget set of some target facts (see the module docstring).

    Parameters
    ----------
    corpus : Corpus
    targets : iterable of int
        Closure fact ids.
    deep : bool
        Also forget the smallest minimal deletion set of each target (needs ``closure``;
        ``kb`` and ``fixed`` as in :func:`deletion_sets`).
    include_cot_premise_docs : bool
        Also forget documents that use a forgotten fact as a premise (CoT, in-context).

    Raises
    ------
    InputError
        No targets, targets not in the world, or no training document renders them.
    """
    targets = check_targets(corpus, targets)
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
    roles = OWN_ROLES + (("premise",) if include_cot_premise_docs else ())
    docs = tuple(d for d in corpus.train
                 if any(x["id"] in wanted and x["role"] in roles for x in d["facts"]))
    if not docs:
        raise InputError(f"unlearn: no training document renders the targets "
                         f"{targets.tolist()[:10]}: nothing to forget (the forget set is "
                         f"empty)")
    idk = _idk_text(corpus)
    pairs = tuple(d for d in docs if d["prompt"] and any(
        x["id"] in wanted and x["role"] == "answer" for x in d["facts"]))
    idk_docs = tuple({**d, "completion": idk, "text": d["prompt"] + idk} for d in pairs)
    return ForgetSet(targets=targets, facts=facts, extra=len(facts) - len(targets),
                     docs=docs, pair_docs=pairs, idk_docs=idk_docs, deletion_sets=sets)


def retain_docs(corpus: Corpus, avoid: Iterable[int]) -> tuple:
    """Training documents that mention none of ``avoid`` in any role."""
    bad = {int(f) for f in avoid}
    return tuple(d for d in corpus.train if bad.isdisjoint(x["id"] for x in d["facts"]))


def direct_docs(corpus: Corpus, facts: Iterable[int]) -> tuple:
    """The direct-probe evaluation documents (``Q s r ? A`` -> object) of some facts."""
    want = {int(f) for f in facts}
    return tuple(d for d in corpus.eval if d.get("probe") == "direct"
                 and any(x["role"] == "answer" and x["id"] in want for x in d["facts"]))


def direct_accuracy(model, tokenizer, docs: Sequence[dict]) -> float:
    """Fraction of documents whose greedy completion is exactly the true answer.

    Returns nan for no documents.
    """
    if not docs:
        return float("nan")
    longest = max(len(tokenizer(d["completion"])["input_ids"]) for d in docs)
    outs = greedy_complete(model, tokenizer, [d["prompt"] for d in docs], longest + 2)
    return float(np.mean([o.strip() == d["completion"].strip()
                          for o, d in zip(outs, docs, strict=True)]))


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


def majority_floor(facts: np.ndarray, targets: Iterable[int]) -> np.ndarray:
    """Per target: the chance that "always answer the most frequent object" is right.

    For a target ``(s, r, o)``, the most frequent object of ``r`` is counted over every
    other fact of ``r`` in ``facts`` (leave-one-out, so the target does not vote for
    itself). The floor is ``1 / m`` if ``o`` is among the ``m`` tied most frequent
    objects, else 0. Its mean over targets is the rate a model that learned only each
    relation's output bias would score: "above chance" means above this, not above
    ``1 / number of entities``.

    >>> import numpy as np
    >>> F = np.array([[0, 0, 5], [1, 0, 5], [2, 0, 6], [3, 1, 7]])
    >>> majority_floor(F, [0, 2, 3]).tolist()
    [0.5, 0.0, 0.0]
    """
    F = np.asarray(facts)
    targets = [int(f) for f in targets]
    out = np.zeros(len(targets))
    for i, f in enumerate(targets):
        r, o = F[f, 1], F[f, 2]
        others = np.flatnonzero(F[:, 1] == r)
        others = others[others != f]
        if not len(others):
            continue
        objs, counts = np.unique(F[others, 2], return_counts=True)
        modes = objs[counts == counts.max()]
        out[i] = 1.0 / len(modes) if o in modes else 0.0
    return out
