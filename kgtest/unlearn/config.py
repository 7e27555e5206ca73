"""The ``[unlearn]`` section of an experiment spec: methods, tuning grid, controls.

Every field has a default, so ``[unlearn]`` may be left out. Unlearning runs for a number of
*epochs of the forget set* (``tune_epochs``, ``epochs``), so that the validation and the
reported forget sets get the same updates per document; ``forget_kinds`` narrows which
rendered kinds are forgotten (every method forgets the same documents); a tuned point must
reach ``floor + level_margin`` on the validation targets and keep ``utility_floor`` of the
original's retain accuracy (see :mod:`kgtest.unlearn.tune`). Per-method hyperparameters
go in ``params``, one table per method (``[unlearn.params.NPO] beta = 0.2``); names and
types are checked against the method's signature (see :mod:`kgtest.unlearn.methods`).

Examples
--------
>>> from kgtest.config import build
>>> cfg = build(UnlearnConfig, {"methods": ["NPO"], "tune_lrs": [1e-4]}, where="spec.toml",
...             section="unlearn")
>>> cfg.methods, cfg.tune_lrs, cfg.tune_epochs, cfg.utility_floor
(('NPO',), (0.0001,), (1.0, 2.0, 4.0, 8.0), 0.9)
>>> build(UnlearnConfig, {"controls": ["filtr"]}, where="spec.toml", section="unlearn")
Traceback (most recent call last):
...
kgtest.errors.InputError: spec.toml: [unlearn] unknown control 'filtr' (known: filter, ...)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kgtest.config import MAX_STEPS, in_range, nonneg, positive
from kgtest.unlearn.methods import METHODS

__all__ = ["UnlearnConfig", "CONTROLS", "ALL_METHODS"]

#: Retrained or untrained comparison models (see :mod:`kgtest.unlearn.controls`).
CONTROLS = ("filter", "ignorance", "never_trained")
#: The methods a spec runs by default: every registered one, in registration order.
ALL_METHODS = tuple(METHODS.registered())


def _epochs_grid(values) -> str | None:
    return _all_positive(values) or in_range(0, MAX_STEPS)(values)


def _epochs_grid_one(value) -> str | None:
    return _epochs_grid([value])


def _fraction(value) -> str | None:
    return None if 0.0 <= value <= 1.0 else "must be in [0, 1]"


def _all_positive(values) -> str | None:
    if not values:
        return "must not be empty"
    return "must hold values > 0" if any(v <= 0 for v in values) else None


@dataclass(frozen=True)
class UnlearnConfig:
    """Settings of the unlearning stage (the ``[unlearn]`` table of a spec)."""

    methods: tuple[str, ...] = ALL_METHODS  # registered method names `kgtest run` applies
    deep: tuple[bool, ...] = (False, True)  # plain variant, deep variant, or both
    controls: tuple[str, ...] = CONTROLS  # retrained/untrained controls `kgtest run` builds
    params: dict = field(default_factory=dict)  # per method: {NPO = {beta = 0.2}, ...}
    retain_loss: Literal["nll", "kl"] = "nll"  # retain term of methods that have one
    include_cot_premise_docs: bool = False  # also forget CoT documents using a target as premise
    forget_kinds: tuple[str, ...] | None = None  # statement, qa, cot, in_context (None: all)
    tune: bool = True  # tune lr x epochs on the validation targets (False: use lr, epochs)
    tune_lrs: tuple[float, ...] = field(default=(1e-4, 3e-4, 1e-3),
                                        metadata={"check": _all_positive})  # grid: rates
    tune_epochs: tuple[float, ...] = field(default=(1.0, 2.0, 4.0, 8.0),
                                           metadata={"check": _epochs_grid})  # forget-set epochs
    level_margin: float = field(default=0.05, metadata={"check": nonneg})  # acc <= floor + m
    utility_floor: float = field(default=0.9, metadata={"check": _fraction})  # keep retain >=
    # utility_floor x the original's retain direct accuracy
    lr: float = field(default=3e-4, metadata={"check": positive})  # used when tune = false
    epochs: float = field(default=2.0, metadata={"check": _epochs_grid_one})  # tune = false
    batch_size: int = field(default=16, metadata={"check": positive})  # forget docs per step
    retain_batch_size: int = field(default=16, metadata={"check": positive})  # retain docs/step
    weight_decay: float = field(default=0.0, metadata={"check": nonneg})  # AdamW, all params
    grad_clip: float = field(default=1.0, metadata={"check": nonneg})  # max grad norm (0: off)
    retain_eval: int = field(default=200, metadata={"check": positive})  # retain facts scored
    deletion_restarts: int = field(default=100, metadata={"check": positive})  # deep sets search
    deletion_time_limit: float = field(default=5.0, metadata={"check": nonneg})  # exact search s
    control_steps: int = field(default=0, metadata={"check": in_range(0, MAX_STEPS)})  # 0: as
    # the original took
    seed: int | None = None  # batch order, RMU's direction, samples (None: from run.seed)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available
    progress: bool = True  # tqdm progress bars on stderr

    def __post_init__(self):
        bad = [c for c in self.controls if c not in CONTROLS]
        if bad:
            raise ValueError(f"unknown control {bad[0]!r} (known: {', '.join(CONTROLS)})")
        kinds = ("statement", "qa", "cot", "in_context")
        if self.forget_kinds is not None:
            bad = [k for k in self.forget_kinds if k not in kinds]
            if bad or not self.forget_kinds:
                raise ValueError(f"forget_kinds: unknown or empty kinds {bad} (known: "
                                 f"{', '.join(kinds)})")
        for name in self.methods:
            METHODS.get(name)
        for name, table in self.params.items():
            if not isinstance(table, dict):
                raise ValueError(f"params.{name} must be a table of hyperparameters")
            METHODS.get(name).resolve(table, where=f"unlearn.params.{name}")
