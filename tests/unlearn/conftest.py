"""A tiny trained run, trained once per test session (~15 s on one CPU thread)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kgtest.experiment import load_experiment
from kgtest.pipeline import train_experiment

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]

#: quickstart, shrunk: 20 entities, tiny GPT-2, derived facts stated + QA + CoT, so the
#: trained model answers every target directly (direct accuracy 1.0 on stated facts).
TINY = ["model.preset=tiny", "train.steps=1500", "train.progress=false",
        "train.tensorboard=false", "world.params.n_entities=20", "train.lr=3e-3",
        "corpus.derived=both", "split.n_forget=10", "split.n_validation=5"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """``(TrainedRun, RunContext)`` of the tiny quickstart run."""
    from kgtest.unlearn.api import load_run

    torch.set_num_threads(1)
    cfg = load_experiment(ROOT / "experiments" / "quickstart.toml", TINY)
    run = train_experiment(cfg, tmp_path_factory.mktemp("run"))
    assert run.metrics["acc_direct"] == 1.0
    return run, load_run(run)
