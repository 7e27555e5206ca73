"""experiments/rederivation.toml (claim 1): the full spec's shape, and a tiny variant end to
end (two methods, every control, every re-derivation route; seconds)."""

from pathlib import Path

import pytest

from kgtest.experiment import load_experiment
from kgtest.records import read_records
from kgtest.sweep import load_sweep
from kgtest.sweep.job import run
from kgtest.unlearn.methods import METHODS

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "experiments" / "rederivation.toml"
ROUTES = {"direct", "cot", "in_context", "latent", "utility_direct"}
SHRINK = ["sweep.seed=[0]", "world.params.n_entities=12", "split.n_forget=4",
          "split.n_validation=2", "train.steps=30", "train.eval_every=0", "model.preset=tiny",
          'unlearn.methods=["GradAscent", "RMU"]', "unlearn.tune_lrs=[1e-3]",
          "unlearn.tune_epochs=[1]", "unlearn.retain_eval=20", "probes.utility_limit=10",
          "probes.n_boot=50", "train.threads=1"]


def test_full_spec_is_the_quickstart_with_every_method_and_no_attacks(tmp_path):
    sweep = load_sweep(SPEC, tmp_path)
    assert sorted(r.seed for r in sweep.runs) == [0, 1, 2, 3, 4]
    cfg = load_experiment(sweep.experiment, sweep.runs[0].overrides)
    quick = load_experiment(ROOT / "experiments" / "quickstart.toml")
    assert set(cfg.unlearn.methods) == set(METHODS.names())
    assert cfg.unlearn.deep == (False, True)
    assert set(cfg.unlearn.controls) == {"filter", "ignorance", "never_trained"}
    assert {"relearn", "quantize"}.isdisjoint(cfg.probes.probes)
    # same stage keys as the quickstart up to the unlearning stage: its runs are reused
    for sections in (("world",), ("world", "split", "corpus"),
                     ("world", "split", "corpus", "model", "train")):
        assert cfg.key(*sections) == quick.key(*sections)
    assert cfg.split.target_presentation == "stated"


@pytest.mark.slow
def test_tiny_variant_reports_every_route_for_every_variant(tmp_path):
    sweep = load_sweep(SPEC, tmp_path, SHRINK)
    (one,) = sweep.runs
    folder = run(sweep.experiment, one.overrides, tmp_path / "runs", name=one.name)
    rows = read_records(folder)
    variants = {"original", "filter", "ignorance", "never_trained", "GradAscent",
                "GradAscent_deep", "RMU", "RMU_deep"}
    assert {r["variant"] for r in rows} == variants
    for v in variants:
        assert ROUTES <= {r["probe"] for r in rows if r["variant"] == v}, v
    text = (folder / "summary.md").read_text()
    assert "## Excess re-derivation over the filter control" in text
