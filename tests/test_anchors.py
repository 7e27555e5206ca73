"""kgtest.report.anchors: the report sections the published anchors' README rows cite."""

from __future__ import annotations

import json

from kgtest.records import new_row, write_records
from kgtest.report import report
from kgtest.report.aggregate import aggregate
from kgtest.report.anchors import (
    anchor_sections,
    curve_section,
    latent_curve,
    ood_section,
    recovery_plot,
    recovery_section,
)


def _rows(variant, probe, setting, correct, gated=None, run="r0", **kw):
    gated = [True] * len(correct) if gated is None else gated
    return [new_row(run_id=run, variant=variant, probe=probe, setting=setting, fact=f,
                    correct=bool(c), gated_in=g, **kw)
            for f, (c, g) in enumerate(zip(correct, gated, strict=True))]


def test_recovery_is_the_share_of_facts_known_before(tmp_path):
    # the original knew 4 of 5 targets; NPO forgets them, relearning brings 3 back (and
    # the one the original never knew: it counts in the ungated ratio only)
    gate = [True, True, True, True, False]
    rows = (_rows("original", "direct", "", [1, 1, 1, 1, 0], gate)
            + _rows("NPO", "direct", "", [0, 0, 0, 0, 0], gate)
            + _rows("NPO", "relearn", "steps=15,lr=0.001", [1, 1, 0, 0, 1], gate)
            + _rows("NPO", "relearn", "steps=30,lr=0.001", [1, 1, 1, 0, 1], gate)
            + _rows("NPO", "quantize", "int4", [1, 0, 0, 0, 0], gate))
    text = "\n".join(recovery_section(aggregate(rows, n_boot=100)))
    assert "## Recovery of pre-unlearning accuracy" in text
    line = next(x for x in text.splitlines() if x.startswith("| NPO"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1].endswith("0/4 (0.00)")  # direct after unlearning
    assert cells[2].endswith("1/4 (0.25)")  # quantize[int4]: 1/5 over 4/5 before
    assert cells[3].endswith("3/4 (1.00)")  # relearn worst: 3 of 4 known; 4/5 over 4/5
    assert "0.80 over 5 targets" in text
    assert recovery_section(aggregate(rows[:10], n_boot=100)) == []  # no attack, no section
    assert recovery_plot(aggregate(rows, n_boot=100), tmp_path / "r.png").stat().st_size > 1000
    assert recovery_plot(aggregate(rows[:10], n_boot=100), tmp_path / "s.png") is None


def test_ood_section_cuts_by_tag_and_counts_every_fact():
    rows = []
    for f, (ood, ok, probe, derived) in enumerate([
            (False, 1, "implied", True), (False, 1, "implied", True), (True, 0, "implied", True),
            (True, 1, "implied", True), (True, 0, "implied", True),
            (False, 1, "utility_direct", False), (True, 1, "utility_direct", False),
            (False, 1, "utility_direct", True)]):
        rows.append(new_row(run_id="r", variant="original", probe=probe, fact=f,
                            correct=bool(ok), gated_in=bool(ok), derived=derived,
                            tags=("derived" if derived else "base") + (",ood" if ood else "")))
    text = "\n".join(ood_section(rows, n_boot=100))
    line = next(x for x in text.splitlines() if x.startswith("| original"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1].endswith("2/2") and cells[2].endswith("1/3")  # ungated: 1 of 3 OOD
    assert cells[3].endswith("1/1") and cells[4].endswith("1/1") and cells[5].endswith("1/1")
    assert "| floor: most frequent object |" in text
    no_ood = [r for r in rows if "ood" not in r["tags"]]
    assert ood_section(no_ood, n_boot=100) == []


def _log(run, entries):
    stage = run / "model-abc" / "train_log.jsonl"
    stage.parent.mkdir(parents=True)
    stage.write_text("".join(json.dumps(e) + "\n" for e in entries))


def test_latent_curve_table_and_plot(tmp_path):
    for i, v in enumerate((0.2, 0.4)):
        _log(tmp_path / f"run{i}", [{"step": 50, "loss": 1.0},
                                    {"step": 100, "eval/direct": 0.9, "eval/latent_id": v,
                                     "eval/latent_ood": 0.0},
                                    {"step": 150, "eval/direct": float("nan")}])
    curve = latent_curve([tmp_path / "run0", tmp_path / "run1"])
    assert curve["eval/latent_id"] == {100: [0.2, 0.4]}
    assert curve["eval/direct"] == {100: [0.9, 0.9]}  # NaN (nothing asked) is left out
    text = "\n".join(curve_section(curve, "plots/latent_curve.png"))
    assert "| 100 | 0.90 [0.90, 0.90] (2) | 0.30 [0.20, 0.40] (2) | 0.00 [0.00, 0.00] (2) |" \
        in text
    assert curve_section({"eval/direct": {100: [1.0]}}) == []  # no latent metric, no table
    rows = [new_row(run_id="r", variant="original", probe="direct", fact=0, correct=True,
                    gated_in=True)]
    write_records(rows, tmp_path / "run0")
    summary = report([tmp_path / "run0", tmp_path / "run1"], tmp_path / "out",
                     records=rows, n_boot=50).read_text()
    assert "## Latent composition during training" in summary
    assert (tmp_path / "out" / "plots" / "latent_curve.png").stat().st_size > 1000
    assert "![latent_curve](plots/latent_curve.png)" in summary
    assert anchor_sections(rows, [], n_boot=50) == []  # nothing to cut: no section
