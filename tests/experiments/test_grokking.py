"""experiments/grokking.toml (GPU) and grokking_cpu.toml (anchor 3): the specs' shape, the
GPU script's dry run, and a tiny variant of the CPU spec end to end.

The tiny variant checks what the README row reads: the ``ood`` tag on the records, the
in-loop latent ID / OOD curve (``train_log.jsonl``) and the two summary.md sections
("Latent composition in and out of distribution", "... during training") with its plot.
"""

import os
import subprocess
from pathlib import Path

import pytest

from kgtest.experiment import load_experiment
from kgtest.records import read_records
from kgtest.sweep import load_sweep
from kgtest.sweep.job import run

ROOT = Path(__file__).resolve().parents[2]
SHRINK = ["sweep.seed=[0]", "world.params.n_entities=16", "world.params.n_derived=4",
          "train.steps=40", "train.eval_every=20", "probes.utility_limit=40",
          "probes.n_boot=50"]


@pytest.mark.parametrize("name", ["grokking.toml", "grokking_cpu.toml"])
def test_specs_hold_out_id_and_ood_compositions_over_five_seeds(tmp_path, name):
    sweep = load_sweep(ROOT / "experiments" / name, tmp_path)
    assert len({r.seed for r in sweep.runs}) >= 5
    cfg = load_experiment(sweep.experiment, sweep.runs[0].overrides)
    assert cfg.split.ood_fraction > 0 and cfg.split.held_out_fraction > 0
    assert cfg.corpus.derived == "stated"  # no chain of thought: latent composition only
    assert cfg.train.weight_decay > 0 and cfg.train.eval_every > 0
    assert cfg.unlearn.methods == () and "latent" in cfg.probes.probes


def test_gpu_script_dry_run_prints_the_sweep(tmp_path):
    out = subprocess.run(["bash", str(ROOT / "experiments" / "run_grokking_gpu.sh"),
                          "--dry-run", str(tmp_path / "g")], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "kgtest sweep experiments/grokking.toml" in out.stdout
    assert "kgtest pack" in out.stdout and "kgtest report" in out.stdout


def test_tiny_cpu_variant_runs_and_reports_id_and_ood(tmp_path):
    sweep = load_sweep(ROOT / "experiments" / "grokking_cpu.toml", tmp_path, SHRINK)
    (one,) = sweep.runs
    folder = run(sweep.experiment, one.overrides, tmp_path / "runs", name=one.name)
    rows = read_records(folder)
    implied = [r for r in rows if r["probe"] == "implied"]
    ood = [r for r in implied if "ood" in r["tags"].split(",")]
    assert ood and len(ood) < len(implied)
    log = next(folder.glob("model-*/train_log.jsonl")).read_text()
    assert '"eval/latent_id"' in log and '"eval/latent_ood"' in log
    text = (folder / "summary.md").read_text()
    section = text.split("## Latent composition in and out of distribution", 1)[1]
    assert f"/{len(ood)} |" in section.split("\n| original |", 1)[1].split("\n")[0]
    assert "## Latent composition during training" in text
    assert (folder / "plots" / "latent_curve.png").is_file()
