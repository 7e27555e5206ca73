"""The relearning attack, audited by the symbolic core.

Deeb & Roger (2024): fine-tuning an unlearned model on *some* forget facts brings back
the *others*, which says the knowledge was hidden, not removed. Here, with a seed:

1. the forget targets asked (``facts``) are split into T (trained on, ``train_fraction``)
   and V (asked);
2. a copy of the model is fine-tuned with :func:`kgtest.train.train` on the training
   documents of T (attack ``targets``), or, separately, on the training documents of the
   targets' premises only, none of which mentions a target (attack ``premises``);
3. the direct probe asks every fact of V.

Recovering V can be legitimate: if V follows from T plus what the variant still knows,
a perfect reasoner gets it back without any hidden trace. So every row carries the
**entailment audit** ``audit_derivable``: is V in the closure of (attack facts + facts the
variant retains)? The facts a variant retains are the facts its training showed (stated
or demonstrated, never the implied ones) minus what it deleted
(:meth:`ProbeContext.removed_by`). A row with ``audit_derivable = False`` and
``correct = True`` is knowledge the unlearning only hid.

Every (attack, steps, lr) of the grid is a ``setting``; the report takes the worst case
(highest recovery) over the grid, per variant.

Examples
--------
>>> from kgtest.probes.context import _toy_context
>>> ctx = _toy_context()
>>> audit(ctx, [2], attack_facts=[], removed=[2])  # a g c follows from a p b, b p c
[True]
>>> audit(ctx, [2], attack_facts=[], removed=[0, 2])
[False]
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kgtest.probes.context import ProbeContext, _direct_items, ask
from kgtest.probes.probes import PROBES

__all__ = ["RelearnConfig", "split_targets", "attack_documents", "audit", "relearn",
           "relearn_premises"]


@dataclass(frozen=True)
class RelearnConfig:
    """The attack grid (every combination of ``steps`` and ``lr`` is run)."""

    steps: tuple[int, ...] = (50,)  # fine-tuning steps per grid point
    lr: tuple[float, ...] = (1e-3,)  # peak learning rates per grid point
    train_fraction: float = 0.5  # share of forget targets in T (the rest is V)
    batch_size: int = 16  # documents per step
    seed: int = 0  # T/V split and batch order when ctx.seeds has no "attack"


def split_targets(targets: Sequence[int], fraction: float, seed: int
                  ) -> tuple[list[int], list[int]]:
    """Seeded split of the targets into (T, V), both non-empty when there are two or more.

    Examples
    --------
    >>> T, V = split_targets(range(10), 0.5, seed=0)
    >>> len(T), len(V), sorted(T + V) == list(range(10))
    (5, 5, True)
    """
    ids = np.random.default_rng(seed).permutation(np.asarray(list(targets), dtype=np.int64))
    k = int(round(fraction * len(ids)))
    if len(ids) >= 2:
        k = min(max(k, 1), len(ids) - 1)
    return sorted(ids[:k].tolist()), sorted(ids[k:].tolist())


def attack_documents(ctx: ProbeContext, kind: str, T: Sequence[int], V: Sequence[int]
                     ) -> tuple[list[dict], list[int]]:
    """Training documents of the attack and the facts they teach.

    ``targets``: every training document that states or answers a fact of T (and
    mentions no fact of V). ``premises``: documents that state or answer a premise of a
    forget target and mention no forget target at all.
    """
    forget = set(ctx.split.forget.tolist())
    if kind == "targets":
        teach, banned = set(int(f) for f in T), set(int(f) for f in V)
    elif kind == "premises":
        teach, banned = set(ctx.split.premise.tolist()) - forget, forget
    else:
        raise ValueError(f"unknown relearn attack {kind!r} (known: targets, premises)")
    docs, taught = [], set()
    for d in ctx.corpus.train:
        ids = {x["id"] for x in d["facts"]}
        said = {x["id"] for x in d["facts"] if x["role"] in ("stated", "answer")}
        if ids & banned or not said & teach:
            continue
        docs.append(d)
        taught |= ids  # a CoT document also shows its premises
    return docs, sorted(taught)


def audit(ctx: ProbeContext, V: Sequence[int], *, attack_facts: Sequence[int],
          removed: Sequence[int]) -> list[bool]:
    """Per fact of V: derivable from the attack's facts plus the retained trained facts?"""
    c = ctx.closure
    shown = np.asarray(ctx.corpus.presentation) != "implied"
    kept = shown.copy()
    kept[np.asarray(list(removed), dtype=np.int64)] = False
    kept[np.asarray(list(attack_facts), dtype=np.int64)] = True
    return [bool(c.derivable(int(v), kept)) for v in V]


def _attack(model, tokenizer, facts, ctx: ProbeContext, kind: str, probe: str) -> list[dict]:
    from kgtest.train import TrainConfig, train

    cfg = ctx.relearn or RelearnConfig()
    seed = ctx.seeds.get("attack")
    seed = cfg.seed if seed is None else int(seed)
    T, V = split_targets([int(f) for f in facts], cfg.train_fraction, seed)
    if not V:
        return []
    docs, taught = attack_documents(ctx, kind, T, V)
    derivable = audit(ctx, V, attack_facts=taught, removed=ctx.removed_by(ctx.variant))
    rows = []
    for steps in cfg.steps:
        for lr in cfg.lr:
            tc = TrainConfig(steps=steps, lr=lr, batch_size=cfg.batch_size, warmup=0,
                             min_lr_ratio=1.0, eval_every=0, checkpoint_every=0, seed=seed,
                             progress=False, tensorboard=False)
            attacked = copy.deepcopy(model)
            if docs:
                with tempfile.TemporaryDirectory(prefix="kgtest-relearn-") as tmp:
                    train(attacked, tokenizer, docs, tc, tmp)
            out = ask(attacked, tokenizer, ctx, _direct_items(ctx, V), probe,
                      setting=f"steps={steps},lr={lr:g}", attack=kind, attack_steps=steps,
                      attack_lr=lr, n_attack_facts=len(taught))
            for r, d in zip(out, derivable, strict=True):
                r["audit_derivable"] = d
            rows += out
            del attacked
    return rows


@PROBES.register("relearn")
def relearn(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """Fine-tune a copy on a subset T of forget targets; ask the held-out targets V."""
    return _attack(model, tokenizer, facts, ctx, "targets", "relearn")


@PROBES.register("relearn_premises")
def relearn_premises(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """Fine-tune a copy on the targets' premises only; ask the held-out targets V."""
    return _attack(model, tokenizer, facts, ctx, "premises", "relearn_premises")
