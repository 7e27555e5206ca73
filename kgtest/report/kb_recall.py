"""The summary's "Deep unlearning at model level" section (Wu et al. 2024), from the rows
of the ``kb_recall`` probe (:mod:`kgtest.probes.kb_recall`).
"""

from __future__ import annotations

import numpy as np

from kgtest.report.aggregate import bootstrap
from kgtest.report.plots import kb_recall_plot
from kgtest.report.tables import CONTROLS

__all__ = ["kb_recall_markdown"]


def _by_run(rows: list[dict], value) -> list[np.ndarray]:
    """Per run, the values of the gated-in applicable rows (for the two-level bootstrap)."""
    runs: dict[str, list[float]] = {}
    for r in rows:
        if r["gated_in"] and r["applicable"]:
            runs.setdefault(r["run_id"], []).append(float(value(r)))
    return [np.asarray(v) for v in runs.values()]


def _mean_cell(groups: list[np.ndarray], n_boot: int, seed: int) -> str:
    est, lo, hi = bootstrap(groups, n_boot=n_boot, seed=seed)
    return "–" if np.isnan(est) else f"{est:.2f} [{lo:.2f}, {hi:.2f}]"


def _rate_cell(a: dict | None) -> str:
    if a is None or not a["n_in"]:
        return "–"
    return f"{a['rate']:.2f} [{a['lo']:.2f}, {a['hi']:.2f}] {a['k']}/{a['n_in']}"


def kb_recall_markdown(agg: list[dict], records, plots_dir=None, *, n_boot: int = 2000,
                       seed: int = 0) -> list[str]:
    """The summary's "Deep unlearning at model level" section (empty without kb_recall rows).

    One line per variant: the model-level recall and accuracy of ``U'`` (means over
    gated-in targets; two-level bootstrap over seeds, then targets), the targets
    deep-unlearned by what the model lost (``k/n``, the interval of the main table), the
    symbolic recall of what the variant was asked to delete, mean ``|U'|`` and the share of
    the original's KB the variant still knows (``kb`` rows). Under it, the symbolic
    number of Wu et al.: target-only unlearning's recall, the mean of ``1 / min |M|``.
    With ``plots_dir``, also draws ``deep_unlearning.png`` (recall against accuracy).

    Examples
    --------
    >>> from kgtest.report.aggregate import aggregate
    >>> from kgtest.records import new_row
    >>> rows = [new_row(run_id="r", variant=v, probe="kb_recall", fact=f, gate="kb",
    ...                 gated_in=True, correct=False, kb_recall=x, kb_accuracy=1.0,
    ...                 kb_size=50, kb_unlearned=1, min_set_size=4, sym_recall=0.25)
    ...         for v, x in (("original", 0.0), ("NPO", 0.25)) for f in range(3)]
    >>> md = kb_recall_markdown(aggregate(rows, n_boot=50), rows, n_boot=50)
    >>> md[0]
    '## Deep unlearning at model level (Wu et al. 2024)'
    >>> md[-4].split(" | ")[:4]
    ['| NPO', '0.25 [0.25, 0.25]', '1.00 [1.00, 1.00]', '0.00 [0.00, 0.56] 0/3']
    """
    recs = [r for r in records if r["probe"] == "kb_recall"]
    if not recs:
        return []
    order = {v: i for i, v in enumerate(CONTROLS)}
    variants = sorted({r["variant"] for r in recs}, key=lambda v: (order.get(v, 99), v))
    lines = {(a["variant"], a["probe"]): a for a in agg if not a["setting"]}
    body, points = [], []
    for v in variants:
        rows = [r for r in recs if r["variant"] == v]
        rec = _by_run(rows, lambda r: r["kb_recall"])
        acc = _by_run(rows, lambda r: r["kb_accuracy"])
        u = [x for g in _by_run(rows, lambda r: r["kb_unlearned"]) for x in g]
        body.append([f"{v} (control)" if v in CONTROLS else v,
                     _mean_cell(rec, n_boot, seed), _mean_cell(acc, n_boot, seed),
                     _rate_cell(lines.get((v, "kb_recall"))),
                     _mean_cell(_by_run(rows, lambda r: r["sym_recall"]), n_boot, seed),
                     f"{np.mean(u):.1f}" if u else "–", _rate_cell(lines.get((v, "kb")))])
        points.append((v, bootstrap(rec, n_boot=n_boot, seed=seed),
                       bootstrap(acc, n_boot=n_boot, seed=seed)))
    ref = [r for r in recs if r["variant"] == "original"] or recs
    inv = _by_run(ref, lambda r: 1.0 / r["min_set_size"])
    sizes = [x for g in _by_run(ref, lambda r: r["min_set_size"]) for x in g]
    n_t = sum(len(g) for g in inv)
    md = ["## Deep unlearning at model level (Wu et al. 2024)", "",
          "`U'` = the facts of the KB (trained, not fixed, known to the original by filtered "
          "rank 1) that the variant no longer knows, less the other forget targets; recall = "
          "max over the target's minimal deletion sets `M` of `|M ∩ U'|/|M|`, accuracy = "
          "`1 − |U' \\ M|/(|KB| − |M|)` (docs/science.md). Means over gated-in targets, "
          "two-level bootstrap 95% intervals; `deep-unlearned`: targets outside "
          "closure(KB ∪ fixed − U'), `k/n`; `asked` = symbolic recall of what the variant "
          "was asked to delete; `KB known` = share of the original's KB the variant knows.",
          "",
          "| variant | recall (model) | accuracy (model) | deep-unlearned | recall (asked, "
          "symbolic) | mean \\|U'\\| | KB known |",
          "|---|---|---|---|---|---|---|"]
    md += ["| " + " | ".join(b) + " |" for b in body]
    md += ["", f"Symbolic, target only (`U' = {{t}}`): recall = mean `1/min|M|` = "
           f"{_mean_cell(inv, n_boot, seed)} over {n_t} targets; mean smallest `|M|` = "
           + (f"{np.mean(sizes):.2f}" if sizes else "–") + " (Wu et al.: ~0.16 on EDU-RELAT).",
           ""]
    if plots_dir is not None:
        path = kb_recall_plot(points, bootstrap(inv, n_boot=n_boot, seed=seed), plots_dir)
        md += [f"![deep_unlearning]({path.parent.name}/{path.name})", ""]
    return md
