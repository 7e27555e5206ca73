"""Where a sweep's runs execute: a local process pool, Ray tasks, or a Slurm job array.

Each backend takes the runs still to do and yields one result dict per run as it
finishes (:func:`kgtest.sweep.job.job`'s shape), in completion order. None of them
schedules anything itself: ``concurrent.futures`` with the ``spawn`` context, Ray, and
submitit (``sbatch --array``) do.

==========  ============================================================================
``local``   ``--jobs`` worker processes, one intra-op thread each; with CUDA GPUs, worker
            ``i`` gets GPU ``i mod n_gpus`` (``CUDA_VISIBLE_DEVICES``) and, when several
            workers share a GPU, an equal share of its memory. Workers die with the
            sweep process (:func:`kgtest.sweep.job.die_with_parent`).
``ray``     one Ray task per run with ``num_cpus`` / ``num_gpus`` requests (fractional
            GPUs allowed); ``address`` joins a cluster, else a local one is started. Ray's
            GPU fractions are bookkeeping only, so a task with ``num_gpus < 1`` also caps
            its own GPU memory at that fraction.
``slurm``   one submitit job array (``--array=0-N%parallelism``), one task per run, with a
            partition, time limit, CPUs and GPUs per task.
==========  ============================================================================

Examples
--------
>>> sorted(BACKENDS)
['local', 'ray', 'slurm']
"""

from __future__ import annotations

import functools
import math
import multiprocessing as mp
import os
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from kgtest.errors import InputError
from kgtest.sweep.job import die_with_parent, job, read_status, setup_worker
from kgtest.sweep.spec import Sweep, SweepRun

__all__ = ["BACKENDS", "local_backend", "ray_backend", "slurm_backend", "slurm_executor",
           "slurm_submit", "visible_gpus", "gpu_slot", "failure"]


def failure(run: SweepRun, runs_dir: Path, err: BaseException | str, seconds: float = 0.0
            ) -> dict:
    """A result dict for a run whose worker died (the run could not record it itself)."""
    if isinstance(err, BaseException):
        error = {"type": type(err).__name__, "message": str(err),
                 "traceback": "".join(traceback.format_exception(err))}
    else:
        error = {"type": "WorkerError", "message": err, "traceback": ""}
    return {"name": run.name, "status": "failed", "dir": str(runs_dir / run.name),
            "seconds": seconds, "error": error}


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def _paths(sweep: Sweep) -> tuple[str, Path]:
    return str(sweep.experiment.resolve()), (sweep.out / "runs").resolve()


# --- local ------------------------------------------------------------------------------


def gpu_slot(slot: int, gpus: Sequence[str], jobs: int, gpu_fraction: float | None = None
             ) -> tuple[str | None, float | None]:
    """The GPU of local worker ``slot`` (round-robin) and its memory cap.

    Workers sharing a GPU get an equal share of its memory unless ``gpu_fraction`` says.

    >>> [gpu_slot(s, ["0", "1"], jobs=3) for s in range(3)]
    [('0', 0.5), ('1', None), ('0', 0.5)]
    >>> gpu_slot(0, [], jobs=2)
    (None, None)
    """
    if not gpus:
        return None, None
    g = slot % len(gpus)
    sharing = len(range(g, jobs, len(gpus)))  # workers on this GPU
    return gpus[g], gpu_fraction or (1 / sharing if sharing > 1 else None)


def _init_local(slots, gpus: list[str], gpu_fraction: float | None, threads: int,
                jobs: int, parent: int | None = None) -> None:
    """Pool initializer: die with the sweep, take a slot number, bind its GPU, pin threads
    (before torch)."""
    die_with_parent(parent)
    gpu, frac = gpu_slot(slots.get(), gpus, jobs, gpu_fraction)
    setup_worker(threads, gpu=gpu, gpu_fraction=frac)


def _pool(batch: Sequence[SweepRun], n: int, spec: str, runs_dir: Path, gpus: list[str],
          gpu_fraction: float | None, threads: int) -> Iterator[tuple[SweepRun, dict | None]]:
    """Run ``batch`` on a fresh pool of ``n`` workers: ``(run, result)``, or ``(run, None)``
    for the runs lost when a worker died and broke the pool."""
    ctx = mp.get_context("spawn")
    slots = ctx.Queue()
    for i in range(n):
        slots.put(i)
    pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_local,
                               initargs=(slots, gpus, gpu_fraction, threads, n, os.getpid()))
    try:
        futures = {pool.submit(job, spec, r.overrides, runs_dir, name=r.name): r for r in batch}
        for fut in as_completed(futures):
            try:
                yield futures[fut], fut.result()
            except BrokenProcessPool:
                yield futures[fut], None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def local_backend(sweep: Sweep, runs: Sequence[SweepRun], *, jobs: int | None = None,
                  threads: int = 1, gpus: Sequence[str] | None = None,
                  gpu_fraction: float | None = None,
                  stack_seeds: bool = False) -> Iterator[dict]:
    """Run on a ``spawn`` process pool of ``jobs`` workers (default: one per CPU core).

    A worker that dies (killed, out of memory) breaks the whole pool. The runs that had
    started then are retried one at a time, each in a pool of its own, so the one that
    kills its worker again is recorded as failed and the others finish; runs that had not
    started go back to the queue.

    ``stack_seeds``: the runs of a cell (two or more that differ only in ``run.seed``)
    run first, one cell at a time, as one ``kgtest run --seeds M --jobs jobs``
    (:func:`kgtest.sweep.job.stacked_jobs`: originals, controls and unlearning stacked,
    the same folders and record columns); the rest go to the pool.
    """
    if not runs:
        return
    spec, runs_dir = _paths(sweep)
    if stack_seeds:
        runs = yield from _stacked_cells(spec, runs_dir, runs, jobs)
        if not runs:
            return
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(runs)))
    gpus = visible_gpus() if gpus is None else list(gpus)
    queue, alone = list(runs), []
    requeued = {r.name: 0 for r in runs}
    while queue or alone:
        batch, n = (queue, min(jobs, len(queue))) if queue else ([alone.pop(0)], 1)
        queue = [] if batch is queue else queue
        for run, result in _pool(batch, n, spec, runs_dir, gpus, gpu_fraction, threads):
            if result is not None:
                yield result
                continue
            started = read_status(runs_dir / run.name).get("status") == "running"
            requeued[run.name] += not started
            if started and n > 1:
                alone.append(run)  # a suspect: retry it on its own
            elif started or requeued[run.name] > 3:
                yield failure(run, runs_dir, "its worker process died (killed, or out of "
                              "memory?); re-launch the sweep to retry it")
            else:
                queue.append(run)


def _stacked_cells(spec: str, runs_dir: Path, runs: Sequence[SweepRun], jobs: int | None):
    """Yield the results of every cell of two or more runs, each cell stacked; return the
    runs left (cells of one run)."""
    from kgtest.sweep.job import stacked_jobs

    cells: dict[str, list[SweepRun]] = {}
    for r in runs:
        cells.setdefault(r.cell, []).append(r)
    jobs = max(1, jobs or os.cpu_count() or 1)
    for cell in cells.values():
        if len(cell) > 1:
            yield from stacked_jobs(spec, [(r.overrides, r.name) for r in cell], runs_dir,
                                    jobs=jobs)
    return [r for cell in cells.values() if len(cell) == 1 for r in cell]


# --- ray ----------------------------------------------------------------------------------


def ray_backend(sweep: Sweep, runs: Sequence[SweepRun], *, jobs: int | None = None,
                address: str | None = None, cpus_per_run: float = 1,
                gpus_per_run: float = 0) -> Iterator[dict]:
    """Run each run as a Ray task with ``num_cpus=cpus_per_run, num_gpus=gpus_per_run``.

    Joins ``address`` (``"auto"``, ``"ray://head:10001"``...) or starts a local cluster
    with ``jobs * cpus_per_run`` CPUs (shut down afterwards). With ``jobs``, at most that
    many runs are in flight. On a multi-node cluster the sweep folder must be on storage
    every node sees, and kgtest installed on every node.
    """
    if not runs:
        return
    try:
        import ray
    except ImportError:
        raise InputError("--backend ray needs Ray: pip install 'kgtest[ray]'") from None
    own = not ray.is_initialized()
    if own:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            n = jobs or os.cpu_count() or 1
            ray.init(num_cpus=max(1, math.ceil(n * cpus_per_run)), include_dashboard=False,
                     log_to_driver=False)
    spec, runs_dir = _paths(sweep)
    frac = gpus_per_run if 0 < gpus_per_run < 1 else None
    task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)(job)
    todo, flight = list(runs), {}
    limit = jobs or len(todo)
    try:
        while todo or flight:
            while todo and len(flight) < limit:
                r = todo.pop(0)
                ref = task.remote(spec, r.overrides, runs_dir, name=r.name,
                                  threads=max(1, int(cpus_per_run)), gpu_fraction=frac)
                flight[ref] = r
            done, _ = ray.wait(list(flight), num_returns=1)
            run = flight.pop(done[0])
            try:
                yield ray.get(done[0])
            except ray.exceptions.RayError as err:  # the worker died: no job() result
                yield failure(run, runs_dir, err)
    finally:
        for ref in flight:
            ray.cancel(ref, force=True)
        if own:
            ray.shutdown()


# --- slurm --------------------------------------------------------------------------------


def slurm_executor(folder: str | os.PathLike, *, partition: str | None = None,
                   time_min: int = 60, array_parallelism: int = 32, cpus_per_task: int = 1,
                   gpus_per_node: int = 0, mem: str | None = None, setup: Sequence[str] = (),
                   additional: dict | None = None, python: str | None = None):
    """A ``submitit.SlurmExecutor`` for sweep arrays (needs ``srun`` on ``PATH``).

    Parameters
    ----------
    folder : path
        Where submitit keeps sbatch files, pickled jobs and logs (the sweep's ``slurm/``).
    partition, time_min, array_parallelism, cpus_per_task, gpus_per_node, mem
        ``#SBATCH`` settings: ``--partition``, ``--time`` (minutes), the ``%N`` of
        ``--array=0-M%N`` (array tasks running at once), ``--cpus-per-task``,
        ``--gpus-per-node``, ``--mem`` (e.g. ``"16G"``).
    setup : sequence of str
        Shell lines run before the job (``module load ...``, ``source venv/bin/activate``).
    additional : dict, optional
        Other ``#SBATCH`` flags (``{"account": "proj", "qos": "low"}``).
    python : str, optional
        The Python on the nodes (default: this interpreter).
    """
    try:
        import submitit
    except ImportError:
        raise InputError("--backend slurm needs submitit: pip install 'kgtest[slurm]'") from None
    try:
        ex = submitit.SlurmExecutor(folder=folder, python=python)
    except RuntimeError as err:  # no srun: not on a Slurm login node
        raise InputError(f"--backend slurm: {err}") from None
    params = {"job_name": "kgtest-sweep", "time": int(time_min),
              "array_parallelism": int(array_parallelism), "cpus_per_task": int(cpus_per_task),
              "setup": [f"export OMP_NUM_THREADS={int(cpus_per_task)}", *setup]}
    if partition:
        params["partition"] = partition
    if gpus_per_node:
        params["gpus_per_node"] = int(gpus_per_node)
    if mem:
        params["mem"] = mem
    if additional:
        params["additional_parameters"] = dict(additional)
    ex.update_parameters(**params)
    return ex


def slurm_submit(sweep: Sweep, runs: Sequence[SweepRun], executor) -> list:
    """Submit ``runs`` as one job array; returns submitit jobs in ``runs`` order.

    Each array task calls :func:`kgtest.sweep.job.job` on one run (pickled by submitit
    and run by ``python -u -m submitit.core._submit FOLDER`` under ``srun``).
    """
    spec, runs_dir = _paths(sweep)
    threads = int(executor.parameters.get("cpus_per_task", 1))
    fns = [functools.partial(job, spec, r.overrides, runs_dir, name=r.name, threads=threads)
           for r in runs]
    return executor.submit_array(fns)


def slurm_backend(sweep: Sweep, runs: Sequence[SweepRun], *, jobs: int | None = None,
                  poll_s: float = 30, **slurm) -> Iterator[dict]:
    """Submit one array (``jobs`` = array parallelism) and wait for its tasks.

    ``slurm`` are :func:`slurm_executor` settings (partition, time_min, ...). Interrupting
    the wait leaves the array running; re-launching the sweep skips what has finished.
    """
    if not runs:
        return
    import submitit

    if jobs:
        slurm["array_parallelism"] = jobs
    executor = slurm_executor(sweep.out / "slurm", **slurm)
    jobs_ = slurm_submit(sweep, runs, executor)
    print(f"submitted Slurm array {jobs_[0].job_id.split('_')[0]} ({len(jobs_)} tasks); "
          f"logs in {sweep.out / 'slurm'}", flush=True)
    by_id = {j.job_id: r for j, r in zip(jobs_, runs, strict=True)}
    _, runs_dir = _paths(sweep)
    for j in submitit.helpers.as_completed(jobs_, poll_frequency=poll_s):
        try:
            yield j.result()
        except Exception as err:  # timeout, node failure, preemption: no job() result
            yield failure(by_id[j.job_id], runs_dir, err)


BACKENDS = {"local": local_backend, "ray": ray_backend, "slurm": slurm_backend}
