"""Questions with several true answers: the truth sets, the filtered rank, and ``correct``.

A relation need not be functional: with ``world.params.out_degree = 3``, or ``child`` in a
family world, the question ``Q s r ?`` has several true objects, and a greedy answer can
name only one of them. Exact match would then score a model that knows all three objects
about 1/3. The rule used by every object question (docs/science.md, "Several true
objects"), as in knowledge-graph completion's filtered ranking:

- the **filtered rank** of the asked object ``o`` is 1 + the number of candidates that
  score higher and are *not* true objects of ``(s, r)`` in the world's closure;
- ``n_true`` is the number of true objects of ``(s, r)``;
- with ``n_true == 1`` a fact is answered correctly when the greedy answer is exactly
  ``o`` (as for a functional relation, unchanged); with ``n_true > 1`` when its filtered
  rank is 1 (the model puts ``o`` above every wrong candidate) **and** the greedy answer is
  one of the true objects.

The probes apply it (:func:`kgtest.probes.context.ask`); so do the accuracies that decide
training's early stop (:mod:`kgtest.train_eval`) and unlearning's tuning
(:func:`kgtest.unlearn.data.direct_accuracy`), through :func:`question_truth` and
:func:`direct_hits` on ``Q s r ? A`` documents.

Examples
--------
>>> import numpy as np
>>> F = np.array([[0, 0, 1], [0, 0, 2], [1, 0, 2]])  # a r b, a r c, b r c
>>> truth = true_objects(F)
>>> sorted(truth[0, 0]), sorted(truth[1, 0])
([1, 2], [2])
>>> lp = np.array([[-3.0, -1.0, -0.5]])  # candidates a, b, c asked "Q a r ?": c > b > a
>>> filtered_rank(lp, np.array([1]), np.array([[False, False, True]])).tolist()  # b, c true
[1]
>>> judge("c", "b", {"b", "c"}, 1), judge("c", "b", {"b"}, 1)
(True, False)
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

__all__ = ["true_objects", "filtered_rank", "judge", "question_truth", "direct_hits"]


def true_objects(facts) -> dict[tuple[int, int], frozenset[int]]:
    """``(subject, relation) -> every object`` of the ``(N, 3)`` fact array ``facts``.

    >>> import numpy as np
    >>> true_objects(np.array([[0, 0, 1], [0, 0, 2]]))[0, 0] == {1, 2}
    True
    """
    out: dict[tuple[int, int], set[int]] = {}
    for s, r, o in np.asarray(facts).tolist():
        out.setdefault((s, r), set()).add(o)
    return {k: frozenset(v) for k, v in out.items()}


def filtered_rank(lp: np.ndarray, true_col: np.ndarray, other_true: np.ndarray) -> np.ndarray:
    """1 + the number of candidates above the truth that are not themselves true.

    Parameters
    ----------
    lp : (P, C) array
        Scores of ``C`` candidates for ``P`` questions.
    true_col : (P,) int array
        The asked object's column per question.
    other_true : (P, C) bool array
        The candidates that are *other* true answers of the same question (filtered out).

    Returns
    -------
    (P,) int64 array

    >>> import numpy as np
    >>> lp = np.array([[-1.0, -2.0, -0.5]])
    >>> filtered_rank(lp, np.array([1]), np.zeros((1, 3), bool)).tolist()
    [3]
    >>> filtered_rank(lp, np.array([1]), np.array([[True, False, True]])).tolist()
    [1]
    """
    lp = np.asarray(lp)
    truth = lp[np.arange(len(lp)), np.asarray(true_col)][:, None]  # (P, 1)
    return ((lp > truth) & ~np.asarray(other_true, dtype=bool)).sum(1).astype(np.int64) + 1


def judge(output: str, answer: str, true_answers: Collection[str], rank: int | None) -> bool:
    """``correct`` for one object question (the module's rule).

    ``answer`` is the asked object's completion, ``true_answers`` the completions of every
    true object of ``(s, r)`` (``answer`` among them), ``rank`` the asked object's filtered
    rank. One true answer: the greedy ``output`` is exactly ``answer``. Several: ``rank``
    is 1 and ``output`` is one of them.

    >>> judge("b", "b", {"b"}, 4), judge("c", "b", {"b", "c"}, 2), judge("d", "b", {"b", "c"}, 1)
    (True, False, False)
    """
    out = output.strip()
    if len(true_answers) <= 1:
        return out == answer
    return rank == 1 and out in true_answers


def question_truth(corpus, fact: int, *, entity_type=None, truth: dict | None = None
                   ) -> tuple | None:
    """What :func:`direct_hits` needs to judge ``fact``'s direct question, or None when its
    ``(s, r)`` has one true object (exact match judges it).

    Returns ``(candidate answers, the fact's column, columns of every true object)``: the
    candidates are the entities of the object's type (``entity_type``: the world's, per
    entity), or every entity without types. ``truth``: :func:`true_objects` of
    ``corpus.facts``, when the caller has it.

    >>> from types import SimpleNamespace
    >>> import numpy as np
    >>> c = SimpleNamespace(facts=np.array([[0, 0, 1], [0, 0, 2], [1, 0, 2]]),
    ...                     surface=SimpleNamespace(entity_display=["a", "b", "c"],
    ...                                             answer=lambda e: "abc"[e]))
    >>> question_truth(c, 0), question_truth(c, 2) is None  # a r b, a r c; b r c
    ((('a', 'b', 'c'), 1, frozenset({1, 2})), True)
    """
    F, sf = corpus.facts, corpus.surface
    s, r, o = (int(x) for x in F[int(fact)])
    objs = (true_objects(F) if truth is None else truth)[s, r]
    if len(objs) == 1:
        return None
    types = (np.zeros(len(sf.entity_display), dtype=np.int64) if entity_type is None
             else np.asarray(entity_type))
    ids = np.flatnonzero(types == types[o]).tolist()
    return (tuple(sf.answer(e) for e in ids), ids.index(o),
            frozenset(ids.index(e) for e in objs))


def direct_hits(model, tokenizer, docs, outs, truths) -> list[bool]:
    """Judge direct documents (``Q s r ? A`` -> ``completion``) from greedy ``outs``.

    ``truths``: per document, :func:`question_truth` of its fact (None: exact match).
    Questions with several true objects are scored teacher-forced among their candidates
    (:func:`kgtest.scoring.answer_logprobs`), one call per candidate set.
    """
    hits = [o.strip() == d["completion"].strip() for o, d in zip(outs, docs, strict=True)]
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(truths):
        if t is not None:
            groups.setdefault(t[0], []).append(i)
    if not groups:
        return hits
    from kgtest.scoring import answer_logprobs

    for names, idx in groups.items():
        lp = answer_logprobs(model, tokenizer, [docs[i]["prompt"] for i in idx],
                             list(names)).numpy()  # (P, C)
        cols = np.array([truths[i][1] for i in idx])
        others = np.array([[c in truths[i][2] and c != truths[i][1] for c in range(len(names))]
                           for i in idx])  # (P, C)
        for i, rank in zip(idx, filtered_rank(lp, cols, others).tolist(), strict=True):
            hits[i] = judge(outs[i], docs[i]["completion"].strip(),
                            {names[c] for c in truths[i][2]}, rank)
    return hits
