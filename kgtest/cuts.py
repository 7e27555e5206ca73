"""Report cuts: the forget targets' rates by proof count and by entity frequency, the
collateral on the targets' neighbours, and the minimal deletion sets behind deep unlearning.

:func:`cuts_markdown` adds these sections to ``summary.md`` (:func:`kgtest.report.report`),
each only when its data is there:

- **By proof count** (claim 1, ``experiments/interconnectedness.toml``): for every probe
  on the forget targets, the rate ``rate [95% interval] k/n`` per proof count (the
  ``proofs`` column), then the excess over the control per proof count; only when the
  targets differ in proof count.
- **By entity frequency** (claim 2, ``experiments/tail.toml``): the same per bin of
  ``entity_freq`` (training documents mentioning the target's rarer entity), in powers of
  two (``1``, ``2–3``, ``4–7``, ...); only when the targets span a 4x range of
  frequencies or more (two bins at least one bin apart: two neighbouring bins of a world
  without a frequency skew, such as the quickstart's ``16–31`` and ``32–63``, are noise).
- **Collateral on neighbours**: the utility probe's retained facts (``utility_direct``)
  split into *neighbours* (a fact sharing its subject or object with a forget target of
  the same run) and the others, with the excess over the control: below 0, the variant
  lost more of them than exact unlearning (retraining without the targets) did.
- **Minimal deletion sets**: per proof count, the size of the smallest minimal deletion
  set found for each forget target (it includes the target; from a deep variant's
  ``unlearn.json`` or the ignorance control's ``control.json``), and per variant the facts
  deep unlearning deleted per run beyond the targets.

Intervals are the report's (:func:`kgtest.aggregate.aggregate`: Wilson or Newcombe for
one run, the two-level bootstrap over runs then facts for several), computed on each
group's rows alone.

Examples
--------
>>> from kgtest.records import new_row
>>> rows = [new_row(run_id="r", variant=v, probe="direct", fact=f, correct=f < 3,
...                 gated_in=True, split="forget", proofs=1 + f // 3, entity_freq=3)
...         for v in ("original", "filter") for f in range(6)]
>>> md = cuts_markdown(rows, [], n_boot=100)
>>> print(md[md.index("| variant"):].split("\\n\\n")[0])
| variant | k = 1 | k = 2 |
|---|---|---|
| original (control) | 1.00 [0.44, 1.00] 3/3 | 0.00 [0.00, 0.56] 0/3 |
| filter (control) | 1.00 [0.44, 1.00] 3/3 | 0.00 [0.00, 0.56] 0/3 |
>>> freq_bin(1), freq_bin(5), freq_bin(16)
('1', '4–7', '16–31')
"""

from __future__ import annotations

import json
import tomllib
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from kgtest.aggregate import UTILITY, aggregate

__all__ = ["cuts_markdown", "freq_bin", "neighbour_facts", "deletion_sizes",
           "proof_cost_plot"]


def freq_bin(n: int | None) -> str:
    """The power-of-two bin of an entity frequency: ``0``, ``1``, ``2–3``, ``4–7``, ...

    >>> [freq_bin(n) for n in (0, 2, 3, 8)]
    ['0', '2–3', '2–3', '8–15']
    """
    if n is None or n <= 0:
        return "0"
    lo = 1 << (int(n).bit_length() - 1)
    return "1" if lo == 1 else f"{lo}–{2 * lo - 1}"


def _bin_key(label: str) -> int:
    return int(label.split("–")[0])


def _targets(records: Sequence[dict]) -> list[dict]:
    """Rows about forget targets (not the utility probe's or held-out facts')."""
    return [r for r in records if r["split"] == "forget" and r["probe"] not in UTILITY
            and r["probe"] != "implied"]


def _grouped_tables(groups: dict[str, list[dict]], what: str, *, utility: bool,
                    control: str, n_boot: int, seed: int) -> list[str]:
    """One rate table and one excess table per probe column: variants x groups."""
    from kgtest.report import _fmt, _head, _name, _table, cell_text, columns, label, order

    by, cols, variants = {}, [], []
    for g, rows in groups.items():
        agg = aggregate(rows, control=control, n_boot=n_boot, seed=seed)
        by.update({(a["variant"], label(a), g): a for a in agg})
        cols += columns(agg, utility=utility)
        variants += [a["variant"] for a in agg]
    variants = order(variants)
    md = []
    for c in dict.fromkeys(cols):
        head = ["variant"] + [f"{what} {g}".strip() for g in groups]
        body = [[_name(v)] + [cell_text(by[v, c, g]) if (v, c, g) in by else ""
                              for g in groups] for v in variants]
        md += [f"**{_head(c)}**", "", _table(head, body), ""]
        body = [[_name(v)] + [_fmt(by[v, c, g]["excess"], by[v, c, g]["excess_lo"],
                                   by[v, c, g]["excess_hi"], sign=True)
                              if (v, c, g) in by else "" for g in groups]
                for v in variants if v != control]
        if any(x for row in body for x in row[1:] if x not in ("", "–")):
            md += [f"*{_head(c)}: excess over the {control} control*", "",
                   _table(head, body), ""]
    return md


def _group(rows: Sequence[dict], key: Callable[[dict], str], sort) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        out[key(r)].append(r)
    return {k: out[k] for k in sorted(out, key=sort)}


def _proof_section(records, control, n_boot, seed) -> list[str]:
    rows = [r for r in _targets(records) if r["proofs"] is not None]
    if len({r["proofs"] for r in rows}) < 2:
        return []
    groups = _group(rows, lambda r: str(r["proofs"]), int)
    return ["## By proof count", "",
            "Forget targets grouped by proof count k (distinct one-step derivations): per "
            "probe, `rate [95% interval] k/n` among gated-in targets with k proofs, then the "
            f"excess over the {control} control on the same targets. Relearn: the worst "
            "grid point of each group.", ""] + _grouped_tables(
        groups, "k =", utility=False, control=control, n_boot=n_boot, seed=seed)


def _frequency_section(records, control, n_boot, seed) -> list[str]:
    rows = _targets(records)
    lows = {max(_bin_key(freq_bin(r["entity_freq"])), 1) for r in rows}
    if not lows or max(lows) < 4 * min(lows):
        return []
    groups = _group(rows, lambda r: freq_bin(r["entity_freq"]), _bin_key)
    return ["## By entity frequency", "",
            "Forget targets grouped by `entity_freq` (training documents mentioning the "
            "target's rarer entity), in powers of two: per probe, `rate [95% interval] k/n`, "
            f"then the excess over the {control} control.", ""] + _grouped_tables(
        groups, "freq", utility=False, control=control, n_boot=n_boot, seed=seed)


def neighbour_facts(records: Sequence[dict]) -> dict[str, set[int]]:
    """Per run, the facts that share an entity with one of that run's forget targets.

    Read from the rows themselves: a target's entities are the ``subject`` and ``object``
    of its rows, a fact's those of its own rows. The targets are excluded.

    >>> from kgtest.records import new_row
    >>> rows = [new_row(run_id="r", fact=0, subject="a", object="b", split="forget"),
    ...         new_row(run_id="r", fact=1, subject="b", object="c", split="retain"),
    ...         new_row(run_id="r", fact=2, subject="c", object="d", split="retain")]
    >>> neighbour_facts(rows)
    {'r': {1}}
    """
    ents: dict[str, set[str]] = defaultdict(set)
    targets: dict[str, set[int]] = defaultdict(set)
    for r in records:
        if r["split"] == "forget":
            ents[r["run_id"]] |= {r["subject"], r["object"]}
            targets[r["run_id"]].add(r["fact"])
    out: dict[str, set[int]] = {run: set() for run in ents}
    for r in records:
        run = r["run_id"]
        if run in ents and r["fact"] not in targets[run] and (
                r["subject"] in ents[run] or r["object"] in ents[run]):
            out[run].add(r["fact"])
    return out


def _collateral_section(records, control, n_boot, seed) -> list[str]:
    rows = [r for r in records if r["probe"] == "utility_direct"]
    near = neighbour_facts(records)
    if not rows or not any(near.values()):
        return []
    groups = _group(rows, lambda r: "neighbours" if r["fact"] in near.get(r["run_id"], ())
                    else "others", lambda g: g != "neighbours")
    return ["## Collateral on neighbours", "",
            "Retained facts the utility probe asks (`utility_direct`), split into "
            "*neighbours* (sharing a subject or object with a forget target of the same run) "
            f"and the others. Excess below 0: the variant lost more of them than the {control} "
            "control (retrained without the targets) did.", ""] + _grouped_tables(
        groups, "", utility=True, control=control, n_boot=n_boot, seed=seed)


def _run_id(run: Path) -> str | None:
    """``name-seedN`` of a run folder, from its resolved ``spec.toml`` (as the records)."""
    try:
        spec = tomllib.loads((run / "spec.toml").read_text(encoding="utf-8"))
        return f"{spec['run']['name']}-seed{spec['run']['seed']}"
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None


def deletion_sizes(run: Path) -> tuple[dict[int, int], dict[str, int]]:
    """Minimal deletion sets recorded in a run folder.

    Returns
    -------
    (sizes, extra)
        ``sizes``: forget target -> size of its smallest minimal deletion set found
        (target included), from any deep variant's ``unlearn.json`` or the ignorance
        control's ``control.json``; ``extra``: variant -> facts it deleted beyond the
        targets (``NPO_deep``, ``ignorance``...).
    """
    sizes: dict[int, int] = {}
    extra: dict[str, int] = {}
    paths = sorted(run.rglob("unlearn.json")) + sorted(run.rglob("control.json"))
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if path.name == "unlearn.json":
            if not data.get("deep"):
                continue
            name, info = f"{data.get('method', '?')}_deep", data.get("forget_set") or {}
        elif data.get("kind") == "ignorance":
            name, info = "ignorance", data
        else:
            continue
        sets = info.get("deletion_sets") or {}
        for t, facts in sets.items():
            sizes.setdefault(int(t), len(facts))
        if isinstance(info.get("extra_facts"), int):
            extra[name] = info["extra_facts"]
    return sizes, extra


def _deletion_stats(records, runs: Sequence[Path]) -> tuple[dict, dict]:
    """``({k: [set sizes]}, {variant: [extra facts per run]})`` over the run folders."""
    proofs = {(r["run_id"], r["fact"]): r["proofs"] for r in _targets(records)}
    ids = {r["run_id"] for r in records}
    by_k: dict[int, list[int]] = defaultdict(list)
    extra: dict[str, list[int]] = defaultdict(list)
    for run in runs:
        run_id = _run_id(Path(run)) or (next(iter(ids)) if len(runs) == 1 and len(ids) == 1
                                         else None)
        sizes, ex = deletion_sizes(Path(run))
        for t, n in sizes.items():
            k = proofs.get((run_id, t))
            if k is not None:
                by_k[k].append(n)
        for v, n in ex.items():
            extra[v].append(n)
    return dict(by_k), dict(extra)


def _deletion_section(records, runs: Sequence[Path]) -> list[str]:
    by_k, extra = _deletion_stats(records, runs)
    if not by_k:
        return []
    md = ["## Minimal deletion sets", "",
          "Per proof count k of the forget targets: the size of the smallest minimal "
          "deletion set found for each (the target included: what must be forgotten so that "
          "nothing left derives it), over every run.", "",
          "| k | targets | mean size | min–max |", "|---|---|---|---|"]
    md += [f"| {k} | {len(v)} | {np.mean(v):.2f} | {min(v)}–{max(v)} |"
           for k, v in sorted(by_k.items())]
    if extra:
        md += ["", "Facts deleted beyond the targets, per run (deep variants and the "
               "ignorance control):", "", "| variant | runs | mean | min–max |",
               "|---|---|---|---|"]
        md += [f"| {v} | {len(n)} | {np.mean(n):.2f} | {min(n)}–{max(n)} |"
               for v, n in sorted(extra.items())]
    return md + [""]


def cuts_markdown(records: Sequence[dict], runs: Sequence[str | Path] = (), *,
                  control: str = "filter", n_boot: int = 2000, seed: int = 0) -> str:
    """The cut sections of ``summary.md`` ('' when no cut applies; module docstring).

    Parameters
    ----------
    records : sequence of dict
        Tidy rows (:mod:`kgtest.records`) of one or more runs.
    runs : sequence of paths
        The run folders, for the deletion sets in their ``unlearn.json``/``control.json``.
    control, n_boot, seed
        As for :func:`kgtest.aggregate.aggregate`.
    """
    md = (_proof_section(records, control, n_boot, seed)
          + _deletion_section(records, [Path(r) for r in runs])
          + _frequency_section(records, control, n_boot, seed)
          + _collateral_section(records, control, n_boot, seed))
    return "\n".join(md) + ("\n" if md else "")


def proof_cost_plot(records: Sequence[dict], runs: Sequence[str | Path], path: Path, *,
                    probe: str = "cot", control: str = "filter", n_boot: int = 2000,
                    seed: int = 0) -> Path | None:
    """Re-derivation and deletion cost against proof count (None without both).

    Left: per variant, the ``probe`` rate on the forget targets against proof count k
    (95% intervals as in the report; ``direct`` when no two k have gated-in ``probe``
    rows). Right: the smallest minimal deletion set per target
    against k (mean, min and max over targets).
    """
    from kgtest.plots import _colours, _plt, _save
    from kgtest.report import label, order

    rows = [r for r in _targets(records) if r["proofs"] is not None]
    ks = sorted({r["proofs"] for r in rows if r["gated_in"] and r["probe"] == probe})
    if len(ks) < 2 and probe != "direct":  # e.g. the original re-derived no target by CoT
        probe = "direct"
        ks = sorted({r["proofs"] for r in rows if r["gated_in"] and r["probe"] == probe})
    by_k, _ = _deletion_stats(records, [Path(r) for r in runs])
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
    ax.legend(fontsize=7, loc="best")
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
