"""Report sections that cut the rows another way: by domain, and over the tuning grid.

:func:`cut_sections` adds to ``summary.md`` (:mod:`kgtest.report`) what the claims of
docs/science.md need beyond the main tables:

- **By domain** (claim 3, dual use), when the rows name more than one world domain: every
  rate of the main and utility tables recomputed on the facts of each domain
  (:func:`domain_section`), then the utility probes restricted to facts of the forget
  targets' relations (a rule's applications in each domain: what forgetting it in one
  domain leaves, or breaks, in the other). Same intervals and ``k/n`` as the main table.
- **Stability over the tuning grid and seeds** (claim 4, framing), when run folders hold
  ``unlearn.json`` files with a tuning grid (:func:`stability_section`): per unlearning
  variant, how many grid points were admissible (``k/n`` over seeds x points), the
  validation forget and retain accuracies' mean and spread (standard deviation) over the
  grid points of one seed and over the seeds at one grid point, how often seeds chose the
  same point, and the reported targets' direct accuracy after unlearning across seeds.

:func:`domain_plot` draws claim 3's figure, ``plots/by_domain.png``: the forget targets
still answered per variant beside utility per domain.

Examples
--------
>>> from kgtest.records import new_row
>>> rows = [new_row(run_id="r", variant=v, probe="utility_direct", fact=f, domain=d,
...                 relation="yields", correct=(v == "original" or d == "benign"),
...                 gated_in=True)
...         for v in ("original", "NPO") for f, d in enumerate(["benign", "harmful"] * 3)]
>>> md = "\\n".join(domain_section(rows, n_boot=50))
>>> "| NPO | harmful | 0.00 [0.00, 0.56] 0/3 |" in md
True
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgtest.aggregate import aggregate, wilson
from kgtest.report import _PROBE_ORDER, _table, cell_text, columns, label, order

__all__ = ["cut_sections", "domain_section", "domain_plot", "stability_section",
           "stability_rows"]


def _by_domain(records: Sequence[dict], domains: list[str], *, control: str, n_boot: int,
               seed: int) -> tuple[dict, list[str]]:
    """``(variant, domain, column) -> aggregate line``, and the columns in table order."""
    by, main, util = {}, [], []
    for d in domains:
        agg = aggregate([r for r in records if r["domain"] == d], control=control,
                        n_boot=n_boot, seed=seed)
        by.update({(a["variant"], d, label(a)): a for a in agg})
        main += columns(agg, utility=False)
        util += columns(agg, utility=True)
    # the main table's columns, then the utility table's, in the report's order
    cols = sorted(set(main + util),
                  key=lambda c: (c in util, _PROBE_ORDER.get(c.split("[")[0], 99), c))
    return by, cols


def _domain_table(records: Sequence[dict], domains: list[str], cols: list[str] | None,
                  *, control: str, n_boot: int, seed: int) -> list[str]:
    """Rows (variant, domain), one column per probe, ``rate [lo, hi] k/n`` cells."""
    by, found = _by_domain(records, domains, control=control, n_boot=n_boot, seed=seed)
    cols = found if cols is None else cols
    cols = [c for c in cols if any(k[2] == c for k in by)]
    body = [[v, d] + [cell_text(by[v, d, c]) if (v, d, c) in by else "" for c in cols]
            for v in order(k[0] for k in by) for d in domains
            if any((v, d, c) in by for c in cols)]
    return [_table(["variant", "domain"] + cols, body)] if body else []


def domain_section(records: Sequence[dict], *, control: str = "filter", n_boot: int = 2000,
                   seed: int = 0) -> list[str]:
    """``summary.md`` lines: every rate cut by the facts' world domain (claim 3).

    Empty when the rows name fewer than two domains.

    Parameters
    ----------
    records : sequence of dict
        Tidy rows (:mod:`kgtest.records`), with their ``domain`` column.
    control, n_boot, seed
        As in :func:`kgtest.aggregate.aggregate`.

    Returns
    -------
    list of str
        Markdown lines: a table of (variant, domain) x probe, then the utility probes on
        facts of the forget targets' relations only (the targeted rule's applications).
    """
    domains = sorted({r["domain"] for r in records if r["domain"]})
    if len(domains) < 2:
        return []
    md = ["## By domain", "",
          "Every rate above recomputed on the facts of each world domain (a derived fact's "
          "domain is its premises'): on the forget targets, what is left in the targeted "
          "domain; on the utility probes, the collateral in each domain. "
          "`rate [95% interval] k/n`, intervals as in the main table.", ""]
    md += _domain_table(records, domains, None, control=control, n_boot=n_boot, seed=seed)
    rels = sorted({r["relation"] for r in records if r["split"] == "forget"})
    same = [r for r in records if r["probe"].startswith("utility_") and r["relation"] in rels]
    table = _domain_table(same, domains, ["utility_direct", "utility_cot", "utility_rule"],
                          control=control, n_boot=n_boot, seed=seed)
    if table:
        md += ["", "### Utility on the forget targets' relations, by domain", "",
               f"Retained facts of the targets' relations ({', '.join(rels)}) only: the "
               "same rule applied to other facts, in the targeted domain and in the other "
               "(for a derived relation, `utility_cot` asks its chain; `utility_direct` the "
               "stated fact).", ""] + table
    return md + [""]


def domain_plot(records: Sequence[dict], path: Path, *, control: str = "filter",
                n_boot: int = 2000, seed: int = 0) -> Path | None:
    """Left: the forget targets still answered per variant (direct, verified CoT, latent);
    right: utility per domain (retained facts direct, rule use by CoT), 95% intervals.

    None when the rows name fewer than two domains (claim 3's figure, ``by_domain.png``).
    """
    from kgtest.plots import _colours, _err, _plt, _save

    domains = sorted({r["domain"] for r in records if r["domain"]})
    if len(domains) < 2:
        return None
    by, _ = _by_domain(records, domains, control=control, n_boot=n_boot, seed=seed)
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


def _grids(run_dirs: Sequence[Path]) -> dict[str, list[dict]]:
    """Variant -> one entry per run: its ``unlearn.json`` tuning grid, choice and after."""
    out: dict[str, list[dict]] = defaultdict(list)
    for run in run_dirs:
        for path in sorted(Path(run).rglob("unlearn.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            tun = data.get("tuning") or {}
            grid = [p for p in tun.get("grid") or [] if "forget_acc" in p and "retain_acc" in p]
            if not grid:
                continue
            name = f"{data.get('method', '?')}{'_deep' if data.get('deep') else ''}"
            out[name].append({"run": str(run), "grid": grid, "choice": tun.get("choice") or {},
                              "after": data.get("after") or {}})
    return out


def _spread(entries: list[dict], key: str) -> tuple[float, float, float]:
    """(mean, SD over grid points within a seed, SD over seeds at a grid point), averaged."""
    vals = [p[key] for e in entries for p in e["grid"]]
    within = [np.std([p[key] for p in e["grid"]]) for e in entries if len(e["grid"]) > 1]
    at = defaultdict(list)
    for e in entries:
        for p in e["grid"]:
            at[(p.get("lr"), p.get("epochs"))].append(p[key])
    across = [np.std(v) for v in at.values() if len(v) > 1]

    def mean(x):
        return float(np.mean(x)) if len(x) else float("nan")

    return mean(vals), mean(within), mean(across)


def stability_rows(run_dirs: Sequence[str | Path]) -> list[dict]:
    """Per unlearning variant, the spread of its tuning grid over grid points and seeds.

    Parameters
    ----------
    run_dirs : sequence of paths
        Run folders (searched for ``unlearn.json``, whose ``tuning.grid`` lists every
        point's validation ``forget_acc`` and ``retain_acc``).

    Returns
    -------
    list of dict
        Keys ``variant seeds points admissible_k admissible_n forget_mean forget_sd_grid
        forget_sd_seeds retain_mean retain_sd_grid retain_sd_seeds choices
        after_forget_mean after_forget_sd after_retain_mean after_retain_sd`` (SD: standard
        deviation; ``*_sd_grid`` over the points of one seed, averaged over seeds;
        ``*_sd_seeds`` over seeds at one point, averaged over points; ``choices``: distinct
        chosen (lr, epochs)).

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> runs = []
    >>> for s, acc in enumerate([0.0, 0.5]):
    ...     d = Path(tempfile.mkdtemp()) / "unlearn-npo"
    ...     d.mkdir()
    ...     g = [{"lr": 1e-3, "epochs": e, "forget_acc": acc * e, "retain_acc": 1.0,
    ...           "reached": acc * e <= 0.1, "kept": True} for e in (1, 2)]
    ...     _ = (d / "unlearn.json").write_text(json.dumps({"method": "NPO", "tuning":
    ...          {"grid": g, "choice": g[0]}, "after": {"forget_acc": acc}}))
    ...     runs.append(d.parent)
    >>> row = stability_rows(runs)[0]
    >>> row["seeds"], row["admissible_k"], row["admissible_n"], row["forget_sd_grid"]
    (2, 2, 4, 0.125)
    """
    out = []
    for v, entries in sorted(_grids([Path(d) for d in run_dirs]).items()):
        points = [p for e in entries for p in e["grid"]]
        ok = [bool(p.get("reached", False)) and bool(p.get("kept", True)) for p in points]
        row = {"variant": v, "seeds": len(entries), "points": len(points),
               "admissible_k": int(sum(ok)), "admissible_n": len(points),
               "choices": len({(e["choice"].get("lr"), e["choice"].get("epochs"))
                               for e in entries})}
        for key, name in (("forget_acc", "forget"), ("retain_acc", "retain")):
            row[f"{name}_mean"], row[f"{name}_sd_grid"], row[f"{name}_sd_seeds"] = \
                _spread(entries, key)
            after = [e["after"][key] for e in entries
                     if isinstance(e["after"].get(key), (int, float))]
            row[f"after_{name}_mean"] = float(np.mean(after)) if after else float("nan")
            row[f"after_{name}_sd"] = float(np.std(after)) if after else float("nan")
        out.append(row)
    return out


def stability_section(run_dirs: Sequence[str | Path]) -> list[str]:
    """``summary.md`` lines: :func:`stability_rows` as a table (empty without grids)."""
    rows = stability_rows(run_dirs)
    if not rows:
        return []

    def f(x):
        return "–" if x is None or np.isnan(x) else f"{x:.2f}"

    body = []
    for r in rows:
        lo, hi = wilson(r["admissible_k"], r["admissible_n"])
        body.append([r["variant"], str(r["seeds"]),
                     f"{r['admissible_k'] / r['admissible_n']:.2f} [{lo:.2f}, {hi:.2f}] "
                     f"{r['admissible_k']}/{r['admissible_n']}",
                     f"{f(r['forget_mean'])} / {f(r['forget_sd_grid'])} / "
                     f"{f(r['forget_sd_seeds'])}",
                     f"{f(r['retain_mean'])} / {f(r['retain_sd_grid'])} / "
                     f"{f(r['retain_sd_seeds'])}",
                     f"{r['choices']} of {r['seeds']}",
                     f"{f(r['after_forget_mean'])} ± {f(r['after_forget_sd'])}",
                     f"{f(r['after_retain_mean'])} ± {f(r['after_retain_sd'])}"])
    return ["## Stability over the tuning grid and seeds", "",
            "From each run's `unlearn.json`: every tuning grid point (learning rate x epochs, "
            "on the validation targets). `admissible`: grid points (all seeds) that reached "
            "the forgetting level and kept the utility floor, Wilson 95% interval. Accuracies "
            "(validation, direct): mean / SD over the grid points of one seed (averaged over "
            "seeds) / SD over seeds at one grid point (averaged over points). `choices`: "
            "distinct chosen points over the seeds. `after`: the reported targets' and "
            "retain direct accuracy after unlearning, mean ± SD over seeds.", "",
            _table(["variant", "seeds", "admissible", "val forget acc: mean / SD grid / "
                    "SD seeds", "val retain acc: mean / SD grid / SD seeds", "choices",
                    "forget after", "retain after"], body), ""]


def cut_sections(records: Sequence[dict], run_dirs: Sequence[str | Path], *,
                 control: str = "filter", n_boot: int = 2000, seed: int = 0) -> list[str]:
    """Every section of this module that has data, as ``summary.md`` lines."""
    return (domain_section(records, control=control, n_boot=n_boot, seed=seed)
            + stability_section(run_dirs))
