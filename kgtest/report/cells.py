"""A sweep's cells side by side: re-derivation and deletion cost per cell (e.g. per density).

:func:`kgtest.sweep.sweep_report` writes one report per cell (the axis values other than
the seed); this module adds the cut that compares them, for an axis such as the world's
density (``experiments/density.toml``, claim 1): per cell, the forget targets' proof counts,
the smallest minimal deletion set per target and the facts deep unlearning deleted beyond
the targets (symbolic, from the run folders), then every variant's rate on the targets per
probe (``direct``, verified ``cot``, ``latent``) and its excess over the control, with the
cells' own intervals (:func:`kgtest.report.aggregate.aggregate`, two-level bootstrap over
each cell's seeds). :func:`cells_section` returns the Markdown and draws
``plots/cells.png`` (:func:`kgtest.report.plots.cells_plot`).

Examples
--------
>>> axis_name(["world.params.density=0.5", "world.params.density=1.0"])
('world.params.density', ['0.5', '1.0'])
>>> axis_name(["a=1,b=2", "a=1,b=3"])
('cell', ['a=1,b=2', 'a=1,b=3'])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgtest.report.aggregate import aggregate
from kgtest.report.plots import cells_plot
from kgtest.report.runs import deletion_stats
from kgtest.report.tables import cell_text, fmt, label, name, order, table, target_rows

__all__ = ["axis_name", "cell_points", "cells_section"]

#: The probes compared across cells, in table order.
PROBES = ("direct", "cot", "latent")


def axis_name(labels: Sequence[str]) -> tuple[str, list[str]]:
    """``(axis, values)`` when every cell label is ``key=value`` of one key, else
    ``("cell", labels)``."""
    parts = [lab.split("=", 1) for lab in labels]
    if all(len(p) == 2 and "," not in lab for p, lab in zip(parts, labels, strict=True)) and \
            len({p[0] for p in parts}) == 1:
        return parts[0][0], [p[1] for p in parts]
    return "cell", list(labels)


def cell_points(records: Sequence[dict], runs: Sequence[Path], *, control: str = "filter",
                n_boot: int = 2000, seed: int = 0) -> dict:
    """One cell's numbers: target proof counts, deletion cost, rates per variant and probe.

    Returns
    -------
    dict
        ``targets`` (distinct forget targets), ``proofs`` (their proof counts), ``sizes``
        (smallest minimal deletion set per target), ``extra`` (variant -> facts deleted
        beyond the targets, one per run), ``agg`` (the aggregate lines of the target rows).
    """
    rows = target_rows(records)
    proofs = {(r["run_id"], r["fact"]): r["proofs"] for r in rows if r["proofs"] is not None}
    by_k, extra = deletion_stats(records, list(runs))
    sizes = [n for v in by_k.values() for n in v]
    agg = [a for a in aggregate(rows, control=control, n_boot=n_boot, seed=seed)
           if a["probe"] in PROBES and not a["setting"]]
    return {"targets": len(proofs), "proofs": list(proofs.values()), "sizes": sizes,
            "extra": extra, "agg": agg}


def _cost_table(points: dict[str, dict], values: list[str], axis: str) -> list[str]:
    deep = sorted({v for p in points.values() for v in p["extra"]})
    header = [axis, "targets", "mean proofs", "targets with ≥ 2 proofs",
              "smallest deletion set: mean (min–max)",
              *[f"deleted beyond the targets per run: {v}" for v in deep]]
    rows = []
    for value, p in zip(values, points.values(), strict=True):
        k = np.array(p["proofs"])
        size = (f"{np.mean(p['sizes']):.2f} ({min(p['sizes'])}–{max(p['sizes'])})"
                if p["sizes"] else "–")
        ex = [f"{np.mean(p['extra'][v]):.2f} ({min(p['extra'][v])}–{max(p['extra'][v])})"
              if p["extra"].get(v) else "–" for v in deep]
        rows.append([value, str(len(k)), f"{k.mean():.2f}" if len(k) else "–",
                     f"{int((k >= 2).sum())}/{len(k)}", size, *ex])
    return [table(header, rows), ""]


def _rate_tables(points: dict[str, dict], values: list[str], axis: str) -> list[str]:
    variants = order(a["variant"] for p in points.values() for a in p["agg"])
    out = []
    for probe in PROBES:
        by = [{a["variant"]: a for a in p["agg"] if label(a) == probe} for p in points.values()]
        if not any(by):
            continue
        rows = [[name(v), *[cell_text(b[v]) if v in b and b[v]["n_in"] else "–" for b in by]]
                for v in variants]
        rows = [r for r in rows if set(r[1:]) != {"–"}]  # gated in nowhere
        if not rows:
            continue
        ex = [[name(v), *[fmt(b[v]["excess"], b[v]["excess_lo"], b[v]["excess_hi"], sign=True)
                          if v in b else "–" for b in by]]
              for v in variants if any(v in b and not np.isnan(b[v]["excess"]) for b in by)]
        out += [f"### {probe}", "", table(["variant", *[f"{axis} = {x}" for x in values]],
                                          rows), ""]
        if ex:
            out += ["Excess over the control:", "",
                    table(["variant", *[f"{axis} = {x}" for x in values]], ex), ""]
    return out


def cells_section(cells: dict[str, tuple[Sequence[dict], Sequence[Path]]], plots: Path, *,
                  control: str = "filter", n_boot: int = 2000, seed: int = 0) -> list[str]:
    """``summary.md`` lines comparing a sweep's cells (empty with < 2 cells or no targets).

    Parameters
    ----------
    cells : dict
        Cell label -> ``(records, run folders)`` of its finished runs.
    plots : Path
        Folder for ``cells.png``.
    control, n_boot, seed
        As for :func:`kgtest.report.report`.

    Returns
    -------
    list of str

    Examples
    --------
    >>> cells_section({}, Path("."))
    []
    """
    if len(cells) < 2:
        return []
    points = {lab: cell_points(recs, runs, control=control, n_boot=n_boot, seed=seed)
              for lab, (recs, runs) in cells.items()}
    points = {lab: p for lab, p in points.items() if p["targets"]}
    if len(points) < 2:
        return []
    axis, values = axis_name(list(points))
    md = ["## Across cells", "",
          f"Per {axis}: the forget targets' proof counts and the smallest minimal deletion "
          "set of each (target included), the facts deep unlearning (and the ignorance "
          "control) deleted beyond the targets per run, then every variant's rate on the "
          "targets per probe, each cell with its own intervals (its seeds, then its targets).",
          "", *_cost_table(points, values, axis), *_rate_tables(points, values, axis)]
    path = cells_plot(points, values, axis, plots / "cells.png")
    if path is not None:
        md += [f"![across cells]({path.parent.name}/{path.name})", ""]
    return md
