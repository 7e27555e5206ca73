"""Unlearning: registered methods, one shared loop, fair tuning, deep variants, controls.

- :mod:`~kgtest.unlearn.methods`: the methods (GradAscent, GradDiff, NPO, SimNPO, IdkSFT,
  IdkDPO, RMU) as registered loss functions with their formulas, in :data:`METHODS`;
- :mod:`~kgtest.unlearn.loop`: :func:`unlearn`, the loop that runs any of them;
- :mod:`~kgtest.unlearn.data`: forget sets (every rendered form of a target; deep: plus a
  minimal deletion set), retain documents, the direct probe and chance;
- :mod:`~kgtest.unlearn.tune`: lr x steps grid on the validation targets;
- :mod:`~kgtest.unlearn.controls`: filter / ignorance / never-trained controls;
- :mod:`~kgtest.unlearn.api`: :func:`unlearn_run` and :func:`control_run` on a trained run;
- :mod:`~kgtest.unlearn.config`: :class:`UnlearnConfig`, the ``[unlearn]`` spec section.

Examples
--------
>>> "NPO" in METHODS, UnlearnConfig().tune_lrs
(True, (0.0001, 0.0003, 0.001))
"""

from kgtest.unlearn.api import apply_overrides, control_run, load_run, unlearn_run
from kgtest.unlearn.config import ALL_METHODS, CONTROLS, UnlearnConfig
from kgtest.unlearn.controls import control_corpus, never_trained, train_control
from kgtest.unlearn.data import ForgetSet, deletion_sets, forget_set, retain_docs
from kgtest.unlearn.loop import UnlearnResult, unlearn
from kgtest.unlearn.methods import METHODS, Batch, Step
from kgtest.unlearn.tune import TuneResult, choose, tune

__all__ = ["METHODS", "Batch", "Step", "UnlearnConfig", "ALL_METHODS", "CONTROLS",
           "ForgetSet", "forget_set", "deletion_sets", "retain_docs", "UnlearnResult",
           "unlearn", "TuneResult", "tune", "choose", "control_corpus", "train_control",
           "never_trained", "unlearn_run", "control_run", "load_run", "apply_overrides"]
