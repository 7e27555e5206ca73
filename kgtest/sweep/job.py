"""One sweep run as a pure function, and the worker set-up every backend shares.

:func:`run` is what each job executes: ``load_experiment`` + ``run_experiment`` into
``RUNS/<run.name>-seed<seed>-<key>``. It records its own outcome in the run folder, so a
job that fails on a cluster node leaves its error where the sweep looks for it:

- ``status.json``: ``{"status": "running" | "ok" | "failed", "seconds", "host", "error"}``
  (and, when ok, the intra-op ``threads`` and ``cuda_visible_devices`` it ran with);
- ``error.txt``: the traceback of a failed run;
- ``log.txt``: the pipeline's progress lines (and library progress bars);
- ``.lock``: held (``flock``) by the one process running it, so a re-launched sweep never
  runs a run that a live process still holds; :func:`run_state` reads the two together.

:func:`job` wraps :func:`run` for the backends: it never raises for a failed run, it
returns a small dict. :func:`setup_worker` pins intra-op threads (one per worker by
default: several threads per worker on 2 cores made tiny steps ~40x slower) and, on CUDA,
a GPU and a cap on this process's share of its memory; :func:`die_with_parent` makes a
local pool worker exit with the sweep that started it.

Examples
--------
>>> import tempfile
>>> out = tempfile.mkdtemp()
>>> r = job("tests/data/sweep_tiny.toml", ["split.n_forget=100000"], out, name="bad")
>>> r["status"], r["error"]["type"]
('failed', 'InputError')
>>> import json, pathlib
>>> json.loads((pathlib.Path(out) / "bad" / "status.json").read_text())["status"]
'failed'
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import time
import traceback
from pathlib import Path

from kgtest.symbolic.facts import atomic_write_text
from kgtest.workers import die_with_parent, setup_worker

__all__ = ["run", "job", "stacked_jobs", "setup_worker", "die_with_parent", "read_status",
           "is_finished", "run_state", "STATUS", "ERROR", "LOG"]

STATUS = "status.json"
ERROR = "error.txt"
LOG = "log.txt"
SUMMARY = "summary.md"


def read_status(run_dir: str | os.PathLike) -> dict:
    """A run folder's ``status.json`` (``{}`` if there is none)."""
    try:
        return json.loads((Path(run_dir) / STATUS).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def is_finished(run_dir: str | os.PathLike) -> bool:
    """A run is finished when its ``summary.md`` exists and it did not fail since."""
    return ((Path(run_dir) / SUMMARY).exists()
            and read_status(run_dir).get("status") in (None, "ok"))


def run_state(run_dir: str | os.PathLike) -> str:
    """What a run folder says about its run, checked against its lock.

    ``ok`` (finished), ``running`` (a live process holds its lock), ``failed``,
    ``interrupted`` (its status says running but no process holds it: killed), or
    ``pending`` (never started).
    """
    from kgtest.stages import lock_holder

    if is_finished(run_dir):
        return "ok"
    if lock_holder(run_dir) is not None:
        return "running"
    status = read_status(run_dir).get("status")
    return {"failed": "failed", "running": "interrupted"}.get(status, "pending")


def _write_status(folder: Path, **fields) -> None:
    data = {"host": socket.gethostname(), "pid": os.getpid(), **fields}
    atomic_write_text(folder / STATUS, json.dumps(data, indent=1) + "\n")


def _command(spec, overrides) -> str:
    sets = "".join(f" --set {shlex.quote(o)}" for o in overrides)
    return f"kgtest run {shlex.quote(str(spec))}{sets}"


def run(spec_path: str | os.PathLike, overrides=(), runs_dir: str | os.PathLike = "runs", *,
        name: str | None = None) -> Path:
    """Run one experiment into ``runs_dir/<name>`` and return that folder.

    Loads ``spec_path`` with ``overrides`` (:func:`kgtest.experiment.load_experiment`) and
    runs it (:func:`kgtest.pipeline.run_experiment`, which reuses finished stages). The
    outcome goes to ``status.json`` (and ``error.txt`` on failure) in the run folder;
    errors are re-raised. The run folder's lock (:func:`kgtest.stages.run_lock`) is taken
    before anything is written, so a run another live process holds raises
    :class:`kgtest.stages.RunBusy` and leaves that folder untouched.

    Parameters
    ----------
    spec_path : path
        An experiment spec (a sweep's ``experiment.toml``).
    overrides : sequence of str
        ``key=value`` overrides (the run's axis values).
    runs_dir : path
        Parent folder of the run folder.
    name : str, optional
        The run folder's name (default :func:`kgtest.sweep.spec.run_name`).

    Returns
    -------
    Path
        The run folder, with ``records.jsonl`` and ``summary.md``.
    """
    from kgtest.experiment import load_experiment
    from kgtest.pipeline import run_experiment
    from kgtest.stages import run_lock
    from kgtest.sweep.spec import run_name

    start = time.perf_counter()
    cfg = None
    if name is None:  # the folder comes from the config: a bad spec is not recorded
        cfg = load_experiment(spec_path, overrides)
        name = run_name(cfg)
    folder = Path(runs_dir) / name
    command = _command(spec_path, overrides)
    with run_lock(folder, command=command):  # RunBusy: another process runs it; touch nothing
        try:
            cfg = cfg or load_experiment(spec_path, overrides)
            (folder / ERROR).unlink(missing_ok=True)
            _write_status(folder, status="running", overrides=list(overrides))
            with open(folder / LOG, "a") as log:
                with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                    run_experiment(cfg, folder, command=command,
                                   log=lambda msg: print(msg, flush=True))
        except BaseException as err:
            atomic_write_text(folder / ERROR, traceback.format_exc())
            _write_status(folder, status="failed", overrides=list(overrides),
                          seconds=time.perf_counter() - start,
                          error={"type": type(err).__name__, "message": str(err)})
            raise
        import torch

        _write_status(folder, status="ok", overrides=list(overrides),
                      seconds=time.perf_counter() - start, threads=torch.get_num_threads(),
                      cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    return folder


def job(spec_path: str | os.PathLike, overrides, runs_dir: str | os.PathLike, *,
        name: str, threads: int | None = None, gpu_fraction: float | None = None) -> dict:
    """:func:`run`, returning ``{"name", "status", "seconds", "dir", "error"}``; never raises.

    ``status`` is ``ok``, ``failed``, or ``running`` when another live process holds the
    run folder (it is left alone). ``error`` is None or ``{"type", "message",
    "traceback"}``. ``threads`` and ``gpu_fraction``, when given, call
    :func:`setup_worker` first (Ray and Slurm tasks).
    """
    if threads is not None or gpu_fraction is not None:
        setup_worker(threads or 1, gpu_fraction=gpu_fraction)
    import kgtest.pipeline  # noqa: F401  (a worker's first import is not the run's time)
    from kgtest.stages import RunBusy

    start = time.perf_counter()
    folder = Path(runs_dir) / name
    status, error = "ok", None
    try:
        run(spec_path, overrides, runs_dir, name=name)
    except RunBusy as err:  # a live process (an earlier launch's worker?) runs it: leave it
        status, error = "running", {"type": "RunBusy", "message": str(err), "traceback": ""}
    except Exception as err:  # one failing run never stops the sweep
        status, error = "failed", {"type": type(err).__name__, "message": str(err),
                                   "traceback": traceback.format_exc()}
    return {"name": name, "status": status, "dir": str(folder),
            "seconds": time.perf_counter() - start, "error": error}


def stacked_jobs(spec_path: str | os.PathLike, runs, runs_dir: str | os.PathLike, *,
                 jobs: int = 1) -> list[dict]:
    """The runs of one sweep cell (they differ only in ``run.seed``) as one ``kgtest run
    --seeds M`` (:func:`kgtest.multiseed.run_seeds`, ``jobs`` worker processes) into their
    ordinary sweep folders; one :func:`job` result per run, in ``runs``' order.

    ``runs``: ``(overrides, name)`` of each run. Every folder gets what :func:`run` writes
    (``status.json``, with the intra-op ``threads`` its training ran with; ``error.txt`` on
    failure; ``log.txt``: the stacked run's progress lines in each, its stdout and stderr,
    such as warnings, in the first run's only). The folders are locked first; if another
    live process holds one, or a config does not load, the runs go one by one through
    :func:`job` instead (which records each its own way). A failure of the stacked run
    fails every run of the cell.
    """
    from kgtest.experiment import load_experiment
    from kgtest.multiseed import run_seeds
    from kgtest.pipeline import stage_threads
    from kgtest.stages import RunBusy, run_lock

    start = time.perf_counter()
    folders = [Path(runs_dir) / name for _, name in runs]
    try:
        cfgs = [load_experiment(spec_path, overrides) for overrides, _ in runs]
    except Exception:  # noqa: BLE001  (each run records its own error)
        return [job(spec_path, o, runs_dir, name=n) for o, n in runs]
    commands = [_command(spec_path, o) for o, _ in runs]
    with contextlib.ExitStack() as locks:
        try:
            for folder, command in zip(folders, commands, strict=True):
                locks.enter_context(run_lock(folder, command=command))
        except RunBusy:
            locks.close()
            return [job(spec_path, o, runs_dir, name=n) for o, n in runs]
        for folder, (overrides, _) in zip(folders, runs, strict=True):
            (folder / ERROR).unlink(missing_ok=True)
            _write_status(folder, status="running", overrides=list(overrides))
        logs = [locks.enter_context(open(f / LOG, "a")) for f in folders]

        def log(msg: str) -> None:
            for f in logs:
                print(msg, file=f, flush=True)

        error = None
        try:
            with contextlib.redirect_stdout(logs[0]), contextlib.redirect_stderr(logs[0]):
                run_seeds(cfgs, runs_dir, command=commands[0], log=log, jobs=jobs,
                          dirs=folders)
        except Exception as err:  # one failing cell never stops the sweep
            error = {"type": type(err).__name__, "message": str(err),
                     "traceback": traceback.format_exc()}
        seconds = time.perf_counter() - start
        out = []
        for folder, (overrides, name), cfg in zip(folders, runs, cfgs, strict=True):
            if error:
                atomic_write_text(folder / ERROR, error["traceback"])
                _write_status(folder, status="failed", overrides=list(overrides),
                              seconds=seconds, error={k: error[k] for k in ("type", "message")})
            else:
                _write_status(folder, status="ok", overrides=list(overrides), seconds=seconds,
                              threads=stage_threads(cfg, jobs), stacked=[n for _, n in runs],
                              jobs=jobs,
                              cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
            out.append({"name": name, "status": "failed" if error else "ok",
                        "dir": str(folder), "seconds": seconds, "error": error})
    return out
