"""The text of ``summary.md``: the main tables, the floors, CoT, exposure, gating, utility,
the attacks, then the sections the report passes in (cuts, anchors), tuning and plots.

Examples
--------
>>> from kgtest.records import new_row
>>> from kgtest.report.aggregate import aggregate
>>> rows = [new_row(run_id="r", variant=v, probe="direct", fact=f, correct=v == "original",
...                 gated_in=True) for v in ("original", "filter") for f in range(5)]
>>> md = summary_markdown(aggregate(rows, n_boot=50), rows)
>>> "| filter (control) | 0.00 [0.00, 0.43] 0/5 |" in md
True
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgtest.report.aggregate import aggregate_by
from kgtest.report.tables import ATTACKS, cell_text, columns, fmt, head, label, name, order, table

__all__ = ["summary_markdown"]


def _floor_rows(by: dict, variants: list[str], cols: list[str]) -> list[list[str]]:
    """The floors under every column: most frequent object, never trained, chance."""
    def first(c, key):
        vals = [by[v, c][key] for v in variants if (v, c) in by
                and by[v, c][key] is not None and not np.isnan(by[v, c][key])]
        return vals[0] if vals else None

    majority, never, chance = [], [], []
    for c in cols:
        f = first(c, "floor")
        majority.append(f"{f:.2f}" if f is not None else "–")
        nt = next((by[v, c] for v in variants if (v, c) in by
                   and by[v, c]["floor_never_n"]), None)
        never.append(f"{nt['floor_never']:.2f} {nt['floor_never_k']}/{nt['floor_never_n']}"
                     if nt else "–")
        ch = first(c, "chance")
        chance.append(f"{ch:.2f}" if ch is not None else "–")
    return [["floor: most frequent object"] + majority, ["floor: never trained"] + never,
            ["chance (1 / candidates)"] + chance]


def summary_markdown(agg: list[dict], records: Sequence[dict], *, command: str = "",
                     tuning: Sequence[dict] = (), plots: Sequence[str] = (),
                     control: str = "filter", warn: Sequence[str] = (), n_boot: int = 2000,
                     seed: int = 0, cuts: str = "") -> str:
    """The text of ``summary.md`` (see :func:`kgtest.report.report`); ``cuts``: the sections of
    :mod:`kgtest.report.cuts` and the anchors, placed after the attack sections."""
    by = {(a["variant"], label(a)): a for a in agg}
    variants = order(a["variant"] for a in agg)
    runs = sorted({r["run_id"] for r in records})
    seeds = sorted({tuple(r[f"seed_{k}"] for k in ("world", "train", "unlearn", "attack"))
                    for r in records if r["variant"] == "original"}, key=str)
    md = ["# kgtest report", ""]
    if warn:
        md += ["## Warnings", ""] + [f"- **{w}**" for w in warn] + [""]
    md += [f"Runs ({len(runs)}): {', '.join(runs)}. Seeds (world, train, unlearn, attack): "
           + "; ".join(str(s) for s in seeds) + ".", ""]
    if command:
        md += ["Reproduce with:", "", "```", command, "```", ""]
    cols = columns(agg, utility=False)
    one = len(runs) == 1
    md += ["## Re-derivation of the forget targets", "",
           "Fraction of gated-in targets (the original answered them by the same probe's "
           "gate) answered correctly, `rate [95% interval] k/n`: "
           + ("Wilson intervals (one run)" if one else
              "two-level bootstrap over seeds, then targets") + ". `cot` counts an answer "
           "only if its chain verifies against what that variant was trained on; `latent` is "
           "the direct question on targets the variant never saw stated; `implied` asks "
           "held-out derived facts (a capability, not the targets). Relearn columns are the "
           "worst case over the attack grid. Under the table: the floors (docs/science.md).", ""]
    body = [[name(v)] + [cell_text(by[v, c]) if (v, c) in by else "" for c in cols]
            for v in variants]
    md += [table(["variant"] + [head(c) for c in cols],
                  body + _floor_rows(by, variants, cols)), ""]
    md += [f"## Excess re-derivation over the {control} control", "",
           f"variant − {control}, on the same gated-in facts, paired 95% intervals ("
           + ("Newcombe, from Wilson" if one else "two-level paired bootstrap") + "). Above "
           "0: the variant gives back more than exact unlearning would.", ""]
    body = [[name(v)] + [fmt(by[v, c]["excess"], by[v, c]["excess_lo"], by[v, c]["excess_hi"],
                               sign=True) if (v, c) in by else "" for c in cols]
            for v in variants if v != control]
    md += [table(["variant"] + [head(c) for c in cols], body), ""]
    md += _cot_section(by, variants)
    md += _exposure_section(records, n_boot=n_boot, seed=seed)
    md += ["## Gating", "", "Facts gated in / gated out / not applicable per probe (the "
           "original model's answers decide; the same facts for every variant).", ""]
    ref = variants[0]
    body = [[c, f"{by[ref, c]['n_in']} / {by[ref, c]['n_out']} / {by[ref, c]['n_na']}",
             f"{by[ref, c]['rate_all']:.2f}" if not np.isnan(by[ref, c]["rate_all"]) else "–"]
            for c in cols + columns(agg, utility=True) if (ref, c) in by]
    md += [table(["probe", "in / out / n.a.", f"{ref}: rate over all"], body), ""]
    ucols = columns(agg, utility=True)
    if ucols:
        md += ["## Utility", "", "Retain facts (direct, cot), rule use on entities unrelated "
               "to the targets (CoT) and held-out loss (mean log-prob per token).", ""]
        body = [[name(v)] + [cell_text(by[v, c]) if (v, c) in by else "" for c in ucols]
                for v in variants]
        md += [table(["variant"] + ucols, body), ""]
    md += _attack_sections(records, by, variants)
    md += [cuts] if cuts else []
    if tuning:
        keys = list(dict.fromkeys(k for t in tuning for k in t))
        md += ["## Tuning choices", "", "From each variant's `unlearn.json` (chosen on the "
               "validation targets, never on the reported ones).", ""]
        md += [table(keys, [[str(t.get(k, "")) for k in keys] for t in tuning]), ""]
    if plots:
        md += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(md)


def _exposure_section(records: Sequence[dict], *, n_boot: int, seed: int) -> list[str]:
    """The original on every asked fact, gate ignored, by how training showed the fact."""
    cut = aggregate_by(records, ("trained", "tags"), n_boot=n_boot, seed=seed)
    if not cut:
        return []
    body = [[label(a), a["value"][0] or "never (implied)", a["value"][1],
             cell_text({**a, "metric": "rate", "n_in": a["n"]}),
             f"{a['chance']:.3f}" if not np.isnan(a["chance"]) else "–",
             f"{a['floor']:.3f}" if not np.isnan(a["floor"]) else "–"] for a in cut]
    return ["## The original model on every asked fact, by training exposure", "",
            "Every applicable asked fact, gated or not (the original's own knowledge: QA on "
            "subjects whose QA was never trained, inverse questions on facts stated only "
            "forward, two-hop questions on held-out facts), by the `trained` column: the "
            "kinds of training documents that stated or answered the fact, and its `tags` "
            "(`ood`: a held-out fact with an OOD entity's premise). `rate [95% "
            "interval] k/n` (" + ("Wilson" if len({r["run_id"] for r in records}) == 1
                                  else "two-level bootstrap over seeds, then facts") + ").",
            "", table(["probe", "trained as", "tags", "original: rate", "chance",
                        "floor: most frequent object"], body), ""]


def _cot_section(by: dict, variants: list[str]) -> list[str]:
    if not any((v, "cot") in by for v in variants):
        return []
    body = []
    for v in variants:
        a, b = by.get((v, "cot")), by.get((v, "cot_answer"))
        if a is None:
            continue
        body.append([name(v), cell_text(a), cell_text(b) if b else "–",
                     str(a["n_broken"]) if a["n_broken"] is not None else "–"])
    return ["## Chain of thought: verified vs answer only", "",
            "`verified`: the answer is right, the chain has >= 1 step, every step is in the "
            "closure of the facts that variant was trained on, the steps entail the target, "
            "and no step is the target (or a fact equivalent to it). `broken`: gated-in "
            "targets answered right with a chain that does not verify.", "",
            table(["variant", "verified", "answer only", "right answer, broken chain"], body),
            ""]


def _attack_sections(records, by: dict, variants: list[str]) -> list[str]:
    md = []
    audit = [r for r in records if r["audit_derivable"] is not None]
    if audit:
        md += ["## Relearn audit", "", "Share of evaluated targets that follow symbolically "
               "from the attack's facts plus what the variant was trained on and kept "
               "(recovering those needs no hidden knowledge), and the worst grid point.", ""]
        body = []
        for v in variants:
            for p in ATTACKS:
                rs = [r for r in audit if r["variant"] == v and r["probe"] == p]
                w = by.get((v, f"{p}[worst]"))
                if rs:
                    body.append([name(v), p,
                                 f"{np.mean([r['audit_derivable'] for r in rs]):.2f}",
                                 w["worst_of"] if w else ""])
        md += [table(["variant", "attack", "derivable", "worst grid point"], body), ""]
    per_run = {}  # one value per (variant, setting, run): every fact's row repeats it
    for r in records:
        if r["probe"] == "quantize" and r["quant_diff"] is not None:
            per_run[(r["variant"], r["setting"], r["run_id"])] = (r["weight_diff"],
                                                                  r["quant_diff"])
    diffs = {k[:2]: tuple(np.mean([v for kk, v in per_run.items() if kk[:2] == k[:2]], 0))
             for k in per_run}  # mean over runs
    if diffs:
        settings = sorted({s for _, s in diffs})
        md += ["## Quantization: weights the unlearning changed", "",
               "Fraction of quantized weights whose value differs from the original's at the "
               "same width (Zhang et al.: where unlearning moves weights less than a "
               "quantization step, quantizing restores the original); `fp`: full-precision "
               "weights that differ at all. Mean over runs.", ""]
        body = []
        for v in variants:
            if v == "original" or not any((v, s) in diffs for s in settings):
                continue
            fp = next((diffs[v, s][0] for s in settings if (v, s) in diffs), None)
            body.append([name(v), f"{fp:.3f}" if fp is not None else "–"]
                        + [f"{diffs[v, s][1]:.3f}" if (v, s) in diffs else "–"
                           for s in settings])
        md += [table(["variant", "fp"] + settings, body), ""]
    return md
