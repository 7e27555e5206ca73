"""Training speed per torch thread count, alone and beside a CPU-bound process.

Trains the quickstart model (GPT-2 ``small`` on the quickstart corpus) for a fixed number
of steps at each ``train.threads`` setting, first with nothing else started by this
script, then with one busy-looping process beside it (what a second job, a test run or a
notebook does to a small machine), and prints steps per second. The default thread count
of ``kgtest train`` should be the one that is not catastrophically slow when the machine is
shared.

    .venv/bin/python benchmarks/bench_threads.py [--steps 40] [--threads 1 2 4]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _spin(stop) -> None:  # a CPU-bound neighbour
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def _steps_per_second(threads: int, steps: int) -> float:
    from kgtest.experiment import load_experiment
    from kgtest.pipeline import train_experiment

    cfg = load_experiment(ROOT / "experiments" / "quickstart.toml",
                          [f"train.steps={steps}", f"train.threads={threads}",
                           "train.progress=false", "train.tensorboard=false",
                           f"train.eval_every={10 * steps}", "train.stop_at={}"])
    with tempfile.TemporaryDirectory() as run:
        from kgtest.pipeline import corpus_stage

        corpus_stage(cfg, run)  # not timed: world and corpus
        t = time.perf_counter()
        res = train_experiment(cfg, run)
        return res.metrics["steps"] / (time.perf_counter() - t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at start")
    print("| threads | alone (steps/s) | beside 1 busy process (steps/s) |")
    print("|---|---|---|")
    for n in args.threads:
        alone = _steps_per_second(n, args.steps)
        stop = mp.Event()
        spinner = mp.Process(target=_spin, args=(stop,), daemon=True)
        spinner.start()
        try:
            busy = _steps_per_second(n, args.steps)
        finally:
            stop.set()
            spinner.join(5)
        print(f"| {n} | {alone:.2f} | {busy:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
