"""One seed scheme: every stage seed derives from run.seed; records reproduce byte for byte."""

import json
from pathlib import Path

import pytest
import torch

from kgtest.experiment import load_experiment
from kgtest.seeds import STAGES, run_seeds, stage_seed

#: asserts a trained model's outcome: `make test-arith` reruns it under other CPU arithmetic
pytestmark = pytest.mark.trained

SPEC = Path(__file__).parent / "data" / "tiny.toml"
# a seconds-scale version of the tiny run: every stage that draws random numbers still runs
SMALL = ["train.steps=40", "train.stop_at={}", "train.eval_every=0",
         'unlearn.methods=["NPO"]', "unlearn.deep=[false]", 'unlearn.controls=["filter"]',
         "unlearn.tune_lrs=[1e-3]", "unlearn.tune_epochs=[2]", "unlearn.control_steps=20",
         'probes.probes=["direct", "relearn", "utility"]', "probes.n_boot=50",
         "probes.relearn.steps=[5]"]


def test_two_run_seeds_change_every_stage_seed():
    a = load_experiment(SPEC, ["run.seed=0"]).seeds()
    b = load_experiment(SPEC, ["run.seed=1"]).seeds()
    assert set(a) == set(STAGES)
    assert all(a[s] != b[s] for s in STAGES), [s for s in STAGES if a[s] == b[s]]
    assert a == load_experiment(SPEC, ["run.seed=0"]).seeds()
    assert len(set(a.values())) == len(STAGES)  # no two stages share a seed


def test_explicit_stage_seeds_are_overrides():
    cfg = load_experiment(SPEC, ["train.seed=5", "unlearn.seed=6", "probes.seed=7"])
    s = cfg.seeds()
    assert (s["batches"], s["unlearn"], s["attack"], s["bootstrap"]) == (5, 6, 7, 7)
    assert s["world"] == stage_seed(0, "world") and s["model"] == stage_seed(0, "model")
    assert run_seeds(0) == load_experiment(SPEC).seeds()


def _records(out: Path, seed: int) -> tuple[bytes, dict, list[dict]]:
    from kgtest.pipeline import run_experiment

    cfg = load_experiment(SPEC, SMALL + [f"run.seed={seed}"])
    run_experiment(cfg, out, log=lambda *a: None)
    raw = (out / "records.jsonl").read_bytes()
    rows = [json.loads(line) for line in raw.decode().splitlines()]
    return raw, json.loads((out / "seeds.json").read_text()), rows


@pytest.mark.slow
def test_same_run_seed_reproduces_records_byte_for_byte(tmp_path):
    torch.set_num_threads(1)
    a, seeds_a, rows = _records(tmp_path / "a", 0)
    b, seeds_b, _ = _records(tmp_path / "b", 0)
    assert a == b and seeds_a == seeds_b
    # records carry the seeds actually used, as strings (JSON readers round above 2**53)
    want = run_seeds(0)
    assert {r["seed_train"] for r in rows} == {str(want["batches"])}
    assert {r["seed_attack"] for r in rows} == {str(want["attack"])}
    assert {r["seed_probes"] for r in rows} == {str(want["probes"])}
    assert seeds_a["unlearn"] == str(want["unlearn"])
    unlearn = next((tmp_path / "a").glob("unlearn-npo-*/unlearn.json"))
    assert json.loads(unlearn.read_text())["seed"] == str(want["unlearn"])
    _, seeds_c, _ = _records(tmp_path / "c", 1)
    assert all(seeds_c[s] != seeds_a[s] for s in STAGES)
