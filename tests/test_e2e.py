"""End to end: `kgtest run` on a tiny spec against a committed golden summary; demo smoke.

The golden file (tests/data/golden_tiny_summary.json) holds, per (variant, probe, setting),
the number of targets gated in and the rate, from a seeded run on CPU with one thread. A
rerun must gate in the same facts and land within one target (of six) of each rate. To
regenerate after an intended change:

    .venv/bin/python tests/test_e2e.py --regenerate
"""

import json
import sys
from pathlib import Path

import pytest
import torch

from kgtest.cli import main

SPEC = Path(__file__).parent / "data" / "tiny.toml"
GOLDEN = Path(__file__).parent / "data" / "golden_tiny_summary.json"
TOLERANCE = 0.17  # one of six forget targets


def _run(out: Path) -> list[dict]:
    torch.set_num_threads(1)
    assert main(["run", str(SPEC), "--out", str(out), "--set", "unlearn.progress=false"]) == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return json.loads((run_dir / "summary.json").read_text())


def _key(row: dict) -> str:
    return f"{row['variant']}|{row['probe']}|{row['setting']}"


def _golden_view(rows: list[dict]) -> dict:
    return {_key(r): {"n_in": r["n_in"], "rate": None if r["rate"] is None
                      else round(r["rate"], 4)} for r in rows}


@pytest.mark.slow
def test_run_matches_golden_summary(tmp_path):
    rows = _run(tmp_path)
    got, want = _golden_view(rows), json.loads(GOLDEN.read_text())
    assert set(got) == set(want)
    for key, w in want.items():
        assert got[key]["n_in"] == w["n_in"], key
        if w["rate"] is not None and not key.split("|")[1].startswith("utility_loss"):
            assert abs(got[key]["rate"] - w["rate"]) <= TOLERANCE, (key, got[key], w)
    by = {_key(r): r for r in rows}
    # what must hold whatever the numbers: the original knows its targets, the untrained
    # model does not, and the report lists every control
    assert by["original|direct|"]["rate"] == 1.0
    assert by["never_trained|direct|"]["rate"] <= 0.2
    assert {"original", "filter", "ignorance", "never_trained", "NPO", "NPO_deep"} == {
        r["variant"] for r in rows}
    summary = (next(p for p in tmp_path.iterdir() if p.is_dir()) / "summary.md").read_text()
    assert "Excess re-derivation over the filter control" in summary
    assert "kgtest run" in summary  # the command that reproduces it


@pytest.mark.slow
def test_demo_smoke(tmp_path, capsys):
    torch.set_num_threads(1)
    rc = main(["demo", "--out", str(tmp_path / "demo"),
               "--set", "model.preset=tiny", "--set", "train.steps=60",
               "--set", "train.progress=false", "--set", "train.stop_at={}",
               "--set", 'unlearn.methods=["NPO"]', "--set", "unlearn.deep=[false]",
               "--set", 'unlearn.controls=["filter"]', "--set", "unlearn.tune_steps=[5]",
               "--set", "unlearn.tune_lrs=[1e-3]", "--set", "unlearn.progress=false",
               "--set", 'probes.probes=["direct", "cot", "latent"]',
               "--set", "probes.n_boot=100"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Re-derivation of the forget targets" in out and "report:" in out
    assert (tmp_path / "demo" / "summary.md").exists()
    assert (tmp_path / "demo" / "plots" / "rates.png").exists()


if __name__ == "__main__" and "--regenerate" in sys.argv:
    import tempfile

    rows = _run(Path(tempfile.mkdtemp()))
    GOLDEN.write_text(json.dumps(_golden_view(rows), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
