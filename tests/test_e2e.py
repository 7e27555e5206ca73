"""End to end: `kgtest run` on a tiny spec against a committed golden summary; demo smoke.

The golden file (tests/data/golden_tiny_summary.json) holds, per (variant, probe,
setting), the facts gated in (``n_in``), gated out (``n_out``), not applicable (``n_na``),
chance and the rate of a seeded run on CPU with one thread. Trained models differ across
CPUs (another BLAS sums in another order, and 1200 AdamW steps turn that into another
trajectory), so a rerun is held to three kinds of checks:

- **exact, symbolic**: the variants, every golden line (lines a newer pipeline adds are
  allowed), and per line the facts it is about (``n_in + n_out``, ``n_na``) and chance;
- **invariants** of a working pipeline: the original knows every forget target and the
  retain facts, the never-trained model sits at the floor on every forget-target probe,
  the controls retrained without the targets keep the retain facts, the unlearned
  variants forget, the held-out loss orders original > never-trained;
- **rates** near the golden ones: within ``cell_tolerance`` per line and, pooled over all
  lines (~300 fact-probe pairs, where one-target swings average out), within ``MEAN_TOL``.

Measured spread (why these margins), twice:

1. The golden, written on an Intel Xeon, against a rerun on an AMD EPYC (same spec, one
   thread; before the ``implied`` probe was split off): gated counts identical on every
   line; 16 of 72 rate lines moved, each by one fact on lines of 3 to 6 facts, NPO's
   utility lines (56 to 100 facts) by 0.04 to 0.09; pooled mean |rate - golden| 0.057.
2. Five trajectories of the golden's own world (2026-11-29, AMD EPYC, one thread,
   ``train.seed = unlearn.seed = S`` for S = 1..4 beside the golden's derived seeds, so
   world, split, corpus and initialisation are the golden's and every line asks the same
   facts; a new batch order perturbs the run at least as much as another BLAS's rounding,
   which 1200 AdamW steps also turn into another trajectory)::

       python spread.py S 1   # kgtest run tests/data/tiny.toml --set train.seed=S
                              #   --set unlearn.seed=S --set train.threads=1

   The golden's seeds reproduced the golden byte for byte. Per line, min-max of the rate
   over the five runs where it moved (n_in: the golden's gated facts; the gated count
   itself moved, e.g. 2-4 on the CoT lines): NPO utility_cot 0.36-0.77 (56), utility_direct
   0.43-0.71 (100); NPO_deep utility_cot 0.16-0.30, utility_direct 0.41-0.52; NPO direct,
   latent, quantize 0.00-0.33 (6), cot 0.00-0.25 (4), cot_answer and in_context 0.00-0.50
   (4), relearn 0.00-0.17 (6); filter cot and cot_answer 0.25-1.00 (4), in_context
   0.00-1.00 (4), direct, latent, quantize 0.00-0.17 (6); ignorance cot_answer 0.00-0.25,
   in_context 0.00-0.50 (4); original relearn 0.17-0.83 (6). Every other line: identical
   in all five. Pooled mean |rate - golden| per run 0.030 to 0.081 (``MEAN_TOL`` 0.12).
   Every run passed :func:`check_invariants`. Thread count: a 150-step run of this spec
   at ``train.threads`` 1 and 2 gave the same ``correct`` on all 1314 records (scores
   differ in the last digits); full-length runs at 2 threads were not measured (the
   2-core machine was shared, and 2 threads beside another job run 10x slower).

Hence each line's tolerance (:func:`cell_tolerance`) is the larger of the general margin
(two facts of ``n_in``, at least 0.25, at most 0.5) and the line's measured largest
deviation from the golden (:data:`LINE_SPREAD`) plus one target's swing (``1 / n_in``).
A line that moved from 0 to 1 (filter in_context) is then no longer checked line by line;
the invariants and the pooled mean still are. A method that stops forgetting (its lines
at the original's) still fails (``test_golden_checks_have_teeth``).

To regenerate after an intended change (one seeded run, ~2 CPU-minutes; then remeasure
:data:`LINE_SPREAD` if the change moves the rates):

    .venv/bin/python tests/test_e2e.py --regenerate
"""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from kgtest.cli import main

#: asserts a trained model's outcome: `make test-arith` reruns it under other CPU arithmetic
pytestmark = pytest.mark.trained

SPEC = Path(__file__).parent / "data" / "tiny.toml"
GOLDEN = Path(__file__).parent / "data" / "golden_tiny_summary.json"
VARIANTS = {"original", "filter", "ignorance", "never_trained", "NPO", "NPO_deep"}
#: probes on the forget targets, and ``implied`` on held-out derived facts (the rest:
#: utility on retain facts): a never-trained model gets at most one fact of each by luck
FLOOR_PROBES = ("direct", "cot", "cot_answer", "in_context", "latent", "relearn",
                "relearn_premises", "quantize", "implied")
MEAN_TOL = 0.12  # pooled mean |rate - golden| over every line (see the spread above)
#: per line, the largest |rate - golden| measured over five trajectories (docstring, 2.)
LINE_SPREAD = {
    "NPO_deep|utility_cot|": 0.143, "NPO_deep|utility_direct|": 0.111,
    "NPO|cot_answer|": 0.5, "NPO|cot|": 0.25, "NPO|direct|": 0.334, "NPO|in_context|": 0.5,
    "NPO|latent|": 0.334, "NPO|quantize|int4": 0.334, "NPO|quantize|int8": 0.334,
    "NPO|relearn|steps=20,lr=0.001": 0.167, "NPO|relearn|worst": 0.167,
    "NPO|utility_cot|": 0.393, "NPO|utility_direct|": 0.2,
    "filter|cot_answer|": 0.5, "filter|cot|": 0.5, "filter|direct|": 0.167,
    "filter|in_context|": 1.0, "filter|latent|": 0.167, "filter|quantize|int4": 0.167,
    "filter|quantize|int8": 0.167,
    "ignorance|cot_answer|": 0.25, "ignorance|in_context|": 0.25,
    "original|relearn|steps=20,lr=0.001": 0.5, "original|relearn|worst": 0.5,
}


def cell_tolerance(n_in: int, spread: float = 0.0) -> float | None:
    """How far one line's rate may move: two facts of ``n_in``, at least 0.25, at most 0.5,
    or the line's measured ``spread`` plus one fact of ``n_in`` if that is more; None (not
    compared line by line) under 3 facts, where one fact is the whole rate.

    >>> [cell_tolerance(n) and round(cell_tolerance(n), 3) for n in (1, 3, 4, 6, 56, 100)]
    [None, 0.5, 0.5, 0.334, 0.25, 0.25]
    >>> round(cell_tolerance(6, LINE_SPREAD["NPO|direct|"]), 3)  # 0/6 to 2/6 measured
    0.502
    """
    if n_in < 3:
        return None
    return max(min(0.5, max(0.25, 2 / n_in + 1e-3)), spread + 1 / n_in + 1e-3)


def _run(out: Path) -> list[dict]:
    torch.set_num_threads(1)
    assert main(["run", str(SPEC), "--out", str(out), "--set", "unlearn.progress=false"]) == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return json.loads((run_dir / "summary.json").read_text())


def _key(row: dict) -> str:
    return f"{row['variant']}|{row['probe']}|{row['setting']}"


def _golden_view(rows: list[dict]) -> dict:
    def num(x):
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, 4)

    return {_key(r): {"n_in": r["n_in"], "n_out": r["n_out"], "n_na": r["n_na"],
                      "chance": num(r["chance"]), "rate": num(r["rate"])} for r in rows}


def _is_rate(key: str, w: dict) -> bool:
    return w["rate"] is not None and not key.split("|")[1].startswith("utility_loss")


def check_against_golden(got: dict, want: dict) -> list[str]:
    """What differs between two golden views beyond the tolerated spread (empty: none).

    >>> g = {"a|direct|": {"n_in": 6, "n_out": 0, "n_na": 0, "chance": 0.1, "rate": 0.5}}
    >>> check_against_golden(g, g)
    []
    >>> check_against_golden({"a|direct|": {**g["a|direct|"], "rate": 1.0}}, g)
    ['a|direct|: rate 1.0 vs golden 0.5 (tolerance 0.334)', 'mean |rate - golden| 0.500 > 0.12']
    """
    bad = [f"missing line {k}" for k in sorted(set(want) - set(got))]
    devs = []
    for key, w in sorted(want.items()):
        g = got.get(key)
        if g is None:
            continue
        if "n_out" in w and (g["n_in"] + g["n_out"], g["n_na"]) != (w["n_in"] + w["n_out"],
                                                                    w["n_na"]):
            bad.append(f"{key}: facts (in+out, n/a) {g['n_in'] + g['n_out']}, {g['n_na']} vs "
                       f"golden {w['n_in'] + w['n_out']}, {w['n_na']}")
        if "chance" in w and g["chance"] != w["chance"]:
            bad.append(f"{key}: chance {g['chance']} vs golden {w['chance']}")
        if _is_rate(key, w):
            if g["rate"] is None:
                bad.append(f"{key}: no rate (golden {w['rate']})")
                continue
            d, tol = abs(g["rate"] - w["rate"]), cell_tolerance(w["n_in"],
                                                                 LINE_SPREAD.get(key, 0.0))
            devs.append(d)
            if tol is not None and d > tol:
                bad.append(f"{key}: rate {g['rate']} vs golden {w['rate']} (tolerance {tol:.3f})")
    mean = sum(devs) / len(devs) if devs else 0.0
    if mean > MEAN_TOL:
        bad.append(f"mean |rate - golden| {mean:.3f} > {MEAN_TOL}")
    return bad


def check_invariants(by: dict) -> list[str]:
    """What a working pipeline gives on any CPU, whatever the trajectory (empty: all hold)."""
    bad = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            bad.append(what)

    variants = {k.split("|")[0] for k in by}
    need(variants == VARIANTS, f"variants {sorted(variants)}")
    orig = by["original|direct|"]
    # the original knows its forget targets (the gate lets every one in) and the retain facts
    need(orig["rate"] == 1.0 and orig["n_out"] == 0, f"original direct {orig}")
    need(by["original|utility_direct|"]["rate"] >= 0.9, "original utility_direct < 0.9")
    for key, row in by.items():
        variant, probe = key.split("|")[:2]
        if probe in FLOOR_PROBES and row["rate"] is not None:
            # never trained: at the floor (at most one fact right by luck), attack included
            if variant == "never_trained":
                need(row["rate"] * row["n_in"] <= 1 + 1e-9, f"{key}: never-trained {row['rate']}")
        if probe == "direct" and variant in ("ignorance", "NPO", "NPO_deep"):
            # retrained without targets and premises, or unlearned: most targets are gone
            # (not the filter control: it keeps the premises, re-deriving is what it measures)
            need(row["rate"] <= 0.5, f"{key}: {row['rate']} of the targets still answered")
    for control in ("filter", "ignorance"):  # retrained on everything else: retain kept
        need(by[f"{control}|utility_direct|"]["rate"] >= 0.9, f"{control} utility_direct")
    need(by["never_trained|utility_direct|"]["rate"] <= 0.1, "never-trained knows retain facts")
    # held-out loss (a log-likelihood: higher is better) orders original > never trained
    need(by["original|utility_loss|"]["rate"] > by["never_trained|utility_loss|"]["rate"] + 1,
         "held-out log-likelihood: original not above never-trained")
    return bad


@pytest.mark.slow
def test_run_matches_golden_summary(tmp_path):
    rows = _run(tmp_path)
    by = {_key(r): r for r in rows}
    bad = check_invariants(by)
    bad += check_against_golden(_golden_view(rows), json.loads(GOLDEN.read_text()))
    assert not bad, "\n".join(bad)
    summary = (next(p for p in tmp_path.iterdir() if p.is_dir()) / "summary.md").read_text()
    assert "Excess re-derivation over the filter control" in summary
    assert "kgtest run" in summary  # the command that reproduces it


def test_golden_checks_have_teeth():
    """The checks above reject a broken pipeline: a method that forgets nothing, a probe
    that is always wrong, a lost line or a changed symbolic count."""
    want = json.loads(GOLDEN.read_text())
    assert check_against_golden(want, want) == []
    npo_noop = {k: {**w, "rate": want[k.replace("NPO|", "original|")]["rate"]}
                if k.startswith("NPO|") else w for k, w in want.items()}
    assert any("NPO|direct|" in b for b in check_against_golden(npo_noop, want))
    cot_dead = {k: {**w, "rate": 0.0} if "|cot|" in k else w for k, w in want.items()}
    assert any("original|cot|" in b for b in check_against_golden(cot_dead, want))
    lost = dict(want)
    gone = next(k for k in want if k.startswith("NPO_deep|"))
    lost.pop(gone)
    assert check_against_golden(lost, want) == [f"missing line {gone}"]
    if "n_na" in want["filter|direct|"]:  # (a golden from before these fields lacks them)
        shifted = {k: {**w, "n_na": w["n_na"] + 1} if k == "filter|direct|" else w
                   for k, w in want.items()}
        assert len(check_against_golden(shifted, want)) == 1
    rows = [{"variant": k.split("|")[0], "probe": k.split("|")[1], "setting": k.split("|")[2],
             "n_out": 0, "n_na": 0, "chance": None, **w} for k, w in want.items()]
    by = {_key(r): r for r in rows}
    assert check_invariants(by) == []
    by["NPO|direct|"] = {**by["NPO|direct|"], "rate": 1.0}
    assert check_invariants(by) == ["NPO|direct|: 1.0 of the targets still answered"]


@pytest.mark.slow
def test_demo_smoke(tmp_path, capsys):
    torch.set_num_threads(1)
    rc = main(["demo", "--out", str(tmp_path / "demo"),
               "--set", "model.preset=tiny", "--set", "train.steps=60",
               "--set", "train.progress=false", "--set", "train.stop_at={}",
               "--set", 'unlearn.methods=["NPO"]', "--set", "unlearn.deep=[false]",
               "--set", 'unlearn.controls=["filter"]', "--set", "unlearn.tune_epochs=[2]",
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
    bad = check_invariants({_key(r): r for r in rows})
    if bad:  # a golden must come from a working pipeline
        sys.exit("not regenerated, invariants fail:\n" + "\n".join(bad))
    GOLDEN.write_text(json.dumps(_golden_view(rows), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
