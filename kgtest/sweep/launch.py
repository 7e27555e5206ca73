"""Launching a sweep (skip finished runs, record every outcome) and reporting on it.

``SWEEP_DIR`` after :func:`run_sweep`::

    spec.toml         the sweep spec as given
    experiment.toml   the spec without [sweep]: what every run loads, with its overrides
    sweep.json        every run: axes, overrides, folder, status, seconds, error
    runs/<name>/      one run folder per grid point (records.jsonl, summary.md,
                      status.json, error.txt when it failed, log.txt)
    slurm/            submitit's sbatch files and logs (slurm backend)

:func:`sweep_report` then writes ``summary.md`` (an index of cells, the failed runs, and
each cell's report) and ``cells/cellNN/`` (the :func:`kgtest.report.report` of the runs
of one cell: the same axis values, different seeds, so intervals are across seeds).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from kgtest.errors import InputError
from kgtest.records import records_path
from kgtest.stages import RunBusy, lock_holder, run_lock
from kgtest.sweep.backends import BACKENDS
from kgtest.sweep.job import ERROR, STATUS, is_finished, read_status, run_state
from kgtest.sweep.spec import load_sweep
from kgtest.symbolic.facts import atomic_write_text

__all__ = ["run_sweep", "sweep_report", "SWEEP_JSON"]

SWEEP_JSON = "sweep.json"


def _save(out: Path, meta: dict, entries: dict) -> dict:
    counts: dict[str, int] = {}
    for e in entries.values():
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    data = {**meta, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "counts": counts,
            "runs": list(entries.values())}
    atomic_write_text(out / SWEEP_JSON, json.dumps(data, indent=1) + "\n")
    return data


def _line(result: dict, out: Path) -> str:
    folder = Path(result["dir"])
    shown = folder.relative_to(out.resolve()) if folder.is_relative_to(out.resolve()) else folder
    text = f"{result['status']:>6}  {result['seconds']:7.1f} s  {out / shown}"
    if result["error"]:
        msg = (result["error"]["message"].splitlines() or [""])[0]
        text += f"  {result['error']['type']}: {msg[:160]}"
    return text


def run_sweep(spec: str | os.PathLike, out: str | os.PathLike | None = None, *,
              backend: str = "local", jobs: int | None = None, overrides=(),
              progress: bool = True, log=print, **options) -> dict:
    """Expand a sweep spec and run what is not finished yet on ``backend``.

    Every run's config is validated before anything starts. Runs whose folder already
    has a ``summary.md`` (and did not fail since) are skipped; failed and missing runs
    run. A failing run never stops the others: its error goes to its folder
    (``error.txt``, ``status.json``) and to ``sweep.json``. One line per finished run
    (status, seconds, folder) and an overall bar report progress.

    Parameters
    ----------
    spec : path
        A sweep spec (:mod:`kgtest.sweep.spec`).
    out : path, optional
        The sweep folder (default ``runs/<spec stem>``).
    backend : {"local", "ray", "slurm"}
    jobs : int, optional
        Runs at once: local worker processes (default: CPU cores), Ray tasks in flight,
        or the Slurm array parallelism.
    overrides : sequence of str
        ``key=value`` overrides of the experiment, applied before the axes.
    progress : bool
        Show the tqdm bar (the per-run lines are always logged).
    log : callable
        Where lines go (default ``print``).
    **options
        Backend settings (:mod:`kgtest.sweep.backends`): ``threads``, ``gpu_fraction``
        (local); ``address``, ``cpus_per_run``, ``gpus_per_run`` (ray); ``partition``,
        ``time_min``, ``cpus_per_task``, ``gpus_per_node``, ``mem``, ``setup``,
        ``additional`` (slurm).

    Returns
    -------
    dict
        The ``sweep.json`` content: ``counts`` and one entry per run with ``status`` in
        ``ok`` (ran now), ``done`` (finished earlier, skipped), ``failed``, ``pending``,
        or ``running`` (another live process holds the run folder: skipped, never run
        twice; ``holder`` says which).

    Raises
    ------
    RunBusy
        Another ``kgtest sweep`` is launching into ``out`` (one line naming it).

    Examples
    --------
    Two runs that fail at run time (the worker processes take seconds to start, so this
    example is skipped in the doctests; tests/test_sweep.py runs real sweeps):

    >>> import tempfile
    >>> s = run_sweep("tests/data/sweep_tiny.toml", tempfile.mkdtemp(), jobs=2,
    ...               overrides=["split.n_forget=100000"])  # doctest: +SKIP
    sweep tests/data/sweep_tiny.toml: 2 runs, 0 finished earlier (skipped), 2 to run on ...
    failed      9.1 s  /tmp/.../runs/sweep_tiny-seed0-...  InputError: ...
    ...
    >>> s["counts"], s["runs"][0]["error"]["type"]  # doctest: +SKIP
    ({'failed': 2}, 'InputError')
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown sweep backend '{backend}' (known: {', '.join(BACKENDS)})")
    spec = Path(spec)
    out = Path(out) if out is not None else Path("runs") / spec.stem
    with run_lock(out, command=f"kgtest sweep {spec}"):  # one launcher per sweep folder
        return _launch(spec, out, backend, jobs, overrides, progress, log, options)


def _entry(r, folder: Path, out: Path, *, launch: bool) -> dict:
    """A run's ``sweep.json`` entry as its folder stands (:func:`run_state`): at launch,
    ``done`` (finished earlier), ``running`` (held by a live process) or ``pending``."""
    state = run_state(folder)
    status = read_status(folder)
    rename = {"ok": "done", **({"interrupted": "pending", "failed": "pending"} if launch
                               else {})}
    entry = {"name": r.name, "key": r.key, "seed": r.seed, "cell": r.cell, "axes": r.axes,
             "overrides": list(r.overrides), "dir": str(folder.relative_to(out)),
             "status": rename.get(state, state),
             "seconds": status.get("seconds") if state == "ok" else None, "error": None}
    if state == "running":
        entry["holder"] = lock_holder(folder)
    elif state == "failed":
        entry["error"] = status.get("error")
    return entry


def _record(result: dict) -> None:
    """Write the outcome of a run whose worker died unrecorded into its folder (unless a
    live process holds the folder: then that process records it)."""
    folder = Path(result["dir"])
    if not result["error"] or result["status"] != "failed":
        return
    if read_status(folder).get("status") == "failed":
        return
    try:
        # wait a moment: the dead worker's lock can outlive it briefly while its process
        # (and any child sharing the lock's file) is torn down, under load for a second
        with run_lock(folder, command="kgtest sweep (recording a dead worker's run)",
                      clean=False, wait=5.0):
            atomic_write_text(folder / ERROR, result["error"]["traceback"] or
                              result["error"]["message"] + "\n")
            atomic_write_text(folder / STATUS, json.dumps(
                {"status": "failed", "seconds": result["seconds"],
                 "error": {k: result["error"][k] for k in ("type", "message")}}) + "\n")
    except RunBusy:
        result.update(status="running", error=None)


def _launch(spec: Path, out: Path, backend: str, jobs, overrides, progress: bool, log,
            options: dict) -> dict:
    from tqdm.auto import tqdm

    sweep = load_sweep(spec, out, overrides)
    if spec.resolve() != (out / "spec.toml").resolve():
        shutil.copyfile(spec, out / "spec.toml")
    meta = {"spec": str(spec), "experiment": "experiment.toml", "backend": backend,
            "overrides": list(overrides)}
    entries = {r.name: _entry(r, sweep.run_dir(r), out, launch=True) for r in sweep.runs}
    todo = [r for r in sweep.runs if entries[r.name]["status"] == "pending"]
    _save(out, meta, entries)
    n_done = sum(e["status"] == "done" for e in entries.values())
    busy = [e for e in entries.values() if e["status"] == "running"]
    log(f"sweep {spec}: {len(sweep.runs)} runs, {n_done} finished earlier (skipped), "
        + (f"{len(busy)} held by other live processes (skipped), " if busy else "")
        + f"{len(todo)} to run on {backend} -> {out}")
    bar = tqdm(total=len(sweep.runs), initial=n_done + len(busy), unit="run", desc="sweep",
               disable=not progress, dynamic_ncols=True)
    try:
        for result in BACKENDS[backend](sweep, todo, jobs=jobs, **options):
            _record(result)
            entries[result["name"]].update(status=result["status"], seconds=result["seconds"],
                                           error=result["error"])
            _save(out, meta, entries)
            line = _line(result, out)
            bar.write(line) if progress else log(line)
            bar.update(1)
    finally:
        bar.close()
        for r in sweep.runs:  # agree with each run's own status (another process's too)
            e = entries[r.name]
            if e["status"] in ("pending", "running"):
                e.update({k: v for k, v in _entry(r, sweep.run_dir(r), out,
                                                  launch=False).items()
                          if k in ("status", "seconds", "error", "holder")})
        data = _save(out, meta, entries)
    counts = ", ".join(f"{n} {s}" for s, n in data["counts"].items())
    log(f"sweep {out}: {counts}; aggregate with: kgtest report {out}")
    return data


# --- report -------------------------------------------------------------------------------


def _embed(markdown: str, prefix: str) -> str:
    r"""A cell's report inside the index: headings one level down, relative links under
    ``prefix``.

    >>> print(_embed("# R\n![a](plots/a.png)\n```\n# not a heading\n```", "cells/c0"))
    ## R
    ![a](cells/c0/plots/a.png)
    ```
    # not a heading
    ```
    """
    lines, fence = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence:
            line = "#" + line if line.startswith("#") else line
            line = re.sub(r"\]\((?![a-z]+:|/|#)([^)]+)\)", rf"]({prefix}/\1)", line)
        lines.append(line)
    return "\n".join(lines)


def _exposure_figure(sweep_dir: Path, cells: dict, finished, out: Path, *, n_boot: int,
                     seed: int, control: str = "filter") -> list[str]:
    """``plots/exposure.png``: each cell's original on every asked fact, by training
    exposure (the cells' "by training exposure" sections side by side), then the cells'
    re-derivation and deletion cost side by side (:func:`kgtest.report.cells.cells_section`)."""
    from kgtest.records import read_runs
    from kgtest.report.aggregate import aggregate_by
    from kgtest.report.cells import cells_section
    from kgtest.report.plots import exposure_by_cell

    cuts, both = {}, {}
    for label, entries in cells.items():
        done = [sweep_dir / e["dir"] for e in entries if finished(e)]
        if done:
            both[label] = (read_runs(done), done)
            cuts[label] = aggregate_by(both[label][0], ("trained", "tags"), n_boot=n_boot,
                                       seed=seed)
    path = exposure_by_cell(cuts, out / "plots" / "exposure.png") if len(cuts) > 1 else None
    across = cells_section(both, out / "plots", control=control, n_boot=n_boot, seed=seed)
    if path is None:
        return across
    return ["The original model on every asked fact, by training exposure, per cell (the "
            "cells' sections of that name):", "", "![exposure](plots/exposure.png)", "",
            *across]


def sweep_report(sweep_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                 control: str = "filter", n_boot: int = 2000, seed: int = 0) -> Path:
    """Aggregate every finished run of a sweep, with intervals across seeds per cell.

    Runs are grouped into cells by their axis values other than the seed; each cell gets
    :func:`kgtest.report.report` in ``OUT/cells/cellNN/``. ``OUT/summary.md`` lists the
    cells, the failed and unfinished runs, and includes each cell's report.

    Parameters
    ----------
    sweep_dir : path
        A folder made by :func:`run_sweep` (with ``sweep.json``).
    out_dir : path, optional
        Where to write (default: the sweep folder).
    control, n_boot, seed
        As for :func:`kgtest.report.report`.

    Returns
    -------
    Path
        ``OUT/summary.md``.

    Raises
    ------
    InputError
        Not a sweep folder, or no run has finished.
    """
    from kgtest.report import report

    sweep_dir = Path(sweep_dir)
    try:
        data = json.loads((sweep_dir / SWEEP_JSON).read_text())
    except FileNotFoundError:
        raise InputError(f"{sweep_dir}: no {SWEEP_JSON} (not a `kgtest sweep` folder)") from None
    out = Path(out_dir) if out_dir is not None else sweep_dir
    cells: dict[str, list[dict]] = {}
    for e in data["runs"]:
        cells.setdefault(e["cell"], []).append(e)

    def finished(e):
        folder = sweep_dir / e["dir"]
        return records_path(folder) is not None and is_finished(folder)

    if not any(finished(e) for e in data["runs"]):
        raise InputError(f"{sweep_dir}: no finished runs yet ({data.get('counts', {})})")
    rows, parts = [], []
    for i, (label, entries) in enumerate(cells.items()):
        done = [e for e in entries if finished(e)]
        seeds = ", ".join(str(e["seed"]) for e in done)
        if not done:
            rows.append(f"| {label} | 0 / {len(entries)} | | (no finished run) |")
            continue
        cell_out = out / "cells" / f"cell{i:02d}"
        summary = report([sweep_dir / e["dir"] for e in done], cell_out,
                         command=f"kgtest report {sweep_dir}", control=control,
                         n_boot=n_boot, seed=seed)
        link = summary.relative_to(out).as_posix()
        rows.append(f"| {label} | {len(done)} / {len(entries)} | {seeds} | [{link}]({link}) |")
        embedded = _embed(summary.read_text(), cell_out.relative_to(out).as_posix())
        parts += [f"## Cell {i:02d}: {label}", "", embedded, ""]
    unfinished = [e for e in data["runs"] if not finished(e)]
    figure = _exposure_figure(sweep_dir, cells, finished, out, n_boot=n_boot, seed=seed,
                              control=control)
    lines = ["# kgtest sweep report", "",
             f"Sweep `{data['spec']}` ({data['backend']} backend): {len(data['runs'])} runs, "
             f"{len(data['runs']) - len(unfinished)} finished. Intervals are across seeds "
             "(and facts) within each cell.", "", "Reproduce with:", "", "```",
             f"kgtest report {sweep_dir}", "```", "",
             "| cell | finished | seeds | report |", "|---|---|---|---|", *rows, "", *figure]
    lines += _unfinished_table(sweep_dir, unfinished)
    path = out / "summary.md"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines + parts).rstrip() + "\n")
    return path


def _unfinished_table(sweep_dir: Path, unfinished: list[dict]) -> list[str]:
    """The summary's table of failed or unfinished runs (no lines when there are none)."""
    if not unfinished:
        return []
    lines = ["## Failed or unfinished runs", "", "| run | status | error |", "|---|---|---|"]
    for e in unfinished:
        err = e.get("error") or read_status(sweep_dir / e["dir"]).get("error") or {}
        msg = (err.get("message") or "").splitlines()[:1]
        text = f"{err.get('type', '')}: {msg[0] if msg else ''}" if err else ""
        state = run_state(sweep_dir / e["dir"])  # the run's own word, not a stale snapshot
        lines.append(f"| {e['dir']} | {state} | {text.replace('|', '/')} |")
    return lines + [""]
