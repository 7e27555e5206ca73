"""M seeds of one spec: ``kgtest run --seeds M`` (stacked) vs M separate runs, in one process.

Both sides run the quickstart (``experiments/quickstart.toml``) for seeds 0..M-1 into fresh
folders: the separate side calls :func:`kgtest.pipeline.run_experiment` once per seed, as
M ``kgtest run --set run.seed=s`` would; the stacked side calls
:func:`kgtest.multiseed.run_seeds`, as ``kgtest run --seeds M`` does. Printed: wall and CPU
seconds of each side, the wall of one seed, the speed-up, and how far the records are apart
(the largest |score| difference, the records whose other fields differ, and the largest
difference of a rate in the paired summary tables, ``summary.json``, line by line).

What is stacked: the original models' training (one stacked model, each member on its own
seed's corpus), then the retrained controls ``filter`` and ``ignorance``, then each
unlearning method with its tuning grid (each member its own grid choice). Not stacked (one
seed at a time, the ordinary code): world, corpus, ``never_trained``, RMU, probes and the
report.

``--small`` cuts the quickstart to a size whose two sides fit in minutes on 2 cores (the
tiny model preset, 200 training steps, NPO only at one grid point, the direct and utility
probes; every control); the full quickstart is about 30 CPU-minutes per seed.

    .venv/bin/python benchmarks/bench_seeds.py --small --seeds 5
    .venv/bin/python benchmarks/bench_seeds.py --seeds 5            # the full quickstart
    .venv/bin/python benchmarks/bench_seeds.py --dry-run            # 2 seeds, 20 steps: runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from kgtest.experiment import load_experiment
from kgtest.multiseed import run_dir_of, run_seeds, seed_configs
from kgtest.pipeline import run_experiment

SPEC = Path(__file__).resolve().parent.parent / "experiments" / "quickstart.toml"
SMALL = ["model.preset=tiny", "train.steps=200", "train.eval_every=100", "train.lr=3e-3",
         'unlearn.methods=["NPO"]', "unlearn.deep=[false]", "unlearn.tune_lrs=[1e-3]",
         "unlearn.tune_epochs=[5]", 'probes.probes=["direct", "utility"]',
         "probes.n_boot=200"]
DRY = ["train.steps=20", "train.eval_every=10"]  # --dry-run: runs, not timings
RATIOS: dict[str, float] = {}  # filled by main(): speed-ups, for benchmarks/run_all.py


def _timed(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _stamped(msg: str) -> None:
    if msg.startswith("[seeds]") or msg.startswith("[1/5]"):
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def separate(cfgs, out: Path) -> tuple[float, float, list[float]]:
    """Each seed's run in turn: (wall s, CPU s, wall s of each seed)."""
    each = []

    def go():
        for cfg in cfgs:
            t0 = time.perf_counter()
            run_experiment(cfg, run_dir_of(out, cfg), log=lambda m: None)
            each.append(time.perf_counter() - t0)
            print(f"separate run, seed {cfg.run.seed}: {each[-1]:.1f} s wall", flush=True)

    wall, cpu = _timed(go)
    return wall, cpu, each


def compare(cfgs, a: Path, b: Path) -> dict:
    """How far two sets of run folders' records and summary tables are apart."""
    worst = rate = 0.0
    flips = rows = 0
    for cfg in cfgs:
        ra, rb = (
            [json.loads(x) for x in (run_dir_of(d, cfg) / "records.jsonl").read_text()
             .splitlines()] for d in (a, b))
        if len(ra) != len(rb):
            raise SystemExit(f"seed {cfg.run.seed}: {len(ra)} vs {len(rb)} records")
        for x, y in zip(ra, rb, strict=True):
            if x["score"] is not None and y["score"] is not None:
                worst = max(worst, abs(x["score"] - y["score"]))
            flips += any(x[k] != y[k] for k in x if k != "score")
        rows += len(ra)
        sa, sb = (json.loads((run_dir_of(d, cfg) / "summary.json").read_text()) for d in (a, b))
        for x, y in zip(sa, sb, strict=True):
            if (x["variant"], x["probe"], x["setting"]) != (y["variant"], y["probe"],
                                                            y["setting"]):
                raise SystemExit(f"seed {cfg.run.seed}: the summary tables differ in lines")
            for k in ("rate", "rate_all"):
                if x.get(k) is not None and y.get(k) is not None:
                    rate = max(rate, abs(x[k] - y[k]))
    return {"score": worst, "flips": flips, "rows": rows, "rate": rate}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--small", action="store_true", help="the cut quickstart (see above)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--out", help="folder for the runs (default: a temporary one)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                    help="train.device and unlearn.device of every run (default auto)")
    ap.add_argument("--dry-run", action="store_true",
                    help="--small with 20 training steps and 2 seeds: checks that both "
                         "sides run and compare (benchmarks/gpu_check.py --dry-run)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.dry_run:
        args.small, args.seeds = True, min(args.seeds, 2)
    overrides = [*(SMALL if args.small else []),
                 *(DRY if args.dry_run else []), f"train.threads={args.threads}",
                 f"train.device={args.device}", f"unlearn.device={args.device}",
                 "train.progress=false", "unlearn.progress=false"]
    cfgs = seed_configs(SPEC, overrides, args.seeds)
    load_experiment(SPEC, overrides)  # bad overrides fail before any work
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_seeds-"))
    wall_sep, cpu_sep, each = separate(cfgs, out / "separate")
    wall_st, cpu_st = _timed(lambda: run_seeds(cfgs, out / "stacked", log=_stamped))
    diff = compare(cfgs, out / "separate", out / "stacked")
    one = sum(each) / len(each)
    RATIOS["seeds: stacked vs separate runs (wall)"] = wall_sep / wall_st
    print(f"== {args.seeds} seeds of the {'small ' if args.small else ''}quickstart, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.threads} thread(s) ==")
    print(f"{'side':<24}{'wall s':>9}{'CPU s':>9}{'wall / one seed':>17}")
    print(f"{'separate runs':<24}{wall_sep:>9.1f}{cpu_sep:>9.1f}{wall_sep / one:>17.2f}")
    print(f"{'--seeds (stacked)':<24}{wall_st:>9.1f}{cpu_st:>9.1f}{wall_st / one:>17.2f}")
    print(f"one seed (mean of the separate runs): {one:.1f} s wall; speed-up "
          f"{wall_sep / wall_st:.2f}x wall, {cpu_sep / cpu_st:.2f}x CPU; goal: {args.seeds} "
          f"seeds <= 2x one seed's wall")
    print(f"records: largest |score| difference {diff['score']:.2e}; {diff['flips']} of "
          f"{diff['rows']} records differ in another field; largest rate difference in the "
          f"paired summary tables {diff['rate']:.3f}")
    print(f"runs: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
