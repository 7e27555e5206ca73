"""The report's plots (matplotlib, written next to the records by :func:`kgtest.report.report`).

- ``rates.png``: a variant x probe heatmap of re-derivation rates, every cell annotated
  with ``rate`` and ``k/n``, controls above the methods, floors below them;
- ``excess.png``: the same grid for the excess over the chosen control (diverging colours);
- ``proof_count.png``: rate against proof count, only when the targets differ in it;
- ``forget_vs_utility.png``, ``training.png``, ``unlearning.png``, ``tuning_frontier.png``;
- ``proof_cost.png`` (:func:`proof_cost_plot`), ``by_domain.png`` (:func:`domain_plot`),
  ``deep_unlearning.png`` (:func:`kb_recall_plot`), where their data is there;
- a sweep's ``exposure.png`` (:func:`exposure_by_cell`) and ``cells.png``
  (:func:`cells_plot`: re-derivation, direct and verified CoT, and deletion cost per cell).

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from kgtest.report.aggregate import aggregate
>>> from kgtest.records import new_row
>>> rows = [new_row(run_id="r", variant=v, probe="direct", fact=f, correct=f < k,
...                 gated_in=True) for v, k in (("original", 4), ("NPO", 0)) for f in range(4)]
>>> heatmap(aggregate(rows, n_boot=50), Path(tempfile.mkdtemp()) / "rates.png").name
'rates.png'
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgtest.report.aggregate import aggregate, bootstrap
from kgtest.report.cuts import by_domain
from kgtest.report.runs import deletion_stats, stage_files
from kgtest.report.tables import CONTROLS, columns, head, label, order, target_rows

__all__ = ["heatmap", "write_plots", "proof_cost_plot", "domain_plot", "kb_recall_plot",
           "exposure_by_cell", "cells_plot"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = 110) -> Path:
    """``fig`` as a PNG at ``path`` (atomically), cropped to what is drawn, then closed.

    The same image as ``savefig(bbox_inches="tight")``, drawn once instead of twice: that
    option draws the whole figure to find the bounding box, then draws it again; the box
    that :meth:`~matplotlib.figure.Figure.get_tightbbox` measures without drawing is the
    same (tick labels, titles and legends are laid out, nothing is rasterised).
    """
    import matplotlib as mpl

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.set_dpi(dpi)  # text extents at the resolution of the file
    pad = mpl.rcParams["savefig.pad_inches"]
    box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(pad)
    fig.savefig(tmp, dpi=dpi, bbox_inches=box)
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


def _grid(agg: list[dict], key: str, control: str | None):
    """(row names, column ids, values (R, C), texts (R, C), number of control rows)."""
    cols = columns(agg, utility=False)
    by = {(a["variant"], label(a)): a for a in agg}
    variants = [v for v in order(a["variant"] for a in agg) if v != control]
    n_ctrl = sum(v in CONTROLS for v in variants)
    vals = np.full((len(variants), len(cols)), np.nan)
    texts = [["n/a"] * len(cols) for _ in variants]
    for i, v in enumerate(variants):
        for j, c in enumerate(cols):
            a = by.get((v, c))
            if a is not None and a["n_in"] == 0 and a["metric"] == "rate":
                texts[i][j] = "none\ngated in"  # the original knew none of these targets
            if a is None or a[key] is None or np.isnan(a[key]):
                continue
            vals[i, j] = a[key]
            if key == "rate":
                texts[i][j] = f"{a[key]:.2f}\n{a['k']}/{a['n_in']}" if a["metric"] == "rate" \
                    else f"{a[key]:.2f}"
            else:
                texts[i][j] = f"{a[key]:+.2f}\n[{a['excess_lo']:+.2f}, {a['excess_hi']:+.2f}]"
    return variants, cols, vals, texts, n_ctrl


def heatmap(agg: list[dict], path: Path, *, key: str = "rate", control: str = "filter"
            ) -> Path | None:
    """A variant x probe heatmap of ``key`` (``rate`` or ``excess``), cells annotated.

    Controls are drawn above a thick line, methods below it; with ``key="rate"`` two
    floor rows (most frequent object, never trained) close the grid. A 0 is a coloured
    cell with its ``0/n``; a missing probe is grey ``n/a``, a probe the original knew no
    target of is grey ``none gated in``.
    """
    variants, cols, vals, texts, n_ctrl = _grid(agg, key, control if key == "excess" else None)
    if not cols or not variants or (key == "excess" and np.isnan(vals).all()):
        return None
    names = [f"{v} (control)" if v in CONTROLS else v for v in variants]
    if key == "rate":
        by = {(a["variant"], label(a)): a for a in agg}
        maj = [next((by[v, c]["floor"] for v in variants if (v, c) in by
                     and not np.isnan(by[v, c]["floor"])), np.nan) for c in cols]
        vals = np.vstack([vals, np.array(maj)[None]])
        texts.append([f"{m:.2f}" if not np.isnan(m) else "n/a" for m in maj])
        names.append("floor: most frequent object")
    plt = _plt()
    cmap = plt.get_cmap("viridis" if key == "rate" else "RdBu_r").with_extremes(bad="#dddddd")
    lo, hi = (0.0, 1.0) if key == "rate" else (-1.0, 1.0)
    fig, ax = plt.subplots(figsize=(1.25 * len(cols) + 3.2, 0.55 * len(names) + 1.6))
    im = ax.imshow(np.ma.masked_invalid(vals), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            v = vals[i, j]
            dark = not np.isnan(v) and (v < 0.55 if key == "rate" else abs(v) > 0.6)
            ax.text(j, i, texts[i][j], ha="center", va="center", fontsize=7.5,
                    color="white" if dark else "black")
    if 0 < n_ctrl < len(variants):
        ax.axhline(n_ctrl - 0.5, color="black", linewidth=2.5)
    if key == "rate":
        ax.axhline(len(variants) - 0.5, color="black", linewidth=1, linestyle="--")
    ax.set_xticks(range(len(cols)), [head(c).replace(" (", "\n(") for c in cols],
                  rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    title = ("Re-derivation of the forget targets: rate and k/n (controls above the line)"
             if key == "rate" else f"Excess over the {control} control [paired 95% CI]")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02,
                 label="rate among gated-in targets" if key == "rate"
                 else f"variant − {control}")
    return _save(fig, path)


def _by_proofs(records: Sequence[dict], path: Path, n_boot: int, seed: int) -> Path | None:
    """Rate against proof count; None unless the gated-in targets differ in proof count."""
    probes = [p for p in ("direct", "cot", "in_context") if len({
        r["proofs"] for r in records if r["probe"] == p and r["gated_in"]
        and r["correct"] is not None and r["proofs"] is not None}) > 1]
    if not probes:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(probes), figsize=(4.2 * len(probes), 3.6), squeeze=False)
    variants = order(r["variant"] for r in records)
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
    """Forget rate (direct, and verified CoT where probed) against utility, one marker per
    variant with its interval, one legend for the figure."""
    by = {(a["variant"], label(a)): a for a in agg}
    util = next((u for u in ("utility_direct", "utility_cot") if any(
        label(a) == u for a in agg)), None)
    if util is None:
        return None
    panels = [f for f in ("direct", "cot") if any(label(a) == f for a in agg)] or ["direct"]
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels) + 2, 4.2),
                             squeeze=False)
    variants = order(a["variant"] for a in agg)
    colour = _colours(variants)
    handles: dict[str, object] = {}
    for ax, forget in zip(axes[0], panels, strict=True):
        for v in variants:
            a, u = by.get((v, forget)), by.get((v, util))
            if a is None or u is None or np.isnan(a["rate"]) or np.isnan(u["rate"]):
                continue
            name = v + (" (control)" if v in CONTROLS else "")
            h = ax.errorbar(u["rate"], a["rate"], xerr=np.array([_err(u)]).T,
                            yerr=np.array([_err(a)]).T, marker="s" if v in CONTROLS else "o",
                            capsize=3, color=colour[v], alpha=0.85, label=name)
            handles.setdefault(name, h)
        ax.set_xlim(-0.03, 1.05)
        ax.set_ylim(-0.03, 1.05)
        ax.set_xlabel(f"utility: {util} rate (retain facts)")
        ax.set_ylabel(f"forget targets still answered ({forget})")
        ax.set_title(f"forget ({forget}) vs utility; best is bottom right")
    if handles:
        axes[0][-1].legend(list(handles.values()), list(handles), fontsize=8,
                           loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _read_log(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _plain_log_ticks(axis) -> None:
    """Label a log axis's ticks as plain numbers (0.6, 1, 2): the same ticks as matplotlib's
    default, whose ``6 x 10^-1`` labels go through mathtext (slow to parse and lay out)."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        def __call__(self, x, pos=None):
            return f"{x:g}" if super().__call__(x, pos) else ""

    axis.set_major_formatter(Plain())
    axis.set_minor_formatter(Plain(labelOnlyBase=False))


#: numeric log fields that are bookkeeping, not an evaluation metric (epochs: unlearning's)
_NOT_METRICS = ("step", "loss", "lr", "tokens", "elapsed_s", "epoch", "epochs")
_METRIC_STYLES = ("-", "--", ":", "-.")


def _curves(runs: Sequence[Path], pattern: str, title: str, path: Path | None = None):
    """Loss (left) and evaluation metrics (right) over steps of the stage logs ``pattern``:
    a colour per stage (every run's line in it: one legend entry), a line style per metric.
    Saved to ``path`` (returned), else the figure returned; None without logs."""
    logs = [(p, _read_log(p)) for run in runs for p in stage_files(run, pattern)]
    logs = [(p, e) for p, e in logs if any("step" in x for x in e)]
    if not logs:
        return None
    from matplotlib.lines import Line2D

    fig, (ax_l, ax_a) = _plt().subplots(1, 2, figsize=(11, 4))
    stage_of = {p: "original" if p.parent.name.startswith("model-")
                else re.sub(r"^(unlearn|control)-|-[0-9a-f]{12}$", "", p.parent.name)
                for p, _ in logs}
    colours = _colours(list(dict.fromkeys(stage_of.values())))
    metrics: dict[str, str] = {}
    several = len(runs) > 1
    for p, entries in logs:
        stage = stage_of[p]
        style = dict(color=colours[stage], lw=1 if several else 1.5, alpha=0.7 if several else 1)
        loss = [(e["step"], e["loss"]) for e in entries if "loss" in e]
        if loss:
            ax_l.plot(*zip(*loss, strict=True), **style)
        keys = sorted({k for e in entries for k in e
                       if k not in _NOT_METRICS and isinstance(e[k], (int, float))})
        for k in keys:
            ls = metrics.setdefault(k, _METRIC_STYLES[len(metrics) % len(_METRIC_STYLES)])
            pts = [(e["step"], e[k]) for e in entries if k in e]
            ax_a.plot(*zip(*pts, strict=True), marker=".", ls=ls, **style)
    positive = all(y > 0 for line in ax_l.get_lines() for y in line.get_ydata())
    if positive:  # gradient-ascent losses go negative: keep those linear
        ax_l.set_yscale("log")
        _plain_log_ticks(ax_l.yaxis)
    ax_l.set(xlabel="step", ylabel=f"{title} loss" + (" (log scale)" if positive else ""),
             title=f"{title}: loss" + (f" ({len(runs)} runs)" if several else ""))
    ax_a.set(xlabel="step", ylabel="evaluation metric (accuracy)",
             title=f"{title}: evaluation metrics")
    stages = [Line2D([], [], color=c, lw=1.5, label=s) for s, c in colours.items()]
    if ax_l.get_lines():
        ax_l.legend(handles=stages, fontsize=7)
    if metrics:  # stages by colour, metrics by line style; off the data
        ax_a.legend(handles=stages + [Line2D([], [], color="#555555", ls=ls, marker=".",
                                             label=k) for k, ls in metrics.items()],
                    fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), handlelength=3.5)
    return fig if path is None else _save(fig, path)


def _tuning_frontier(runs: Sequence[Path], path: Path) -> Path | None:
    """Every tuning grid point (validation forget vs retain accuracy) per variant, the
    chosen point circled: the trade-off frontier each method was chosen from.

    One run: raw accuracies, with its forgetting level and utility floor dashed. Several
    runs (their levels and floors differ by seed): each point relative to its own run's
    level and floor, so "admissible" is the same quadrant for every point.
    """
    grids = []
    for run in runs:
        for f in stage_files(run, "unlearn.json"):
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            tun = data.get("tuning") or {}
            if tun.get("grid") and "retain_acc" in tun["grid"][0]:
                grids.append((f"{data.get('method')}{'_deep' if data.get('deep') else ''}",
                              tun))
    if not grids:
        return None
    bounds = {(t.get("level"), t.get("retain_min")) for _, t in grids}
    relative = len(bounds) > 1 and None not in {b for pair in bounds for b in pair}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    colours = _colours(list(dict.fromkeys(v for v, _ in grids)))
    seen: set[str] = set()
    for v, tun in grids:
        dx, dy = (tun["retain_min"], tun["level"]) if relative else (0.0, 0.0)
        g = tun["grid"]
        ax.scatter([p["retain_acc"] - dx for p in g], [p["forget_acc"] - dy for p in g],
                   s=18, color=colours[v], alpha=0.6, label=None if v in seen else v)
        seen.add(v)
        c = tun["choice"]
        ax.scatter([c["retain_acc"] - dx], [c["forget_acc"] - dy], s=90,
                   facecolors="none", edgecolors=colours[v])
    level, retain_min = (0.0, 0.0) if relative else next(iter(bounds))
    if level is not None:
        ax.axhline(level, ls="--", color="grey", lw=0.8)
    if retain_min is not None:
        ax.axvline(retain_min, ls="--", color="grey", lw=0.8)
    if relative:
        ax.set_xlabel("validation retain accuracy - its run's utility floor")
        ax.set_ylabel("validation forget accuracy - its run's forgetting level")
    else:
        ax.set_xlabel("validation: retain direct accuracy")
        ax.set_ylabel("validation: forget direct accuracy")
    ax.set_title(f"tuning grid, {len(grids)} tunings, chosen points circled\n"
                 "(admissible: below and right of the dashes)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def exposure_by_cell(cuts: dict[str, list[dict]], path: Path) -> Path | None:
    """Bars of :func:`kgtest.report.aggregate.aggregate_by` lines, one colour per sweep cell.

    ``cuts`` maps a cell's label to its lines; each x position is one ``probe[setting]``
    and ``trained`` value, with the 95% interval as an error bar, ``k/n`` above it and
    chance as a black tick. None when no cell has a line.
    """
    keys = list(dict.fromkeys((label(a), a["value"]) for lines in cuts.values()
                              for a in lines))
    if not keys:
        return None
    plt = _plt()
    cells = list(cuts)
    width = 0.8 / len(cells)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(keys) * max(1, len(cells)) ** 0.5),
                                    4.2))
    colours = _colours(cells)
    for j, cell in enumerate(cells):
        by = {(label(a), a["value"]): a for a in cuts[cell]}
        first = True
        for i, key in enumerate(keys):
            a = by.get(key)
            if a is None:
                continue
            x = i - 0.4 + width * (j + 0.5)
            ax.bar(x, a["rate"], width, color=colours[cell], label=cell if first else None,
                   yerr=np.array(_err(a)).reshape(2, 1), capsize=3)
            first = False
            ax.text(x, min(a["hi"] + 0.02, 1.05), f"{a['k']}/{a['n']}", ha="center",
                    fontsize=7)
            if not np.isnan(a["chance"]):
                ax.hlines(a["chance"], x - width / 2, x + width / 2, colors="black")
    ax.set_xticks(range(len(keys)))
    def name(v) -> str:
        v = v if isinstance(v, tuple) else (v,)
        return "\n".join([v[0] or "never trained", *v[1:]])

    ax.set_xticklabels([f"{p}\n{name(v)}" for p, v in keys], fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("original: rate over every asked fact")
    ax.set_title("by training exposure (black tick: chance; bars: 95% interval)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def write_plots(agg, records, runs, out: Path, *, n_boot: int, seed: int,
                control: str = "filter") -> list[Path]:
    """Every plot that has data; returns the files written."""
    made = [heatmap(agg, out / "rates.png", control=control),
            heatmap(agg, out / "excess.png", key="excess", control=control),
            _by_proofs(records, out / "proof_count.png", n_boot, seed),
            _forget_utility(agg, out / "forget_vs_utility.png"),
            _curves(runs, "train_log.jsonl", "training", out / "training.png"),
            _curves(runs, "unlearn_log.jsonl", "unlearning", out / "unlearning.png"),
            _tuning_frontier(runs, out / "tuning_frontier.png")]
    return [p for p in made if p is not None]


def proof_cost_plot(records: Sequence[dict], runs: Sequence[str | Path], path: Path, *,
                    probe: str = "cot", control: str = "filter", n_boot: int = 2000,
                    seed: int = 0) -> Path | None:
    """Re-derivation and deletion cost against proof count (None without both).

    Left: per variant, the ``probe`` rate on the forget targets against proof count k
    (95% intervals as in the report; ``direct`` when no two k have gated-in ``probe``
    rows). Right: the smallest minimal deletion set per target
    against k (mean, min and max over targets).
    """
    rows = [r for r in target_rows(records) if r["proofs"] is not None]
    ks = sorted({r["proofs"] for r in rows if r["gated_in"] and r["probe"] == probe})
    if len(ks) < 2 and probe != "direct":  # e.g. the original re-derived no target by CoT
        probe = "direct"
        ks = sorted({r["proofs"] for r in rows if r["gated_in"] and r["probe"] == probe})
    by_k, _ = deletion_stats(records, [Path(r) for r in runs])
    if len(ks) < 2 or not by_k:
        return None
    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    variants = order(r["variant"] for r in rows)
    colour = _colours(variants)
    for i, v in enumerate(variants):
        pts = []
        for k in ks:
            agg = [a for a in aggregate([r for r in rows if r["proofs"] == k and
                                         r["variant"] in (v, control)],
                                        control=control, n_boot=n_boot, seed=seed)
                   if a["variant"] == v and label(a) == probe and a["n_in"]]
            if agg:
                a = agg[0]
                pts.append((k * (1 + (i - len(variants) / 2) * 0.02), a["rate"],
                            a["rate"] - a["lo"], a["hi"] - a["rate"]))
        if pts:
            xs, ys, el, eh = np.array(pts).T
            ax.errorbar(xs, ys, yerr=[np.maximum(el, 0), np.maximum(eh, 0)], marker="o",
                        capsize=3, label=v, color=colour[v])
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("proof count k of the forget target")
    ax.set_ylabel(f"{probe}: correct among gated-in targets")
    ax.set_title(f"re-derivation ({probe}) vs k", fontsize=10)
    # below the axes: inside, it covered points (a rate can sit anywhere in [0, 1])
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=3)
    k_s = np.array(sorted(by_k))
    mean = np.array([np.mean(by_k[k]) for k in k_s])
    lo = np.array([min(by_k[k]) for k in k_s])
    hi = np.array([max(by_k[k]) for k in k_s])
    bx.errorbar(k_s, mean, yerr=[mean - lo, hi - mean], marker="s",
                capsize=3, color="black", label="smallest minimal deletion set")
    bx.plot(k_s, k_s + 1, ls=":", color="grey", label="k + 1 (one premise per proof)")
    bx.set_xscale("log", base=2)
    bx.set_xticks(k_s, [str(k) for k in k_s])
    bx.set_xlabel("proof count k of the forget target")
    bx.set_ylabel("facts to delete (target included)")
    bx.set_title("deletion cost vs k", fontsize=10)
    bx.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def domain_plot(records: Sequence[dict], path: Path, *, control: str = "filter",
                n_boot: int = 2000, seed: int = 0) -> Path | None:
    """Left: the forget targets still answered per variant (direct, verified CoT, latent);
    right: utility per domain (retained facts direct, rule use by CoT), 95% intervals.

    None when the rows name fewer than two domains (claim 3's figure, ``by_domain.png``).
    """
    domains = sorted({r["domain"] for r in records if r["domain"]})
    if len(domains) < 2:
        return None
    by, _ = by_domain(records, domains, control=control, n_boot=n_boot, seed=seed)
    variants = order(k[0] for k in by)
    forget_dom = sorted({r["domain"] for r in records if r["split"] == "forget"})
    plt = _plt()
    fig, (ax_f, ax_u) = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    x = np.arange(len(variants))
    panels = ((ax_f, [(p, d) for p in ("direct", "cot", "latent") for d in forget_dom],
               "forget targets still answered"),
              (ax_u, [(p, d) for p in ("utility_direct", "utility_cot") for d in domains],
               "utility (retained facts) by domain"))
    for ax, bars, title in panels:
        colour = _colours([f"{p} ({d})" for p, d in bars])
        w = 0.8 / max(1, len(bars))
        for i, (p, d) in enumerate(bars):
            lines = [by.get((v, d, p)) for v in variants]
            ys = [a["rate"] if a and not np.isnan(a["rate"]) else np.nan for a in lines]
            err = np.array([_err(a) if a else (0.0, 0.0) for a in lines]).T
            ax.bar(x - 0.4 + w * (i + 0.5), np.nan_to_num(ys), w, yerr=err, capsize=2,
                   color=colour[f"{p} ({d})"], label=f"{p} ({d})")
        ax.set_xticks(x, variants, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    ax_f.set_ylabel("rate among gated-in facts [95% CI]")
    return _save(fig, path)


def kb_recall_plot(points, symbolic, plots_dir) -> Path:
    """Recall against accuracy per variant (bootstrap intervals), the symbolic point."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for v, (r, rlo, rhi), (a, alo, ahi) in points:
        if np.isnan(r) or np.isnan(a):
            continue
        ax.errorbar(r, a, xerr=[[r - rlo], [rhi - r]], yerr=[[a - alo], [ahi - a]],
                    fmt="o", capsize=3, label=v)
    if not np.isnan(symbolic[0]):
        ax.axvline(symbolic[0], color="grey", ls="--", lw=1,
                   label=f"symbolic, target only ({symbolic[0]:.2f})")
    ax.set_xlabel("recall of U' (model level)")
    ax.set_ylabel("accuracy of U' (model level)")
    ax.set_xlim(-0.05, 1.05)
    ax.set_title("Deep unlearning: what the model lost vs minimal deletion sets")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower left")
    return _save(fig, Path(plots_dir) / "deep_unlearning.png")


def _cell_rates(ax, aggs: list[list[dict]], xs: np.ndarray, probe: str) -> None:
    """One panel of :func:`cells_plot`: each variant's ``probe`` rate per cell."""
    variants = order(a["variant"] for agg in aggs for a in agg)
    colour = _colours(variants)
    for i, v in enumerate(variants):
        pts = [(x + (i - len(variants) / 2) * 0.05, a["rate"], *_err(a)) for x, agg in
               zip(xs, aggs, strict=True) for a in agg if a["variant"] == v and label(a) == probe
               and a["n_in"]]
        if pts:
            px, py, el, eh = np.array(pts).T
            ax.errorbar(px, py, yerr=[np.maximum(el, 0), np.maximum(eh, 0)], marker="o",
                        capsize=3, label=v, color=colour[v])
    n = [sum(a["n_in"] for a in agg if label(a) == probe and a["variant"] == "original")
         for agg in aggs]
    ax.set_ylim(-0.03, 1.05)
    ax.set_ylabel("correct among gated-in targets")
    ax.set_title(f"re-derivation ({probe}; gated in: {', '.join(map(str, n))})", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=3)


def cells_plot(points: dict[str, dict], values: list[str], axis: str, path: Path, *,
               probes: Sequence[str] = ("direct", "cot")) -> Path | None:
    """A sweep's cells side by side (:func:`kgtest.report.cells.cells_section`).

    One panel per probe of ``probes`` with gated-in lines: per variant, its rate on the
    forget targets per cell (95% intervals; the title gives the original's gated-in count
    per cell). Then the targets' mean proof count and the mean smallest minimal deletion set
    (min and max as bars), and the facts deleted beyond the targets per run, per deep
    variant and the ignorance control. None without cells.
    """
    if not points:
        return None
    aggs = [p["agg"] for p in points.values()]
    shown = [q for q in probes if any(label(a) == q and a["n_in"] for agg in aggs for a in agg)]
    plt = _plt()
    fig, axes = plt.subplots(1, len(shown) + 2, figsize=(4.3 * (len(shown) + 2), 3.9))
    xs = np.arange(len(values))
    for ax, probe in zip(axes, shown, strict=False):
        _cell_rates(ax, aggs, xs, probe)
    bx, cx = axes[len(shown)], axes[len(shown) + 1]
    mean_k = [np.mean(p["proofs"]) if p["proofs"] else np.nan for p in points.values()]
    bx.plot(xs, mean_k, marker="o", color="tab:blue", label="mean proof count")
    sizes = [p["sizes"] or [np.nan] for p in points.values()]
    m = np.array([np.mean(s) for s in sizes])
    bx.errorbar(xs, m, yerr=[m - [min(s) for s in sizes], [max(s) for s in sizes] - m],
                marker="s", capsize=3, color="black", label="smallest deletion set")
    bx.set_ylabel("facts")
    bx.set_title("proofs and deletion cost per target", fontsize=10)
    bx.legend(fontsize=7, loc="upper left")
    extra = sorted({v for p in points.values() for v in p["extra"]})
    for j, v in enumerate(extra):
        ns = [p["extra"].get(v) or [np.nan] for p in points.values()]
        m = np.array([np.mean(n) for n in ns])
        cx.errorbar(xs + (j - len(extra) / 2) * 0.05, m, capsize=3, marker="o", label=v,
                    yerr=[m - [min(n) for n in ns], [max(n) for n in ns] - m])
    cx.set_ylabel("facts per run")
    cx.set_title("deleted beyond the targets", fontsize=10)
    if extra:
        cx.legend(fontsize=7, loc="upper left")
    for a in axes:
        a.set_xticks(xs, values)
        a.set_xlabel(axis)
    return _save(fig, path)
