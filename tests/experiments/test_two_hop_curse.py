"""experiments/two_hop_curse.toml: a tiny variant of every cell runs and reports what the
README row cites (the original's two-hop answers on held-out facts, by condition)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgtest.experiment import load_experiment
from kgtest.pipeline import run_experiment
from kgtest.sweep import load_sweep

SPEC = Path(__file__).parents[2] / "experiments" / "two_hop_curse.toml"
TINY = ["world.params.n_entities=12", "model.preset=tiny", "train.steps=5",
        "train.batch_size=8", "train.eval_every=5", "sweep.seed=[0]"]


@pytest.mark.slow  # two tiny runs: ~15 s of CPU
def test_tiny_two_hop_curse_runs_both_conditions_and_reports_held_out_two_hop(tmp_path):
    sweep = load_sweep(SPEC, tmp_path / "sweep", overrides=TINY)
    assert sorted(r.axes["corpus.group"] for r in sweep.runs) == ["chain", "fact"]
    for run in sweep.runs:
        cfg = load_experiment(tmp_path / "sweep" / "experiment.toml", run.overrides)
        out = tmp_path / run.axes["corpus.group"]
        text = run_experiment(cfg, out, log=lambda m: None).read_text()
        rows = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
        held = {r["fact"] for r in rows}
        assert rows and {r["variant"] for r in rows} == {"original"}
        assert {r["probe"] for r in rows} == {"direct", "cot"}
        assert all(r["split"] == "held_out" and r["trained"] == "" for r in rows)
        assert len(held) == len([r for r in rows if r["probe"] == "direct"])
        section = text.split("## The original model on every asked fact")[1].split("\n## ")[0]
        for probe in ("direct", "cot", "cot_answer"):
            assert f"| {probe} | never (implied) | " in section
        docs = [json.loads(x) for x in
                next(out.glob("corpus-*/train.jsonl")).read_text().splitlines()]
        grouped = [d for d in docs if d["kind"] == "statement" and len(d["facts"]) > 1]
        assert bool(grouped) == (run.axes["corpus.group"] == "chain")
