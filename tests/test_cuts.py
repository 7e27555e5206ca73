"""Report cuts (kgtest/report/cuts.py, runs.py): groups, neighbours, deletion sets."""

from __future__ import annotations

import json

import pytest

from kgtest.records import new_row, write_records
from kgtest.report import report
from kgtest.report.cuts import cuts_markdown, freq_bin, neighbour_facts
from kgtest.report.runs import deletion_sizes


def _targets(run="r", variants=("original", "filter", "NPO"), n=8):
    """Forget-target rows: facts 0..n-1, proofs 1 or 4, entity_freq 1 or 9; NPO answers
    the 4-proof targets only, the filter control none, the original all."""
    rows = []
    for v in variants:
        for f in range(n):
            k = 1 if f < n // 2 else 4
            rows.append(new_row(run_id=run, variant=v, probe="direct", fact=f, split="forget",
                                subject=f"s{f}", relation="r", object=f"o{f}", proofs=k,
                                entity_freq=1 if k == 1 else 9, gated_in=True,
                                correct=v == "original" or (v == "NPO" and k == 4)))
    return rows


def test_freq_bins_are_powers_of_two():
    assert [freq_bin(n) for n in (None, 0, 1, 2, 3, 4, 7, 8, 100)] == \
        ["0", "0", "1", "2–3", "2–3", "4–7", "4–7", "8–15", "64–127"]


def test_proof_count_section_has_rates_and_excess_per_k():
    md = cuts_markdown(_targets(), n_boot=100)
    table = md.split("**direct**")[1].split("\n\n")[1]
    assert "| NPO | 0.00 [0.00, 0.49] 0/4 | 1.00 [0.51, 1.00] 4/4 |" in table
    excess = md.split("*direct: excess over the filter control*")[1].split("\n\n")[1]
    assert "| NPO | +0.00" in excess and "| +1.00 [" in excess
    assert "## By entity frequency" in md and "| variant | freq 1 | freq 8–15 |" in md


def test_no_cut_when_targets_do_not_differ():
    rows = [r for r in _targets() if r["proofs"] == 1]
    assert cuts_markdown(rows, n_boot=50) == ""


def test_neighbours_share_an_entity_with_a_target_of_the_same_run():
    rows = _targets(run="a") + [
        new_row(run_id="a", variant="NPO", probe="utility_direct", fact=100, split="retain",
                subject="s0", relation="q", object="x", gated_in=True, correct=False),
        new_row(run_id="a", variant="NPO", probe="utility_direct", fact=101, split="retain",
                subject="y", relation="q", object="x", gated_in=True, correct=True),
        new_row(run_id="b", variant="NPO", probe="utility_direct", fact=100, split="retain",
                subject="s0", relation="q", object="x", gated_in=True, correct=True)]
    assert neighbour_facts(rows) == {"a": {100}}  # run b has no targets: no neighbours
    md = cuts_markdown(rows, n_boot=50)
    section = md.split("## Collateral on neighbours")[1]
    assert "| variant | neighbours | others |" in section
    assert "| NPO | 0.00 [0.00, 0.79] 0/1 | 1.00 [0.34, 1.00] 2/2 |" in section


def _run_with_deletion_sets(tmp_path):
    run = tmp_path / "ic-seed0"
    write_records(_targets(run="ic-seed0"), run)
    (run / "spec.toml").write_text('[run]\nname = "ic"\nseed = 0\n')
    deep = run / "unlearn-npo-deep-x"
    deep.mkdir()
    sets = {str(f): list(range(2 if f < 4 else 5)) for f in range(8)}
    (deep / "unlearn.json").write_text(json.dumps(
        {"method": "NPO", "deep": True, "forget_set": {"deletion_sets": sets,
                                                        "extra_facts": 11}}))
    plain = run / "unlearn-npo-y"
    plain.mkdir()
    (plain / "unlearn.json").write_text(json.dumps({"method": "NPO", "deep": False,
                                                    "forget_set": {"extra_facts": 0}}))
    return run


def test_deletion_sizes_come_from_deep_variants(tmp_path):
    run = _run_with_deletion_sets(tmp_path)
    sizes, extra = deletion_sizes(run)
    assert sizes == {f: 2 if f < 4 else 5 for f in range(8)} and extra == {"NPO_deep": 11}
    md = cuts_markdown(_targets(run="ic-seed0"), [run], n_boot=50)
    section = md.split("## Minimal deletion sets")[1]
    assert "| 1 | 4 | 2.00 | 2–2 |" in section and "| 4 | 4 | 5.00 | 5–5 |" in section
    assert "| NPO_deep | 1 | 11.00 | 11–11 |" in section


def test_report_writes_the_cuts_and_the_proof_cost_plot(tmp_path):
    run = _run_with_deletion_sets(tmp_path)
    rows = [{**r, "probe": "cot", "answer_correct": r["correct"]} for r in _targets("ic-seed0")]
    write_records(_targets(run="ic-seed0") + rows, run)
    text = report([run], tmp_path / "out", n_boot=50).read_text()
    assert "## By proof count" in text and "## Minimal deletion sets" in text
    assert text.index("## By proof count") < text.index("## Plots")
    assert (tmp_path / "out" / "plots" / "proof_cost.png").stat().st_size > 0


@pytest.mark.parametrize("broken", ["{", '{"deep": true, "method": "NPO"}'])
def test_unreadable_or_partial_stage_files_are_skipped(tmp_path, broken):
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "unlearn.json").write_text(broken)
    assert deletion_sizes(tmp_path) == ({}, {})
