"""In-loop evaluation: the questions training asks every ``eval_every`` steps to stop early.

:func:`eval_sets` picks a fixed, seeded sample of the corpus's eval documents (never the
forget or validation targets, nor the facts the utility probe scores); :func:`make_eval_fn`
turns it into the ``eval_fn(model) -> {"direct": acc, "cot": acc, ...}`` that
:func:`kgtest.train.train` calls. The pipeline's training stage and the ensemble use it.

Examples
--------
>>> final_answer("a r b . b r c . A c")
'c'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kgtest.corpus.splits import Split

__all__ = ["EvalSets", "eval_sets", "make_eval_fn", "final_answer", "is_correct",
           "scored_facts"]


def final_answer(text: str) -> str:
    """The answer after the last ``A`` / ``Answer:`` marker of a completion ('' if none).

    >>> final_answer("a r b . b r c . A c"), final_answer("Ann is ... Answer: Bob Ng.")
    ('c', 'Bob Ng.')
    """
    text = " " + text
    marks = [(text.rfind(m), m) for m in (" A ", " Answer: ")]
    i, m = max(marks)
    return text[i + len(m):].strip() if i >= 0 else ""


def is_correct(output: str, doc: dict) -> bool:
    """Greedy output vs a document's completion: exact answer (CoT: the final answer)."""
    if doc["kind"] == "cot":
        ans = final_answer(output)
        return bool(ans) and ans == final_answer(doc["completion"])
    return output.strip() == doc["completion"].strip()


@dataclass(frozen=True)
class EvalSets:
    """The documents the in-loop evaluation asks (a fixed, seeded sample)."""

    direct: tuple  # QA on facts stated in training
    cot: tuple  # CoT questions on held-out derived facts (rule demonstrated elsewhere)
    # with split.ood_fraction > 0, the latent (no CoT) question on held-out derived facts,
    # in distribution and out of it (Split.ood): Wang et al.'s grokking curves
    latent_id: tuple = ()
    latent_ood: tuple = ()


def eval_sets(corpus, split: Split, *, limit: int = 200, seed: int = 0,
              avoid=()) -> EvalSets:
    """Pick the in-loop evaluation questions from a corpus's eval documents.

    Early stopping must not select on the facts the report scores: the forget and
    validation targets and ``avoid`` (the utility probe's retained facts) are never asked.
    """
    skip = set(split.forget.tolist()) | set(split.validation.tolist()) | {int(f) for f in avoid}
    trained = {f["id"] for d in corpus.train if d["kind"] in ("statement", "qa")
               for f in d["facts"] if f["role"] in ("stated", "answer")} - skip
    held = set(split.held_out.tolist()) - skip
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

    return EvalSets(direct=sample(direct), cot=sample(cot), latent_id=sample(latent[False]),
                    latent_ood=sample(latent[True]))


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
        hits = [is_correct(o, d) for o, d in zip(outs, docs, strict=True)]
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
