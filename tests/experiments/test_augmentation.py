"""experiments/augmentation.toml: a tiny variant of both conditions runs and reports QA on
people whose QA was never trained and inverse questions, by training exposure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgtest.experiment import load_experiment
from kgtest.pipeline import run_experiment
from kgtest.sweep import load_sweep

SPEC = Path(__file__).parents[2] / "experiments" / "augmentation.toml"
TINY = ["world.params.n_entities=12", "model.preset=tiny", "train.steps=5",
        "train.batch_size=8", "train.eval_every=5", "sweep.seed=[0]"]


@pytest.mark.slow  # two tiny runs: ~15 s of CPU
def test_tiny_augmentation_runs_both_conditions_and_reports_by_exposure(tmp_path):
    sweep = load_sweep(SPEC, tmp_path / "sweep", overrides=TINY)
    assert sorted((r.axes["corpus.multiplicity"], r.axes["corpus.permute"])
                  for r in sweep.runs) == [(1, False), (5, True)]
    for run in sweep.runs:
        cfg = load_experiment(tmp_path / "sweep" / "experiment.toml", run.overrides)
        out = tmp_path / str(run.axes["corpus.multiplicity"])
        text = run_experiment(cfg, out, log=lambda m: None).read_text()
        rows = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
        assert {(r["probe"], r["setting"]) for r in rows} == {
            ("direct", ""), ("paraphrase", "inverse")}
        trained = {r["trained"] for r in rows}
        assert trained == {"statement", "statement+qa", "statement+inverse",
                           "statement+inverse+qa"}
        section = text.split("## The original model on every asked fact")[1].split("\n## ")[0]
        for cut in ("| direct | statement | ", "| direct | statement+qa | ",
                    "| paraphrase[inverse] | statement | ",
                    "| paraphrase[inverse] | statement+inverse | "):
            assert cut in section
