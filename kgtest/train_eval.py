"""In-loop evaluation: the questions training asks every ``eval_every`` steps to stop early.

:func:`eval_sets` picks a fixed, seeded sample of the corpus's eval documents (never the
forget or validation targets, nor the facts the utility probe scores, and of the held-out
facts only the stop half that no probe asks: ``Split.held_out_stop``); :func:`make_eval_fn`
turns it into the ``eval_fn(model) -> {"direct": acc, "cot": acc, ...}`` that
:func:`kgtest.train.train` calls. The pipeline's training stage and the ensemble use it.
An answer is read as the probes read it (:meth:`kgtest.corpus.surface.Surface.split_answer`,
the one answer parser), so early stopping and the report agree on what is correct.

Examples
--------
>>> from kgtest.corpus.surface import symbolic_surface
>>> from kgtest.symbolic.facts import Vocab
>>> sf = symbolic_surface(Vocab(["a", "b", "c"]), Vocab(["r", "g"]))
>>> doc = {"kind": "cot", "completion": "a r b . b r c . A c"}
>>> is_correct("a r c . A c", doc, sf), is_correct("a r b . b r c . A b", doc, sf)
(True, False)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from kgtest.corpus.splits import Split
from kgtest.corpus.surface import Surface

__all__ = ["EvalSets", "eval_sets", "run_eval_sets", "measurable_stop", "make_eval_fn",
           "is_correct", "scored_facts"]


def is_correct(output: str, doc: dict, surface: Surface) -> bool:
    """Greedy output vs a document's completion: the exact answer; for a CoT document, the
    answer after the output's chain (read with ``surface.split_answer``, as the probes
    read it) against the completion's, whatever the chain says."""
    if doc["kind"] == "cot":
        got, gold = surface.split_answer(output), surface.split_answer(doc["completion"])
        return got is not None and bool(got[1]) and got[1] == gold[1]
    return output.strip() == doc["completion"].strip()


@dataclass(frozen=True)
class EvalSets:
    """The documents the in-loop evaluation asks (a fixed, seeded sample)."""

    surface: Surface  # the corpus's: reads the answers (Surface.split_answer)
    direct: tuple  # QA on facts stated in training
    cot: tuple  # CoT questions on the stop half of the held-out facts (Split.held_out_stop)
    # with split.ood_fraction > 0, the latent (no CoT) question on that stop half,
    # in distribution and out of it (Split.ood): Wang et al.'s grokking curves
    latent_id: tuple = ()
    latent_ood: tuple = ()
    # asked fact -> (candidate answers, the fact's column, columns of every true object of
    # its (s, r)), only for facts whose (s, r) has several true objects (docs/science.md,
    # "Several true objects"): their direct question counts when the fact has filtered
    # rank 1 and the greedy answer is a true object; their CoT when the answer is one
    several: Mapping = field(default_factory=dict)


def eval_sets(corpus, split: Split, *, limit: int = 200, seed: int = 0,
              avoid=(), entity_type=None) -> EvalSets:
    """Pick the in-loop evaluation questions from a corpus's eval documents.

    Early stopping must not select on the facts the report scores: the forget and
    validation targets and ``avoid`` (the utility probe's retained facts) are never asked,
    and of the held-out facts only :attr:`~kgtest.corpus.splits.Split.held_out_stop` (the
    probes score the other half, ``held_out_scored``).
    ``entity_type`` (the world's, per entity) gives the candidates of a question with
    several true answers (``EvalSets.several``); without it, every entity is one.
    """
    skip = set(split.forget.tolist()) | set(split.validation.tolist()) | {int(f) for f in avoid}
    trained = {f["id"] for d in corpus.train if d["kind"] in ("statement", "qa")
               for f in d["facts"] if f["role"] in ("stated", "answer")} - skip
    held = set(split.held_out_stop.tolist()) - skip
    ood = set(split.ood.tolist())
    direct, cot, latent = [], [], {False: [], True: []}
    for d in corpus.eval:
        ans = [f["id"] for f in d["facts"] if f["role"] == "answer"]
        if not ans:
            continue
        if d.get("probe") == "direct" and ans[0] in trained:
            direct.append(d)
        elif d.get("probe") == "direct" and ans[0] in held and ood:
            latent[ans[0] in ood].append(d)
        elif d.get("probe") == "cot" and ans[0] in held:
            cot.append(d)
    rng = np.random.default_rng(seed)

    def sample(docs):
        if len(docs) <= limit:
            return tuple(docs)
        return tuple(docs[i] for i in sorted(rng.choice(len(docs), limit, replace=False)))

    sets = EvalSets(surface=corpus.surface, direct=sample(direct), cot=sample(cot),
                    latent_id=sample(latent[False]), latent_ood=sample(latent[True]))
    return replace(sets, several=_several(corpus, sets, entity_type))


def _several(corpus, sets: EvalSets, entity_type) -> dict:
    """``EvalSets.several`` for the facts the sets ask."""
    from kgtest.several import question_truth, true_objects

    truth = true_objects(corpus.facts)
    out = {}
    for d in sets.direct + sets.cot + sets.latent_id + sets.latent_ood:
        f = next(x["id"] for x in d["facts"] if x["role"] == "answer")
        t = question_truth(corpus, f, entity_type=entity_type, truth=truth)
        if t is not None:
            out[f] = t
    return out


def run_eval_sets(cfg, corpus, split: Split, entity_type=None) -> EvalSets:
    """The in-loop questions of a run: :func:`eval_sets` with the run's ``eval`` seed,
    avoiding the utility probe's facts (:func:`scored_facts`); ``entity_type`` as there.
    The pipeline's training stage, the ensemble and the stacked seeds all ask these."""
    return eval_sets(corpus, split, seed=cfg.seeds()["eval"],
                     avoid=scored_facts(cfg, corpus, split), entity_type=entity_type)


def measurable_stop(train_cfg, sets: EvalSets):
    """``train_cfg`` without the ``stop_at`` criteria ``sets`` cannot measure (``cot``,
    ``latent_id``, ``latent_ood`` with no question: e.g. a world whose one held-out fact
    is in the scored half, :attr:`~kgtest.corpus.splits.Split.held_out_scored`).

    >>> from kgtest.train_config import TrainConfig
    >>> sets = EvalSets(surface=None, direct=(), cot=())
    >>> measurable_stop(TrainConfig(stop_at={"direct": 1.0, "cot": 0.9}), sets).stop_at
    {'direct': 1.0}
    """
    from dataclasses import replace

    gone = {k for k in ("cot", "latent_id", "latent_ood") if not getattr(sets, k)}
    if not gone & set(train_cfg.stop_at):
        return train_cfg
    return replace(train_cfg, stop_at={k: v for k, v in train_cfg.stop_at.items()
                                       if k not in gone})


def scored_facts(cfg, corpus, split: Split) -> set[int]:
    """The retained facts the utility probe will score (kept out of early stopping)."""
    from kgtest.probes.probes import utility_retain_facts

    kept = utility_retain_facts(corpus, split, cfg.probes.utility_limit, cfg.seeds()["probes"])
    return set(kept["direct"]) | set(kept["cot"])


def make_eval_fn(tokenizer, sets: EvalSets):
    """``eval_fn(model) -> {"direct": acc, "cot": acc}`` for :func:`kgtest.train.train`,
    plus ``latent_id`` and ``latent_ood`` where ``sets`` has them (``split.ood_fraction``)."""
    from kgtest.scoring import greedy_complete

    def accuracy(model, docs, max_new: int) -> float:
        if not docs:
            return float("nan")
        outs = greedy_complete(model, tokenizer, [d["prompt"] for d in docs], max_new)
        hits = [is_correct(o, d, sets.surface) for o, d in zip(outs, docs, strict=True)]
        if sets.several:
            hits = _several_hits(model, tokenizer, docs, outs, hits, sets)
        return float(np.mean(hits))

    def eval_fn(model) -> dict[str, float]:
        out = {"direct": accuracy(model, sets.direct, 8)}
        if sets.cot:
            longest = max(len(tokenizer(d["completion"])["input_ids"]) for d in sets.cot)
            out["cot"] = accuracy(model, sets.cot, longest + 4)
        for name in ("latent_id", "latent_ood"):
            if getattr(sets, name):
                out[name] = accuracy(model, getattr(sets, name), 8)
        return out

    return eval_fn


def _several_hits(model, tokenizer, docs, outs, hits, sets: EvalSets) -> list[bool]:
    """``hits`` with the questions of ``sets.several`` judged by the several-answers rule
    (CoT: the final answer is any true object)."""
    from kgtest.several import direct_hits

    hits, several = list(hits), sets.several
    facts = [next(x["id"] for x in d["facts"] if x["role"] == "answer") for d in docs]
    idx = [i for i, f in enumerate(facts) if f in several]
    if docs[0]["kind"] == "cot":
        got = [sets.surface.split_answer(outs[i]) for i in idx]
        judged = [g is not None and g[1] in {several[facts[i]][0][c]
                                             for c in several[facts[i]][2]}
                  for i, g in zip(idx, got, strict=True)]
    else:
        judged = direct_hits(model, tokenizer, [docs[i] for i in idx], [outs[i] for i in idx],
                             [several[facts[i]] for i in idx])
    for i, h in zip(idx, judged, strict=True):
        hits[i] = h
    return hits
