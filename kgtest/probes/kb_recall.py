"""Model-level deep unlearning (Wu et al. 2024): the ``kb_recall`` probe (its summary section
is :mod:`kgtest.report.kb_recall`).

Wu et al. score an unlearned model by what it *no longer knows*, not by the target alone:
probe the model's whole knowledge base after unlearning, take the set ``U'`` of facts it
has lost, and compare ``U'`` with the target's minimal deletion sets ``M``
(:func:`kgtest.symbolic.deletion.recall_accuracy`). This module defines each quantity
exactly (docs/science.md, "Deep unlearning at model level"):

``KB``
    The closure facts the run trained on (presentation not ``implied``), not fixed, that
    the **original** model knows. A fact ``(s, r, o)`` is *known* when, asked
    ``Q s r ? A`` teacher-forced, ``o`` out-scores every candidate of its type that is not
    itself a true object of ``(s, r)`` in the closure (filtered rank 1: a relation with
    several objects, such as ``child``, counts each of them known if all beat every wrong
    candidate). One ``kb`` row per trained, non-fixed fact and variant records it
    (``correct``); its gate is ``kb`` (the original's own answer).
``U'`` (per target ``t``)
    The facts of ``KB`` the variant does not know, less the *other* reported targets
    (all targets are unlearned in one run; Wu et al. unlearn one target per run, so the
    others are not counted as ``t``'s deletions, right or wrong).
``M``
    Every distinct minimal deletion set of ``t`` found over ``KB`` (deletable) and the
    world's fixed facts (never deleted) by 100 randomised restarts plus the exact search
    (:func:`~kgtest.symbolic.deletion.minimal_deletion_sets`), computed once per run.

One ``kb_recall`` row per target and variant: ``kb_recall`` (max over ``M`` of
``|M ∩ U'| / |M|``), ``kb_accuracy`` (``1 - |U' \\ M| / (|KB| - |M|)``), ``correct``
(``t`` is not in ``closure((KB ∪ fixed) \\ U')``: deep-unlearned, checked exactly),
``kb_size``, ``kb_unlearned`` (``|U'|``), ``min_set_size`` (the smallest ``|M|``) and
``sym_recall``, the symbolic recall of what the variant was *asked* to delete (its forget
set, or a control's dropped facts, within ``KB``; for target-only unlearning
``1 / min |M|``, the number Wu et al. report as ~0.16). A target the original does not
know has no deletion problem: its row is not applicable.

Examples
--------
>>> from kgtest.probes.context import toy_context
>>> ctx = toy_context()  # a p b, b p c; g(X, Z) :- p(X, Y), p(Y, Z): fact 2 = a g c
>>> kb = np.array([True, True, True])  # the original knew all three
>>> r = _recall_rows(ctx, [2], kb, np.array([True, True, False]))[0]  # lost the target
>>> r["kb_recall"], r["kb_accuracy"], r["correct"], r["kb_unlearned"], r["min_set_size"]
(0.5, 1.0, False, 1, 2)
>>> r = _recall_rows(ctx, [2], kb, np.array([False, True, False]))[0]  # and a premise
>>> r["kb_recall"], r["correct"]
(1.0, True)
"""

from __future__ import annotations

import numpy as np

from kgtest.errors import InputError
from kgtest.probes.context import ProbeContext
from kgtest.probes.registry import PROBES
from kgtest.scoring import answer_logprobs
from kgtest.symbolic.deletion import deep_unlearns, minimal_deletion_sets, recall_accuracy

__all__ = ["kb_recall", "kb_facts", "kb_known", "RESTARTS"]

#: Randomised restarts per target (as Wu et al.), plus the exact search for the minimum.
RESTARTS = 100
#: Seconds the exact minimum search may take per target.
EXACT_SECONDS = 5.0


def kb_facts(ctx: ProbeContext) -> np.ndarray:
    """Ids of the facts a ``kb`` row asks: trained on by the run, not fixed.

    >>> from kgtest.probes.context import toy_context
    >>> kb_facts(toy_context()).tolist()
    [0, 1, 2]
    """
    trained = ctx.trained_facts("original")
    return np.flatnonzero(trained & ~ctx.world.fixed_mask(ctx.closure))


def kb_known(model, tokenizer, ctx: ProbeContext, facts) -> tuple[np.ndarray, np.ndarray]:
    """Filtered rank and log-prob of the true object of each fact, asked ``Q s r ? A``.

    The filtered rank is 1 + the number of candidates of the object's type that score
    higher and are *not* true objects of the same subject and relation; a fact is known
    when it is 1.

    Returns
    -------
    (rank, score) : ((n,) int64, (n,) float64)
    """
    sf, F = ctx.corpus.surface, ctx.corpus.facts
    facts = np.asarray(facts, dtype=np.int64)
    rank = np.zeros(len(facts), dtype=np.int64)
    score = np.zeros(len(facts))
    truth = ctx.true_objects
    groups: dict[tuple, list[int]] = {}
    for i, f in enumerate(facts.tolist()):
        groups.setdefault(tuple(ctx.candidates(int(F[f, 2]))[0]), []).append(i)
    for names, idx in groups.items():
        prompts = [sf.qa_prompt(int(F[facts[i], 0]), int(F[facts[i], 1]), 0) for i in idx]
        lp = answer_logprobs(model, tokenizer, prompts, list(names),
                             batch_size=4 * ctx.batch_size).numpy()  # (P, C)
        types = np.asarray(ctx.world.entity_type)
        ids = np.flatnonzero(types == types[F[facts[idx[0]], 2]])  # candidate entity ids
        for row, i in enumerate(idx):
            s, r, o = F[facts[i]].tolist()
            t = ctx.candidates(o)[1]
            other_true = np.isin(ids, list(truth[(s, r)] - {o}))  # (C,)
            above = (lp[row] > lp[row, t]) & ~other_true
            rank[i], score[i] = int(above.sum()) + 1, float(lp[row, t])
    return rank, score


def _deletion_sets(ctx: ProbeContext, t: int, kb: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every minimal deletion set of ``t`` found over ``kb`` (cached per run)."""
    def build():
        seed = int(ctx.seeds.get("probes") or 0) + int(t)
        res = minimal_deletion_sets(ctx.closure, int(t), kb=kb,
                                    fixed=ctx.world.fixed_mask(ctx.closure), count=None,
                                    restarts=RESTARTS, seed=seed, time_limit=EXACT_SECONDS)
        return res.sets
    return ctx._cached(f"kb:sets:{int(t)}", build)


def _recall_rows(ctx: ProbeContext, targets, kb: np.ndarray, known: np.ndarray
                 ) -> list[dict]:
    """One ``kb_recall`` row per target: ``kb`` = the original's known KB (mask),
    ``known`` = what this variant knows (mask)."""
    targets = [int(t) for t in targets]
    fixed = ctx.world.fixed_mask(ctx.closure)
    lost = np.flatnonzero(kb & ~known)
    asked = set(ctx.removed_by(ctx.variant).tolist()) if ctx.variant != "original" else set()
    rows = []
    for t in targets:
        if not kb[t]:
            rows.append(ctx.row("kb_recall", t, gate="kb", applicable=False))
            continue
        others = set(targets) - {t}
        u = sorted(set(lost.tolist()) - others)
        sets = _deletion_sets(ctx, t, kb)
        rec, acc = recall_accuracy(u, sets, kb_size=int(kb.sum()))
        meant = sorted((asked - others) & set(np.flatnonzero(kb).tolist()))
        sym = recall_accuracy(meant, sets, kb_size=int(kb.sum()))[0] if meant else 0.0
        gone = deep_unlearns(ctx.closure, t, u, kb=kb, fixed=fixed)
        rows.append(ctx.row("kb_recall", t, gate="kb", correct=gone, kb_recall=rec,
                            kb_accuracy=acc, kb_size=int(kb.sum()), kb_unlearned=len(u),
                            min_set_size=min(len(m) for m in sets), sym_recall=sym))
    return rows


@PROBES.register("kb_recall", gate="kb", columns=("kb", "kb_recall"))
def kb_recall(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """The whole KB asked directly (rows ``kb``), then recall/accuracy per target.

    Rows ``kb``: one per trained, non-fixed fact (:func:`kb_facts`), ``correct`` = known
    (filtered rank 1), ``score`` and ``rank`` (filtered). Rows ``kb_recall``: one per
    asked target (the forget targets), see the module docstring. The original must be
    probed first (:func:`kgtest.probes.probes.evaluate` does): its answers define ``KB``.
    """
    ids = kb_facts(ctx)
    rank, score = kb_known(model, tokenizer, ctx, ids)
    known = np.zeros(len(ctx.closure), dtype=bool)
    known[ids[rank == 1]] = True
    if ctx.variant == "original":
        ctx._cache["kb:known:original"] = known
    elif "kb:known:original" not in ctx._cache:
        raise InputError("probe kb_recall: the original model must be probed first (its "
                         "answers define the KB); run it through kgtest.probes.evaluate")
    kb = ctx._cache["kb:known:original"]
    F = ctx.corpus.facts
    rows = [ctx.row("kb", int(f), gate="kb", correct=bool(rank[i] == 1), score=score[i],
                    rank=int(rank[i]), n_candidates=len(ctx.candidates(int(F[f, 2]))[0]),
                    chance=1 / len(ctx.candidates(int(F[f, 2]))[0]))
            for i, f in enumerate(ids.tolist())]
    # kb rows last: evaluate gates by the original's last row per (gate, fact), and a
    # target's gate is whether the original knew it (its kb row), not its recall row
    return _recall_rows(ctx, facts, kb, known) + rows
