"""benchmarks/gpu_check.sh --dry-run: every step of the prepared GPU check runs on CPU."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_step(tmp_path):
    """The dry run (tiny sizes, about 20 CPU-seconds) writes one results file whose summary
    has a line per step: ok, or skipped for the seeds benchmark while it does not exist."""
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run",
                           str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    text = (tmp_path / "gpu_check.txt").read_text()
    assert proc.returncode == 0, text[-3000:]
    summary = text.split("== summary ==")[1].strip().splitlines()
    labels = ["gpu tests", "training vs HF Trainer", "ensemble of 8", "seeds", "CoT decoding",
              "model-FLOPs utilisation"]
    assert len(summary) == len(labels)
    for label, line in zip(labels, summary, strict=True):
        assert line.startswith(label), line
        ok = ": ok (" in line or (label == "seeds" and ": skipped: " in line)
        assert ok, line
    assert "scoring" in summary[4] and "cot" in summary[4]  # the probe ratios were measured
