"""Fair tuning: every method gets the same search, on the validation targets only.

Methods differ in strength by their hyperparameters, so comparing them at one learning rate
compares settings, not methods. :func:`tune` runs a method on the **validation** targets
(never the reported ones) over a small grid of learning rate x steps and picks, among the
points whose validation direct accuracy is at most ``level`` (default: chance + 0.05), the
one with the highest retain accuracy (ties: fewer steps, then the lower rate). A method
that reaches the level nowhere is reported as such, with its best point (lowest validation
accuracy, then highest retain accuracy), never dropped. The whole grid is returned.

Because the loop's learning rate is constant, one run per learning rate to the largest
``steps`` value, evaluated on the way, gives every point of its row.

Examples
--------
>>> grid = [{"lr": 1e-3, "steps": 10, "forget_acc": 0.4, "retain_acc": 1.0},
...         {"lr": 1e-3, "steps": 20, "forget_acc": 0.0, "retain_acc": 0.7},
...         {"lr": 3e-3, "steps": 10, "forget_acc": 0.1, "retain_acc": 0.9}]
>>> choose(grid, level=0.1)
({'lr': 0.003, 'steps': 10, 'forget_acc': 0.1, 'retain_acc': 0.9}, True)
>>> choose(grid, level=-1.0)[1]
False
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedModel, PreTrainedTokenizerFast

from kgtest.unlearn.data import ForgetSet, direct_accuracy
from kgtest.unlearn.loop import unlearn
from kgtest.unlearn.methods import METHODS

__all__ = ["TuneResult", "tune", "choose"]


@dataclass(frozen=True)
class TuneResult:
    """The tuning grid of one method and the point chosen."""

    grid: list  # {"lr", "steps", "forget_acc", "retain_acc", "loss"} per point
    choice: dict  # the chosen point (or the best one when the level was not reached)
    reached: bool  # whether some point brought validation accuracy down to the level
    level: float  # the validation direct accuracy aimed at (chance + margin)
    chance: float  # chance level of the validation targets
    original: dict  # {"forget_acc", "retain_acc"} of the model before unlearning

    def to_json(self) -> dict:
        return {"grid": self.grid, "choice": self.choice, "reached": self.reached,
                "level": self.level, "chance": self.chance, "original": self.original}


def choose(grid: Sequence[dict], level: float) -> tuple[dict, bool]:
    """The point with the best retain accuracy among those at or below ``level``.

    Returns ``(point, reached)``; when no point reaches the level, the point with the
    lowest forget accuracy (then the highest retain accuracy) and False.
    """
    ok = [p for p in grid if p["forget_acc"] <= level + 1e-12]
    if ok:
        return min(ok, key=lambda p: (-p["retain_acc"], p["steps"], p["lr"])), True
    return min(grid, key=lambda p: (p["forget_acc"], -p["retain_acc"], p["steps"],
                                    p["lr"])), False


def tune(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, val: ForgetSet,
         retain_docs: Sequence[dict], method: str, params: dict | None = None, *,
         forget_eval: Sequence[dict], retain_eval: Sequence[dict], chance: float,
         margin: float = 0.05, lrs: Sequence[float] = (1e-4, 3e-4, 1e-3),
         steps: Sequence[int] = (10, 25, 50, 100), **loop_kwargs) -> TuneResult:
    """Grid-search learning rate x steps for ``method`` on the validation forget set.

    Parameters
    ----------
    model, tokenizer
        The trained model (left unchanged: each run unlearns a copy).
    val : ForgetSet
        The validation targets' forget set (:func:`~kgtest.unlearn.data.forget_set`).
    retain_docs : sequence of dict
        Retain documents for the method's retain term.
    method, params
        A registered method and its hyperparameters.
    forget_eval, retain_eval : sequence of dict
        Direct-probe documents of the validation targets and of retained facts.
    chance, margin : float
        The level aimed at is ``chance + margin``.
    lrs, steps : sequence
        The grid.
    **loop_kwargs
        Passed to :func:`~kgtest.unlearn.loop.unlearn` (batch sizes, seed, device...).

    Returns
    -------
    TuneResult
    """
    spec = METHODS.get(method)

    def eval_fn(m) -> dict:
        return {"forget_acc": direct_accuracy(m, tokenizer, forget_eval),
                "retain_acc": direct_accuracy(m, tokenizer, retain_eval)}

    original = eval_fn(model.eval())
    steps = sorted(set(int(s) for s in steps))
    grid = []
    for lr in sorted(set(float(x) for x in lrs)):
        work = copy.deepcopy(model)
        docs, idk = (val.pair_docs, val.idk_docs) if spec.pairs else (val.docs, None)
        res = unlearn(work, tokenizer, docs, retain_docs, method, params, idk_docs=idk,
                      lr=lr, steps=steps[-1], eval_fn=eval_fn, eval_at=steps,
                      **loop_kwargs)
        losses = {h["step"]: h["loss"] for h in res.history}
        for e in res.evals:
            last = max((s for s in losses if s <= e["step"]), default=None)
            grid.append({"lr": lr, "steps": e["step"], "forget_acc": e["forget_acc"],
                         "retain_acc": e["retain_acc"],
                         "loss": losses.get(last) if last is not None else None})
        del work
    level = chance + margin
    choice, reached = choose(grid, level)
    return TuneResult(grid=grid, choice=choice, reached=reached, level=level, chance=chance,
                      original=original)
