"""experiments/relearn_quantize.toml (anchors 5 and 6): the full spec's shape, and a tiny
variant end to end.

The tiny variant shrinks everything with --set overrides and checks what the two README
rows read: per method and control the relearn (worst case) and quantize columns, the
weight-change section, and the "Recovery of pre-unlearning accuracy" section of summary.md.
"""

from pathlib import Path

from kgtest.experiment import load_experiment
from kgtest.records import read_records
from kgtest.sweep import load_sweep
from kgtest.sweep.job import run

SPEC = Path(__file__).resolve().parents[2] / "experiments" / "relearn_quantize.toml"
METHODS = ("GradAscent", "GradDiff", "NPO", "RMU")
SHRINK = ["sweep.seed=[0]", "world.params.n_entities=12", "split.n_forget=4",
          "split.n_validation=2", "train.steps=30", "train.eval_every=0",
          "unlearn.tune_lrs=[1e-3]", "unlearn.tune_epochs=[1]", "unlearn.retain_eval=20",
          "probes.utility_limit=10", "probes.n_boot=50", "probes.relearn.steps=[1, 2]",
          "probes.relearn.lr=[1e-3]"]


def test_full_spec_runs_both_attacks_on_every_method_over_five_seeds(tmp_path):
    sweep = load_sweep(SPEC, tmp_path)
    assert len({r.seed for r in sweep.runs}) >= 5
    cfg = load_experiment(sweep.experiment, sweep.runs[0].overrides)
    assert set(cfg.unlearn.methods) == set(METHODS) and cfg.unlearn.deep == (False,)
    assert set(cfg.unlearn.controls) == {"filter", "ignorance", "never_trained"}
    assert {"direct", "relearn", "quantize"} <= set(cfg.probes.probes)
    assert set(cfg.probes.quantize_bits) == {8, 4}
    grid = cfg.probes.relearn  # Deeb & Roger: >= 3 lrs x 2 step counts, worst case reported
    assert len(grid.lr) >= 3 and len(grid.steps) >= 2 and grid.folds >= 2
    assert max(cfg.unlearn.tune_lrs) <= 1e-3  # low rates, as Zhang et al. tune theirs


def test_tiny_variant_runs_and_reports_recovery(tmp_path):
    sweep = load_sweep(SPEC, tmp_path, SHRINK)
    (one,) = sweep.runs
    folder = run(sweep.experiment, one.overrides, tmp_path / "runs", name=one.name)
    rows = read_records(folder)
    variants = {r["variant"] for r in rows}
    assert set(METHODS) | {"original", "filter", "ignorance", "never_trained"} <= variants
    for v in variants:
        probes = {(r["probe"], r["setting"]) for r in rows if r["variant"] == v}
        assert {("direct", ""), ("quantize", "int8"), ("quantize", "int4")} <= probes, v
        assert {s for p, s in probes if p == "relearn"} == {"steps=1,lr=0.001",
                                                            "steps=2,lr=0.001"}, v
    q = [r for r in rows if r["probe"] == "quantize" and r["variant"] in METHODS]
    assert all(0.0 <= r["weight_diff"] <= 1.0 and 0.0 <= r["quant_diff"] <= 1.0 for r in q)
    text = (folder / "summary.md").read_text()
    section = text.split("## Recovery of pre-unlearning accuracy", 1)[1].split("\n## ", 1)[0]
    head = next(x for x in section.splitlines() if x.startswith("| variant"))
    assert "relearn[worst]" in head and "quantize[int4]" in head and "quantize[int8]" in head
    for v in METHODS + ("filter", "ignorance", "never_trained"):
        assert f"\n| {v} | " in section, v
    assert "## Quantization: weights the unlearning changed" in text
