"""Fixtures shared by the test folders.

``tiny_run`` trains the quickstart experiment shrunk to a tiny model (20 entities, a
2-layer d=32 GPT-2, 1500 steps at lr 3e-3, one torch thread; ~15-30 s), once per test
session for each setting asked for, by one xdist worker (the other reuses it). The probe
and unlearning tests train from it (they ask for different target presentations, so for
two models: see their conftest.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
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
def tiny_run(request, tmp_path_factory):
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
            shared = _shared_tmp(request.config, tmp_path_factory) / ("tiny-run-" + hashlib.sha1(
                repr(overrides).encode()).hexdigest()[:12])
            # one trainer: under xdist the other worker waits for the lock, then finds the
            # finished stages; each worker works in its own copy (tests add stages to it)
            with open(f"{shared}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                train_experiment(cfg, shared)
            own = tmp_path_factory.mktemp("tiny-run")
            shutil.copytree(shared, own, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(".lock"))
            runs[overrides] = cfg, train_experiment(cfg, own)  # reuses every stage copied
        return runs[overrides]

    return get


def _shared_tmp(config, tmp_path_factory) -> Path:
    """This session's temporary folder, shared by its xdist workers (``make test`` runs
    ``pytest -n 2``: each worker's basetemp is a ``popen-gwN`` folder inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if hasattr(config, "workerinput") else base


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
