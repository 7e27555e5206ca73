"""Every benchmark that states a goal, in one run, and one table of ratios against the goals.

Runs each benchmark script's ``main(argv)`` in this process (each prints its own table as it
goes), reads the speed-ups it leaves in its module's ``RATIOS``, and prints:

    benchmark                                              ratio    goal  met

Sizes are modest by default, so the whole run takes a few minutes on 2 CPU cores; ``--full``
(or ``KGTEST_BENCH_FULL=1``) uses each script's own defaults (the sizes in
benchmarks/README.md). ``make bench`` runs this.

    NUMPY_MADVISE_HUGEPAGE=0 .venv/bin/python benchmarks/run_all.py [--only probes,closure]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

# name: (module, quick argv, full argv); one run of the module fills its RATIOS
RUNS = {
    "closure": ("bench_closure", ["--sizes", "100000", "--derivable-calls", "0", "--repeat", "3",
                                  "--process-sizes", "1000000", "--plain-repeat", "3"],
                ["--plain-repeat", "3"]),
    "deletion": ("bench_deletion", [], []),
    "train": ("bench_train", ["--steps", "100", "--threads", "1"],
              ["--repeats", "3", "--threads", "1"]),
    "ensemble": ("bench_ensemble", ["--steps", "100", "--threads", "1"], ["--threads", "1"]),
    "probes": ("bench_probes", ["--threads", "1"], ["--threads", "1"]),
    "sweep": ("bench_sweep", ["--runs", "2", "--jobs", "1", "--backends", "local"],
              ["--runs", "4", "--jobs", "1", "--backends", "local"]),
    # the full quickstart is ~30 CPU-minutes a seed: --small at both sizes
    "seeds": ("bench_seeds", ["--small", "--seeds", "5", "--jobs", "2"],
              ["--small", "--seeds", "5", "--jobs", "2"]),
}

# (run, RATIOS key, label, goal on CPU, goal on CUDA); a goal of None is read from RATIOS
ROWS = [
    ("closure", "closure", "closure vs dict-indexed chainer (100k facts)", 20.0, 20.0),
    ("closure", "process", "world closure vs plain script, whole process (1M)", 15.0, 15.0),
    ("deletion", "deletion", "deletion sets vs published (55 x 100 restarts)", None, None),
    ("train", "train_cpu", "training vs HF Trainer (tokens per CPU-second)", 1.3, None),
    ("train", "train", "training vs HF Trainer (tokens/s, wall)", 1.3, 3.0),
    ("ensemble", "ensemble", "ensemble of 8 vs 8 sequential runs (loop time)", 1.3, 3.0),
    ("probes", "cot", "CoT decoding vs per-example generate", 10.0, 10.0),
    ("probes", "scoring", "scoring vs one forward pass per fact", 4.0, 4.0),
    ("sweep", "sweep_cpu", "sweep: in-process loop / local sweep (CPU s)", 0.8, 0.8),
    ("seeds", "seeds: stacked vs separate runs (wall)",
     "--seeds 5 vs 5 separate runs (--small, --jobs 2, wall)", 2.5, 2.5),
]


def run(names: list[str], full: bool) -> tuple[dict[str, dict], dict[str, str]]:
    """Run the named benchmarks; return their RATIOS and any failure per run."""
    ratios, failed = {}, {}
    for name in names:
        module, quick, whole = RUNS[name]
        argv = whole if full else quick
        print(f"\n== {name}: benchmarks/{module}.py {' '.join(argv)} ==", flush=True)
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(module)
            rc = mod.main(argv)
            if isinstance(rc, int) and rc != 0:
                failed[name] = f"exit status {rc} (results disagree)"
            ratios[name] = dict(getattr(mod, "RATIOS", {}))
        except SystemExit as err:  # argparse or a script's own exit
            failed[name] = f"exited {err.code}"
        except Exception as err:  # noqa: BLE001 - report and go on with the others
            traceback.print_exc()
            failed[name] = f"{type(err).__name__}: {err}"
        print(f"({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    return ratios, failed


def table(ratios: dict, failed: dict, names: list[str], cuda: bool) -> tuple[str, list[dict]]:
    """The one table of ratios vs goals, and its rows as dicts."""
    out, rows = [f"{'benchmark':<54}{'ratio':>9}{'goal':>8}  met"], []
    for run_name, key, label, goal_cpu, goal_cuda in ROWS:
        if run_name not in names:
            continue
        got = ratios.get(run_name, {}).get(key)
        goal = goal_cuda if cuda else goal_cpu
        if goal is None and key == "deletion":
            goal = ratios.get(run_name, {}).get("deletion_goal")
        if goal is None and key == "train_cpu":
            continue  # on CUDA the goal is stated for wall-clock tokens/s
        met = "n/a" if got is None or goal is None else ("yes" if got >= goal else "NO")
        if run_name in failed:
            met = "FAILED"
        shown = "-" if got is None else f"{got:.1f}x"
        out.append(f"{label:<54}{shown:>9}{'-' if goal is None else f'{goal:g}x':>8}  {met}")
        rows.append({"benchmark": label, "ratio": got, "goal": goal, "met": met})
    for name, why in failed.items():
        out.append(f"  {name}: {why}")
    return "\n".join(out), rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(RUNS)}")
    ap.add_argument("--full", action="store_true",
                    default=os.environ.get("KGTEST_BENCH_FULL") == "1",
                    help="each script's full default sizes (slow; also KGTEST_BENCH_FULL=1)")
    ap.add_argument("--json", help="also write the table rows to this JSON file")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(RUNS)
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        ap.error(f"unknown benchmark {unknown[0]!r}; known: {', '.join(RUNS)}")
    import torch

    cuda = torch.cuda.is_available()
    t0 = time.perf_counter()
    ratios, failed = run(names, args.full)
    text, rows = table(ratios, failed, names, cuda)
    print(f"\n== ratios vs goals ({'full' if args.full else 'quick'} sizes, "
          f"{'CUDA' if cuda else 'CPU'}, {os.cpu_count()} CPUs, "
          f"{time.perf_counter() - t0:.0f} s) ==")
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "failed": failed}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
