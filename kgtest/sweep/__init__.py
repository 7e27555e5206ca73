"""Sweeps: an experiment spec plus ``[sweep]`` axes, run on a process pool, Ray or Slurm.

::

    spec + [sweep] axes --load_sweep--> runs (overrides, config-hash key), all validated
        --run_sweep--> backend (local | ray | slurm) --> SWEEP_DIR/runs/<name>/ + sweep.json
        --sweep_report--> SWEEP_DIR/summary.md (per cell, intervals across seeds)

Each run is the pure function :func:`run` (``load_experiment`` + ``run_experiment``) and
is keyed by a hash of its fully resolved config, so re-launching a sweep skips finished
runs and re-runs failed or missing ones. Ray and submitit are optional extras
(``pip install 'kgtest[ray]'``, ``'kgtest[slurm]'``), imported only by their backend.

- :mod:`kgtest.sweep.spec`: the ``[sweep]`` table, grid and zip, validation, run keys;
- :mod:`kgtest.sweep.job`: one run as a job, its status files, worker set-up;
- :mod:`kgtest.sweep.backends`: local process pool, Ray tasks, Slurm job arrays;
- :mod:`kgtest.sweep.launch`: :func:`run_sweep` and :func:`sweep_report`.

Examples
--------
>>> import tempfile
>>> sweep = load_sweep("tests/data/sweep_tiny.toml", tempfile.mkdtemp())
>>> len(sweep.runs), sweep.runs[0].name.startswith("sweep_tiny-seed0-")
(2, True)
"""

from kgtest.sweep.backends import BACKENDS
from kgtest.sweep.job import run, setup_worker
from kgtest.sweep.launch import run_sweep, sweep_report
from kgtest.sweep.spec import Sweep, SweepRun, load_sweep, resolved_key

__all__ = ["BACKENDS", "Sweep", "SweepRun", "load_sweep", "resolved_key", "run",
           "run_sweep", "setup_worker", "sweep_report"]
