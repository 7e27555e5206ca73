"""What the run folders say beyond the records: warnings, tuning choices, minimal
deletion sets, and the stability of tuning over the grid and seeds.

Only the stage folders a run's records came from are read (:func:`stage_files`): the
records stage lists them in ``stages.json`` (published at the top of the run folder), so
``model-*``/``control-*``/``unlearn-*`` folders left by an earlier configuration of the same
run folder are not reported. A folder without the list (results packed before it) is read
whole, as before.

- :func:`warnings`: the original under-trained, or a method missed its tuning level;
- :func:`tuning_rows`: the "Tuning choices" table (each ``unlearn.json``);
- :func:`deletion_sizes`, :func:`deletion_section`: the minimal deletion sets a deep
  variant or the ignorance control recorded (``unlearn.json``/``control.json``), by the
  targets' proof count, and the facts deleted beyond the targets;
- :func:`stability_rows`, :func:`stability_section` (claim 4, framing): per unlearning
  variant, how many tuning grid points were admissible (``k/n`` over seeds x points), the
  validation forget and retain accuracies' mean and spread (standard deviation) over the
  grid points of one seed and over the seeds at one grid point, how often seeds chose the
  same point, and the reported targets' direct accuracy after unlearning across seeds.
"""

from __future__ import annotations

import contextlib
import json
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from kgtest.report.aggregate import wilson
from kgtest.report.tables import table, target_rows

__all__ = ["warnings", "tuning_rows", "deletion_sizes", "deletion_stats", "deletion_section",
           "stability_rows", "stability_section", "stage_files", "stages_in_use", "STAGES"]

#: Written by the records stage (and published beside the records): ``{"stages": [folder
#: names]}``, the stage folders of the run its records came from.
STAGES = "stages.json"
#: run folder (resolved) -> its stage folder names, for records not yet published
_IN_USE: ContextVar[dict[Path, tuple[str, ...]] | None] = ContextVar("kgtest_stages",
                                                                     default=None)


@contextlib.contextmanager
def stages_in_use(run: str | Path, names: Iterable[str]):
    """While in this block, :func:`stage_files` reads only ``names`` under ``run``, whatever
    ``run/stages.json`` says (the records stage reports rows it has not published yet)."""
    token = _IN_USE.set({**(_IN_USE.get() or {}), Path(run).resolve(): tuple(names)})
    try:
        yield
    finally:
        _IN_USE.reset(token)


def stage_files(run: str | Path, pattern: str) -> list[Path]:
    """``sorted(run.rglob(pattern))``, kept to the stage folders the run's records came from.

    The folders are those :func:`stages_in_use` names, else those ``run/stages.json``
    lists; a run folder without either (packed before the list existed) keeps every match.

    Examples
    --------
    >>> import json, tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> for d in ("unlearn-npo-new", "unlearn-npo-old"):
    ...     (run / d).mkdir()
    ...     _ = (run / d / "unlearn.json").write_text("{}")
    >>> len(stage_files(run, "unlearn.json"))
    2
    >>> _ = (run / STAGES).write_text(json.dumps({"stages": ["unlearn-npo-new"]}))
    >>> [p.parent.name for p in stage_files(run, "unlearn.json")]
    ['unlearn-npo-new']
    """
    run = Path(run)
    names = (_IN_USE.get() or {}).get(run.resolve())
    if names is None:
        listed = (_load_json(run / STAGES) or {}).get("stages")
        names = tuple(listed) if isinstance(listed, list) else None
    found = sorted(run.rglob(pattern))
    if names is None:
        return found
    return [p for p in found if p.relative_to(run).parts[0] in names]


def _load_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


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
        for mpath in stage_files(run, "model-*/metrics.json"):
            metrics, cfg = _load_json(mpath), _load_json(mpath.parent / "config.json")
            stop = ((cfg or {}).get("train") or {}).get("stop_at") or {}
            for k, target in stop.items():
                got = (metrics or {}).get(f"acc_{k}")
                if isinstance(got, (int, float)) and got < target:
                    out.append(f"{run.name}: the original under-trained: in-loop {k} accuracy "
                               f"{got:.2f} < stop target {target:.2f} after "
                               f"{metrics.get('steps', '?')} steps")
        for upath in stage_files(run, "unlearn.json"):
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


def tuning_rows(run_dirs: Sequence[Path]) -> list[dict]:
    """One row per ``unlearn.json``: the chosen point and its tuning outcome (the
    summary's "Tuning choices" table)."""
    out = []
    for run in run_dirs:
        for path in stage_files(run, "unlearn.json"):
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
    paths = stage_files(run, "unlearn.json") + stage_files(run, "control.json")
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


def deletion_stats(records, runs: Sequence[Path]) -> tuple[dict, dict]:
    """``({k: [set sizes]}, {variant: [extra facts per run]})`` over the run folders."""
    proofs = {(r["run_id"], r["fact"]): r["proofs"] for r in target_rows(records)}
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


def deletion_section(records, runs: Sequence[Path]) -> list[str]:
    """``summary.md`` lines: minimal deletion set sizes by proof count, and the facts
    deep variants deleted beyond the targets (empty without deletion sets)."""
    by_k, extra = deletion_stats(records, runs)
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


def _grids(run_dirs: Sequence[Path]) -> dict[str, list[dict]]:
    """Variant -> one entry per run: its ``unlearn.json`` tuning grid, choice and after."""
    out: dict[str, list[dict]] = defaultdict(list)
    for run in run_dirs:
        for path in stage_files(run, "unlearn.json"):
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
            table(["variant", "seeds", "admissible", "val forget acc: mean / SD grid / "
                    "SD seeds", "val retain acc: mean / SD grid / SD seeds", "choices",
                    "forget after", "retain after"], body), ""]
