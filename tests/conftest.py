"""Fixtures shared by the test folders.

``tiny_run`` trains the quickstart experiment shrunk to a tiny model (20 entities, a
2-layer d=32 GPT-2, 1500 steps at lr 3e-3, one torch thread; ~15-30 s), once per test
session for each setting asked for. The probe and unlearning tests train from it (they
ask for different target presentations, so for two models: see their conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

#: quickstart, shrunk: derived facts stated + QA + CoT, so the trained model answers every
#: stated fact directly (direct accuracy 1.0 on stated facts)
TINY_QUICKSTART = ("model.preset=tiny", "train.steps=1500", "train.progress=false",
                   "train.tensorboard=false", "world.params.n_entities=20", "train.lr=3e-3",
                   "corpus.derived=both")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "trained: asserts a trained model's outcome (accuracies, rates, two "
        "trainings equal within a tolerance); `make test-arith` reruns these under other "
        "CPU arithmetic (tests/test_arith.py)")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """``tiny_run(*overrides) -> (cfg, TrainedRun)``: the tiny quickstart run with extra
    ``--set`` overrides, trained on first use and kept for the session."""
    from kgtest.experiment import load_experiment
    from kgtest.pipeline import train_experiment

    runs: dict[tuple[str, ...], tuple] = {}

    def get(*overrides: str):
        if overrides not in runs:
            torch.set_num_threads(1)
            cfg = load_experiment(ROOT / "experiments" / "quickstart.toml",
                                  [*TINY_QUICKSTART, *overrides])
            runs[overrides] = cfg, train_experiment(cfg, tmp_path_factory.mktemp("tiny-run"))
        return runs[overrides]

    return get


def _alive(pid: int) -> bool:
    """A live process (not a zombie waiting for a reaper); reads ``/proc`` (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def alive():
    """``alive(pid) -> bool``: whether process ``pid`` is running and not a zombie.

    A fixture, not an importable helper: pytest runs with ``--import-mode=importlib``, so
    test modules cannot import ``conftest``.
    """
    return _alive
