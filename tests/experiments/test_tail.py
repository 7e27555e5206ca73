"""experiments/tail.toml, shrunk to seconds: it runs, targets are what the spec asks (rare
base facts nothing is derived from), and the report has the frequency and collateral cuts
the README row quotes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kgtest.experiment import load_experiment
from kgtest.records import read_runs
from kgtest.sweep import load_sweep, run_sweep, sweep_report

SPEC = Path(__file__).parents[2] / "experiments" / "tail.toml"
SHRINK = ["sweep.seed=[0]", 'sweep.split.target_freq=["rare"]',
          'sweep.split.target_uses=["none"]', "train.steps=20", "train.eval_every=20",
          "unlearn.tune_lrs=[1e-3]", "unlearn.tune_epochs=[1]",
          "probes.relearn.steps=[2]", "probes.relearn.lr=[1e-3]", "probes.n_boot=50"]


def test_the_full_spec_sweeps_two_kinds_of_target_over_five_seeds(tmp_path):
    sweep = load_sweep(SPEC, tmp_path)
    assert sorted({r.seed for r in sweep.runs}) == [0, 1, 2, 3, 4]
    kinds = {(r.axes["split.target_freq"], r.axes["split.target_uses"]) for r in sweep.runs}
    assert kinds == {("rare", "none"), ("frequent", "some")}
    cfg = load_experiment(sweep.experiment)
    assert cfg.world.zipf > 0 and cfg.split.targets_from == ("base",)
    assert "relearn" in cfg.probes.probes and len(cfg.probes.relearn.lr) >= 3
    assert len(cfg.probes.relearn.steps) >= 2


@pytest.mark.slow  # ~30 CPU s: the whole pipeline, shrunk
def test_tiny_variant_runs_with_rare_isolated_targets_and_reports_the_cuts(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "sweep"
    run_sweep(SPEC, out, backend="local", jobs=1, overrides=SHRINK, progress=False,
              log=lambda m: None)
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 1
    rows = read_runs(runs)
    derivs = [json.loads(line) for line in
              next(runs[0].glob("world-*/derivations.jsonl")).read_text().splitlines()]
    used = {tuple(p) for d in derivs for p in d["premises"]}
    forget = {(r["subject"], r["relation"], r["object"]) for r in rows
              if r["split"] == "forget"}
    assert len(forget) == 6 and not forget & used  # nothing is derived from them
    assert {r["variant"] for r in rows} == {"original", "filter", "never_trained", "NPO"}
    assert {"direct", "relearn", "utility_direct"} <= {r["probe"] for r in rows}
    targets = [r for r in rows if r["split"] == "forget"]
    assert all(not r["derived"] for r in targets)
    retained = [r["entity_freq"] for r in rows if r["probe"] == "utility_direct"]
    assert np.median([r["entity_freq"] for r in targets]) <= np.median(retained)
    sweep_report(out)
    text = (out / "cells" / "cell00" / "summary.md").read_text()
    assert "## Collateral on neighbours" in text and "| variant | neighbours | others |" in text
