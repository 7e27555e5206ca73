"""The ``kgtest`` command line: one entry point, one subcommand per job.

Bad input (a malformed file, an unknown spec key, a target not in the closure) prints one
line, ``kgtest: error: <where>: <what>``, and exits with status 2; never a traceback.
Heavy imports happen inside each command so ``kgtest --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from kgtest.cli_world import (
    add_dead_rules,
    cmd_world_build,
    cmd_world_closure,
    cmd_world_deletion_set,
)
from kgtest.errors import InputError
from kgtest.interop.cli import add_commands as add_interop_commands

QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.toml"

EXAMPLES = {
    "world build": "kgtest world build generators/family.toml --out runs/family",
    "world closure": "kgtest world closure --facts kb.tsv --rules rules.dl --out closure.tsv",
    "world deletion-set": ('kgtest world deletion-set --facts kb.tsv --rules rules.dl '
                           '--fixed gender.tsv --target "ann husband bob" --count 3'),
    "corpus build": "kgtest corpus build experiments/quickstart.toml --out runs/corpus",
    "train": "kgtest train experiments/quickstart.toml --out runs",
    "demo": "kgtest demo --out runs/demo",
    "unlearn": "kgtest unlearn runs/quickstart-seed0 --method NPO --deep --set beta=0.2",
    "run": "kgtest run experiments/quickstart.toml --out runs --set run.seed=1",
    "report": "kgtest report runs/quickstart-seed0 runs/quickstart-seed1 --out runs/report",
    "sweep": "kgtest sweep experiments/sweep.toml --backend local --jobs 2 --out runs/sweep",
    "pack": "kgtest pack runs/framing --out experiments/results/framing",
}


def _parser_for(sub, name: str, help_: str, key: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help_,
        description=help_,
        epilog=f"example:\n  {EXAMPLES[key]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``kgtest`` parser: one small function below adds each subcommand."""
    p = argparse.ArgumentParser(
        prog="kgtest",
        description="kgtest: does unlearning a fact survive reasoning? Worlds, corpora, "
                    "models, unlearning and re-derivation probes.",
        epilog="examples:\n" + textwrap.indent("\n".join(EXAMPLES.values()), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"kgtest {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    world = sub.add_parser("world", help="build worlds, closures and deletion sets",
                           description="Symbolic ground truth: worlds, closures, deletion sets.")
    wsub = world.add_subparsers(dest="world_command", metavar="WORLD_COMMAND")
    wsub.required = True
    for add in (_add_world_build, _add_world_closure, _add_world_deletion_set):
        add(wsub)
    corpus = sub.add_parser("corpus", help="render a world into training documents",
                            description="Render a world into a corpus (JSONL) with splits.")
    csub = corpus.add_subparsers(dest="corpus_command", metavar="CORPUS_COMMAND")
    csub.required = True
    _add_corpus_build(csub)
    for add in (_add_train, _add_unlearn, _add_run, _add_sweep, _add_report, _add_pack,
                _add_demo):
        add(sub)
    add_interop_commands(sub)  # export lm-eval, export forget-retain, probe
    return p


def _add_world_build(wsub) -> None:
    b = _parser_for(wsub, "build", "sample a world from a spec and write it out", "world build")
    b.add_argument("spec", help="world spec (TOML), e.g. generators/family.toml")
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    _add_set(b)
    _add_json(b)
    b.set_defaults(func=cmd_world_build)


def _add_world_closure(wsub) -> None:
    c = _parser_for(wsub, "closure", "close your own facts under Datalog rules", "world closure")
    c.add_argument("--facts", required=True, help="TSV: subject<TAB>relation<TAB>object")
    c.add_argument("--rules", required=True, help="Datalog rules file (.dl)")
    c.add_argument("--out", help="output TSV (default: stdout)")
    c.add_argument("--header", action="store_true", help="write a header line")
    c.add_argument("--explain", action="store_true",
                   help="add columns: kind (base/derived), proof_count (one-step "
                        "derivations of the fact), depth, derivations (JSON)")
    add_dead_rules(c)
    c.set_defaults(func=cmd_world_closure)


def _add_world_deletion_set(wsub) -> None:
    d = _parser_for(wsub, "deletion-set", "minimal sets whose deletion makes a target "
                    "underivable (deep unlearning)", "world deletion-set")
    d.add_argument("--facts", required=True,
                   help="the whole KB (what the model knows), TSV; base and derived facts")
    d.add_argument("--rules", required=True, help="Datalog rules file (.dl)")
    d.add_argument("--fixed", help="TSV of fixed facts (attributes): used, never deleted")
    d.add_argument("--target", required=True,
                   help='the fact to delete: "subject relation object"; tab-separated or a '
                        'JSON list ["s", "r", "o"] when a name has spaces')
    d.add_argument("--count", type=int, default=1, help="number of distinct sets to print")
    d.add_argument("--restarts", type=int, default=100, help="randomised restarts")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--json", action="store_true", help="print one JSON list of sets")
    add_dead_rules(d)
    d.set_defaults(func=cmd_world_deletion_set)


def _add_corpus_build(csub) -> None:
    cb = _parser_for(csub, "build", "world -> closure -> split -> corpus (JSONL) from an "
                     "experiment spec", "corpus build")
    cb.add_argument("spec", help="experiment spec (TOML) with [world], [split], [corpus]")
    cb.add_argument("--out", required=True, help="output folder")
    _add_set(cb)
    _add_json(cb)
    cb.set_defaults(func=cmd_corpus_build)


def _add_train(sub) -> None:
    t = _parser_for(sub, "train", "world -> corpus -> trained Hugging Face model", "train")
    t.add_argument("spec", help="experiment spec (TOML)")
    t.add_argument("--out", default="runs", help="runs folder (default: runs)")
    t.add_argument("--ensemble", type=int, metavar="M", default=0,
                   help="train M models (seeds run.seed..run.seed+M-1) together in one "
                        "process (stacked weights); each saved as an HF checkpoint")
    _add_set(t)
    _add_json(t)
    t.set_defaults(func=cmd_train)


def _add_unlearn(sub) -> None:
    u = _parser_for(sub, "unlearn", "unlearn a trained run's forget targets with one method "
                    "(tuned on the validation targets)", "unlearn")
    u.add_argument("run_dir", help="a run folder made by `kgtest train` or `kgtest run`")
    u.add_argument("--method", required=True, help="a registered unlearning method, e.g. "
                   "NPO (an unknown name lists them: kgtest.unlearn.METHODS)")
    u.add_argument("--deep", action="store_true",
                   help="also forget a minimal deletion set per target")
    _add_set(u)
    _add_json(u)
    u.set_defaults(func=cmd_unlearn)


def _add_run(sub) -> None:
    r = _parser_for(sub, "run", "the whole experiment: world, corpus, training, controls, "
                    "unlearning, probes, report (finished stages are reused)", "run")
    r.add_argument("spec", help="experiment spec (TOML)")
    r.add_argument("--out", default="runs", help="runs folder (default: runs)")
    _add_jobs(r, 1)
    r.add_argument("--seeds", type=int, metavar="M", default=0,
                   help="run seeds run.seed..run.seed+M-1 in one process, the original "
                        "models trained stacked; writes the M run folders M separate runs "
                        "would (M > 1 with --jobs N: N processes at once, this one and N-1 "
                        "workers)")
    r.add_argument("--no-stack-probes", dest="stack_probes", action="store_false",
                   help="with --seeds: probe each seed after another, each model alone "
                        "(the same records; less memory: one seed's probe stages at a time; "
                        "--jobs N: one task per seed)")
    _add_set(r)
    _add_json(r)
    r.set_defaults(func=cmd_run)


def _add_sweep(sub) -> None:
    sw = _parser_for(sub, "sweep", "run a sweep spec (an experiment spec plus [sweep] axes) "
                     "on a local process pool, Ray or Slurm; finished runs are skipped, "
                     "failed and missing ones run", "sweep")
    sw.add_argument("spec", help="sweep spec (TOML): an experiment spec with a [sweep] table")
    sw.add_argument("--backend", choices=["local", "ray", "slurm"], default="local",
                    help="local process pool (default), Ray tasks, or one Slurm job array")
    sw.add_argument("--jobs", type=int, help="runs at once: local workers (default: CPU "
                    "cores), Ray tasks in flight, or the Slurm array parallelism")
    sw.add_argument("--out", help="sweep folder (default: runs/<spec file stem>)")
    sw.add_argument("--stack-seeds", action="store_true",
                    help="local: run each cell's seeds as one `kgtest run --seeds M --jobs "
                    "JOBS` (originals, controls, unlearning stacked; same folders)")
    sw.add_argument("--address", help="ray: cluster address, e.g. auto or ray://head:10001 "
                    "(default: start a local cluster)")
    sw.add_argument("--cpus-per-run", type=float, default=1,
                    help="ray: num_cpus per run; slurm: --cpus-per-task (default 1)")
    sw.add_argument("--gpus-per-run", type=float, default=0,
                    help="ray: num_gpus per run, fractions allowed; slurm: --gpus-per-node")
    sw.add_argument("--partition", help="slurm: partition")
    sw.add_argument("--time", dest="time_min", type=int, default=60,
                    help="slurm: time limit per run in minutes (default 60)")
    _add_set(sw)
    sw.set_defaults(func=cmd_sweep)


def _add_report(sub) -> None:
    rp = _parser_for(sub, "report", "re-aggregate runs: summary.md, summary.json, plots",
                     "report")
    rp.add_argument("run_dirs", nargs="+",
                    help="run folders with records.jsonl, or one `kgtest sweep` folder")
    rp.add_argument("--out", help="output folder (default: the first run folder)")
    rp.add_argument("--control", default="filter", help="control for excess re-derivation "
                    "(one the runs built: filter, ignorance or never_trained)")
    _add_json(rp)
    rp.set_defaults(func=cmd_report)


def _add_pack(sub) -> None:
    pk = _parser_for(sub, "pack", "copy finished runs' records (gzipped) and small files, no "
                     "weights, into a folder `kgtest report` reads back", "pack")
    pk.add_argument("run_dirs", nargs="+", help="run folders, or one `kgtest sweep` folder")
    pk.add_argument("--out", required=True, help="packed folder (replaced if it exists)")
    _add_json(pk)
    pk.set_defaults(func=cmd_pack)


def _add_demo(sub) -> None:
    dm = _parser_for(sub, "demo", "run the quickstart experiment and describe it", "demo")
    dm.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    _add_jobs(dm, None)
    _add_set(dm)
    dm.set_defaults(func=cmd_demo)


def _add_jobs(p: argparse.ArgumentParser, default: int | None) -> None:
    p.add_argument("--jobs", type=int, default=default,
                   help="worker processes (one torch thread each) for the controls, "
                   "unlearning and probes once the original is trained; the records are "
                   "those of a serial run at one thread (default: "
                   + ("1, serial)" if default else "the CPU cores, at most 8)"))


def _jobs(args) -> int:
    """``--jobs``, checked (default: the CPU cores this process may use, at most 8)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    jobs = args.jobs if args.jobs is not None else min(8, cores or 1)
    if not 1 <= jobs <= 64:
        raise InputError(f"--jobs: must be between 1 and 64, got {jobs}")
    return jobs


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print the result as one JSON object instead of text")


def _emit_json(data) -> int:
    print(json.dumps(data, default=str))
    return 0


def _quiet_transformers() -> None:
    """No "Loading weights" / "Writing model shards" bars from transformers (read when
    transformers is imported, which kgtest's commands do lazily, after this)."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _version() -> str:
    from kgtest import __version__

    return __version__


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a spec key, e.g. train.steps=100")


# --- commands (the world ones: kgtest.cli_world) -----------------------------------------


def cmd_corpus_build(args) -> int:
    from kgtest.corpus.io import build_corpus, stage_seed
    from kgtest.experiment import load_experiment
    from kgtest.worlds.samplers import sample_world

    cfg = load_experiment(args.spec, args.overrides)
    world = sample_world(cfg.world, seed=stage_seed(cfg.run.seed, "world"))
    corpus, split = build_corpus(world, cfg.split, cfg.corpus, args.out, seed=cfg.run.seed,
                                 where=cfg.source)
    if args.json:
        return _emit_json({"out": args.out, "train_documents": len(corpus.train),
                           "by_kind": {k: len(v) for k, v in corpus.by_kind("train").items()},
                           "split": split.counts()})
    counts = ", ".join(f"{k} {len(v)}" for k, v in sorted(corpus.by_kind("train").items()))
    print(f"wrote {args.out}/: {len(corpus.train)} training documents ({counts}); "
          f"{len(split.forget)} forget targets, {len(split.held_out)} held-out facts")
    return 0


def _run_dir(out: str, cfg) -> str:
    return str(Path(out) / f"{cfg.run.name}-seed{cfg.run.seed}")


def cmd_train(args) -> int:
    from kgtest.distributed import dist_info
    from kgtest.experiment import load_experiment
    from kgtest.pipeline import train_experiment

    if not 0 <= args.ensemble <= 1024:
        raise InputError(f"--ensemble: must be between 1 and 1024 models, got {args.ensemble}")
    cfg = load_experiment(args.spec, args.overrides)
    if args.ensemble:
        from kgtest.pipeline import ensemble_stage

        stage = ensemble_stage(cfg, _run_dir(args.out, cfg), args.ensemble)
        m = json.loads((stage / "metrics.json").read_text())
        for i, (steps, loss, met) in enumerate(zip(m["steps"], m["final_loss"], m["metrics"],
                                                  strict=True)):
            accs = ", ".join(f"{k} {v:.3f}" for k, v in met.items())
            print(f"member {i}: {steps} steps, final loss {loss:.3f}; {accs}")
        print(f"{args.ensemble} models trained together in {m['seconds']:.0f} s: {stage}/")
        return 0
    run = train_experiment(cfg, _run_dir(args.out, cfg))
    if dist_info().is_main and args.json:
        return _emit_json({"model": str(run.model_dir), **run.metrics})
    if dist_info().is_main:  # under torchrun, one summary
        print(_describe_training(run))
    return 0


def _describe_training(run) -> str:
    m = run.metrics
    lines = [f"model: {run.model_dir}",
             f"  {m['steps']} steps in {m['seconds']:.0f} s, final loss {m['final_loss']:.3f}"
             + (" (stopped early: targets met)" if m["stopped_early"] else "")]
    if "acc_direct" in m:
        lines.append(f"  direct accuracy on stated facts: {m['acc_direct']:.3f} "
                     f"(n={m['n_eval_direct']})")
    if "acc_cot" in m:
        lines.append(f"  CoT accuracy on held-out derived facts: {m['acc_cot']:.3f} "
                     f"(n={m['n_eval_cot']})")
    return "\n".join(lines)


def cmd_unlearn(args) -> int:
    from kgtest.unlearn.api import unlearn_run

    if not Path(args.run_dir).is_dir():
        raise InputError(f"{args.run_dir}: no such run folder")
    stage = unlearn_run(args.run_dir, None, args.method, deep=args.deep,
                        overrides=args.overrides)
    info = json.loads((stage / "unlearn.json").read_text())
    if args.json:
        return _emit_json({"stage": str(stage), **info})
    b, a = info["before"], info["after"]
    print(f"{info['method']}{' (deep)' if info['deep'] else ''}: lr {info['lr']:g}, "
          f"{info['steps']} steps; forget direct accuracy {b['forget_acc']:.2f} -> "
          f"{a['forget_acc']:.2f}, retain {b['retain_acc']:.2f} -> {a['retain_acc']:.2f}")
    print(f"model and unlearn.json: {stage}")
    return 0


def _command_line(argv) -> str:
    import shlex

    return "kgtest " + " ".join(shlex.quote(a) for a in argv)


def cmd_run(args) -> int:
    from kgtest.experiment import load_experiment
    from kgtest.pipeline import run_experiment

    if args.seeds:
        return _run_seeds(args)
    if not args.stack_probes:
        raise InputError("--no-stack-probes: only with --seeds M")
    cfg = load_experiment(args.spec, args.overrides)
    summary = run_experiment(cfg, _run_dir(args.out, cfg), command=_command_line(args.argv),
                             log=(lambda m: print(m, file=sys.stderr)) if args.json else print,
                             jobs=_jobs(args))
    if args.json:
        return _summary_json(summary)
    print(summary.read_text())
    print(f"report: {summary} (plots in {summary.parent / 'plots'})")
    return 0


def _run_seeds(args) -> int:
    from kgtest.multiseed import run_seeds, seed_configs

    cfgs = seed_configs(args.spec, args.overrides, args.seeds)
    summaries = run_seeds(cfgs, args.out, command=_command_line(args.argv),
                          log=(lambda m: print(m, file=sys.stderr)) if args.json else print,
                          jobs=_jobs(args), stack_probes=args.stack_probes)
    if args.json:
        return _emit_json({"summaries": [str(s) for s in summaries]})
    for s in summaries:
        print(f"report: {s}")
    return 0


def cmd_sweep(args) -> int:
    from kgtest.sweep import run_sweep, sweep_report

    out = Path(args.out) if args.out else Path("runs") / Path(args.spec).stem
    _check_sweep_args(args)
    options = {"stack_seeds": True} if args.stack_seeds else {}
    if args.stack_seeds and args.backend != "local":
        raise InputError(f"--stack-seeds: needs --backend local, got {args.backend}")
    if args.backend == "ray":
        options = {"address": args.address, "cpus_per_run": args.cpus_per_run,
                   "gpus_per_run": args.gpus_per_run}
    elif args.backend == "slurm":
        options = {"partition": args.partition, "time_min": args.time_min,
                   "cpus_per_task": max(1, round(args.cpus_per_run)),
                   "gpus_per_node": round(args.gpus_per_run)}
    result = run_sweep(args.spec, out, backend=args.backend, jobs=args.jobs,
                       overrides=args.overrides, **options)
    counts = result["counts"]
    if counts.get("ok", 0) + counts.get("done", 0):
        print(f"report: {sweep_report(out)}")
    return 1 if counts.get("failed") else 0


def _check_sweep_args(args) -> None:
    """Refuse sweep options no backend can honour (before anything is launched)."""
    import math

    from kgtest.config import max_threads

    if args.jobs is not None and not 1 <= args.jobs <= 16 * max_threads():
        raise InputError(f"--jobs: must be between 1 and {16 * max_threads()}, got {args.jobs}")
    if not (math.isfinite(args.cpus_per_run) and args.cpus_per_run > 0):
        raise InputError(f"--cpus-per-run: must be a number > 0, got {args.cpus_per_run}")
    if not (math.isfinite(args.gpus_per_run) and args.gpus_per_run >= 0):
        raise InputError(f"--gpus-per-run: must be a number >= 0, got {args.gpus_per_run}")
    if args.time_min < 1:
        raise InputError(f"--time: must be >= 1 minute, got {args.time_min}")


def cmd_report(args) -> int:
    from kgtest.report import report
    from kgtest.unlearn.config import CONTROLS

    if args.control not in CONTROLS:
        raise InputError(f"--control: unknown control {args.control!r} "
                         f"(known: {', '.join(CONTROLS)})")

    if len(args.run_dirs) == 1 and (Path(args.run_dirs[0]) / "sweep.json").exists():
        from kgtest.sweep import sweep_report

        summary = sweep_report(args.run_dirs[0], args.out, control=args.control)
        if args.json:
            return _summary_json(summary)
        print(summary.read_text())
        print(f"report: {summary}")
        return 0

    from kgtest.records import records_path

    for d in args.run_dirs:
        if records_path(d) is None:
            raise InputError(f"{d}: no records.jsonl (not a finished `kgtest run` folder)")
    summary = report(args.run_dirs, args.out, control=args.control)
    if args.json:
        return _summary_json(summary)
    print(summary.read_text())
    print(f"report: {summary}")
    return 0


def cmd_pack(args) -> int:
    from kgtest.pack import pack

    out = pack(args.run_dirs, args.out)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    if args.json:
        return _emit_json({"out": str(out), "files": len(files), "bytes": size})
    print(f"packed {len(files)} files ({size / 1024:.0f} KiB) into {out}/ "
          f"(kgtest report {out} regenerates the summary)")
    return 0


def _summary_json(summary: Path) -> int:
    rows = json.loads((summary.parent / "summary.json").read_text())
    return _emit_json({"summary": str(summary), "rows": rows})


def cmd_demo(args) -> int:
    from kgtest.experiment import load_experiment
    from kgtest.pipeline import run_experiment, world_stage

    spec = QUICKSTART
    if not spec.exists():
        raise InputError(f"{spec}: the quickstart spec is missing (run from a kgtest clone)")
    cfg = load_experiment(spec, args.overrides)
    jobs = _jobs(args)
    run_dir = Path(args.out)
    print(f"kgtest demo: the quickstart experiment ({spec.relative_to(spec.parents[1])}), "
          f"run folder {run_dir}/", flush=True)
    world_dir = world_stage(cfg, run_dir)
    print((world_dir / "summary.txt").read_text(), flush=True)
    command = "kgtest demo" + "".join(f" --set {o}" for o in args.overrides)
    summary = run_experiment(cfg, run_dir, command=command, jobs=jobs)
    print(summary.read_text())
    print(f"report: {summary}\nplots:  {summary.parent / 'plots'}/\n"
          f"world drawing: {world_dir / 'graph.png'}")
    return 0


# --- entry point -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_transformers()
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        print(f"kgtest: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kgtest: interrupted (finished stages are kept; re-run to resume)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as err:  # an output path that is a file, read-only, too long, disk full...
        print(f"kgtest: error: {_os_error(err)}", file=sys.stderr)
        return 2


def _os_error(err: OSError) -> str:
    """``path: reason`` for a failed file operation, short enough for one line."""
    def short(p) -> str:
        text = str(p)
        return text if len(text) <= 120 else text[:100] + "..." + text[-17:]

    what = err.strerror or type(err).__name__
    if err.filename is None:
        return f"cannot read or write a file ({' '.join(str(err).split())[:200]})"
    where = short(err.filename) + (f" -> {short(err.filename2)}" if err.filename2 else "")
    return f"{where}: cannot read or write ({what})"


if __name__ == "__main__":
    sys.exit(main())

