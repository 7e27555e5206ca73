"""Sweep overhead per run: ``kgtest.sweep.run_sweep`` vs ``run_experiment`` in a loop.

The same ``N`` tiny runs (``tests/data/sweep_tiny.toml``, seeds ``0..N-1``: a 2-layer
d=32 model, 200 training steps, NPO, the filter control, the direct probe) are run

- ``loop``: in this process, one after the other, ``load_experiment`` +
  ``run_experiment`` with one intra-op thread (torch and transformers already imported,
  so the loop pays no start-up at all: the cheapest way to run them);
- ``local``/``ray`` with ``--jobs`` 1 and 2: :func:`kgtest.sweep.run_sweep` on a fresh
  sweep folder, timed from the call to its return (validation, worker start-up and
  imports, status files, ``sweep.json``, and for Ray starting and stopping a local
  cluster);
- ``resume``: the finished local sweep launched again (every run skipped).

Every run starts from an empty folder (no stage is reused). ``overhead/run`` is
``(wall - loop wall) / N`` for the ``--jobs 1`` rows; ``CPU s`` is the CPU time of this
process and its reaped children (so the local pool's workers; Ray's workers are not our
children, so not for Ray), and ``CPU overhead/run`` is ``(CPU s - loop CPU s) / N``: on a
shared machine it is steadier than wall time. ``same`` says whether every run's
``records.jsonl`` equals the loop's for the same seed.

    .venv/bin/python benchmarks/bench_sweep.py                  # 4 runs, local and Ray
    .venv/bin/python benchmarks/bench_sweep.py --runs 8 --backends local
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch

from kgtest.experiment import load_experiment
from kgtest.pipeline import run_experiment
from kgtest.sweep import load_sweep, run_sweep

SPEC = Path(__file__).resolve().parents[1] / "tests" / "data" / "sweep_tiny.toml"


def _spec(out: Path, n: int) -> Path:
    base = SPEC.read_text().split("[sweep]")[0]
    path = out / "bench_sweep.toml"
    path.write_text(base + f"[sweep]\nseed = {list(range(n))}\n")
    return path


def _records(folder: Path) -> str:
    return (folder / "records.jsonl").read_text()


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the local pool's workers)."""
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


RATIOS: dict[str, float] = {}  # filled by main(): speed-ups, for benchmarks/run_all.py


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=4, help="runs (seeds) per sweep (default 4)")
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="--jobs values")
    p.add_argument("--backends", nargs="+", default=["local", "ray"],
                   choices=["local", "ray"], help="backends to time (ray if installed)")
    p.add_argument("--out", help="scratch folder (default: a temporary one)")
    args = p.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_sweep-"))
    out.mkdir(parents=True, exist_ok=True)
    spec = _spec(out, args.runs)
    sweep = load_sweep(spec, out / "expanded")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs (load average {load:.1f}), "
          f"torch {torch.__version__}; {args.runs} runs of {SPEC.name}")

    torch.set_num_threads(1)
    loop: dict[int, str] = {}
    start, cpu = time.perf_counter(), _cpu()
    for r in sweep.runs:
        cfg = load_experiment(sweep.experiment, r.overrides)
        folder = out / "loop" / r.name
        run_experiment(cfg, folder, log=lambda m: None)
        loop[r.seed] = _records(folder)
    base, base_cpu = time.perf_counter() - start, _cpu() - cpu
    rows = [("loop", 1, base, None, base_cpu, None, True)]

    for backend in args.backends:
        if backend == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                print("ray: not installed, skipped (pip install 'kgtest[ray]')")
                continue
        for jobs in args.jobs:
            folder = out / f"{backend}-j{jobs}"
            start, cpu = time.perf_counter(), _cpu()
            res = run_sweep(spec, folder, backend=backend, jobs=jobs, progress=False,
                            log=lambda m: None)
            wall = time.perf_counter() - start
            used = _cpu() - cpu if backend == "local" else None  # Ray's workers: not children
            same = all(e["status"] == "ok" and _records(folder / e["dir"]) == loop[e["seed"]]
                       for e in res["runs"])
            rows.append((backend, jobs, wall, (wall - base) / args.runs if jobs == 1 else None,
                         used, None if used is None else (used - base_cpu) / args.runs, same))
            if backend == "local" and jobs == args.jobs[0]:
                start, cpu = time.perf_counter(), _cpu()
                run_sweep(spec, folder, backend="local", jobs=jobs, progress=False,
                          log=lambda m: None)
                resume, used = time.perf_counter() - start, _cpu() - cpu
                rows.append(("resume", jobs, resume, resume / args.runs, used,
                             used / args.runs, True))

    def fmt(x, spec=".2f"):
        return "" if x is None else format(x, spec)

    print(f"{'backend':<8}{'jobs':>5}{'wall s':>9}{'s/run':>8}{'overhead/run s':>16}"
          f"{'CPU s':>8}{'CPU overhead/run s':>20}{'same':>6}")
    for name, jobs, wall, over, used, cpu_over, same in rows:
        print(f"{name:<8}{jobs:>5}{wall:>9.1f}{wall / args.runs:>8.2f}{fmt(over):>16}"
              f"{fmt(used, '.1f'):>8}{fmt(cpu_over):>20}{'yes' if same else 'NO':>6}")
    print(f"scratch: {out}")
    local = next((r for r in rows if r[0] == "local" and r[1] == 1), None)
    if local is not None:  # in-process loop time / sweep time: 1.0 would be no overhead
        RATIOS["sweep"] = base / local[2]
        if local[4] is not None:
            RATIOS["sweep_cpu"] = base_cpu / local[4]


if __name__ == "__main__":
    main()
