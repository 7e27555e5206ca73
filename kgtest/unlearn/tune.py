"""Fair tuning: every method gets the same search, on the validation targets only.

Methods differ in strength by their hyperparameters, so comparing them at one learning rate
compares settings, not methods. :func:`tune` runs a method on the **validation** targets
(never the reported ones) over a grid of learning rate x **epochs of the forget set** (so
the validation run and the reported run give each forget document the same number of
updates, whatever the sizes of the two sets: :func:`epochs_to_steps`).

A grid point is **admissible** when it

- brings the validation targets' direct accuracy to the forgetting level: at most
  ``level = floor + margin``, where ``floor`` is the mean over the validation targets of
  their most-frequent-object floor (:func:`~kgtest.unlearn.data.majority_floor`), not
  ``1 / entities``; and
- keeps retain direct accuracy at least ``utility_floor`` (default 0.9) x the original's,
  on a retain sample disjoint from the utility probe's facts.

:func:`choose` takes the admissible point with the highest retain accuracy (ties: fewer
epochs, then the lower rate). When no point is admissible it takes the closest one (the
smallest total shortfall: forget accuracy above the level plus retain accuracy below the
utility floor) and says so: ``TuneResult.warnings`` (the caller prints them on stderr and
the report shows them). The whole grid is returned, for the trade-off frontier.

Because the loop's learning rate is constant, one run per learning rate to the largest
number of steps, evaluated on the way, gives every point of its row.

Examples
--------
>>> grid = [{"lr": 1e-3, "epochs": 1, "forget_acc": 0.4, "retain_acc": 1.0},
...         {"lr": 1e-3, "epochs": 2, "forget_acc": 0.0, "retain_acc": 0.7},
...         {"lr": 3e-3, "epochs": 1, "forget_acc": 0.1, "retain_acc": 0.9}]
>>> point, ok = choose(grid, level=0.1, retain_min=0.85)
>>> point["lr"], point["epochs"], ok
(0.003, 1, True)
>>> choose(grid, level=0.1, retain_min=0.95)[0]["epochs"], choose(grid, 0.1, 0.95)[1]
(1, False)
>>> epochs_to_steps(2, n_docs=40, batch_size=16), epochs_to_steps(2, n_docs=10, batch_size=16)
(5, 2)
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from transformers import PreTrainedModel, PreTrainedTokenizerFast

from kgtest.unlearn.data import ForgetSet, direct_accuracy, method_docs
from kgtest.unlearn.loop import LoopConfig, unlearn
from kgtest.unlearn.methods import METHODS

__all__ = ["TuneResult", "tune", "choose", "epochs_to_steps", "admissible", "shortfall",
           "curve_log"]


def epochs_to_steps(epochs: float, n_docs: int, batch_size: int) -> int:
    """Optimiser steps for ``epochs`` passes over ``n_docs`` forget documents (>= 1).

    The loop's batches hold ``min(batch_size, n_docs)`` documents.
    """
    per_step = max(1, min(int(batch_size), int(n_docs)))
    return max(1, math.ceil(float(epochs) * int(n_docs) / per_step - 1e-9))


def admissible(p: dict, level: float, retain_min: float) -> tuple[bool, bool]:
    """``(forgetting level reached, utility kept)`` for a grid point."""
    return (p["forget_acc"] <= level + 1e-12, p["retain_acc"] >= retain_min - 1e-12)


def shortfall(p: dict, level: float, retain_min: float) -> float:
    """How far a point is from admissible: forget excess plus retain deficit (0: admissible)."""
    return max(0.0, p["forget_acc"] - level) + max(0.0, retain_min - p["retain_acc"])


def choose(grid: Sequence[dict], level: float, retain_min: float = 0.0) -> tuple[dict, bool]:
    """The admissible point with the best retain accuracy, or the closest one.

    Returns ``(point, admissible)``.
    """
    ok = [p for p in grid if all(admissible(p, level, retain_min))]
    if ok:
        return min(ok, key=lambda p: (-p["retain_acc"], p["epochs"], p["lr"])), True
    return min(grid, key=lambda p: (shortfall(p, level, retain_min), p["forget_acc"],
                                    -p["retain_acc"], p["epochs"], p["lr"])), False


@dataclass(frozen=True)
class TuneResult:
    """The tuning grid of one method and the point chosen."""

    grid: list  # {"lr", "epochs", "steps", "forget_acc", "retain_acc", "loss", ...} per point
    choice: dict  # the chosen point (the closest one when none is admissible)
    reached: bool  # the chosen point brings validation accuracy down to the level
    kept: bool  # the chosen point keeps retain accuracy >= utility_floor x the original's
    level: float  # the validation direct accuracy aimed at (floor + margin)
    floor: float  # mean most-frequent-object floor of the validation targets
    utility_floor: float  # the fraction of the original's retain accuracy to keep
    retain_min: float  # utility_floor x original retain accuracy
    original: dict  # {"forget_acc", "retain_acc"} of the model before unlearning
    warnings: list = field(default_factory=list)  # one line per miss

    @property
    def admissible(self) -> bool:
        return self.reached and self.kept

    def to_json(self) -> dict:
        return {"grid": self.grid, "choice": self.choice, "reached": self.reached,
                "kept": self.kept, "admissible": self.admissible, "level": self.level,
                "floor": self.floor, "utility_floor": self.utility_floor,
                "retain_min": self.retain_min, "original": self.original,
                "warnings": list(self.warnings)}


def tune(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, val: ForgetSet,
         retain_docs: Sequence[dict], method: str, params: dict | None = None, *,
         forget_eval: Sequence[dict], retain_eval: Sequence[dict], floor: float,
         margin: float = 0.05, utility_floor: float = 0.9,
         lrs: Sequence[float] = (1e-4, 3e-4, 1e-3), epochs: Sequence[float] = (1, 2, 4, 8),
         name: str | None = None, loop: LoopConfig | None = None, **settings) -> TuneResult:
    """Grid-search learning rate x epochs for ``method`` on the validation forget set.

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
        Direct-probe documents of the validation targets and of retained facts (disjoint
        from the utility probe's).
    floor, margin : float
        The forgetting level is ``floor + margin`` (``floor``: the validation targets'
        mean most-frequent-object floor).
    utility_floor : float
        Admissible points keep retain accuracy >= ``utility_floor`` x the original's.
    lrs, epochs : sequence
        The grid (epochs of the validation forget set).
    name : str, optional
        The variant's name in warnings (default: ``method``).
    loop : LoopConfig, optional
        The loop's other settings (batch sizes, seed, device...); its ``lr`` and ``steps``
        are the grid's. Keyword ``settings`` replace fields (``progress=False``).

    Returns
    -------
    TuneResult
    """
    loop = replace(loop or LoopConfig(), **settings)
    spec = METHODS.get(method)
    docs, idk = method_docs(val, spec.pairs)

    def eval_fn(m) -> dict:
        return {"forget_acc": direct_accuracy(m, tokenizer, forget_eval),
                "retain_acc": direct_accuracy(m, tokenizer, retain_eval)}

    original = eval_fn(model.eval())
    epochs = sorted(set(float(e) for e in epochs))
    at = {epochs_to_steps(e, len(docs), loop.batch_size): e for e in reversed(epochs)}
    level = floor + margin
    retain_min = utility_floor * original["retain_acc"]
    grid = []
    for lr in sorted(set(float(x) for x in lrs)):
        work = copy.deepcopy(model)
        res = unlearn(work, tokenizer, docs, retain_docs, method, params, idk_docs=idk,
                      loop=replace(loop, lr=lr, steps=max(at)), eval_fn=eval_fn,
                      eval_at=sorted(at))
        losses = {h["step"]: h["loss"] for h in res.history}
        for e in res.evals:
            last = max((s for s in losses if s <= e["step"]), default=None)
            p = {"lr": lr, "epochs": at[e["step"]], "steps": e["step"],
                 "forget_acc": e["forget_acc"], "retain_acc": e["retain_acc"],
                 "loss": losses.get(last) if last is not None else None}
            p["reached"], p["kept"] = admissible(p, level, retain_min)
            grid.append(p)
        del work
    choice, ok = choose(grid, level, retain_min)
    return TuneResult(grid=grid, choice=choice, reached=bool(choice["reached"]),
                      kept=bool(choice["kept"]), level=level, floor=floor,
                      utility_floor=utility_floor, retain_min=retain_min, original=original,
                      warnings=_warnings(choice, name or method, level, floor, margin,
                                         utility_floor, original, retain_min))


def _warnings(choice: dict, who: str, level: float, floor: float, margin: float,
              utility_floor: float, original: dict, retain_min: float) -> list[str]:
    """One line per way the chosen point misses: the forgetting level, the utility floor."""
    warnings = []
    if not choice["reached"]:
        warnings.append(f"{who}: no admissible grid point; the closest (lr {choice['lr']:g}, "
                        f"{choice['epochs']:g} epochs) leaves validation direct accuracy at "
                        f"{choice['forget_acc']:.2f}, above the forgetting level {level:.2f} "
                        f"(floor {floor:.2f} + margin {margin:.2f})")
    if math.isnan(original["retain_acc"]):  # no retain sample: the floor cannot be checked
        warnings.append(f"{who}: no retain sample disjoint from the utility probe's facts "
                        "(probes.utility_limit takes every retained fact), so the utility "
                        "floor was not checked and the point was chosen on forgetting alone; "
                        "lower probes.utility_limit")
    elif not choice["kept"]:
        warnings.append(f"{who}: {'no admissible grid point; ' if choice['reached'] else ''}"
                        f"the chosen point (lr {choice['lr']:g}, {choice['epochs']:g} "
                        f"epochs) keeps retain direct accuracy {choice['retain_acc']:.2f}, "
                        f"below {utility_floor:g} x the original's "
                        f"{original['retain_acc']:.2f} = {retain_min:.2f}")
    return warnings


def curve_log(record: dict) -> str:
    """``unlearn_log.jsonl``: the final run's losses, and the tuning run at the chosen lr.

    The tuning grid evaluates every ``steps`` value along one run per learning rate, so
    its points at the chosen lr are an unlearning curve on the validation targets.

    Examples
    --------
    >>> rec = {"history": [{"step": 5, "loss": 1.5}], "tuning": {"choice": {"lr": 1e-3},
    ...        "grid": [{"lr": 1e-3, "steps": 3, "forget_acc": 0.5, "retain_acc": 1.0}]}}
    >>> print(curve_log(rec), end="")
    {"step": 3, "epochs": null, "val_forget_acc": 0.5, "val_retain_acc": 1.0}
    {"step": 5, "loss": 1.5}
    """
    rows = [{"step": h["step"], "loss": h["loss"]} for h in record.get("history") or []
            if "step" in h and "loss" in h]
    tuning = record.get("tuning") or {}
    lr = (tuning.get("choice") or {}).get("lr")
    for g in tuning.get("grid") or []:
        if g.get("lr") == lr:
            rows.append({"step": g["steps"], "epochs": g.get("epochs"),
                         "val_forget_acc": g["forget_acc"],
                         "val_retain_acc": g["retain_acc"]})
    return "".join(json.dumps(r) + "\n" for r in sorted(rows, key=lambda r: r["step"]))
