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
unlearning method with its tuning grid (each member its own grid choice). Not stacked (per
seed, the ordinary code): world, corpus, ``never_trained``, RMU and the report; the probes
run side by side, their greedy decoding stacked across seeds (teacher-forced scoring per
model: stacking it does not pay on a CPU).
``--jobs J`` runs both sides with J processes at once (one torch thread each): each separate
run as ``kgtest run --jobs J`` (J workers), the stacked side as ``kgtest run --seeds M --jobs
J`` (this process and J - 1 workers: stacked groups split in J parts, each seed's unstacked
rest and its probes in tasks for whichever process is free). CPU time counts the worker
processes too. Both sides run in this process, already warm (torch and transformers
imported), unless ``--cli``: then each side runs as the ``kgtest`` commands a user types, each
a fresh process (M separate ``kgtest run --set run.seed=s``, one ``kgtest run --seeds M``),
whose start-up (~7 s of imports here) counts.

``--small`` cuts the quickstart to a size whose two sides fit in minutes on 2 cores (the
tiny model preset, 200 training steps, NPO only at one grid point, the direct and utility
probes; every control); the full quickstart is about 30 CPU-minutes per seed.

    .venv/bin/python benchmarks/bench_seeds.py --small --seeds 5 --jobs 2
    .venv/bin/python benchmarks/bench_seeds.py --small --seeds 5 --jobs 2 --cli
    .venv/bin/python benchmarks/bench_seeds.py --seeds 5            # the full quickstart
    .venv/bin/python benchmarks/bench_seeds.py --dry-run            # 2 seeds, 20 steps: runs
    .venv/bin/python benchmarks/bench_seeds.py --small --unlearn-only --seeds 5

``--probes-only`` trains ``--small``'s seeds (stacked) with the quickstart's probes (all
seven), then times the probes and reports of the M seeds one seed after another (each
model alone) and side by side (greedy decoding stacked across seeds), every other stage
reused, and compares the two sides' records.

``--unlearn-only`` trains ``--small``'s originals (stacked), then times the quickstart's
whole ``[unlearn]`` section (GradDiff, NPO, IdkSFT, plain and deep, its 2 x 3 tuning grid)
on them one seed at a time and stacked, and counts the stages whose chosen grid point agrees.
"""

from __future__ import annotations

import argparse
import contextlib
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


def _cpu() -> float:
    """CPU seconds of this process and its finished children (worker processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _timed(fn) -> tuple[float, float]:
    """(wall s, CPU s of this process and of the worker processes it ran)."""
    t0, c0 = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - t0, _cpu() - c0


def _stamped(msg: str) -> None:
    if msg.startswith("[seeds]") or msg.startswith("[1/5]"):
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def separate(cfgs, out: Path, jobs: int = 1) -> tuple[float, float, list[float]]:
    """Each seed's run in turn (``kgtest run --jobs jobs``): (wall s, CPU s, wall s of
    each seed)."""
    each = []

    def go():
        for cfg in cfgs:
            t0 = time.perf_counter()
            run_experiment(cfg, run_dir_of(out, cfg), log=lambda m: None, jobs=jobs)
            each.append(time.perf_counter() - t0)
            print(f"separate run, seed {cfg.run.seed}: {each[-1]:.1f} s wall", flush=True)

    wall, cpu = _timed(go)
    return wall, cpu, each


def _kgtest(argv: list[str]) -> None:
    """One ``kgtest`` command in a fresh Python process (``--cli``): its start-up counts."""
    import subprocess

    subprocess.run([sys.executable, "-m", "kgtest", *argv], check=True,
                   stdout=subprocess.DEVNULL)


def separate_cli(cfgs, sets: list[str], out: Path, jobs: int
                 ) -> tuple[float, float, list[float]]:
    """``--cli``: each seed's ``kgtest run SPEC --set run.seed=s --jobs jobs`` in turn."""
    each = []

    def go():
        for cfg in cfgs:
            t0 = time.perf_counter()
            _kgtest(["run", str(SPEC), "--out", str(out), "--jobs", str(jobs), *sets,
                     "--set", f"run.seed={cfg.run.seed}"])
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


@contextlib.contextmanager
def _pool(jobs: int, dirs):
    """A stage pool of ``jobs`` workers over run folders ``dirs`` (their locks held)."""
    from kgtest.stages import run_lock
    from kgtest.workers import stage_pool

    with contextlib.ExitStack() as stack:
        for d in dirs:
            stack.enter_context(run_lock(d))
        yield stack.enter_context(stage_pool(jobs, dirs))


def unlearning_only(cfgs, out: Path, jobs: int = 1) -> None:
    """``--unlearn-only``: the quickstart's whole ``[unlearn]`` section (every method, plain
    and deep, its tuning grid) on M trained originals, one seed at a time vs stacked
    (``jobs`` > 1: the variants, or the stacked methods, in that many worker processes)."""
    import shutil
    from dataclasses import replace

    from kgtest.multiseed import train_originals, unlearn_methods
    from kgtest.pipeline import corpus_stage, train_experiment, world_of, world_stage
    from kgtest.unlearn.api import RunContext, unlearn_variant
    from kgtest.unlearn.stacked_run import method_builds, unlearn_members

    dirs = [run_dir_of(out / "trained", c) for c in cfgs]
    worlds = [world_of(c) for c in cfgs]
    for c, d, w in zip(cfgs, dirs, worlds, strict=True):
        world_stage(c, d, w)
        corpus_stage(c, d, w)
    train_originals(cfgs, dirs, worlds, log=lambda m: None)
    ctxs = {}
    for side in ("separate", "stacked"):
        ctxs[side] = []
        for c, d, w in zip(cfgs, dirs, worlds, strict=True):
            shutil.copytree(d, out / side / d.name)
            ctxs[side].append(RunContext.of(c, train_experiment(c, out / side / d.name, w), w))

    def one_at_a_time():
        builds = [(ctx, method, deep) for ctx in ctxs["separate"]
                  for method in ctx.cfg.unlearn.methods for deep in ctx.cfg.unlearn.deep]
        if jobs == 1:
            for ctx, method, deep in builds:
                unlearn_variant(ctx, ctx.cfg.unlearn, method, deep=deep)
            return
        with _pool(jobs, [c.run_dir for c in ctxs["separate"]]) as pool:
            for f in [pool.submit(unlearn_variant, replace(ctx, threads=1), ctx.cfg.unlearn,
                                  method, deep=deep) for ctx, method, deep in builds]:
                f.result()

    def stacked():
        if jobs == 1:
            return unlearn_members(ctxs["stacked"], log=_stamped)
        sdirs = [c.run_dir for c in ctxs["stacked"]]
        with _pool(jobs, sdirs) as pool:
            for f in [pool.submit(unlearn_methods, cfgs, sdirs, worlds, only=b)
                      for b in method_builds(cfgs)]:
                f.result()

    wall_sep, cpu_sep = _timed(one_at_a_time)
    wall_st, cpu_st = _timed(stacked)
    same = total = 0
    for a, b in zip(ctxs["separate"], ctxs["stacked"], strict=True):
        for stage in sorted(a.run_dir.glob("unlearn-*")):
            ra, rb = (json.loads((d / stage.name / "unlearn.json").read_text())
                      for d in (a.run_dir, b.run_dir))
            same += (ra["lr"], ra["epochs"]) == (rb["lr"], rb["epochs"])
            total += 1
    RATIOS["seeds: stacked vs separate unlearning (CPU)"] = cpu_sep / cpu_st
    print(f"== unlearning only: {cfgs[0].unlearn.methods} x deep {cfgs[0].unlearn.deep}, "
          f"grid {cfgs[0].unlearn.tune_lrs} x {cfgs[0].unlearn.tune_epochs} epochs, "
          f"{len(cfgs)} seeds, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, --jobs {jobs} ==")
    print(f"{'side':<24}{'wall s':>9}{'CPU s':>9}")
    print(f"{'one seed at a time':<24}{wall_sep:>9.1f}{cpu_sep:>9.1f}")
    print(f"{'stacked':<24}{wall_st:>9.1f}{cpu_st:>9.1f}")
    print(f"speed-up {wall_sep / wall_st:.2f}x wall, {cpu_sep / cpu_st:.2f}x CPU; the same "
          f"chosen grid point in {same} of {total} stages")


def _without_records(runs: Path, cfgs, into: Path) -> None:
    """Copy the run folders with every stage but the records stage (and its outputs)."""
    import shutil

    from kgtest.pipeline import drop_records

    for cfg in cfgs:
        run = run_dir_of(into, cfg)
        shutil.copytree(run_dir_of(runs, cfg), run)
        drop_records(run)


def probes_only(cfgs, out: Path) -> None:
    """``--probes-only``: the M seeds trained (stacked), then their probes and reports
    timed one seed after another (each model alone) and side by side (greedy decoding
    stacked across the seeds, :mod:`kgtest.stacked_probes`), one process, every other
    stage reused; and the largest difference between the two sides' records."""
    run_seeds(cfgs, out / "trained", log=_stamped, stack_probes=False)
    times = {}
    for name, stack in (("one seed after another", False), ("side by side", True)):
        _without_records(out / "trained", cfgs, out / name.replace(" ", "_"))
        times[name] = _timed(lambda s=stack, n=name: run_seeds(
            cfgs, out / n.replace(" ", "_"), log=lambda m: None, stack_probes=s))
    a, b = (times[k] for k in times)
    diff = compare(cfgs, out / "one_seed_after_another", out / "side_by_side")
    RATIOS["seeds: probes side by side vs one seed after another (wall)"] = a[0] / b[0]
    print(f"== probes and reports of {len(cfgs)} seeds ({', '.join(cfgs[0].probes.probes)}), "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs ==")
    print(f"{'probes':<24}{'wall s':>9}{'CPU s':>9}")
    for k, (wall, cpu) in times.items():
        print(f"{k:<24}{wall:>9.1f}{cpu:>9.1f}")
    print(f"speed-up {a[0] / b[0]:.2f}x wall; records: largest |score| difference "
          f"{diff['score']:.2e}; {diff['flips']} of {diff['rows']} records differ in another "
          f"field")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--small", action="store_true", help="the cut quickstart (see above)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="worker processes on both sides (kgtest run --jobs; default 1)")
    ap.add_argument("--cli", action="store_true",
                    help="run each side as kgtest commands in fresh processes (M x `kgtest "
                         "run --set run.seed=s`, one `kgtest run --seeds M`): each "
                         "process's start-up counts, as for a user")
    ap.add_argument("--out", help="folder for the runs (default: a temporary one)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                    help="train.device and unlearn.device of every run (default auto)")
    ap.add_argument("--dry-run", action="store_true",
                    help="--small with 20 training steps and 2 seeds: checks that both "
                         "sides run and compare (benchmarks/gpu_check.py --dry-run)")
    ap.add_argument("--unlearn-only", action="store_true",
                    help="time the unlearning stages alone (the quickstart's [unlearn], "
                         "with --small's model and training)")
    ap.add_argument("--probes-only", action="store_true",
                    help="time the probes and reports alone, one seed after another vs "
                         "side by side (--small's training, the quickstart's probes)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.dry_run:
        args.small, args.seeds = True, min(args.seeds, 2)
    small = SMALL[:4] if args.unlearn_only else SMALL  # the model and training of --small
    if args.probes_only:  # --small's model, training and unlearning; every probe
        args.small, small = True, [o for o in SMALL if not o.startswith("probes.probes")]
    overrides = [*(small if args.small else []),
                 *(DRY if args.dry_run else []), f"train.threads={args.threads}",
                 f"train.device={args.device}", f"unlearn.device={args.device}",
                 "train.progress=false", "unlearn.progress=false"]
    cfgs = seed_configs(SPEC, overrides, args.seeds)
    load_experiment(SPEC, overrides)  # bad overrides fail before any work
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_seeds-"))
    if args.unlearn_only:
        unlearning_only(cfgs, out, args.jobs)
        return 0
    if args.probes_only:
        probes_only(cfgs, out)
        return 0
    if args.cli:  # each side as the kgtest commands a user types, each a fresh process
        sets = [a for o in overrides for a in ("--set", o)]
        wall_sep, cpu_sep, each = separate_cli(cfgs, sets, out / "separate", args.jobs)
        wall_st, cpu_st = _timed(lambda: _kgtest(
            ["run", str(SPEC), "--out", str(out / "stacked"), "--jobs", str(args.jobs),
             "--seeds", str(args.seeds), *sets]))
    else:
        wall_sep, cpu_sep, each = separate(cfgs, out / "separate", args.jobs)
        wall_st, cpu_st = _timed(lambda: run_seeds(cfgs, out / "stacked", log=_stamped,
                                                   jobs=args.jobs))
    diff = compare(cfgs, out / "separate", out / "stacked")
    one = sum(each) / len(each)
    RATIOS["seeds: stacked vs separate runs (wall)"] = wall_sep / wall_st
    print(f"== {args.seeds} seeds of the {'small ' if args.small else ''}quickstart, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.threads} thread(s), --jobs {args.jobs} on both sides"
          f"{', kgtest commands in fresh processes' if args.cli else ', in this process'} ==")
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
