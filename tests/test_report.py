"""Bootstrap intervals, excess re-derivation, worst case over the attack grid, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kgtest.records import new_row, write_records
from kgtest.report import aggregate, bootstrap, report


@pytest.mark.parametrize("n_seeds, n_facts", [(1, 60), (3, 30)])
def test_bootstrap_interval_covers_the_true_rate(n_seeds, n_facts):
    rng = np.random.default_rng(1)
    p, hits, n = 0.3, 0, 200
    for i in range(n):
        groups = [rng.random(n_facts) < p for _ in range(n_seeds)]
        _, lo, hi = bootstrap(groups, n_boot=500, seed=i)
        hits += lo <= p <= hi
    assert hits / n >= 0.90  # nominal 0.95; percentile intervals run a little short


def test_bootstrap_weighs_each_seed_equally_and_handles_empty_input():
    est, lo, hi = bootstrap([np.ones(10), np.zeros(2)], n_boot=200)
    assert est == 0.5 and lo <= est <= hi
    assert all(np.isnan(x) for x in bootstrap([np.array([])]))
    paired = np.array([[1, 0], [1, 1], [0, 0], [1, 0]])
    assert bootstrap([paired], n_boot=200)[0] == 0.5


def _synthetic():
    """Two seeds; 'NPO' and 'filter' on 6 facts, fact 5 gated out, fact 4 not applicable."""
    truth = {  # (run, variant) -> correct per fact 0..5
        ("s0", "filter"): [1, 0, 0, 0, 0, 1], ("s0", "NPO"): [1, 1, 1, 0, 0, 0],
        ("s1", "filter"): [0, 0, 0, 1, 0, 1], ("s1", "NPO"): [1, 1, 1, 1, 0, 1],
        ("s0", "original"): [1] * 6, ("s1", "original"): [1] * 6,
    }
    rows = []
    for (run, variant), cs in truth.items():
        for f, c in enumerate(cs):
            rows.append(new_row(run_id=run, variant=variant, probe="direct", fact=f,
                                correct=bool(c) if f != 4 else None, applicable=f != 4,
                                gated_in=f not in (4, 5), chance=0.05, proofs=1 + f % 2))
    return rows


def test_excess_equals_the_hand_computed_difference():
    agg = {(a["variant"], a["probe"]): a for a in aggregate(_synthetic(), n_boot=1000)}
    npo, flt = agg["NPO", "direct"], agg["filter", "direct"]
    # gated-in facts 0..3: NPO s0 3/4, s1 4/4 -> 0.875; filter s0 1/4, s1 1/4 -> 0.25
    assert npo["rate"] == pytest.approx(0.875) and flt["rate"] == pytest.approx(0.25)
    assert npo["excess"] == pytest.approx(0.625)
    assert npo["excess_lo"] <= 0.625 <= npo["excess_hi"] and npo["excess_lo"] > 0
    assert (npo["n_in"], npo["n_out"], npo["n_na"]) == (8, 2, 2)
    assert npo["rate_all"] == pytest.approx(8 / 10) and npo["chance"] == pytest.approx(0.05)
    assert np.isnan(flt["excess"])  # the control has no excess over itself
    same = aggregate([{**r, "variant": "X"} for r in _synthetic() if r["variant"] == "filter"]
                     + [r for r in _synthetic() if r["variant"] == "filter"], n_boot=300)
    x = next(a for a in same if a["variant"] == "X")
    assert (x["excess"], x["excess_lo"], x["excess_hi"]) == (0.0, 0.0, 0.0)  # paired


def test_worst_case_over_the_attack_grid():
    rows = []
    for setting, cs in (("steps=5,lr=0.001", [0, 0, 1, 0]), ("steps=50,lr=0.01", [1, 1, 1, 0])):
        rows += [new_row(run_id="r", variant="NPO", probe="relearn", setting=setting, fact=f,
                         correct=bool(c), gated_in=True, audit_derivable=False)
                 for f, c in enumerate(cs)]
    worst = [a for a in aggregate(rows, n_boot=200) if a["setting"] == "worst"]
    assert len(worst) == 1
    assert worst[0]["worst_of"] == "steps=50,lr=0.01" and worst[0]["rate"] == 0.75


def test_report_writes_summary_and_plots(tmp_path):
    run = tmp_path / "run"
    rows = _synthetic() + [
        new_row(run_id="s0", variant=v, probe="utility_direct", fact=10 + f,
                correct=bool((f + i) % 3), gated_in=True, chance=0.05)
        for i, v in enumerate(("original", "filter", "NPO")) for f in range(6)]
    rows += [new_row(run_id="s0", variant=v, probe="cot", fact=f, correct=bool(f % 2),
                     gated_in=True, gate="cot", proofs=1 + f % 3, chance=0.05)
             for v in ("original", "filter", "NPO") for f in range(9)]
    write_records(rows, run)
    (run / "model-x").mkdir()
    (run / "model-x" / "train_log.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 3 / s}) + "\n" for s in range(1, 50, 5))
        + json.dumps({"step": 50, "eval/direct": 0.9}) + "\n")
    (run / "npo").mkdir()
    (run / "npo" / "unlearn.json").write_text(json.dumps(
        {"method": "NPO", "deep": False, "lr": 1e-4, "steps": 40,
         "tuning": {"reached": True, "grid": [{}, {}], "choice": {"retain_acc": 0.9}},
         "before": {"forget_acc": 1.0, "retain_acc": 1.0},
         "after": {"forget_acc": 0.1, "retain_acc": 0.9}, "history": [1, 2]}))
    (run / "npo" / "unlearn_log.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 1 + s, "forget_acc": 1 - s / 10}) + "\n"
                for s in range(10)))
    out = report([run], command="kgtest run spec.toml --set seed=1", n_boot=300)
    text = out.read_text()
    assert out == run / "summary.md"
    assert "kgtest run spec.toml --set seed=1" in text
    assert "| NPO | 0.88 [" in text  # the direct rate beside its interval
    assert "filter (control)" in text and "original (control)" in text
    assert "| direct | 8 / 2 / 2 |" in text  # gated in / out / n.a.
    # tuning from unlearn.json
    assert "| run | NPO | 0.0001 | 40 | yes | 2 | 0.90 | 1.00 → 0.10 | 1.00 → 0.90 |" in text
    for name in ("rates", "proof_count", "forget_vs_utility", "training", "unlearning"):
        png = run / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"plots/{name}.png" in text
    summary = json.loads((run / "summary.json").read_text())
    assert {a["variant"] for a in summary} == {"original", "filter", "NPO"}
