"""Bootstrap intervals, excess re-derivation, worst case over the attack grid, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kgtest.records import new_row, write_records
from kgtest.report import aggregate, bootstrap, report, warnings
from kgtest.report.aggregate import newcombe_paired, wilson


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
    # paired: every fact agrees, so the estimate is exactly 0; the bootstrap sees no spread
    # and the interval falls back to Newcombe's on the pooled pairs (never zero width)
    assert x["excess"] == 0.0 and x["excess_lo"] < 0 < x["excess_hi"]
    assert x["excess_hi"] - x["excess_lo"] < 0.6  # 8 pooled pairs: about +-0.26


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
        {"method": "NPO", "deep": False, "lr": 1e-4, "epochs": 5.0, "steps": 40,
         "tuning": {"reached": True, "kept": True, "level": 0.15, "retain_min": 0.9,
                    "grid": [{}, {}], "choice": {"forget_acc": 0.1, "retain_acc": 0.9}},
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
    assert ("| run | NPO | 0.0001 | 5.0 | 40 | 0.10 ≤ 0.15: yes | 0.90 ≥ 0.90: yes | 2 | 0.90 "
            "| 1.00 → 0.10 | 1.00 → 0.90 |") in text
    for name in ("rates", "proof_count", "forget_vs_utility", "training", "unlearning"):
        png = run / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"plots/{name}.png" in text
    summary = json.loads((run / "summary.json").read_text())
    assert {a["variant"] for a in summary} == {"original", "filter", "NPO"}


@pytest.mark.parametrize("n", [1, 5, 20, 200])
def test_wilson_has_nonzero_width_at_zero_and_at_n(n):
    lo, hi = wilson(0, n)
    assert lo == 0.0 and 0 < hi < 1
    lo, hi = wilson(n, n)
    assert hi == 1.0 and 0 < lo < 1
    lo, hi = wilson(n // 2, n)
    assert lo < (n // 2) / n < hi or n == 1


def test_wilson_covers_the_true_rate():
    rng = np.random.default_rng(0)
    for p, n in ((0.05, 20), (0.5, 10), (0.9, 40)):
        ks = rng.binomial(n, p, size=2000)
        cover = np.mean([lo <= p <= hi for lo, hi in (wilson(int(k), n) for k in ks)])
        assert cover >= 0.92, (p, n, cover)  # nominal 0.95; Wilson is close to it


def test_newcombe_paired_difference():
    est, lo, hi = newcombe_paired(np.ones((6, 2)))  # both always right: 0, not certain
    assert est == 0.0 and lo < 0 < hi
    est, lo, hi = newcombe_paired(np.array([[1, 0]] * 9 + [[0, 0]]))
    assert est == pytest.approx(0.9) and 0.4 < lo < 0.9 < hi <= 1.0  # Newcombe: 0.49
    assert all(np.isnan(newcombe_paired(np.zeros((0, 2)))))
    # perfectly concordant pairs at p = 0.5: the continuity-corrected phi keeps a width
    est, lo, hi = newcombe_paired(np.array([[1, 1], [1, 1], [0, 0], [0, 0]]))
    assert est == 0.0 and lo < -0.1 and hi > 0.1


def _cells(rows, **kw):
    return {(a["variant"], a["probe"], a["setting"]): a for a in aggregate(rows, **kw)}


def test_one_run_gets_wilson_intervals_and_k_of_n(tmp_path):
    rows = [new_row(run_id="r", variant=v, probe="direct", fact=f, correct=c, gated_in=True,
                    floor=0.25 if f < 2 else 0.0)
            for v, c in (("original", True), ("filter", False), ("never_trained", False))
            for f in range(8)]
    cells = _cells(rows, n_boot=100)
    flt = cells["filter", "direct", ""]
    assert (flt["rate"], flt["k"], flt["n_in"], flt["interval"]) == (0.0, 0, 8, "wilson")
    assert flt["lo"] == 0.0 and flt["hi"] == pytest.approx(wilson(0, 8)[1]) and flt["hi"] > 0.2
    orig = cells["original", "direct", ""]
    assert orig["hi"] == 1.0 and orig["lo"] < 1.0 and orig["excess_lo"] < orig["excess"] == 1.0
    # the floors sit beside every line: most frequent object (mean of the rows' floors)
    # and the never-trained model's rate on the same probe
    assert orig["floor"] == pytest.approx(0.0625)
    assert (orig["floor_never"], orig["floor_never_k"], orig["floor_never_n"]) == (0.0, 0, 8)
    write_records(rows, tmp_path)
    text = report([tmp_path], n_boot=100).read_text()
    assert "| filter (control) | 0.00 [0.00, 0.32] 0/8 |" in text
    assert "| floor: most frequent object | 0.06 |" in text
    assert "| floor: never trained | 0.00 0/8 |" in text


def test_several_runs_use_the_two_level_bootstrap_and_never_a_zero_width():
    rows = [new_row(run_id=f"s{s}", variant="NPO", probe="direct", fact=f, correct=False,
                    gated_in=True) for s in range(5) for f in range(6)]
    rows += [new_row(run_id=f"s{s}", variant="IdkSFT", probe="direct", fact=f,
                     correct=(f + s) % 3 == 0, gated_in=True) for s in range(5) for f in range(6)]
    cells = _cells(rows, n_boot=300)
    npo, idk = cells["NPO", "direct", ""], cells["IdkSFT", "direct", ""]
    assert npo["interval"] == "wilson (pooled)" and npo["lo"] == 0.0 < npo["hi"]
    assert npo["hi"] == pytest.approx(wilson(0, 30)[1])
    assert idk["interval"] == "bootstrap" and idk["lo"] < idk["rate"] < idk["hi"]
    assert (idk["k"], idk["n_in"]) == (10, 30)


def test_cot_is_verified_and_answer_only_is_reported_beside_it():
    # fact 0: verified; 1: right answer, broken chain; 2: wrong; 3: right answer, no chain
    spec = [(True, True), (False, True), (False, False), (False, True)]
    rows = [new_row(run_id="r", variant="NPO", probe="cot", fact=f, correct=ok, gate="cot",
                    answer_correct=ans, gated_in=True) for f, (ok, ans) in enumerate(spec)]
    cells = _cells(rows, n_boot=100)
    cot, ans = cells["NPO", "cot", ""], cells["NPO", "cot_answer", ""]
    assert (cot["k"], cot["n_in"], cot["n_broken"]) == (1, 4, 2)
    assert (ans["k"], ans["n_in"]) == (3, 4)


def test_warnings_open_the_summary(tmp_path):
    run = tmp_path / "run"
    write_records(_synthetic(), run)
    (run / "model-a").mkdir()
    (run / "model-a" / "metrics.json").write_text(json.dumps(
        {"steps": 900, "acc_direct": 1.0, "acc_cot": 0.76}))
    (run / "model-a" / "config.json").write_text(json.dumps(
        {"train": {"stop_at": {"direct": 0.99, "cot": 0.95}}}))
    (run / "u").mkdir()
    (run / "u" / "unlearn.json").write_text(json.dumps(
        {"method": "NPO", "deep": True, "tuning": {"reached": False, "grid": [{}]}}))
    (run / "v").mkdir()
    (run / "v" / "unlearn.json").write_text(json.dumps(
        {"method": "GradDiff", "tuning": {"reached": True, "kept": False,
                                          "warnings": ["GradDiff: keeps retain 0.50"]}}))
    found = warnings([run])
    assert len(found) == 3 and found[2] == "run: GradDiff: keeps retain 0.50"
    assert "under-trained" in found[0] and "0.76 < stop target 0.95" in found[0]
    assert "NPO_deep missed its tuning level" in found[1]
    text = report([run], n_boot=100).read_text()
    assert text.index("## Warnings") < text.index("## Re-derivation")
    assert "in-loop cot accuracy 0.76" in text


def test_plots_heatmap_always_and_proof_count_only_when_proofs_differ(tmp_path):
    rows = [new_row(run_id="r", variant=v, probe="direct", fact=f, correct=f % 2 == 0,
                    gated_in=True, proofs=1) for v in ("original", "filter", "NPO")
            for f in range(4)]
    write_records(rows, tmp_path)
    text = report([tmp_path], n_boot=100).read_text()
    assert (tmp_path / "plots" / "rates.png").exists() and "plots/rates.png" in text
    assert (tmp_path / "plots" / "excess.png").exists()
    assert not (tmp_path / "plots" / "proof_count.png").exists()


def test_heatmap_is_drawn_even_when_nothing_is_gated_in(tmp_path):
    rows = [new_row(run_id="r", variant=v, probe="direct", fact=f, correct=False,
                    gated_in=False) for v in ("original", "NPO") for f in range(3)]
    write_records(rows, tmp_path)
    report([tmp_path], n_boot=50)
    assert (tmp_path / "plots" / "rates.png").exists()
    assert not (tmp_path / "plots" / "excess.png").exists()  # no filter control: no excess


def test_exposure_section_counts_every_fact_of_the_original_gate_or_not(tmp_path):
    from kgtest.report.aggregate import aggregate_by

    # the original knows its QA-trained facts and 1 of 4 statement-only ones; the gate
    # (its own direct answer) would make every counted row correct
    rows = [new_row(run_id=f"s{s}", variant="original", probe="direct", fact=f,
                    correct=f < 4 or f == 4 + s % 4, gated_in=f < 4 or f == 4 + s % 4,
                    trained="statement+qa" if f < 4 else "statement", chance=0.05, floor=0.1)
            for s in range(5) for f in range(8)]
    rows += [new_row(run_id="s0", variant="filter", probe="direct", fact=f, correct=True,
                     trained="statement") for f in range(4, 8)]  # other variants: not counted
    cut = {a["value"]: a for a in aggregate_by(rows, n_boot=200)}
    assert (cut["statement"]["k"], cut["statement"]["n"]) == (5, 20)
    assert cut["statement"]["rate"] == 0.25 and cut["statement"]["lo"] < 0.25 < cut[
        "statement"]["hi"]
    assert (cut["statement+qa"]["k"], cut["statement+qa"]["n"]) == (20, 20)
    assert cut["statement+qa"]["lo"] < 1.0  # pooled Wilson, never zero width
    write_records(rows, tmp_path)
    text = report([tmp_path], n_boot=200).read_text()
    section = text.split("## The original model on every asked fact")[1].split("\n## ")[0]
    assert "| direct | statement |  | 0.25 [" in section and "] 5/20 | 0.050 | 0.100 |" in section
    assert "] 20/20 |" in section


def test_exposure_by_cell_draws_one_bar_group_per_cut_and_none_without_lines(tmp_path):
    from kgtest.report.aggregate import aggregate_by
    from kgtest.report.plots import exposure_by_cell

    def cut(k):
        return aggregate_by([new_row(run_id="r", variant="original", probe="direct", fact=f,
                                     correct=f < k, trained="statement", chance=0.1)
                             for f in range(6)], n_boot=50)

    path = exposure_by_cell({"group=fact": cut(1), "group=chain": cut(4)},
                            tmp_path / "plots" / "exposure.png")
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"
    assert exposure_by_cell({"a": []}, tmp_path / "none.png") is None


def test_lists_of_probes_controls_and_methods_come_from_the_registries():
    from kgtest.probes.registry import KINDS, PROBES, columns_of, grid_columns
    from kgtest.report.tables import ATTACKS, CONTROLS, PROBE_ORDER, UTILITY
    from kgtest.unlearn.config import ALL_METHODS
    from kgtest.unlearn.config import CONTROLS as BUILT
    from kgtest.unlearn.methods import METHODS

    assert all(PROBES.get(p).kind in KINDS for p in PROBES)
    assert {p for p in PROBES if PROBES.get(p).kind == "attack"} == {
        "relearn", "relearn_premises", "quantize"}
    assert UTILITY == columns_of("utility") and "utility_loss" in UTILITY
    assert ATTACKS == grid_columns() == ("relearn", "relearn_premises")
    assert CONTROLS == ("original", *BUILT)
    assert ALL_METHODS == tuple(METHODS.registered()) and "RMU" in ALL_METHODS
    # every column a registered probe writes has a place in the tables, in registry order
    cols = [c for p in PROBES for c in PROBES.get(p).columns]
    assert set(cols) <= set(PROBE_ORDER)
    assert PROBE_ORDER["cot"] < PROBE_ORDER["cot_answer"] < PROBE_ORDER["relearn"]


def _two_controls(tmp_path):
    rows = [new_row(run_id="r", variant=v, probe="direct", fact=f, gated_in=True,
                    correct=v == "original" or (v == "NPO" and f < 2))
            for v in ("original", "filter", "ignorance", "NPO") for f in range(4)]
    write_records(rows, tmp_path)
    return rows


def test_report_uses_the_chosen_control_in_text_and_plots(tmp_path):
    from kgtest.report.plots import _grid

    rows = _two_controls(tmp_path)
    text = report([tmp_path], n_boot=50, control="ignorance").read_text()
    assert "## Excess re-derivation over the ignorance control" in text
    assert "variant − ignorance" in text and "over the filter control" not in text
    variants = _grid(aggregate(rows, control="ignorance", n_boot=50), "excess", "ignorance")[0]
    assert "ignorance" not in variants and "filter" in variants  # excess.png's rows
    assert (tmp_path / "plots" / "excess.png").is_file()


def test_report_refuses_an_unknown_or_absent_control(tmp_path, capsys):
    from kgtest.cli import main
    from kgtest.errors import InputError

    _two_controls(tmp_path)
    with pytest.raises(InputError, match="unknown control 'filtr'.*known: filter"):
        report([tmp_path], control="filtr")
    with pytest.raises(InputError, match="'never_trained' is not among.*filter, ignorance"):
        report([tmp_path], control="never_trained")
    assert not (tmp_path / "summary.md").exists()  # nothing half-written
    assert main(["report", str(tmp_path), "--control", "never_trained"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "never_trained" in err and "Traceback" not in err


def test_the_spec_refuses_a_control_it_does_not_build():
    """Checked when the spec loads, not after the run, where the report would refuse it."""
    from pathlib import Path

    from kgtest.errors import InputError
    from kgtest.experiment import load_experiment

    spec = Path(__file__).parent / "data" / "tiny.toml"
    with pytest.raises(InputError, match="probes.control': unknown control 'filtr'.*'filter'"):
        load_experiment(spec, ['probes.control="filtr"'])
    with pytest.raises(InputError, match="probes.control': 'filter' is not built"):
        load_experiment(spec, ['unlearn.controls=["ignorance"]'])
    cfg = load_experiment(spec, ['unlearn.controls=["ignorance"]', 'probes.control="ignorance"'])
    assert cfg.probes.control == "ignorance"


def test_stale_stage_folders_of_an_earlier_configuration_are_not_reported(tmp_path):
    """The records stage lists the stage folders its records came from (stages.json);
    the report reads only those. A folder without the list (results packed before it)
    is read whole, as before."""
    from kgtest.report.runs import STAGES, stages_in_use

    run = tmp_path / "run"
    write_records(_synthetic(), run)
    for name, method, lr in [("unlearn-npo-aaaaaaaaaaaa", "NPO", 1e-3),
                             ("unlearn-graddiff-bbbbbbbbbbbb", "GradDiff", 5e-5)]:
        (run / name).mkdir()
        (run / name / "unlearn.json").write_text(json.dumps(
            {"method": method, "lr": lr, "tuning": {"reached": False, "grid": [{}]}}))
    text = report([run], n_boot=100).read_text()
    assert "GradDiff missed its tuning level" in text  # no list: every folder (old packs)
    with stages_in_use(run, ["unlearn-npo-aaaaaaaaaaaa"]):  # the records stage, in build
        text = report([run], n_boot=100).read_text()
    assert "NPO missed its tuning level" in text and "GradDiff" not in text
    (run / STAGES).write_text(json.dumps({"stages": ["unlearn-npo-aaaaaaaaaaaa"]}))
    assert report([run], n_boot=100).read_text() == text  # published: kgtest report RUN


def test_save_writes_the_image_bbox_inches_tight_would(tmp_path):
    """``_save`` draws once, cropping to the box measured without drawing: same framing
    (a legend outside the axes included) as matplotlib's two-pass ``bbox_inches="tight"``."""
    from matplotlib.image import imread

    from kgtest.report.plots import _plt, _save

    def fig():
        f, ax = _plt().subplots(figsize=(4, 3))
        ax.plot([0, 1], [0, 1], label="a line whose label is long")
        ax.set_title("title")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return f

    f = fig()
    f.savefig(tmp_path / "tight.png", dpi=110, bbox_inches="tight")
    _save(fig(), tmp_path / "once.png")
    tight, once = imread(tmp_path / "tight.png"), imread(tmp_path / "once.png")
    assert tight.shape == once.shape and tight.shape[1] > 4 * 110  # the legend is in
    assert np.abs(tight - once).mean() < 1e-3


def test_log_loss_axis_labels_the_default_ticks_as_plain_numbers():
    from kgtest.report.plots import _plain_log_ticks, _plt

    def labels(plain: bool) -> dict[float, str]:
        f, ax = _plt().subplots()
        ax.plot([1, 2, 3], [3.1, 1.0, 0.55])
        ax.set_yscale("log")
        if plain:
            _plain_log_ticks(ax.yaxis)
        f.canvas.draw()
        ticks = ax.yaxis.get_major_ticks() + ax.yaxis.get_minor_ticks()
        out = {round(t.get_loc(), 6): t.label1.get_text() for t in ticks
               if t.label1.get_visible() and t.label1.get_text()}
        _plt().close(f)
        return out

    default, plain = labels(False), labels(True)
    assert set(plain) == set(default) and {0.6, 1.0, 2.0, 3.0} <= set(plain)
    assert all(float(s) == x and "$" not in s for x, s in plain.items())
    assert all("$" in s for s in default.values())  # what mathtext had to lay out


def test_curves_of_several_runs_have_one_legend_entry_per_stage_and_metric(tmp_path):
    """unlearning.png / training.png over several runs: each stage one colour (every run's
    line in it) and each metric one line style, so the legend stays as long as the stages
    plus the metrics (five runs of the quickstart gave 90 entries before); bookkeeping
    fields (``epochs``) are not drawn as metrics."""
    import json

    from kgtest.report.plots import _curves, _plt

    runs = []
    for r in range(5):
        run = tmp_path / f"q-seed{r}"
        for stage in ("unlearn-npo-0123456789ab", "unlearn-graddiff-0123456789ab"):
            (run / stage).mkdir(parents=True)
            (run / stage / "unlearn_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [
                {"step": 10, "loss": -0.5 - r},
                {"step": 17, "epochs": 5.0, "val_forget_acc": 0.4, "val_retain_acc": 0.7},
                {"step": 20, "loss": -1.5 - r},
                {"step": 34, "epochs": 15.0, "val_forget_acc": 0.1, "val_retain_acc": 0.8}]))
        runs.append(run)
    fig = _curves(runs, "unlearn_log.jsonl", "unlearning")
    ax_l, ax_a = fig.axes[:2]
    labels = [t.get_text() for t in ax_a.get_legend().get_texts()]
    assert labels == ["graddiff", "npo", "val_forget_acc", "val_retain_acc"]
    assert [t.get_text() for t in ax_l.get_legend().get_texts()] == ["graddiff", "npo"]
    assert len(ax_l.get_lines()) == 10 and len(ax_a.get_lines()) == 20  # 5 runs x 2 stages
    assert all(max(line.get_ydata()) <= 1 for line in ax_a.get_lines())  # no `epochs`
    colours = {line.get_color() for line in ax_l.get_lines()}
    assert len(colours) == 2  # one per stage
    _plt().close(fig)
