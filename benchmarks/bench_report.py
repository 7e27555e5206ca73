"""CPU of one report and of one world drawing: :func:`kgtest.report.report` and
:func:`kgtest.worlds.export.draw_world`, the two per-run costs a multi-seed run repeats
for every seed.

The script first makes a run folder of its own (the quickstart cut to a tiny model, 20
training steps, NPO only at one grid point, the direct and utility probes, every
control: about a minute of CPU, not timed), or reuses ``--run DIR`` (e.g. one of
``experiments/results/quickstart/quickstart-seed*``, whose report has every plot). Then,
in this one process, it times ``--repeats`` reports of that folder into a temporary folder,
as many calls of the report's :func:`~kgtest.report.plots.write_plots` (its rates,
excess, training, unlearning, forget-vs-utility and tuning figures) and ``--repeats``
drawings of the quickstart's world (seed 0), each after one untimed
warm-up (the matplotlib import is paid once per process). Printed: wall and CPU seconds
per report and per drawing (median over the repeats, min-max beside it).

    .venv/bin/python benchmarks/bench_report.py              # makes its own run folder
    R=experiments/results/quickstart/quickstart-seed0
    .venv/bin/python benchmarks/bench_report.py --run $R
    .venv/bin/python benchmarks/bench_report.py --repeats 1 --dry-run  # runs, not timings
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPEC = ROOT / "experiments" / "quickstart.toml"
TINY = ["model.preset=tiny", "train.steps=20", "train.eval_every=10", "train.threads=1",
        "train.progress=false", "train.tensorboard=false", "unlearn.progress=false",
        'unlearn.methods=["NPO"]',
        "unlearn.deep=[false]", "unlearn.tune_lrs=[1e-3]", "unlearn.tune_epochs=[1]",
        'probes.probes=["direct", "utility"]', "probes.n_boot=200"]


def _timed(fn, repeats: int) -> list[tuple[float, float]]:
    """``repeats`` (wall s, CPU s of this process) of ``fn()``, after one untimed call;
    garbage collected before each (untimed), so each call starts from the same heap."""
    fn()
    out = []
    for _ in range(repeats):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        out.append((time.perf_counter() - t0, time.process_time() - c0))
    return out


def _make_run(folder: Path) -> Path:
    """A tiny quickstart run in ``folder`` (its own report included)."""
    import torch

    from kgtest.experiment import load_experiment
    from kgtest.pipeline import run_experiment

    torch.set_num_threads(1)
    cfg = load_experiment(SPEC, TINY)
    run_experiment(cfg, folder, log=lambda m: None)
    return folder


def _row(name: str, times: list[tuple[float, float]]) -> str:
    wall, cpu = ([t[i] for t in times] for i in (0, 1))
    return (f"| {name} | {statistics.median(wall):.2f} ({min(wall):.2f}-{max(wall):.2f}) "
            f"| {statistics.median(cpu):.2f} ({min(cpu):.2f}-{max(cpu):.2f}) |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="reuse this run folder instead of making one")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n-boot", type=int, default=2000, help="report(..., n_boot=)")
    p.add_argument("--dry-run", action="store_true", help="n_boot=50: runs, not timings")
    args = p.parse_args(argv)
    n_boot = 50 if args.dry_run else args.n_boot

    from kgtest.experiment import load_experiment
    from kgtest.pipeline import world_of
    from kgtest.records import read_runs
    from kgtest.report import aggregate, report
    from kgtest.report.plots import write_plots
    from kgtest.worlds.export import draw_world

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="bench_report.") as tmp:
        tmp = Path(tmp)
        run = args.run or _make_run(tmp / "run")
        world = world_of(load_experiment(SPEC, []))
        closure = world.close()
        rep = _timed(lambda: report([run], tmp / "report", n_boot=n_boot), args.repeats)
        plots = sorted(p.name for p in (tmp / "report" / "plots").glob("*.png"))
        records = read_runs([run])
        agg = aggregate(records, n_boot=n_boot, seed=0)
        core = _timed(lambda: write_plots(agg, records, [run], tmp / "plots", n_boot=n_boot,
                                          seed=0), args.repeats)
        drw = _timed(lambda: draw_world(world, closure, tmp / "graph.png"), args.repeats)
    print(f"report of {run if args.run else 'a tiny quickstart run'} (n_boot={n_boot}), "
          f"{len(plots)} plots: {', '.join(plots)}")
    print(f"{args.repeats} repeats each, after one warm-up; median (min-max)")
    print("| what | wall s | CPU s |")
    print("|---|---|---|")
    print(_row("report(), one run folder", rep))
    print(_row("  of which write_plots()", core))
    print(_row("draw_world(), quickstart world", drw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
