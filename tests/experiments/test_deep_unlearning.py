"""experiments/deep_unlearning.toml (EDU-RELAT itself) and deep_unlearning_family.toml
(generated family worlds): the full specs' shape, and a tiny variant of each that runs every
control and method and reports what the README rows cite (model-level recall beside the
symbolic)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgtest.experiment import load_experiment
from kgtest.pipeline import run_experiment
from kgtest.records import COLUMNS
from kgtest.sweep import load_sweep

EXPERIMENTS = Path(__file__).parents[2] / "experiments"
#: spec -> (its world sampler, the override that makes its world tiny)
SPECS = {"deep_unlearning": ("edu_relat", "world.params.people=20"),
         "deep_unlearning_family": ("family_tree", "world.params.generations=1")}
TINY = ["split.n_forget=3", "split.n_validation=2", "train.steps=5", "train.batch_size=8",
        "train.eval_every=5", "sweep.seed=[0]",
        "unlearn.tune_lrs=[1e-3]", "unlearn.tune_epochs=[1]", 'unlearn.methods=["NPO"]']


@pytest.mark.parametrize("name", SPECS)
def test_spec_sweeps_five_seeds_of_every_method_and_control(tmp_path, name):
    sweep = load_sweep(EXPERIMENTS / f"{name}.toml", tmp_path)
    assert sorted(r.axes["run.seed"] for r in sweep.runs) == [0, 1, 2, 3, 4]
    cfg = load_experiment(tmp_path / "experiment.toml", sweep.runs[0].overrides)
    assert cfg.probes.probes == ("direct", "kb_recall") and cfg.world.sampler == SPECS[name][0]
    assert set(cfg.unlearn.controls) == {"filter", "ignorance", "never_trained"}
    assert tuple(cfg.unlearn.deep) == (False, True) and len(cfg.unlearn.methods) >= 2


@pytest.mark.slow  # one tiny run with three controls and two variants: ~20 s of CPU
@pytest.mark.parametrize("name", SPECS)
def test_tiny_deep_unlearning_reports_model_level_recall(tmp_path, name):
    sweep = load_sweep(EXPERIMENTS / f"{name}.toml", tmp_path / "sweep",
                       overrides=[SPECS[name][1], *TINY])
    (run,) = sweep.runs
    cfg = load_experiment(tmp_path / "sweep" / "experiment.toml", run.overrides)
    text = run_experiment(cfg, tmp_path / "run", log=lambda m: None).read_text()
    rows = [json.loads(x) for x in (tmp_path / "run/records.jsonl").read_text().splitlines()]
    assert set(rows[0]) == set(COLUMNS)
    assert {r["probe"] for r in rows} == {"direct", "kb", "kb_recall"}
    variants = {"original", "filter", "ignorance", "never_trained", "NPO", "NPO_deep"}
    assert {r["variant"] for r in rows} == variants
    rec = [r for r in rows if r["probe"] == "kb_recall"]
    assert len(rec) == len(variants) * cfg.split.n_forget
    for r in rec:  # a target the original knew has every number; others are n.a.
        filled = [r[k] is not None for k in ("kb_recall", "kb_accuracy", "kb_size",
                                              "kb_unlearned", "min_set_size", "sym_recall")]
        assert all(filled) if r["applicable"] else not any(filled)
    section = text.split("## Deep unlearning at model level (Wu et al. 2024)")[1]
    assert "| NPO_deep |" in section and "Symbolic, target only" in section
    assert (tmp_path / "run/plots/deep_unlearning.png").is_file()
