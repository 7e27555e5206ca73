"""experiments/interconnectedness.toml, shrunk to seconds: it runs, and its report has the
columns and the sections the README row quotes (by proof count, minimal deletion sets)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kgtest.records import read_runs
from kgtest.sweep import load_sweep, run_sweep, sweep_report

SPEC = Path(__file__).parents[2] / "experiments" / "interconnectedness.toml"
#: one seed, one density, a few steps everywhere: the spec's shape, not its numbers
SHRINK = ["sweep.seed=[0]", "train.steps=20",
          "train.eval_every=20", "unlearn.tune_lrs=[1e-3]", "unlearn.tune_epochs=[1]",
          "unlearn.deletion_restarts=5", "probes.n_boot=50"]


def test_the_full_spec_is_a_valid_sweep_of_at_least_five_seeds(tmp_path):
    sweep = load_sweep(SPEC, tmp_path)
    assert sorted({r.seed for r in sweep.runs}) == [0, 1, 2, 3, 4]
    cfg = __import__("kgtest.experiment", fromlist=["x"]).load_experiment(sweep.experiment)
    assert cfg.world.planted_proofs == (1, 2, 4, 8) and cfg.split.targets_from == ("planted",)
    assert set(cfg.unlearn.controls) == {"filter", "ignorance", "never_trained"}


@pytest.mark.slow  # ~30 CPU s: the whole pipeline, shrunk
def test_tiny_variant_runs_and_reports_by_proof_count(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "sweep"
    run_sweep(SPEC, out, backend="local", jobs=1, overrides=SHRINK, progress=False,
              log=lambda m: None)
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 1
    rows = read_runs(runs)
    targets = [r for r in rows if r["split"] == "forget" and r["probe"] == "direct"]
    assert {r["proofs"] for r in targets} <= {1, 2, 4, 8} and len({r["proofs"]
                                                                  for r in targets}) >= 2
    assert {r["variant"] for r in rows} == {"original", "filter", "ignorance",
                                            "never_trained", "NPO", "NPO_deep"}
    assert {"direct", "cot", "latent", "utility_direct"} <= {r["probe"] for r in rows}
    sweep_report(out)
    text = (out / "cells" / "cell00" / "summary.md").read_text()
    assert "## By proof count" in text and "| variant | k = " in text
    assert "## Minimal deletion sets" in text
    # every planted target of k proofs needs exactly k + 1 deletions (target included)
    table = text.split("## Minimal deletion sets")[1].split("\n\n")[2]
    for line in table.splitlines()[2:]:
        k, _, mean, span = [c.strip() for c in line.strip("|").split("|")]
        assert float(mean) == int(k) + 1 and span == f"{int(k) + 1}–{int(k) + 1}"


@pytest.mark.parametrize("bad", ["world.planted_proofs=[1, 0]", "split.target_freq=\"tail\""])
def test_bad_settings_are_refused_before_anything_runs(tmp_path, bad):
    from kgtest.errors import InputError

    with pytest.raises(InputError, match=bad.split("=")[0].replace(".", r"\.")):
        load_sweep(SPEC, tmp_path, overrides=[bad])


DENSITY = SPEC.with_name("density.toml")


def test_the_density_spec_sweeps_three_densities_over_five_seeds(tmp_path):
    sweep = load_sweep(DENSITY, tmp_path)
    points = {(r.seed, r.axes["world.params.density"]) for r in sweep.runs}
    assert points == {(s, d) for s in range(5) for d in (0.5, 0.75, 1.0)}


@pytest.mark.slow  # ~60 CPU s: the whole pipeline, shrunk, at two densities
def test_tiny_density_variant_reports_deletion_sets_per_density(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "sweep"
    run_sweep(DENSITY, out, backend="local", jobs=1, progress=False, log=lambda m: None,
              overrides=SHRINK + ['sweep.world.params.density=[0.5, 1.0]'])
    rows = [r for run in sorted((out / "runs").iterdir()) for r in read_runs([run])]
    assert {r["variant"] for r in rows} == {"original", "filter", "ignorance",
                                            "never_trained", "NPO", "NPO_deep"}
    sweep_report(out)
    text = (out / "cells" / "cell00" / "summary.md").read_text()
    assert "## Minimal deletion sets" in text and "| NPO_deep | 1 |" in text
    # the cut README row 1c cites: the densities side by side, a row each
    across = (out / "summary.md").read_text().split("## Across cells")[1]
    assert "| world.params.density | targets | mean proofs |" in across
    for density in ("0.5", "1.0"):
        assert f"\n| {density} | 10 | " in across
    assert "### direct" in across and (out / "plots" / "cells.png").exists()
