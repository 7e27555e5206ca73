"""The report's cuts: by domain (claim 3) and the tuning grid's stability (claim 4)."""

from __future__ import annotations

import json

import pytest

from kgtest.records import new_row, write_records
from kgtest.report import report
from kgtest.report.cuts import domain_section
from kgtest.report.runs import stability_rows, stability_section


def _rows():
    rows = []
    for v in ("original", "filter", "NPO"):
        for f in range(4):  # harmful forget targets: NPO forgets 3 of 4, filter 2 of 4
            rows.append(new_row(run_id="r", variant=v, probe="direct", fact=f,
                                domain="harmful", relation="n", split="forget", gated_in=True,
                                correct=v == "original" or (v == "filter" and f < 2)
                                or (v == "NPO" and f == 0)))
        for f, (d, rel) in enumerate([("benign", "n"), ("benign", "y"), ("harmful", "n")] * 2,
                                     start=10):  # utility: NPO loses benign 'n' facts
            rows.append(new_row(run_id="r", variant=v, probe="utility_direct", fact=f,
                                domain=d, relation=rel, split="retain", gated_in=True,
                                correct=not (v == "NPO" and rel == "n" and d == "benign")))
    return rows


def test_domain_section_cuts_rates_and_the_targets_relation():
    md = "\n".join(domain_section(_rows(), n_boot=50))
    main, same = md.split("### Utility on the forget targets' relations, by domain")
    assert "| NPO | harmful | 0.25 [0.05, 0.70] 1/4 | 1.00 [0.34, 1.00] 2/2 |" in main
    assert "| NPO | benign |  | 0.50 [0.15, 0.85] 2/4 |" in main
    assert "(n) only" in same  # relations of the forget targets
    assert "| NPO | benign | 0.00 [0.00, 0.66] 0/2 |" in same
    assert "| original | benign | 1.00 [0.34, 1.00] 2/2 |" in same


def test_domain_section_needs_two_domains():
    rows = [r for r in _rows() if r["domain"] == "harmful"]
    assert domain_section(rows) == []


def _unlearn_json(run, method, grid, after):
    d = run / f"unlearn-{method.lower()}-x"
    d.mkdir(parents=True)
    (d / "unlearn.json").write_text(json.dumps({
        "method": method, "deep": False, "after": after,
        "tuning": {"grid": grid, "choice": grid[-1]}}))


def test_stability_over_grid_and_seeds(tmp_path):
    runs = []
    for s in range(3):
        run = tmp_path / f"seed{s}"
        grid = [{"lr": lr, "epochs": 1, "forget_acc": f, "retain_acc": 0.9,
                 "reached": f <= 0.1, "kept": True}
                for lr, f in ((1e-3, 0.1 * s), (3e-3, 0.0))]
        _unlearn_json(run, "NPO", grid, {"forget_acc": 0.1 * s, "retain_acc": 0.8})
        _unlearn_json(run, "IdkSFT", [{**p, "forget_acc": 0.5, "reached": False} for p in grid],
                      {"forget_acc": 0.5, "retain_acc": 0.9})
        runs.append(run)
    rows = {r["variant"]: r for r in stability_rows(runs)}
    npo = rows["NPO"]
    assert (npo["seeds"], npo["admissible_k"], npo["admissible_n"]) == (3, 5, 6)  # 0.2 > 0.1
    assert npo["forget_sd_grid"] == pytest.approx((0 + 0.05 + 0.1) / 3)
    assert npo["forget_sd_seeds"] == pytest.approx((0.08164966 + 0) / 2)
    assert npo["after_forget_mean"] == pytest.approx(0.1)
    assert npo["choices"] == 1
    assert rows["IdkSFT"]["admissible_k"] == 0 and rows["IdkSFT"]["forget_sd_grid"] == 0
    md = "\n".join(stability_section(runs))
    assert "| NPO | 3 | 0.83 [0.44, 0.97] 5/6 |" in md
    assert stability_section([tmp_path / "none"]) == []


def test_report_writes_both_sections(tmp_path):
    run = tmp_path / "run"
    write_records(_rows(), run)
    _unlearn_json(run, "NPO", [{"lr": 1e-3, "epochs": 1, "forget_acc": 0.0,
                                "retain_acc": 1.0, "reached": True, "kept": True}], {})
    text = report([run], n_boot=50).read_text()
    assert "## By domain" in text and "## Stability over the tuning grid and seeds" in text
    assert text.index("## By domain") < text.index("## Tuning choices")
    assert (run / "plots" / "by_domain.png").stat().st_size > 0 and "by_domain.png" in text


def _cell(tmp_path, density, proofs, npo_right):
    """One sweep cell: a run folder with the ignorance control's deletion sets, and rows of
    targets with the given proof counts (NPO re-derives the first ``npo_right`` by CoT)."""
    run = tmp_path / f"d{density}"
    (run / "control-ignorance-x").mkdir(parents=True)
    (run / "spec.toml").write_text(f'[run]\nname = "d{density}"\nseed = 0\n')
    sets = {str(f): list(range(100, 100 + k + 1)) for f, k in enumerate(proofs)}
    (run / "control-ignorance-x" / "control.json").write_text(json.dumps(
        {"kind": "ignorance", "deletion_sets": sets, "extra_facts": 2 * sum(proofs)}))
    rows = [new_row(run_id=f"d{density}-seed0", variant=v, probe="cot", fact=f, proofs=k,
                    split="forget", gated_in=True,
                    correct=v == "original" or (v == "NPO" and f < npo_right))
            for v in ("original", "filter", "NPO") for f, k in enumerate(proofs)]
    return rows, [run]


def test_cells_section_puts_proofs_deletion_cost_and_rates_side_by_side(tmp_path):
    from kgtest.report.cells import cells_section

    cells = {"world.params.density=0.5": _cell(tmp_path, 0.5, [1, 1, 1, 1], 1),
             "world.params.density=1.0": _cell(tmp_path, 1.0, [1, 2, 2, 3], 3)}
    md = "\n".join(cells_section(cells, tmp_path / "plots", n_boot=50))
    assert "| 0.5 | 4 | 1.00 | 0/4 | 2.00 (2–2) | 8.00 (8–8) |" in md
    assert "| 1.0 | 4 | 2.00 | 3/4 | 3.00 (2–4) | 16.00 (16–16) |" in md
    assert "| NPO | 0.25 [0.05, 0.70] 1/4 | 0.75 [0.30, 0.95] 3/4 |" in md
    assert "| filter (control) | 0.00 [0.00, 0.49] 0/4 | 0.00 [0.00, 0.49] 0/4 |" in md
    assert (tmp_path / "plots" / "cells.png").stat().st_size > 0
    assert cells_section(dict(list(cells.items())[:1]), tmp_path / "plots") == []
