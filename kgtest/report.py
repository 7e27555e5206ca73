"""The report of one or more runs: ``summary.md``, ``summary.json`` and the plots.

:func:`report` re-aggregates any set of run folders (:func:`kgtest.aggregate.aggregate`:
rates, intervals, floors, excess) and writes ``summary.md``, ``summary.json`` and
``plots/*.png`` (:mod:`kgtest.plots`) into the output folder. ``summary.md`` opens with
warnings when the original model under-trained (its in-loop accuracy below the training
stop targets) or an unlearning method missed its tuning level; every rate is printed with
its interval and ``k/n``, beside the two floors (most frequent object, never trained).

Examples
--------
>>> import tempfile
>>> from kgtest.records import new_row, write_records
>>> run = tempfile.mkdtemp()
>>> _ = write_records([new_row(run_id="r", variant=v, probe="direct", fact=f,
...                            correct=v == "original", gated_in=True)
...                    for v in ("original", "filter") for f in range(5)], run)
>>> text = report([run], n_boot=100).read_text()
>>> "| filter (control) | 0.00 [0.00, 0.43] 0/5 |" in text
True
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgtest.aggregate import (  # noqa: F401  (bootstrap, aggregate: the public names here)
    ATTACKS,
    CONTROLS,
    UTILITY,
    aggregate,
    aggregate_by,
    bootstrap,
)
from kgtest.anchors import anchor_sections
from kgtest.errors import InputError
from kgtest.interop.runinfo import run_info_markdown
from kgtest.records import read_runs
from kgtest.symbolic.facts import atomic_write_text

__all__ = ["bootstrap", "aggregate", "report", "CONTROLS", "summary_markdown", "warnings",
           "label", "columns", "DISPLAY"]

#: Column id -> what a table header says (the definitions of docs/science.md, "Probes").
DISPLAY = {
    "cot": "cot (verified chain)", "cot_answer": "cot (answer only)",
    "latent": "latent (targets never stated)", "implied": "implied (held-out facts)",
}

_PROBE_ORDER = {p: i for i, p in enumerate(
    ("direct", "statement", "paraphrase", "cot", "cot_answer", "in_context", "latent",
     "implied", "relearn", "relearn_premises", "quantize", *UTILITY))}


def label(a: dict) -> str:
    """A line's column id: ``probe`` or ``probe[setting]``."""
    return a["probe"] if not a["setting"] else f"{a['probe']}[{a['setting']}]"


def _head(col: str) -> str:
    probe, _, rest = col.partition("[")
    return DISPLAY.get(probe, probe) + (f" [{rest}" if rest else "")


def _fmt(x, lo, hi, sign: bool = False) -> str:
    if x is None or np.isnan(x):
        return "–"
    f = "{:+.2f}" if sign else "{:.2f}"
    return f"{f.format(x)} [{f.format(lo)}, {f.format(hi)}]"


def cell_text(a: dict) -> str:
    """``rate [lo, hi] k/n`` (or ``score [lo, hi]`` for score lines)."""
    text = _fmt(a["rate"], a["lo"], a["hi"])
    if a["metric"] == "rate" and a["n_in"]:
        text += f" {a['k']}/{a['n_in']}"
    return text


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def order(variants) -> list[str]:
    """Distinct variants, controls first (in :data:`CONTROLS` order), then by name."""
    rank = {v: i for i, v in enumerate(CONTROLS)}
    return sorted(set(variants), key=lambda v: (rank.get(v, len(rank)), v))


def columns(agg: list[dict], utility: bool) -> list[str]:
    """Column ids of the main (or utility) table; attacks only as their worst case."""
    cols = [label(a) for a in agg if (a["probe"] in UTILITY) == utility
            and not (a["probe"] in ATTACKS and a["setting"] != "worst")]
    return list(dict.fromkeys(sorted(cols, key=lambda c: (_PROBE_ORDER.get(c.split("[")[0], 99),
                                                          c))))


def _name(v: str) -> str:
    return f"{v} (control)" if v in CONTROLS else v


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
    """The text of ``summary.md`` (see :func:`report`); ``cuts``: the sections of
    :func:`kgtest.cuts.cuts_markdown`, placed after the attack sections."""
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
    body = [[_name(v)] + [cell_text(by[v, c]) if (v, c) in by else "" for c in cols]
            for v in variants]
    md += [_table(["variant"] + [_head(c) for c in cols],
                  body + _floor_rows(by, variants, cols)), ""]
    md += [f"## Excess re-derivation over the {control} control", "",
           f"variant − {control}, on the same gated-in facts, paired 95% intervals ("
           + ("Newcombe, from Wilson" if one else "two-level paired bootstrap") + "). Above "
           "0: the variant gives back more than exact unlearning would.", ""]
    body = [[_name(v)] + [_fmt(by[v, c]["excess"], by[v, c]["excess_lo"], by[v, c]["excess_hi"],
                               sign=True) if (v, c) in by else "" for c in cols]
            for v in variants if v != control]
    md += [_table(["variant"] + [_head(c) for c in cols], body), ""]
    md += _cot_section(by, variants)
    md += _exposure_section(records, n_boot=n_boot, seed=seed)
    md += ["## Gating", "", "Facts gated in / gated out / not applicable per probe (the "
           "original model's answers decide; the same facts for every variant).", ""]
    ref = variants[0]
    body = [[c, f"{by[ref, c]['n_in']} / {by[ref, c]['n_out']} / {by[ref, c]['n_na']}",
             f"{by[ref, c]['rate_all']:.2f}" if not np.isnan(by[ref, c]["rate_all"]) else "–"]
            for c in cols + columns(agg, utility=True) if (ref, c) in by]
    md += [_table(["probe", "in / out / n.a.", f"{ref}: rate over all"], body), ""]
    ucols = columns(agg, utility=True)
    if ucols:
        md += ["## Utility", "", "Retain facts (direct, cot), rule use on entities unrelated "
               "to the targets (CoT) and held-out loss (mean log-prob per token).", ""]
        body = [[_name(v)] + [cell_text(by[v, c]) if (v, c) in by else "" for c in ucols]
                for v in variants]
        md += [_table(["variant"] + ucols, body), ""]
    md += _attack_sections(records, by, variants)
    md += [cuts] if cuts else []
    if tuning:
        keys = list(dict.fromkeys(k for t in tuning for k in t))
        md += ["## Tuning choices", "", "From each variant's `unlearn.json` (chosen on the "
               "validation targets, never on the reported ones).", ""]
        md += [_table(keys, [[str(t.get(k, "")) for k in keys] for t in tuning]), ""]
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
            "", _table(["probe", "trained as", "tags", "original: rate", "chance",
                        "floor: most frequent object"], body), ""]


def _cot_section(by: dict, variants: list[str]) -> list[str]:
    if not any((v, "cot") in by for v in variants):
        return []
    body = []
    for v in variants:
        a, b = by.get((v, "cot")), by.get((v, "cot_answer"))
        if a is None:
            continue
        body.append([_name(v), cell_text(a), cell_text(b) if b else "–",
                     str(a["n_broken"]) if a["n_broken"] is not None else "–"])
    return ["## Chain of thought: verified vs answer only", "",
            "`verified`: the answer is right, the chain has >= 1 step, every step is in the "
            "closure of the facts that variant was trained on, the steps entail the target, "
            "and no step is the target (or a fact equivalent to it). `broken`: gated-in "
            "targets answered right with a chain that does not verify.", "",
            _table(["variant", "verified", "answer only", "right answer, broken chain"], body),
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
                    body.append([_name(v), p,
                                 f"{np.mean([r['audit_derivable'] for r in rs]):.2f}",
                                 w["worst_of"] if w else ""])
        md += [_table(["variant", "attack", "derivable", "worst grid point"], body), ""]
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
            body.append([_name(v), f"{fp:.3f}" if fp is not None else "–"]
                        + [f"{diffs[v, s][1]:.3f}" if (v, s) in diffs else "–"
                           for s in settings])
        md += [_table(["variant", "fp"] + settings, body), ""]
    return md


def _load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def warnings(run_dirs: Sequence[Path]) -> list[str]:
    """What makes a report's numbers suspect, found in the run folders.

    - the original model under-trained: its last in-loop accuracy (``metrics.json`` of
      the model stage) below a ``train.stop_at`` target;
    - an unlearning method missed its tuning level (``unlearn.json``: the tuner's
      ``tuning.warnings`` lines, or ``tuning.reached`` false): its row forgets less, or
      keeps less utility, than the fair-tuning rule demands.
    """
    out = []
    for run in run_dirs:
        for mpath in sorted(run.glob("model-*/metrics.json")):
            metrics, cfg = _load_json(mpath), _load_json(mpath.parent / "config.json")
            stop = ((cfg or {}).get("train") or {}).get("stop_at") or {}
            for k, target in stop.items():
                got = (metrics or {}).get(f"acc_{k}")
                if isinstance(got, (int, float)) and got < target:
                    out.append(f"{run.name}: the original under-trained: in-loop {k} accuracy "
                               f"{got:.2f} < stop target {target:.2f} after "
                               f"{metrics.get('steps', '?')} steps")
        for upath in sorted(run.rglob("unlearn.json")):
            data = _load_json(upath) or {}
            tuning = data.get("tuning") or {}
            name = f"{data.get('method', '?')}{'_deep' if data.get('deep') else ''}"
            if tuning.get("warnings"):  # the tuner's own lines, one per miss
                out += [f"{run.name}: {w}" for w in tuning["warnings"]]
            elif tuning and not tuning.get("reached", True):
                out.append(f"{run.name}: {name} missed its tuning level (no grid point "
                           "reached it on the validation targets); its rates are not "
                           "comparable to the others'")
    return out


def _tuning(run_dirs: Sequence[Path]) -> list[dict]:
    out = []
    for run in run_dirs:
        for path in sorted(run.rglob("unlearn.json")):
            data = _load_json(path)
            if data is None:
                continue
            tuning = data.get("tuning") or {}
            choice = tuning.get("choice") or {}
            before, after = data.get("before") or {}, data.get("after") or {}
            extra = (data.get("forget_set") or {}).get("extra_facts")

            def pct(d, k):
                return f"{d[k]:.2f}" if isinstance(d.get(k), (int, float)) else ""

            out.append({
                "run": run.name,
                "variant": f"{data.get('method', '?')}{'_deep' if data.get('deep') else ''}",
                "lr": f"{data.get('lr', ''):g}" if isinstance(data.get("lr"), float)
                else str(data.get("lr", "")),
                "epochs": str(data.get("epochs", "")),
                "steps": str(data.get("steps", "")),
                "forgetting level (val acc ≤ level)": (
                    f"{pct(choice, 'forget_acc')} ≤ {tuning['level']:.2f}: "
                    f"{'yes' if tuning.get('reached') else 'NO'}")
                if tuning.get("level") is not None else "not tuned",
                "utility kept (val retain ≥ min)": (
                    f"{pct(choice, 'retain_acc')} ≥ {tuning['retain_min']:.2f}: "
                    f"{'yes' if tuning.get('kept') else 'NO'}")
                if tuning.get("retain_min") is not None else "",
                "grid points": str(len(tuning.get("grid", []))) if tuning else "",
                "validation retain": pct(choice, "retain_acc"),
                "forget direct before → after":
                    f"{pct(before, 'forget_acc')} → {pct(after, 'forget_acc')}",
                "retain direct before → after":
                    f"{pct(before, 'retain_acc')} → {pct(after, 'retain_acc')}",
                "extra facts (deep)": "" if extra is None else str(extra),
            })
    return out


def report(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike | None = None,
           *, command: str = "", control: str = "filter", n_boot: int = 2000,
           seed: int = 0, records: Sequence[dict] | None = None) -> Path:
    """Re-aggregate run folders: ``summary.md``, ``summary.json`` and ``plots/*.png``.

    Parameters
    ----------
    run_dirs : sequence of paths
        Run folders, each with ``records.jsonl`` (:data:`kgtest.records.RECORDS`).
    out_dir : path, optional
        Where to write (default: the first run folder).
    command : str
        The command that reproduces the run(s), quoted in the summary.
    records : sequence of dict, optional
        The rows to aggregate, instead of the run folders' ``records.jsonl`` (the pipeline
        reports rows it has not published yet).

    Returns
    -------
    Path
        ``out_dir/summary.md``.

    Raises
    ------
    kgtest.stages.RunBusy
        ``out_dir`` is a run folder another process is writing (its lock is held while
        this reads the records and writes the summary).
    """
    from kgtest.stages import LOCK, run_lock

    runs = [Path(d) for d in run_dirs]
    if not runs:
        raise InputError("report: no run folders given")
    out = Path(out_dir) if out_dir is not None else runs[0]
    with run_lock(out) if (out / LOCK).is_file() else contextlib.nullcontext():
        return _report(runs, out, command=command, control=control, n_boot=n_boot, seed=seed,
                       records=records)


def _report(runs: list[Path], out: Path, *, command: str, control: str, n_boot: int,
            seed: int, records: Sequence[dict] | None) -> Path:
    from kgtest.cuts import cuts_markdown, proof_cost_plot
    from kgtest.plots import write_plots
    from kgtest.report_cuts import cut_sections, domain_plot

    if records is None:
        records = read_runs(runs)  # checked: types, no NaN, no run counted twice
    if not records:
        raise InputError(f"report: {runs[0]}: records.jsonl has no rows")
    agg = aggregate(records, control=control, n_boot=n_boot, seed=seed)
    plots = write_plots(agg, records, runs, out / "plots", n_boot=n_boot, seed=seed,
                        control=control)
    plots += [p for p in [proof_cost_plot(records, runs, out / "plots" / "proof_cost.png",
                                          control=control, n_boot=n_boot, seed=seed)] if p]
    plots += [p for p in [domain_plot(records, out / "plots" / "by_domain.png",
                                      control=control, n_boot=n_boot, seed=seed)] if p]
    extra = anchor_sections(records, runs, agg=agg, plots_dir=out / "plots", n_boot=n_boot,
                            seed=seed)
    plots += [p for p in (out / "plots" / n for n in ("recovery.png", "latent_curve.png"))
              if p.is_file()]
    if not command and (runs[0] / "command.txt").is_file():
        command = (runs[0] / "command.txt").read_text(encoding="utf-8").strip()
    command = command or "kgtest report " + " ".join(str(d) for d in runs)
    text = summary_markdown(agg, records, command=command, tuning=_tuning(runs),
                            plots=[str(p.relative_to(out)) for p in plots], control=control,
                            warn=warnings(runs), n_boot=n_boot, seed=seed, cuts=cuts_markdown(
                                records, runs, control=control, n_boot=n_boot, seed=seed)
                            + "\n".join(cut_sections(records, runs, control=control,
                                                      n_boot=n_boot, seed=seed))
                            + "\n".join(["", *extra]))
    from kgtest.probes.kb_recall import kb_recall_markdown  # Wu et al.: model-level recall

    text += "\n".join(["", *kb_recall_markdown(agg, records, out / "plots", n_boot=n_boot,
                                                seed=seed)])
    text += run_info_markdown(runs)  # versions, git commit, reproduce command (run.json)
    atomic_write_text(out / "summary.json", json.dumps(
        [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in a.items()}
         for a in agg], indent=1) + "\n")
    atomic_write_text(out / "summary.md", text)
    return out / "summary.md"
