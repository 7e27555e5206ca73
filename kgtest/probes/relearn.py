"""The relearning attack as Deeb & Roger (2024), audited by the symbolic core.

Fine-tuning an unlearned model on *some* forget facts brings back the *others*, which says
the knowledge was hidden, not removed. Here, with a seed:

1. the facts asked (the forget targets; with ``facts = "base"``, the base-fact premises of
   the targets) are split into ``folds`` rotating folds **with disjoint answers**: all
   facts with the same object fall in one fold (:func:`answer_folds`), so recovering the
   evaluation fold cannot come from an output bias towards the attack's answers;
2. for each fold V in turn, a copy of the model is fine-tuned with
   :func:`kgtest.train.train` on the training documents of the other folds T (attack
   ``targets``), or, separately, on the training documents of the targets' premises only,
   none of which mentions a target (attack ``premises``); beside other seeds' probes
   (``kgtest run --seeds M``) the seeds' runs train as one ensemble
   (:func:`kgtest.stacked_probes.fine_tune`);
3. the direct probe asks every fact of V; every fact is thus evaluated once per grid
   point, by an attack that never saw it nor its answer.

The grid is every (``lr``, ``steps``): one fine-tuning run per (fold, lr) at a constant
learning rate, probed at each step count (probing step 15 of a 30-step run is the 15-step
attack). Each grid point is a ``setting``; the report takes the **worst case** (highest
recovery) over the grid, per variant. The same attack runs on the never-trained model:
its recovery is the floor (an attack that teaches the answers outright).

Recovering V can be legitimate: if V follows from T plus what the variant still knows,
a perfect reasoner gets it back without any hidden trace. So every row carries the
**entailment audit** ``audit_derivable``: is the fact in the closure of (attack facts +
the facts the variant was trained on and kept)? The variant's own training set is
:meth:`ProbeContext.trained_facts` (a retrained control's lacks what it dropped); what it
kept is that less what it deleted (:meth:`ProbeContext.removed_by`). A row with
``audit_derivable = False`` and ``correct = True`` is knowledge the unlearning only hid.

Examples
--------
>>> from kgtest.probes.context import toy_context
>>> ctx = toy_context()
>>> audit(ctx, [2], attack_facts=[], removed=[2])  # a g c follows from a p b, b p c
[True]
>>> audit(ctx, [2], attack_facts=[], removed=[0, 2])
[False]
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from kgtest.config import MAX_STEPS, in_range
from kgtest.errors import InputError
from kgtest.probes.context import ProbeContext, ask, direct_items, na_rows
from kgtest.probes.registry import PROBES

__all__ = ["RelearnConfig", "answer_folds", "attack_documents", "audit",
           "relearn", "relearn_premises"]


def _grid(lo, hi):
    """A ``check`` for a grid axis: not empty, every value in ``[lo, hi]``."""
    def check(values) -> str | None:
        if not values:
            return "must not be empty (an empty grid runs no attack)"
        return in_range(lo, hi)(values)
    return check


@dataclass(frozen=True)
class RelearnConfig:
    """The attack grid (every combination of ``steps`` and ``lr`` is run) and its folds."""

    steps: tuple[int, ...] = field(default=(15, 30), metadata={"check": _grid(1, MAX_STEPS)}
                                   )  # fine-tuning steps per grid point
    lr: tuple[float, ...] = field(default=(3e-4, 1e-3, 3e-3),
                                  metadata={"check": _grid(1e-12, 10.0)}
                                  )  # constant learning rates per grid point
    folds: int = 2  # rotating folds of the asked facts (answers disjoint between folds)
    facts: str = "targets"  # "targets": the asked forget targets; "base": their base premises
    batch_size: int = field(default=16, metadata={"check": in_range(1, 10**6)})  # docs/step
    seed: int = 0  # folds and batch order when ctx.seeds has no "attack"

    def __post_init__(self):
        if self.facts not in ("targets", "base"):
            raise InputError(f"key 'probes.relearn.facts': unknown {self.facts!r} "
                             "(known: targets, base)")
        if self.folds < 2:
            raise InputError("key 'probes.relearn.folds': must be >= 2 (an attack fold "
                             "and an evaluation fold)")


def answer_folds(facts: Sequence[int], objects: Sequence[int], k: int, seed: int
                 ) -> list[list[int]]:
    """Rotating folds of ``facts`` whose answers are disjoint between folds.

    Facts are grouped by their object (answer); groups are shuffled with ``seed`` and
    dealt, largest first, to the fold with the fewest facts. Returns at most ``k``
    non-empty folds (fewer when there are fewer distinct answers; one fold means no
    attack is possible).

    Examples
    --------
    >>> folds = answer_folds([10, 11, 12, 13, 14], objects=[1, 1, 2, 3, 3], k=2, seed=0)
    >>> sorted(sorted(f) for f in folds)
    [[10, 11], [12, 13, 14]]
    """
    groups: dict[int, list[int]] = {}
    for f, o in zip(facts, objects, strict=True):
        groups.setdefault(int(o), []).append(int(f))
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    dealt = sorted((groups[keys[i]] for i in order), key=len, reverse=True)  # stable
    folds: list[list[int]] = [[] for _ in range(min(k, len(keys)))]
    for g in dealt:
        min(folds, key=len).extend(g)
    return [sorted(f) for f in folds if f]


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
        banned = forget | {int(f) for f in V}
        teach = set(ctx.split.premise.tolist()) - banned
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
          removed: Sequence[int], trained: np.ndarray | None = None) -> list[bool]:
    """Per fact of V: derivable from the attack's facts plus the trained facts kept?

    ``trained`` is the variant's own training set (an ``(N,)`` mask; default: the
    original's, every fact the corpus shows); ``removed`` what the variant deleted.
    """
    c = ctx.closure
    kept = (np.asarray(ctx.corpus.presentation) != "implied" if trained is None
            else np.asarray(trained, dtype=bool)).copy()
    kept[np.asarray(list(removed), dtype=np.int64)] = False
    kept[np.asarray(list(attack_facts), dtype=np.int64)] = True
    return [bool(c.derivable(int(v), kept)) for v in V]


def _asked(ctx: ProbeContext, facts, cfg: RelearnConfig) -> list[int]:
    facts = sorted(int(f) for f in facts)
    if cfg.facts == "targets":
        return facts
    c = ctx.closure
    prem = {p for f in facts for d in c.derivations_of(f) for p in c.premises(int(d))}
    return sorted(int(p) for p in prem if c.is_base[p])


def _attack(model, tokenizer, facts, ctx: ProbeContext, kind: str, probe: str) -> list[dict]:
    cfg = ctx.relearn or RelearnConfig()
    seed = ctx.seeds.get("attack")
    seed = cfg.seed if seed is None else int(seed)
    asked = _asked(ctx, facts, cfg)
    folds = answer_folds(asked, ctx.corpus.facts[asked, 2].tolist() if asked else [],
                         cfg.folds, seed)
    if len(folds) < 2:
        return na_rows(ctx, asked, probe)
    rows = []
    for i, V in enumerate(folds):
        T = sorted(f for j, fold in enumerate(folds) if j != i for f in fold)
        for lr in cfg.lr:
            rows += _fold_attack(model, tokenizer, ctx, kind, probe, i, T, V, lr, cfg, seed)
    return rows


def _fold_attack(model, tokenizer, ctx: ProbeContext, kind: str, probe: str, fold: int,
                 T: list[int], V: list[int], lr: float, cfg: RelearnConfig, seed: int
                 ) -> list[dict]:
    """One fine-tuning run on fold ``fold``'s attack documents, probed at every step count."""
    from kgtest.stacked_probes import fine_tune
    from kgtest.train import TrainConfig

    docs, taught = attack_documents(ctx, kind, T, V)
    derivable = audit(ctx, V, attack_facts=taught, removed=ctx.removed_by(ctx.variant),
                      trained=ctx.trained_facts(ctx.variant))
    steps = sorted(set(cfg.steps))
    every = int(np.gcd.reduce(steps))
    rows: list[dict] = []

    def probe_at(m, step):
        out = ask(m, tokenizer, ctx, direct_items(ctx, V), probe,
                  setting=f"steps={step},lr={lr:g}", attack=kind, attack_steps=step,
                  attack_lr=lr, n_attack_facts=len(taught), fold=fold)
        for r, d in zip(out, derivable, strict=True):
            r["audit_derivable"] = d
        rows.extend(out)

    if not docs:  # nothing to train on: every step count is the model itself
        for step in steps:
            probe_at(model, step)
        return rows
    reached = iter(range(every, steps[-1] + 1, every))

    def eval_fn(m):  # called every `every` steps and at the end, in eval mode
        step = next(reached)
        if step in steps:
            probe_at(m, step)
        return {}

    tc = TrainConfig(steps=steps[-1], lr=lr, batch_size=cfg.batch_size, warmup=0,
                     min_lr_ratio=1.0, eval_every=every, checkpoint_every=0, seed=seed,
                     progress=False, tensorboard=False,
                     threads=torch.get_num_threads())  # the probes' (the run's, pinned)
    attacked = copy.deepcopy(model)
    with tempfile.TemporaryDirectory(prefix="kgtest-relearn-") as tmp:
        # kgtest.train.train; beside other seeds' probes (kgtest run --seeds), one ensemble
        fine_tune(attacked, tokenizer, docs, tc, tmp, eval_fn=eval_fn)
    return rows


@PROBES.register("relearn", kind="attack", grid=True)
def relearn(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """Fine-tune a copy on the other folds' targets; ask each fold in turn."""
    return _attack(model, tokenizer, facts, ctx, "targets", "relearn")


@PROBES.register("relearn_premises", kind="attack", grid=True)
def relearn_premises(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """Fine-tune a copy on the targets' premises only; ask each fold in turn."""
    return _attack(model, tokenizer, facts, ctx, "premises", "relearn_premises")
