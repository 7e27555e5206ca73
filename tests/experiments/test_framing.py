"""experiments/framing.toml (claim 4): the full spec's shape, and a tiny variant end to end.

The tiny variant shrinks everything with --set overrides and checks the columns the README
row reads: per method the relearn, quantize and utility rows, and the stability section
(admissible grid points k/n, spread over the grid and over seeds) in summary.md.
"""

from pathlib import Path

import pytest

from kgtest.experiment import load_experiment
from kgtest.records import read_records
from kgtest.sweep import load_sweep
from kgtest.sweep.job import run

SPEC = Path(__file__).resolve().parents[2] / "experiments" / "framing.toml"
NEGATIVE, POSITIVE = ("GradAscent", "GradDiff", "NPO", "SimNPO"), ("IdkSFT", "IdkDPO")
SHRINK = ["sweep.seed=[0]", "world.params.n_entities=10", "split.n_forget=4",
          "split.n_validation=2", "train.steps=20", "train.eval_every=0",
          "unlearn.tune_lrs=[1e-3, 3e-3]", "unlearn.tune_epochs=[1, 2]",
          "unlearn.retain_eval=20", "probes.utility_limit=10", "probes.n_boot=50",
          "probes.relearn.steps=[2]", "probes.relearn.lr=[1e-3]"]


def test_full_spec_compares_both_framings_over_five_seeds(tmp_path):
    sweep = load_sweep(SPEC, tmp_path)
    assert len({r.seed for r in sweep.runs}) >= 5
    cfg = load_experiment(sweep.experiment, sweep.runs[0].overrides)
    assert set(cfg.unlearn.methods) == set(NEGATIVE + POSITIVE)
    assert len(cfg.unlearn.tune_lrs) >= 2 and len(cfg.unlearn.tune_epochs) >= 2
    assert set(cfg.unlearn.controls) == {"filter", "ignorance", "never_trained"}


@pytest.mark.slow  # one tiny seed, 6 methods, every control: 233 s vs dual_use 99 s (busy cores)
def test_tiny_variant_runs_and_reports_stability(tmp_path):
    sweep = load_sweep(SPEC, tmp_path, SHRINK)
    (one,) = sweep.runs
    folder = run(sweep.experiment, one.overrides, tmp_path / "runs", name=one.name)
    rows = read_records(folder)
    variants = {r["variant"] for r in rows}
    assert set(NEGATIVE + POSITIVE) | {"original", "filter", "never_trained"} <= variants
    for m in NEGATIVE + POSITIVE:
        probes = {r["probe"] for r in rows if r["variant"] == m}
        assert {"direct", "relearn", "quantize", "utility_direct"} <= probes, m
    text = (folder / "summary.md").read_text()
    section = text.split("## Stability over the tuning grid and seeds", 1)[1]
    for m in NEGATIVE + POSITIVE:  # one row per method, 4 grid points (2 lrs x 2 epochs)
        assert f"| {m} | 1 |" in section and "/4 |" in section.split(f"| {m} | 1 |")[1]
