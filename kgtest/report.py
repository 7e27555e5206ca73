"""Aggregation with bootstrap intervals, the excess over the filter control, and the report.

:func:`aggregate` turns tidy rows (:mod:`kgtest.records`) into one line per
(variant, probe, setting):

- ``rate``: the fraction of **gated-in** facts answered correctly (SCIENCE.md: only
  targets the original knew count), with a 95% bootstrap interval ``lo``, ``hi``;
- ``excess``: ``rate(variant) - rate(filter control)`` on the same facts, with a paired
  bootstrap interval: the headline **excess re-derivation**;
- ``n_in``, ``n_out``, ``n_na``: facts gated in, gated out, and not applicable;
  ``rate_all``: the rate over every applicable fact, gated or not; ``chance``;
  ``mean_score`` (for ``utility_loss``, where ``correct`` is None, the interval is on it).

The bootstrap is two-level: seeds (runs) are resampled with replacement, then facts within
each drawn run, independently for every draw; a replicate's rate is the mean of its runs'
rates, so each seed weighs the same. With one run it is the ordinary bootstrap over facts.
The excess resamples the same facts for the variant and the control (paired). For relearn
probes, a ``setting = "worst"`` line per variant repeats the grid point with the highest
recovery (SCIENCE.md: report the worst case over the attack grid).

:func:`report` re-aggregates any set of run folders and writes ``summary.md``,
``summary.json`` and the plots (``plots/*.png``) into the output folder.

Examples
--------
>>> from kgtest.records import new_row
>>> rows = [new_row(run_id="r", variant=v, probe="cot", fact=f, correct=c, gated_in=True)
...         for v, cs in (("filter", [1, 0, 0, 0]), ("NPO", [1, 1, 1, 0]))
...         for f, c in enumerate(cs)]
>>> t = {r["variant"]: r for r in aggregate(rows, n_boot=200)}
>>> t["NPO"]["rate"], t["filter"]["rate"], t["NPO"]["excess"]
(0.75, 0.25, 0.5)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgtest.errors import InputError
from kgtest.interop.runinfo import run_info_markdown
from kgtest.records import read_records
from kgtest.symbolic.facts import atomic_write_text

__all__ = ["bootstrap", "aggregate", "report", "CONTROLS", "summary_markdown"]

#: Control variants, listed first in tables.
CONTROLS = ("original", "filter", "ignorance", "never_trained")
_ATTACKS = ("relearn", "relearn_premises")
_UTILITY = ("utility_direct", "utility_cot", "utility_rule", "utility_loss")


def bootstrap(groups: Sequence[np.ndarray], *, n_boot: int = 2000, seed: int = 0,
              level: float = 0.95) -> tuple[float, float, float]:
    """Mean over groups of group means, with a two-level percentile bootstrap interval.

    Parameters
    ----------
    groups : sequence of arrays
        One array per seed (run): ``(n_g,)`` values, or ``(n_g, 2)`` paired values whose
        difference (column 0 minus column 1) is the statistic. Empty groups are dropped.
    n_boot, seed, level
        Replicates, their seed, and the interval's coverage.

    Returns
    -------
    (estimate, lo, hi)
        NaNs when no group has a value.

    Examples
    --------
    >>> est, lo, hi = bootstrap([np.array([1, 0, 1, 1, 0, 1, 1, 1])], n_boot=500)
    >>> est, bool(lo < est < hi)
    (0.75, True)
    """
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return float("nan"), float("nan"), float("nan")
    paired = groups[0].ndim == 2

    def stat(g):  # (..., n) or (..., n, 2) -> (...)
        m = g.mean(-2) if paired else g.mean(-1)
        return m[..., 0] - m[..., 1] if paired else m

    est = float(np.mean([stat(g) for g in groups]))
    rng = np.random.default_rng(seed)
    G = len(groups)
    pick = rng.integers(0, G, size=(n_boot, G))  # (B, G): runs drawn per replicate
    reps = np.zeros((n_boot, G))
    for g, vals in enumerate(groups):
        slots = pick == g  # (B, G): where run g was drawn
        k = int(slots.sum())
        if k:
            idx = rng.integers(0, len(vals), size=(k, len(vals)))  # (k, n_g): facts drawn
            reps[slots] = stat(vals[idx])
    boot = reps.mean(1)  # (B,)
    a = (1 - level) / 2
    lo, hi = np.quantile(boot, [a, 1 - a])
    return est, float(lo), float(hi)


def _value(r: dict) -> float | None:
    if not r["applicable"]:
        return None
    if r["correct"] is not None:
        return float(r["correct"])
    return r["score"]


def aggregate(records: Sequence[dict], *, control: str = "filter", n_boot: int = 2000,
              seed: int = 0, level: float = 0.95) -> list[dict]:
    """Rates per (variant, probe, setting) with intervals and the excess over ``control``.

    Returns
    -------
    list of dict
        Keys: ``variant probe setting metric rate lo hi excess excess_lo excess_hi n_in
        n_out n_na rate_all chance mean_score n_runs worst_of`` (``metric`` is ``rate``,
        or ``score`` for probes without a correctness bit).
    """
    cells: dict[tuple, dict] = defaultdict(lambda: defaultdict(dict))  # key -> run -> fact
    for r in records:
        cells[(r["variant"], r["probe"], r["setting"] or "")][r["run_id"]][r["fact"]] = r
    out = []
    for (variant, probe, setting), runs in cells.items():
        rows = [r for run in runs.values() for r in run.values()]
        vals = [_value(r) for r in rows]
        metric = "rate" if any(r["correct"] is not None for r in rows) else "score"
        gated = [{f: _value(r) for f, r in run.items() if r["gated_in"] and _value(r) is not None}
                 for run in runs.values()]
        est, lo, hi = bootstrap([np.array(list(g.values())) for g in gated], n_boot=n_boot,
                                seed=seed, level=level)
        ex = (float("nan"),) * 3
        ctrl = cells.get((control, probe, setting))
        if ctrl is not None and variant != control:
            pairs = []
            for run_id, run in runs.items():
                c = ctrl.get(run_id, {})
                both = [(_value(run[f]), _value(c[f])) for f in run if f in c
                        and run[f]["gated_in"] and c[f]["gated_in"]
                        and _value(run[f]) is not None and _value(c[f]) is not None]
                pairs.append(np.array(both).reshape(-1, 2))
            ex = bootstrap(pairs, n_boot=n_boot, seed=seed, level=level)
        scores = [r["score"] for r in rows if r["score"] is not None and r["applicable"]]
        chances = [r["chance"] for r in rows if r["chance"] is not None]
        applicable = [v for v in vals if v is not None]
        out.append({
            "variant": variant, "probe": probe, "setting": setting, "metric": metric,
            "rate": est, "lo": lo, "hi": hi,
            "excess": ex[0], "excess_lo": ex[1], "excess_hi": ex[2],
            "n_in": sum(len(g) for g in gated),
            "n_out": sum(1 for r in rows if r["applicable"] and not r["gated_in"]),
            "n_na": sum(1 for r in rows if not r["applicable"]),
            "rate_all": float(np.mean(applicable)) if applicable else float("nan"),
            "chance": float(np.mean(chances)) if chances else float("nan"),
            "mean_score": float(np.mean(scores)) if scores else float("nan"),
            "n_runs": len(runs), "worst_of": "",
        })
    for variant, probe in {(a["variant"], a["probe"]) for a in out if a["probe"] in _ATTACKS}:
        grid = [a for a in out if a["variant"] == variant and a["probe"] == probe]
        best = max(grid, key=lambda a: -1.0 if np.isnan(a["rate"]) else a["rate"])
        out.append({**best, "setting": "worst", "worst_of": best["setting"]})
    order = {v: i for i, v in enumerate(CONTROLS)}
    out.sort(key=lambda a: (order.get(a["variant"], len(order)), a["variant"], a["probe"],
                            a["setting"]))
    return out


# --- the report ------------------------------------------------------------------------

def _label(a: dict) -> str:
    return a["probe"] if not a["setting"] else f"{a['probe']}[{a['setting']}]"


def _fmt(x: float, lo: float, hi: float, sign: bool = False) -> str:
    if np.isnan(x):
        return "–"
    f = "{:+.2f}" if sign else "{:.2f}"
    return f"{f.format(x)} [{f.format(lo)}, {f.format(hi)}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _order(variants) -> list[str]:
    """Distinct variants, controls first (in :data:`CONTROLS` order), then by name."""
    rank = {v: i for i, v in enumerate(CONTROLS)}
    return sorted(set(variants), key=lambda v: (rank.get(v, len(rank)), v))


def _variants(agg: list[dict]) -> list[str]:
    return _order(a["variant"] for a in agg)


def _columns(agg: list[dict], utility: bool) -> list[str]:
    cols = [_label(a) for a in agg if (a["probe"] in _UTILITY) == utility
            and not (a["probe"] in _ATTACKS and a["setting"] != "worst")]
    return list(dict.fromkeys(sorted(cols, key=lambda c: (_PROBE_ORDER.get(c.split("[")[0], 99),
                                                          c))))


_PROBE_ORDER = {p: i for i, p in enumerate(
    ("direct", "statement", "paraphrase", "cot", "in_context", "latent", "relearn",
     "relearn_premises", "quantize", *_UTILITY))}


def summary_markdown(agg: list[dict], records: Sequence[dict], *, command: str = "",
                     tuning: Sequence[dict] = (), plots: Sequence[str] = (),
                     control: str = "filter") -> str:
    """The text of ``summary.md`` (see :func:`report`)."""
    by = {(a["variant"], _label(a)): a for a in agg}
    variants = _variants(agg)
    name = lambda v: f"{v} (control)" if v in CONTROLS else v  # noqa: E731
    runs = sorted({r["run_id"] for r in records})
    seeds = sorted({tuple(r[f"seed_{k}"] for k in ("world", "train", "unlearn", "attack"))
                    for r in records if r["variant"] == "original"}, key=str)
    md = ["# kgtest report", "",
          f"Runs ({len(runs)}): {', '.join(runs)}. Seeds (world, train, unlearn, attack): "
          + "; ".join(str(s) for s in seeds) + ".", ""]
    if command:
        md += ["Reproduce with:", "", "```", command, "```", ""]
    cols = _columns(agg, utility=False)
    md += ["## Re-derivation of the forget targets", "",
           "Fraction of gated-in targets (the original answered them by the same probe's "
           "gate) answered correctly, with 95% bootstrap intervals over facts and seeds. "
           "Relearn columns are the worst case over the attack grid.", ""]
    body = [[name(v)] + [_fmt(by[v, c]["rate"], by[v, c]["lo"], by[v, c]["hi"])
                         if (v, c) in by else "" for c in cols] for v in variants]
    chance = []
    for c in cols:
        chs = [by[v, c]["chance"] for v in variants if (v, c) in by
               and not np.isnan(by[v, c]["chance"])]
        chance.append(f"{np.mean(chs):.2f}" if chs else "–")
    md += [_table(["variant"] + cols, body + [["chance"] + chance]), ""]
    md += [f"## Excess re-derivation over the {control} control", "",
           f"variant − {control}, on the same gated-in facts, paired bootstrap 95% "
           "intervals. Above 0: the variant gives back more than exact unlearning would.", ""]
    body = [[name(v)] + [_fmt(by[v, c]["excess"], by[v, c]["excess_lo"], by[v, c]["excess_hi"],
                              sign=True) if (v, c) in by else "" for c in cols]
            for v in variants if v != control]
    md += [_table(["variant"] + cols, body), ""]
    md += ["## Gating", "", "Facts gated in / gated out / not applicable per probe (the "
           "original model's answers decide; the same facts for every variant).", ""]
    ref = variants[0]
    body = [[c, f"{by[ref, c]['n_in']} / {by[ref, c]['n_out']} / {by[ref, c]['n_na']}",
             f"{by[ref, c]['rate_all']:.2f}" if not np.isnan(by[ref, c]["rate_all"]) else "–"]
            for c in cols + _columns(agg, utility=True) if (ref, c) in by]
    md += [_table(["probe", "in / out / n.a.", f"{ref}: rate over all"], body), ""]
    ucols = _columns(agg, utility=True)
    if ucols:
        md += ["## Utility", "", "Retain facts (direct, cot), rule use on entities unrelated "
               "to the targets (CoT) and held-out loss (mean log-prob per token).", ""]
        body = [[name(v)] + [(_fmt(by[v, c]["rate"], by[v, c]["lo"], by[v, c]["hi"])
                              if (v, c) in by else "") for c in ucols] for v in variants]
        md += [_table(["variant"] + ucols, body), ""]
    audit = [r for r in records if r["audit_derivable"] is not None]
    if audit:
        md += ["## Relearn audit", "", "Share of asked held-out targets V that follow "
               "symbolically from the attack's facts plus what the variant retains "
               "(recovering those needs no hidden knowledge), and the worst grid point.", ""]
        body = []
        for v in variants:
            for p in _ATTACKS:
                rs = [r for r in audit if r["variant"] == v and r["probe"] == p]
                w = by.get((v, f"{p}[worst]"))
                if rs:
                    body.append([name(v), p, f"{np.mean([r['audit_derivable'] for r in rs]):.2f}",
                                 w["worst_of"] if w else ""])
        md += [_table(["variant", "attack", "derivable", "worst grid point"], body), ""]
    if tuning:
        keys = list(dict.fromkeys(k for t in tuning for k in t))
        md += ["## Tuning choices", "", "From each variant's `unlearn.json` (chosen on the "
               "validation targets, never on the reported ones).", ""]
        md += [_table(keys, [[str(t.get(k, "")) for k in keys] for t in tuning]), ""]
    if plots:
        md += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(md)


def _tuning(run_dirs: Sequence[Path]) -> list[dict]:
    out = []
    for run in run_dirs:
        for path in sorted(run.rglob("unlearn.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            tuning = data.get("tuning") or {}
            choice = tuning.get("choice") or {}
            before, after = data.get("before") or {}, data.get("after") or {}
            extra = (data.get("forget_set") or {}).get("extra_facts")

            def pct(d, k):
                return f"{d[k]:.2f}" if isinstance(d.get(k), (int, float)) else ""

            flat = {
                "run": run.name,
                "variant": f"{data.get('method', '?')}{'_deep' if data.get('deep') else ''}",
                "lr": f"{data.get('lr', ''):g}" if isinstance(data.get("lr"), float)
                else str(data.get("lr", "")),
                "steps": str(data.get("steps", "")),
                "level reached": ("yes" if tuning.get("reached") else "no") if tuning
                else "not tuned",
                "grid points": str(len(tuning.get("grid", []))) if tuning else "",
                "validation retain": pct(choice, "retain_acc"),
                "forget direct before → after":
                    f"{pct(before, 'forget_acc')} → {pct(after, 'forget_acc')}",
                "retain direct before → after":
                    f"{pct(before, 'retain_acc')} → {pct(after, 'retain_acc')}",
                "extra facts (deep)": "" if extra is None else str(extra),
            }
            out.append(flat)
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
    if records is None:
        records = [r for d in runs for r in read_records(d)]
    if not records:
        raise InputError(f"report: {runs[0]}: records.jsonl has no rows")
    agg = aggregate(records, control=control, n_boot=n_boot, seed=seed)
    plots = _write_plots(agg, records, runs, out / "plots", n_boot=n_boot, seed=seed)
    if not command and (runs[0] / "command.txt").is_file():
        command = (runs[0] / "command.txt").read_text(encoding="utf-8").strip()
    command = command or "kgtest report " + " ".join(str(d) for d in runs)
    text = summary_markdown(agg, records, command=command, tuning=_tuning(runs),
                            plots=[str(p.relative_to(out)) for p in plots], control=control)
    text += run_info_markdown(runs)  # versions, git commit, reproduce command (run.json)
    atomic_write_text(out / "summary.json", json.dumps(
        [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in a.items()}
         for a in agg], indent=1) + "\n")
    atomic_write_text(out / "summary.md", text)
    return out / "summary.md"


# --- plots -----------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    _plt().close(fig)
    return path


def _err(a: dict, key: str = "rate", lo: str = "lo", hi: str = "hi") -> tuple[float, float]:
    if np.isnan(a[key]):
        return 0.0, 0.0
    return max(a[key] - a[lo], 0.0), max(a[hi] - a[key], 0.0)


def _colours(variants: Sequence[str]) -> dict[str, object]:
    cmap = _plt().get_cmap("tab10")
    return {v: cmap(i % 10) for i, v in enumerate(variants)}


def _bars(agg: list[dict], path: Path, control: str) -> Path | None:
    cols = _columns(agg, utility=False)
    variants = _variants(agg)
    by = {(a["variant"], _label(a)): a for a in agg}
    if not cols:
        return None
    plt = _plt()
    colour = _colours(variants)
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.25 * len(cols) * len(variants) + 3), 8),
                             sharex=True)
    w = 0.8 / len(variants)
    x = np.arange(len(cols))
    for ax, key in zip(axes, ("rate", "excess"), strict=True):
        lo, hi = ("lo", "hi") if key == "rate" else ("excess_lo", "excess_hi")
        for i, v in enumerate(variants):
            if key == "excess" and v == control:
                continue
            cells = [by.get((v, c)) for c in cols]
            ys = np.array([c[key] if c else np.nan for c in cells])
            xs = x + (i - (len(variants) - 1) / 2) * w
            errs = np.array([_err(c, key, lo, hi) if c else (0, 0) for c in cells]).T
            ok = ~np.isnan(ys)
            ax.bar(xs[ok], ys[ok], w, yerr=errs[:, ok], capsize=2, color=colour[v],
                   label=v + (" (control)" if v in CONTROLS else ""),
                   hatch="//" if v in CONTROLS else None, edgecolor="black", linewidth=0.4)
            ax.scatter(xs[ok], ys[ok], marker="_", color="black", s=40, zorder=3)  # shows 0
            for xx in xs[~ok]:
                ax.text(xx, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize=6)
        if key == "rate":
            for j, c in enumerate(cols):
                chs = [by[v, c]["chance"] for v in variants if (v, c) in by
                       and not np.isnan(by[v, c]["chance"])]
                if chs:
                    ax.hlines(np.mean(chs), j - 0.45, j + 0.45, colors="red",
                              linestyles="dashed", label="chance" if j == 0 else None)
            ax.set_ylim(0, 1.08)
            ax.set_ylabel("correct among gated-in targets")
            ax.set_title("Re-derivation of the forget targets (95% bootstrap CI)")
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_ylim(-1.08, 1.08)
            ax.set_ylabel(f"variant − {control} (rate difference)")
            ax.set_title(f"Excess re-derivation over the {control} control (paired 95% CI)")
    ref = variants[0]
    ticks = [f"{c}\nn={by[ref, c]['n_in']}/{by[ref, c]['n_in'] + by[ref, c]['n_out']}"
             if (ref, c) in by else c for c in cols]
    axes[1].set_xticks(x, ticks, rotation=30, ha="right", fontsize=8)
    axes[1].set_xlabel("probe [setting]; n = targets gated in / applicable")
    return _save(fig, path)


def _by_proofs(records: Sequence[dict], path: Path, n_boot: int, seed: int) -> Path | None:
    probes = [p for p in ("direct", "cot", "in_context") if any(
        r["probe"] == p and r["gated_in"] and r["correct"] is not None for r in records)]
    if not probes:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(probes), figsize=(4.2 * len(probes), 3.6), squeeze=False)
    variants = _order(r["variant"] for r in records)
    colour = _colours(variants)
    for ax, p in zip(axes[0], probes, strict=True):
        rs = [r for r in records if r["probe"] == p and r["gated_in"] and r["correct"] is not None]
        ks = sorted({r["proofs"] for r in rs})
        for i, v in enumerate(variants):
            pts = []
            for k in ks:
                cell = defaultdict(list)
                for r in rs:
                    if r["variant"] == v and r["proofs"] == k:
                        cell[r["run_id"]].append(float(r["correct"]))
                if cell:
                    est, lo, hi = bootstrap([np.array(c) for c in cell.values()],
                                            n_boot=n_boot, seed=seed)
                    pts.append((k + (i - (len(variants) - 1) / 2) * 0.06, est, est - lo,
                                hi - est))
            if pts:
                xs, ys, el, eh = np.array(pts).T
                ax.errorbar(xs, ys, yerr=[el, eh], marker="o", capsize=3, label=v,
                            color=colour[v])
        ax.set_xticks(ks)
        ax.set_xlim(min(ks) - 0.5, max(ks) + 0.5)
        ax.set_ylim(-0.03, 1.05)
        ax.set_xlabel("proof count (distinct derivations)")
        ax.set_ylabel("correct among gated-in targets")
        ax.set_title(f"{p}: re-derivation vs proof count")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _forget_utility(agg: list[dict], path: Path) -> Path | None:
    by = {(a["variant"], _label(a)): a for a in agg}
    util = next((u for u in ("utility_direct", "utility_cot") if any(
        _label(a) == u for a in agg)), None)
    if util is None:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    colour = _colours(_variants(agg))
    for ax, forget in zip(axes, ("direct", "cot"), strict=True):
        for v in _variants(agg):
            a, u = by.get((v, forget)), by.get((v, util))
            if a is None or u is None or np.isnan(a["rate"]) or np.isnan(u["rate"]):
                continue
            ax.errorbar(u["rate"], a["rate"], xerr=np.array([_err(u)]).T,
                        yerr=np.array([_err(a)]).T, marker="s" if v in CONTROLS else "o",
                        capsize=3, color=colour[v], alpha=0.85,
                        label=v + (" (control)" if v in CONTROLS else ""))
        ax.set_xlim(-0.03, 1.05)
        ax.set_ylim(-0.03, 1.05)
        ax.set_xlabel(f"utility: {util} rate (retain facts)")
        ax.set_ylabel(f"forget targets still answered ({forget})")
        ax.set_title(f"forget ({forget}) vs utility; best is bottom right")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _read_log(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _curves(runs: Sequence[Path], pattern: str, path: Path, title: str) -> Path | None:
    logs = [(p, _read_log(p)) for run in runs for p in sorted(run.rglob(pattern))]
    logs = [(p, e) for p, e in logs if any("step" in x for x in e)]
    if not logs:
        return None
    plt = _plt()
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 4))
    for p, entries in logs:
        stage = re.sub(r"^(unlearn|model|control)-|-[0-9a-f]{12}$", "", p.parent.name)
        name = f"{p.parent.parent.name}/{stage}" if len(runs) > 1 else stage
        loss = [(e["step"], e["loss"]) for e in entries if "loss" in e]
        if loss:
            ax_l.plot(*zip(*loss, strict=True), label=name)
        keys = sorted({k for e in entries for k in e
                       if k not in ("step", "loss", "lr", "tokens", "elapsed_s")
                       and isinstance(e[k], (int, float))})
        for k in keys:
            pts = [(e["step"], e[k]) for e in entries if k in e]
            ax_a.plot(*zip(*pts, strict=True), marker=".", label=f"{name}: {k}")
    positive = all(y > 0 for line in ax_l.get_lines() for y in line.get_ydata())
    if positive:  # gradient-ascent losses go negative: keep those linear
        ax_l.set_yscale("log")
    ax_l.set_xlabel("step")
    ax_l.set_ylabel(f"{title} loss" + (" (log scale)" if positive else ""))
    ax_l.set_title(f"{title}: loss")
    ax_a.set_xlabel("step")
    ax_a.set_ylabel("evaluation metric (accuracy)")
    ax_a.set_title(f"{title}: evaluation metrics")
    if ax_l.get_legend_handles_labels()[0]:
        ax_l.legend(fontsize=7)
    if ax_a.get_legend_handles_labels()[0]:  # many lines: keep the legend off the data
        ax_a.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _save(fig, path)


def _write_plots(agg, records, runs, out: Path, *, n_boot: int, seed: int) -> list[Path]:
    made = [_bars(agg, out / "rates.png", "filter"),
            _by_proofs(records, out / "proof_count.png", n_boot, seed),
            _forget_utility(agg, out / "forget_vs_utility.png"),
            _curves(runs, "train_log.jsonl", out / "training.png", "training"),
            _curves(runs, "unlearn_log.jsonl", out / "unlearning.png", "unlearning")]
    return [p for p in made if p is not None]
