"""Report sections for the published anchors: the cuts experiments/README.md cites.

:func:`kgtest.report.report` appends these to ``summary.md`` when the records hold what
they need, so every number the anchors' README rows quote is regenerated from committed
records (docs/science.md, "Results the testbed must reproduce"):

``## Recovery of pre-unlearning accuracy`` (anchors 5 and 6: Deeb & Roger 2024, Zhang et al.
    2024). Per variant and treatment (``direct``: the unlearned model as it is;
    ``relearn[worst]``: the worst case over the attack grid; ``quantize[int8]``...): the
    share of the forget targets the original knew (direct) that the variant answers
    after the treatment, i.e. recovery as a fraction of pre-unlearning accuracy on those
    facts, with its interval and ``k/n``; beside it the ratio of accuracies over every
    evaluated target, ungated (the variant's pooled accuracy after the treatment over the
    original's before unlearning), the form the papers quote. Plot ``plots/recovery.png``.
``## Latent composition in and out of distribution`` (anchor 3: Wang et al. 2024). The
    direct question, without chain of thought, on held-out compositions in distribution
    (``implied`` rows without the ``ood`` tag) and out of it (``ood``: compositions whose
    bridge entity's facts were seen only atomically, ``split.ood_fraction``), beside the
    trained compositions and the atomic facts of ID and OOD entities (``utility_direct``
    rows): rates over every fact asked (a capability: nothing is gated), two-level
    bootstrap over seeds.
``## Latent composition during training`` (anchor 3). The in-loop evaluation of every
    run (``train_log.jsonl``: ``eval/direct``, ``eval/latent_id``, ``eval/latent_ood``),
    mean and range over runs per step, and the plot ``plots/latent_curve.png``.

Examples
--------
>>> from kgtest.records import new_row
>>> rows = [new_row(run_id="r", variant="original", probe="implied", fact=f, correct=f < 3,
...                 derived=True, tags="derived" + (",ood" if f >= 3 else ""))
...         for f in range(6)]
>>> text = "\\n".join(anchor_sections(rows, [], n_boot=100))
>>> "| original | 1.00 [0.44, 1.00] 3/3 | 0.00 [0.00, 0.56] 0/3 | – | – | – |" in text
True
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgtest.report.aggregate import aggregate
from kgtest.report.plots import _plt, _save
from kgtest.report.runs import stage_files
from kgtest.report.tables import cell_text, order

__all__ = ["anchor_sections", "recovery_section", "recovery_plot", "ood_section",
           "latent_curve", "curve_section", "latent_curve_plot", "CURVE_KEYS"]

#: In-loop metrics of the training curve (``train_log.jsonl``) and their labels.
CURVE_KEYS = {"eval/direct": "trained facts (direct)",
              "eval/latent_id": "latent composition, ID",
              "eval/latent_ood": "latent composition, OOD"}


def _cell(a: dict | None) -> str:
    return cell_text(a) if a is not None else "–"


def _treatments(by: dict) -> list[str]:
    """Column ids of the attacks: quantize settings, widest first, then relearn worst cases."""
    cols = {c for _, c in by if c.startswith("quantize[")
            or (c.startswith("relearn") and c.endswith("[worst]"))}

    def key(c: str):
        bits = re.search(r"int(\d+)", c)
        return (c.startswith("relearn"), -int(bits.group(1)) if bits else 0, c)

    return sorted(cols, key=key)


def recovery_section(agg: Sequence[dict]) -> list[str]:
    """Recovery of pre-unlearning accuracy per variant and treatment (module docstring).

    ``agg`` is :func:`kgtest.report.aggregate.aggregate`'s output. Empty without relearn or
    quantize lines.

    Examples
    --------
    >>> from kgtest.records import new_row
    >>> rows = [new_row(run_id="r", variant=v, probe=p, setting=s, fact=f, correct=c,
    ...                 gated_in=True)
    ...         for v, p, s, cs in (("original", "direct", "", [1, 1]),
    ...                             ("NPO", "direct", "", [0, 0]),
    ...                             ("NPO", "quantize", "int4", [1, 0]))
    ...         for f, c in enumerate(cs)]
    >>> [l for l in recovery_section(aggregate(rows, n_boot=100)) if l.startswith("| NPO")]
    ['| NPO | 0.00 [0.00, 0.66] 0/2 (0.00) | 0.50 [0.09, 0.91] 1/2 (0.50) |']
    """
    by = {(a["variant"], a["probe"] + (f"[{a['setting']}]" if a["setting"] else "")): a
          for a in agg}
    treat = _treatments(by)
    if not treat:
        return []
    cols = ["direct"] + treat
    before = by.get(("original", "direct"))
    base = before["rate_all"] if before is not None else float("nan")

    def cell(v, c):
        a = by.get((v, c))
        if a is None:
            return "–"
        ratio = a["rate_all"] / base if base and not np.isnan(base) else float("nan")
        return f"{_cell(a)} ({'–' if np.isnan(ratio) else f'{ratio:.2f}'})"

    body = [[v] + [cell(v, c) for c in cols]
            for v in order(v for v, _ in by) if v != "original"]
    head = ["variant"] + [c + (" (after unlearning)" if c == "direct" else "") for c in cols]
    pre = "–" if before is None else f"{base:.2f} over {before['n_in'] + before['n_out']}"
    return (["## Recovery of pre-unlearning accuracy", "",
            "Share of the forget targets the original knew (direct question) that each "
            "variant answers after the treatment: recovery as a fraction of pre-unlearning "
            "accuracy on those facts, `rate [95% interval] k/n` (relearn: the worst case over "
            "the attack grid). In brackets, the ungated ratio of accuracies over every "
            "evaluated target: the variant's accuracy after the treatment / the original's "
            f"before unlearning ({pre} targets).", "",
            "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(r) + " |" for r in body] + [""])


def recovery_plot(agg: Sequence[dict], path: Path) -> Path | None:
    """Grouped bars of :func:`recovery_section`: per variant, the share of the facts the
    original knew that it answers after each treatment, with 95% intervals."""
    by = {(a["variant"], a["probe"] + (f"[{a['setting']}]" if a["setting"] else "")): a
          for a in agg}
    treat = _treatments(by)
    if not treat:
        return None
    cols = ["direct"] + treat
    names = [v for v in order(v for v, _ in by) if v != "original"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 4.2))
    width = 0.8 / len(cols)
    for j, c in enumerate(cols):
        xs, ys, err = [], [], [[], []]
        for i, v in enumerate(names):
            a = by.get((v, c))
            if a is None or np.isnan(a["rate"]):
                continue
            xs.append(i + (j - (len(cols) - 1) / 2) * width)
            ys.append(a["rate"])
            err[0].append(max(0.0, a["rate"] - a["lo"]))
            err[1].append(max(0.0, a["hi"] - a["rate"]))
        label = "after unlearning (direct)" if c == "direct" else c
        ax.bar(xs, ys, width, yerr=err, capsize=2, label=label)
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("forget targets answered / known before")
    ax.set_title("recovery of pre-unlearning accuracy (95% intervals)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _ood_rows(records: Sequence[dict]) -> list[dict]:
    """Implied and atomic (``utility_direct``) rows as ``probe[id|ood]``, all gated in."""
    out = []
    for r in records:
        if r["probe"] not in ("implied", "utility_direct") or not r["applicable"]:
            continue
        kind = ("held_out" if r["probe"] == "implied" else
                "composition" if r["derived"] else "atomic")
        dist = "ood" if "ood" in (r.get("tags") or "").split(",") else "id"
        out.append({**r, "probe": kind, "setting": dist, "gated_in": True})
    return out


def ood_section(records: Sequence[dict], *, n_boot: int = 2000, seed: int = 0) -> list[str]:
    """Latent composition (and atomic recall) in and out of distribution, per variant.

    Empty unless some ``implied`` row is tagged ``ood``.
    """
    if not any(r["probe"] == "implied" and "ood" in (r.get("tags") or "").split(",")
               for r in records):
        return []
    agg = aggregate(_ood_rows(records), n_boot=n_boot, seed=seed)
    by = {(a["variant"], a["probe"], a["setting"]): a for a in agg}
    cols = [("held_out", "id"), ("held_out", "ood"), ("composition", "id"), ("atomic", "id"),
            ("atomic", "ood")]
    body = [[v] + [_cell(by.get((v, *c))) for c in cols] for v in order(a["variant"]
                                                                           for a in agg)]
    first = body[0][0] if body else None  # floors and chance: the same facts for all
    for name, key in (("floor: most frequent object", "floor"), ("chance (1 / candidates)",
                                                                 "chance")):
        extra = [by.get((first, *c)) for c in cols]
        body.append([name] + [f"{a[key]:.2f}" if a is not None else "–" for a in extra])
    head = ["variant", "held-out compositions, ID", "held-out compositions, OOD",
            "trained compositions", "atomic facts, ID", "atomic facts, OOD"]
    return (["## Latent composition in and out of distribution", "",
            "Direct question, no chain of thought, on derived facts never rendered "
            "(`implied`): in distribution (ID) and out of it (OOD: the bridge entity's facts "
            "were seen only atomically, never as a premise of a trained composition); and "
            "on trained facts (`utility_direct`: up to `probes.utility_limit` of them): "
            "compositions, atomic facts of ID and of OOD entities. Rates over every fact "
            "asked (a capability: nothing gated), `rate [95% interval] k/n`.", "",
            "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(r) + " |" for r in body] + [""])


def latent_curve(run_dirs: Sequence[Path]) -> dict[str, dict[int, list[float]]]:
    """``{metric: {step: [value per run]}}`` from every ``train_log.jsonl`` of the original
    model (``model-*`` stages) under ``run_dirs``, for the keys of :data:`CURVE_KEYS`."""
    out: dict[str, dict[int, list[float]]] = {k: {} for k in CURVE_KEYS}
    for run in run_dirs:
        for log in stage_files(run, "model-*/train_log.jsonl"):
            for line in log.read_text(encoding="utf-8").splitlines():
                try:
                    e = json.loads(line)
                except json.JSONDecodeError:
                    continue
                for k in CURVE_KEYS:  # NaN: an empty evaluation set (nothing asked)
                    if (isinstance(e.get(k), (int, float)) and isinstance(e.get("step"), int)
                            and np.isfinite(e[k])):
                        out[k].setdefault(e["step"], []).append(float(e[k]))
    return {k: v for k, v in out.items() if v}


def curve_section(curve: dict[str, dict[int, list[float]]], plot: str | None = None
                  ) -> list[str]:
    """The training-curve table (mean [min, max] over runs per step); empty without a
    latent metric."""
    if not any(k in curve for k in ("eval/latent_id", "eval/latent_ood")):
        return []
    keys = [k for k in CURVE_KEYS if k in curve]
    steps = sorted({s for k in keys for s in curve[k]})

    def cell(k, s):
        v = curve[k].get(s)
        return f"{np.mean(v):.2f} [{min(v):.2f}, {max(v):.2f}] ({len(v)})" if v else "–"

    head = ["step"] + [CURVE_KEYS[k] for k in keys]
    return (["## Latent composition during training", "",
             "In-loop evaluation of the original model (`train_log.jsonl`): accuracy on "
             "trained facts and, without chain of thought, on held-out compositions in and "
             "out of distribution (a fixed sample of each): mean [min, max] over the runs "
             "(number of runs)." + (f" Plot: `{plot}`." if plot else ""), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join([str(s)] + [cell(k, s) for k in keys]) + " |" for s in steps]
            + [""])


def latent_curve_plot(curve: dict[str, dict[int, list[float]]], path: Path) -> Path | None:
    """Mean (line) and range over runs (band) of each :data:`CURVE_KEYS` metric vs step."""
    if not any(k in curve for k in ("eval/latent_id", "eval/latent_ood")):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for k, label in CURVE_KEYS.items():
        if k not in curve:
            continue
        steps = sorted(curve[k])
        vals = [curve[k][s] for s in steps]
        n = max(len(v) for v in vals)
        ax.plot(steps, [np.mean(v) for v in vals], marker=".", label=f"{label}")
        ax.fill_between(steps, [min(v) for v in vals], [max(v) for v in vals], alpha=0.2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy (greedy answer)")
    ax.set_title(f"latent composition during training (mean, band: range over {n} runs)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def anchor_sections(records: Sequence[dict], run_dirs: Sequence[Path], *,
                    agg: Sequence[dict] | None = None, plots_dir: Path | None = None,
                    n_boot: int = 2000, seed: int = 0) -> list[str]:
    """Every anchor section that has data (module docstring), as Markdown lines.

    With ``plots_dir``, also writes ``latent_curve.png`` and ``recovery.png`` there (where
    they have data).
    """
    agg = aggregate(records, n_boot=n_boot, seed=seed) if agg is None else agg
    curve = latent_curve(run_dirs)
    plot = latent_curve_plot(curve, plots_dir / "latent_curve.png") if plots_dir else None
    if plots_dir:
        for name, made in (("latent_curve.png", plot),
                           ("recovery.png", recovery_plot(agg, plots_dir / "recovery.png"))):
            if made is None:  # no data: no stale plot from an earlier report either
                (plots_dir / name).unlink(missing_ok=True)
    return (recovery_section(agg) + ood_section(records, n_boot=n_boot, seed=seed)
            + curve_section(curve, f"plots/{plot.name}" if plot else None))
