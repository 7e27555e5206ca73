"""The tiny quickstart model (tests/conftest.py), trained with the targets' own chains of
thought (``split.target_presentation = "stated_and_cot"``): these tests check the probes'
mechanics on a model that knows its targets every way."""

from __future__ import annotations

import pytest

from kgtest.corpus.io import stage_seed
from kgtest.model import build_model, load_model
from kgtest.probes.probes import ProbeContext
from kgtest.worlds.samplers import sample_world


@pytest.fixture(scope="session")
def trained(tiny_run):
    """``(model, tokenizer, ctx, cfg)``: direct accuracy 1.0 on stated facts."""
    cfg, run = tiny_run("split.target_presentation=stated_and_cot")
    world = sample_world(cfg.world, seed=stage_seed(cfg.run.seed, "world"))
    ctx = ProbeContext.from_run(run.corpus_dir, world, run_id="probe-test",
                                seeds={"world": stage_seed(cfg.run.seed, "world"),
                                       "train": cfg.seeds()["batches"], "attack": 0})
    model, tok = load_model(run.model_dir)
    return model, tok, ctx, cfg


@pytest.fixture(scope="session")
def untrained(trained):
    """The never-trained initialisation with the same tokenizer."""
    _, tok, _, cfg = trained
    return build_model(cfg.model, tok, seed=stage_seed(cfg.run.seed, "model")).eval()
