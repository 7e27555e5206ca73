"""A tiny model trained once per session on a 20-entity composition world (~30 s)."""

from __future__ import annotations

import pytest
import torch

from kgtest.corpus.io import stage_seed
from kgtest.experiment import load_experiment
from kgtest.model import build_model, load_model
from kgtest.pipeline import train_experiment
from kgtest.probes.probes import ProbeContext
from kgtest.worlds.samplers import sample_world

OVERRIDES = ["model.preset=tiny", "train.steps=1500", "train.progress=false",
             "world.params.n_entities=20", "train.lr=3e-3",
             # the targets' own chains are trained here: these tests check the probes'
             # mechanics on a model that knows its targets every way
             "split.target_presentation=stated_and_cot"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """``(model, tokenizer, ctx, cfg)``: direct accuracy 1.0 on stated facts."""
    torch.set_num_threads(1)
    cfg = load_experiment("experiments/quickstart.toml", OVERRIDES)
    run = train_experiment(cfg, tmp_path_factory.mktemp("probe-run"))
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
