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

Measured spread (why these margins): the golden, written on an Intel Xeon, against a
rerun on an AMD EPYC (same spec, one thread; before the ``implied`` probe was split off):
gated counts identical on every line; 16 of 72 rate lines moved, each by one fact on
lines of 3 to 6 facts (latent implied 0.25 -> 0.50 for three variants, relearn 1/3,
quantize and ignorance direct 1/6), NPO's utility lines (56 to 100 facts) by 0.04 to
0.09, and utility_rule (one fact, so not compared line by line) 0 -> 1 for NPO; pooled
mean |rate - golden| 0.057 (``MEAN_TOL`` 0.12). The unlearned model's retain accuracy
varies by up to 0.16 over training seeds (tests/unlearn/test_end_to_end.py), hence at
least 0.25 on a line.

To regenerate after an intended change (one seeded run, ~6 CPU-minutes):

    .venv/bin/python tests/test_e2e.py --regenerate
"""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from kgtest.cli import main

SPEC = Path(__file__).parent / "data" / "tiny.toml"
GOLDEN = Path(__file__).parent / "data" / "golden_tiny_summary.json"
VARIANTS = {"original", "filter", "ignorance", "never_trained", "NPO", "NPO_deep"}
#: probes on the forget targets, and ``implied`` on held-out derived facts (the rest:
#: utility on retain facts): a never-trained model gets at most one fact of each by luck
FLOOR_PROBES = ("direct", "cot", "cot_answer", "in_context", "latent", "relearn",
                "relearn_premises", "quantize", "implied")
MEAN_TOL = 0.12  # pooled mean |rate - golden| over every line (see the spread above)


def cell_tolerance(n_in: int) -> float | None:
    """How far one line's rate may move: two facts of ``n_in``, at least 0.25, at most 0.5;
    None (not compared line by line) under 3 facts, where one fact is the whole rate.

    >>> [cell_tolerance(n) and round(cell_tolerance(n), 3) for n in (1, 3, 4, 6, 56, 100)]
    [None, 0.5, 0.5, 0.334, 0.25, 0.25]
    """
    return None if n_in < 3 else min(0.5, max(0.25, 2 / n_in + 1e-3))


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
            d, tol = abs(g["rate"] - w["rate"]), cell_tolerance(w["n_in"])
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
