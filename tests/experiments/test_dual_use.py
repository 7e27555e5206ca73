"""experiments/dual_use.toml (claim 3): the full spec's shape, and a tiny variant end to end.

The tiny variant shrinks the world, training and probes with --set overrides (seconds, not
minutes) and checks what the README row reads: the forget targets are the rule's harmful
applications, the rows carry both domains, and summary.md has the "By domain" cut.
"""

from pathlib import Path

import pytest

from kgtest.experiment import load_experiment
from kgtest.records import read_records
from kgtest.sweep import load_sweep
from kgtest.sweep.job import run

SPEC = Path(__file__).resolve().parents[2] / "experiments" / "dual_use.toml"
SHRINK = ["sweep.seed=[0]", "world.params.n_entities=8", "split.n_forget=2",
          "split.n_validation=1", "train.steps=20", "train.eval_every=0",
          "unlearn.tune_epochs=[1]", "unlearn.retain_eval=20", "probes.utility_limit=10",
          "probes.n_boot=50"]


def test_full_spec_targets_harmful_applications_over_five_seeds(tmp_path):
    sweep = load_sweep(SPEC, tmp_path)
    assert len({r.seed for r in sweep.runs}) >= 5
    cfg = load_experiment(sweep.experiment, sweep.runs[0].overrides)
    assert cfg.split.target_domain == "harmful"
    assert cfg.split.target_rules == ("neutralises",)
    assert set(cfg.unlearn.controls) == {"filter", "ignorance", "never_trained"}


@pytest.mark.slow  # one tiny seed, every control: 36 s alone (half: world drawing, plots)
def test_tiny_variant_runs_and_cuts_by_domain(tmp_path):
    sweep = load_sweep(SPEC, tmp_path, SHRINK)
    (one,) = sweep.runs
    folder = run(sweep.experiment, one.overrides, tmp_path / "runs", name=one.name)
    rows = read_records(folder)
    forget = [r for r in rows if r["split"] == "forget"]
    assert forget and {r["domain"] for r in forget} == {"harmful"}
    assert {r["relation"] for r in forget} == {"neutralises"}
    assert {r["domain"] for r in rows if r["probe"] == "utility_direct"} == {"benign", "harmful"}
    assert {"original", "filter", "ignorance", "never_trained", "GradDiff", "NPO",
            "IdkSFT"} <= {r["variant"] for r in rows}
    assert {"direct", "cot", "latent", "utility_direct", "utility_cot"} <= {
        r["probe"] for r in rows}
    text = (folder / "summary.md").read_text()
    assert "## By domain" in text
    assert "### Utility on the forget targets' relations, by domain" in text
    assert "| NPO | benign |" in text and "| NPO | harmful |" in text
