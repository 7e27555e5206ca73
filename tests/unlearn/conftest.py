"""The tiny quickstart run (tests/conftest.py) with 10 forget and 5 validation targets,
stated only (the quickstart's ``split.target_presentation = "stated"``: the forget-set
tests check that no target has a chain of thought of its own)."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def trained(tiny_run):
    """``(TrainedRun, RunContext)`` of the tiny quickstart run."""
    from kgtest.unlearn.api import load_run

    _, run = tiny_run("split.n_forget=10", "split.n_validation=5")
    assert run.metrics["acc_direct"] == 1.0
    return run, load_run(run)
