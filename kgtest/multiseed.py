"""M seeds of one experiment in one process: ``kgtest run SPEC --seeds M``.

:func:`run_seeds` writes the M ordinary run folders that M separate runs
(``kgtest run SPEC --set run.seed=s`` for ``s = run.seed, ..., run.seed + M - 1``) would
write, with the same stage folders and keys, so caching, ``kgtest report``, ``kgtest pack``
and sweeps see no difference, and a later single-seed run reuses them. What is shared
is the work, not the results:

- **stacked**: the original models of all seeds train as one stacked model
  (:func:`kgtest.ensemble.train_ensemble`, each member on its own seed's corpus,
  tokenizer, initialisation and batch order), then each member is written as its
  seed's ordinary ``model-<key>`` stage; then the retrained controls (``filter``,
  ``ignorance``) of all seeds, likewise (``control-<kind>-<key>``); then each
  unlearning method, tuning grid included, applied to the seeds' originals as one
  stacked model, each member choosing its own grid point
  (:mod:`kgtest.unlearn.stacked_run`; ``unlearn-<method>[-deep]-<key>``);
- **one seed at a time** (the ordinary code, inside the same process, or, with
  ``jobs`` > 1, in this process and ``jobs - 1`` workers): world, corpus,
  ``never_trained``, RMU (its loss reads one block's activations: logged), probes and
  the report.

Members are the separate runs up to floating-point summation order (batched matmuls):
tests/test_multiseed.py compares the folders and records of a stacked run with separate
runs. Seeds whose training cannot be stacked (an in-context stream, ``model.init_from``,
dropout, another architecture) or whose training settings differ (a seed without CoT
questions drops ``cot`` from ``stop_at``) train in groups of equal settings; a group of one
trains as a separate run would.

Examples
--------
>>> cfgs = seed_configs("experiments/quickstart.toml", ["run.seed=3"], 2)
>>> [c.run.seed for c in cfgs], cfgs[1].overrides
([3, 4], ('run.seed=3', 'run.seed=4'))
>>> [run_dir_of("runs", c).name for c in cfgs]
['quickstart-seed3', 'quickstart-seed4']
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from kgtest.checkpoint import LOG
from kgtest.errors import InputError
from kgtest.experiment import ExperimentConfig, load_experiment
from kgtest.stages import finish_stage, prepare_partial, run_lock, stage_path
from kgtest.symbolic.facts import atomic_write_text

__all__ = ["seed_configs", "run_dir_of", "run_seeds", "train_originals", "train_controls",
           "train_stacked", "unlearn_methods", "Member", "split_log", "original_members",
           "control_members", "stacked_groups"]

MAX_SEEDS = 256


def seed_configs(spec: str | os.PathLike, overrides: Sequence[str], n: int
                 ) -> list[ExperimentConfig]:
    """The configs of ``n`` seeds ``run.seed, run.seed + 1, ...``: each exactly what
    ``kgtest run SPEC --set ... --set run.seed=s`` loads."""
    if not 1 <= n <= MAX_SEEDS:
        raise InputError(f"--seeds: must be between 1 and {MAX_SEEDS}, got {n}")
    first = load_experiment(spec, overrides).run.seed
    return [load_experiment(spec, [*overrides, f"run.seed={first + i}"]) for i in range(n)]


def run_dir_of(out: str | os.PathLike, cfg: ExperimentConfig) -> Path:
    """``OUT/<run.name>-seed<run.seed>``: where ``kgtest run --out OUT`` puts a run."""
    return Path(out) / f"{cfg.run.name}-seed{cfg.run.seed}"


def run_seeds(cfgs: Sequence[ExperimentConfig], out: str | os.PathLike, *,
              command: str = "", log=print, jobs: int = 1,
              dirs: Sequence[str | os.PathLike] | None = None,
              stack_probes: bool = True) -> list[Path]:
    """Run every seed's experiment, the originals, the retrained controls and the
    unlearning methods stacked; returns the summaries.

    The M run folders (``dirs``, default :func:`run_dir_of` each config in ``out``) are
    locked for the whole call. Finished stages are reused, as by
    :func:`kgtest.pipeline.run_experiment`, which then runs each seed's remaining stages
    (unstacked variants, probes, report), the seeds side by side with their probes'
    forward passes stacked (:func:`kgtest.stacked_probes.side_by_side`; ``stack_probes``
    False: one seed after another, each model alone).
    """
    from kgtest.pipeline import corpus_stage, run_experiment, world_of, world_stage

    dirs = [Path(d) for d in dirs] if dirs is not None else [run_dir_of(out, c) for c in cfgs]
    if len(dirs) != len(cfgs):
        raise InputError(f"--seeds: {len(dirs)} run folders for {len(cfgs)} seeds")
    if len(set(dirs)) != len(dirs):
        raise InputError("--seeds: two seeds share a run folder")
    with contextlib.ExitStack() as stack:
        for d in dirs:
            stack.enter_context(run_lock(d, command=command or None))
        if jobs > 1 and len(cfgs) > 1:  # one seed: kgtest run --jobs N's own pool below
            return _run_pooled(cfgs, dirs, command=command, log=log, jobs=jobs,
                               stack_probes=stack_probes)
        log(f"[seeds] world and corpus of {len(cfgs)} seeds -> {Path(out)}")
        worlds = [world_of(c) for c in cfgs]
        for c, d, w in zip(cfgs, dirs, worlds, strict=True):
            world_stage(c, d, w)
            corpus_stage(c, d, w)
        train_originals(cfgs, dirs, worlds, log=log)
        train_controls(cfgs, dirs, worlds, log=log)
        unlearn_methods(cfgs, dirs, worlds, log=log)
        if not stack_probes or len(cfgs) == 1:  # one seed: nothing to stack, its own pool
            return [run_experiment(c, d, command=command, log=log, jobs=jobs)
                    for c, d in zip(cfgs, dirs, strict=True)]
        return _probe_side_by_side(cfgs, dirs, command, log)


def _probe_side_by_side(cfgs, dirs, command: str, log) -> list[Path]:
    """Each seed's :func:`~kgtest.pipeline.run_experiment` (one thread of work), the seeds
    side by side: their probes' forward passes stacked (:mod:`kgtest.stacked_probes`)."""
    from kgtest.pipeline import run_experiment
    from kgtest.stacked_probes import side_by_side

    def tagged(seed):  # the seeds' lines interleave
        return lambda msg: log(f"{msg} (seed {seed})") if msg.strip() else None

    return side_by_side([partial(run_experiment, c, d, command=command,
                                 log=tagged(c.run.seed) if log is not _quiet else log, jobs=1)
                         for c, d in zip(cfgs, dirs, strict=True)])


# --- the original models, stacked -----------------------------------------------------------


def _unstackable(cfg: ExperimentConfig, job) -> str | None:
    """Why this seed's training cannot join a stacked model (None: it can)."""
    if job.stream is not None:
        return "corpus.icl.per_step (a fresh document stream per step)"
    if cfg.model.init_from:
        return "model.init_from"
    if cfg.model.dropout:
        return "model.dropout > 0"
    if cfg.model.arch not in ("gpt2", "llama"):
        return f"model.arch {cfg.model.arch!r}"
    return None


@dataclass
class Member:
    """One seed's model to train in a stacked group, and where its stage goes."""

    run_dir: Path
    stage: str  # the stage folder's prefix: "model", "control-filter", ...
    key: str
    build: Callable  # build() -> its freshly initialised PreTrainedModel (built to train)
    tokenizer: object  # len(tokenizer): its embedding's rows (build_model's vocab_size)
    docs: list
    cfg: object  # its TrainConfig (cfg.seed: its batch order)
    eval_fn: object  # or None
    write: Callable  # write(tmp, stacked, TrainResult): the stage's files beside model/, log
    seed: int  # run.seed, for progress lines and metrics


def _groups(members: Sequence[Member]) -> list[list[Member]]:
    """Members that can train as one stacked model: equal settings, the batch seed aside."""
    groups: dict[str, list[Member]] = {}
    for m in members:
        groups.setdefault(repr(replace(m.cfg, seed=None)), []).append(m)
    return list(groups.values())


def train_stacked(members: Sequence[Member], what: str, log=print,
                  part: tuple[Sequence[tuple], Sequence[tuple]] | None = None) -> None:
    """Train every group of two or more members as one stacked model and write each
    member's stage (``model/``, its own ``train_log.jsonl``, then ``write``'s files).
    Hold the run folders' locks. Members left alone are left to the ordinary code.

    ``part``: ``(group, here)``, member ids (:func:`stacked_groups`): train only the
    members ``here`` of that group, padded as the whole group would pad them (the rest of
    the group trains in other processes; the same weights as one whole run).
    ``members`` must then hold the whole group, finished members included (another
    process may finish its part first).
    """
    if part is not None:
        group, here = ({tuple(x) for x in ids} for ids in part)
        group_members = [m for m in members if _id(m) in group]
        if len(group_members) != len(group):
            raise InputError(f"--seeds: {len(group) - len(group_members)} members of a "
                             f"stacked group were not found")
        _train_group([m for m in group_members if _id(m) in here], what, log,
                     shadows=[(i, m) for i, m in enumerate(group_members)
                              if _id(m) not in here])
        return
    for group in _groups(members):
        if len(group) > 1:
            _train_group(group, what, log)


def _id(m: Member) -> tuple[str, str, str]:
    return (str(m.run_dir), m.stage, m.key)


def stacked_groups(members: Sequence[Member]) -> list[list[tuple]]:
    """The stacked groups (two or more members) of ``members``, as lists of member ids
    ``(run folder, stage, key)``, for :func:`train_stacked`'s ``part``."""
    return [[_id(m) for m in g] for g in _groups(members) if len(g) > 1]


def _train_group(group: list[Member], what: str, log,
                 shadows: Sequence[tuple[int, Member]] = ()) -> None:
    """Train ``group`` stacked and write its stages; ``shadows``: ``(position, member)``
    of the whole group's members trained elsewhere (:class:`kgtest.ensemble.Shadow`)."""
    from kgtest.ensemble import MEMBER_DIR, Shadow, train_ensemble
    from kgtest.train import TrainResult

    seeds = [m.seed for m in group]
    log(f"[seeds] {what}: seeds {', '.join(map(str, seeds))} trained as one stacked model")
    whole = _whole_group(group, shadows)
    scratch = Path(tempfile.mkdtemp(prefix=".seeds.tmp-", dir=group[0].run_dir))
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        evals = [m.eval_fn for m in group]
        res = train_ensemble([m.build() for m in group], [m.tokenizer for m in group],
                             # torch seeded from the WHOLE group's first member, as one
                             # process training the whole group seeds it (bit-identity)
                             [m.docs for m in group],
                             replace(group[0].cfg, seed=whole[0].cfg.seed), scratch,
                             eval_fn=evals if any(evals) else None,
                             batch_seeds=[m.cfg.seed for m in group],
                             shadows=[Shadow(m.tokenizer, m.docs, m.cfg.seed,
                                             len(m.tokenizer), position)
                                      for position, m in shadows])
        logs = split_log(scratch / LOG, len(group), res.steps)
        for i, m in enumerate(group):
            tmp = prepare_partial(m.run_dir, m.stage, m.key)
            os.replace(scratch / MEMBER_DIR.format(i), tmp / "model")
            atomic_write_text(tmp / LOG, "".join(json.dumps(e) + "\n" for e in logs[i]))
            m.write(tmp, _stacked_info(whole, m, group if shadows else None),
                    TrainResult(steps=res.steps[i], final_loss=res.final_losses[i],
                                metrics=res.metrics[i], stopped_early=res.stopped_early[i],
                                tokens=res.tokens[i], seconds=res.seconds,
                                cpu_seconds=res.cpu_seconds, model_dir=tmp / "model"))
            finish_stage(m.run_dir, m.stage, m.key)
        log(f"[seeds] {what}: {len(group)} models trained together in "
            f"{time.perf_counter() - t0:.0f} s ({time.process_time() - c0:.0f} CPU s)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _whole_group(group: list[Member], shadows: Sequence[tuple[int, Member]]) -> list[Member]:
    """The whole stacked group in order: ``group``'s members in the positions ``shadows``
    (``(position, member)``) leave free."""
    n, taken = len(group) + len(shadows), dict(shadows)
    rest = iter(group)
    return [taken[i] if i in taken else next(rest) for i in range(n)]


def _stacked_info(whole: list[Member], m: Member, part: list[Member] | None) -> dict:
    """A stacked stage's ``stacked`` entry: the seeds of the group trained as one model,
    this member's position in it and, where the group was split over processes,
    the seeds of the part trained in this process."""
    info = {"seeds": [x.seed for x in whole],
            "member": next(i for i, x in enumerate(whole) if x is m)}
    if part is not None:
        info["part"] = [x.seed for x in part]
    return info


def train_originals(cfgs: Sequence[ExperimentConfig], dirs: Sequence[Path], worlds, *,
                    log=print, part: tuple | None = None) -> list[Path]:
    """Each seed's ``model-<key>`` stage, the unfinished ones trained as stacked models.

    Hold the run folders' locks (:func:`run_seeds` does). Returns the model stage folders.
    ``part``: train only that part of a stacked group (:func:`train_stacked`; returns
    nothing), for one of several processes.
    """
    from kgtest.pipeline import train_stage

    train_stacked(original_members(cfgs, dirs, worlds, log=log, finished=part is not None),
                  "original", log, part)
    if part is not None:
        return []
    return [train_stage(c, d, world=w)  # the rest, one at a time
            for c, d, w in zip(cfgs, dirs, worlds, strict=True)]


def original_members(cfgs: Sequence[ExperimentConfig], dirs: Sequence[Path], worlds, *,
                     log=print, finished: bool = False) -> list[Member]:
    """The seeds' unfinished original models that can train stacked (the corpus stages
    must be finished); ``finished``: the finished ones too."""
    from kgtest.distributed import dist_info
    from kgtest.pipeline import (
        MODEL_SECTIONS,
        corpus_stage,
        initial_model,
        train_job,
        write_model_stage,
    )

    members = []
    for c, d, w in zip(cfgs, dirs, worlds, strict=True):
        key = c.key(*MODEL_SECTIONS)
        if ((stage_path(d, "model", key) / ".done").exists() and not finished
                or dist_info().world_size > 1):
            continue  # finished, or torchrun (data parallelism: one seed at a time)
        job = train_job(c, corpus_stage(c, d, w), w, build=False)  # settings only
        why = _unstackable(c, job)
        if why:
            log(f"[seeds] seed {c.run.seed}: {why}: trained on its own")
            continue
        def write(tmp, stacked, result, c=c, job=job):
            write_model_stage(c, tmp, job, result, stacked=stacked)

        members.append(Member(d, "model", key, partial(initial_model, c, job.tokenizer),
                              job.tokenizer, job.docs, job.cfg, job.eval_fn, write,
                              c.run.seed))
    return members


def train_controls(cfgs: Sequence[ExperimentConfig], dirs: Sequence[Path], worlds, *,
                   log=print, part: tuple | None = None) -> None:
    """Each seed's retrained controls (``filter``, ``ignorance``) not yet finished, trained
    as stacked models (the originals must be finished; hold the run folders' locks).

    A control trains from the original's initialisation for the original's number of
    steps, so seeds whose originals stopped at different steps train in different groups.
    ``never_trained`` trains nothing and is left to the ordinary code. ``part``: train
    only that part of a stacked group (:func:`train_stacked`), for one of several processes.
    """
    train_stacked(control_members(cfgs, dirs, worlds, finished=part is not None),
                  "controls", log, part)


def control_members(cfgs: Sequence[ExperimentConfig], dirs: Sequence[Path], worlds, *,
                    finished: bool = False) -> list[Member]:
    """The seeds' unfinished retrained controls that can train stacked (the originals
    must be finished); ``finished``: the finished ones too."""
    from kgtest.model import build_model
    from kgtest.pipeline import stage_threads, train_experiment
    from kgtest.unlearn.api import RunContext, control_stage, control_training, write_control

    members = []
    for c, d, w in zip(cfgs, dirs, worlds, strict=True):
        ctx = RunContext.of(c, train_experiment(c, d, w, world_files=False), w,
                            threads=stage_threads(c))
        for kind in c.unlearn.controls:
            if kind == "never_trained":
                continue
            name, key, steps = control_stage(ctx, c.unlearn, kind)
            if (stage_path(d, name, key) / ".done").exists() and not finished:
                continue
            job = control_training(ctx, c.unlearn, kind, steps)
            if job.stream is not None:
                continue  # a fresh document stream per step: the ordinary code trains it

            def write(tmp, stacked, result, job=job):
                write_control(tmp, {**job.record, "stacked": stacked}, job.t0, result)

            members.append(Member(d, name, key, partial(build_model, job.model_cfg,
                                                         job.tokenizer, seed=job.init_seed),
                                  job.tokenizer, list(job.corpus.train),
                                  replace(job.train_cfg, stop_at={}), None, write, c.run.seed))
    return members


def unlearn_methods(cfgs: Sequence[ExperimentConfig], dirs: Sequence[Path], worlds, *,
                    log=print, only: tuple[str, bool] | None = None) -> None:
    """Each seed's unlearned variants not yet finished, every method applied to the
    seeds' originals as one stacked model (:mod:`kgtest.unlearn.stacked_run`; the
    originals must be finished; hold the run folders' locks). ``only``: one
    ``(method, deep)`` variant, for one of several processes."""
    from kgtest.unlearn.stacked_run import unlearn_members

    unlearn_members(_contexts(cfgs, dirs, worlds), log=log, only=only)


def _contexts(cfgs, dirs, worlds) -> list:
    """Each seed's RunContext (its finished original), at its stages' threads (not
    writing the world stage: with ``--jobs`` a worker may be drawing it meanwhile)."""
    from kgtest.pipeline import stage_threads, train_experiment
    from kgtest.unlearn.api import RunContext

    return [RunContext.of(c, train_experiment(c, d, w, world_files=False), w,
                          threads=stage_threads(c))
            for c, d, w in zip(cfgs, dirs, worlds, strict=True)]


def split_log(path: Path, n: int, steps: Sequence[int]) -> list[list[dict]]:
    """An ensemble's ``train_log.jsonl`` as each member's own log, in the format
    :func:`kgtest.train.train` writes (entries up to the member's last step).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "log.jsonl"
    >>> _ = p.write_text('{"step": 2, "loss": [1.0, 2.0], "active": 2, "lr": 0.1, '
    ...                  '"tokens": [5, 6], "elapsed_s": 0.1}\\n'
    ...                  '{"step": 2, "member": 1, "eval/direct": 0.5}\\n')
    >>> for entry in split_log(p, 2, [2, 2])[1]:
    ...     print(entry)
    {'step': 2, 'loss': 2.0, 'lr': 0.1, 'tokens': 6, 'elapsed_s': 0.1}
    {'step': 2, 'eval/direct': 0.5}
    """
    out: list[list[dict]] = [[] for _ in range(n)]
    for line in path.read_text().splitlines():
        e = json.loads(line)
        if "member" in e:
            m = e.pop("member")
            out[m].append(e)
            continue
        for m in range(n):
            if e["step"] <= steps[m]:
                out[m].append({"step": e["step"], "loss": e["loss"][m], "lr": e["lr"],
                               "tokens": e["tokens"][m], "elapsed_s": e["elapsed_s"]})
    return out


# --- jobs > 1: the seeds' independent work in this process and worker processes ------------


def _run_pooled(cfgs: Sequence[ExperimentConfig], dirs: Sequence[Path], *, command: str,
                log, jobs: int, stack_probes: bool = True) -> list[Path]:
    """:func:`run_seeds` on ``jobs`` processes, this one and ``jobs - 1`` workers, one torch
    thread each (:class:`kgtest.workers.WithParent`; the caller holds the run folders'
    locks; the workers share them).

    The same stages, stacked the same way, as with one process, so the same files.
    Every task is queued, first in first out, for whichever process is free (this one
    takes queued tasks while it waits, as one more worker: one worker fewer to start,
    none idle): the workers start while the parent writes the corpora; the world stages
    (closure files and a drawing, read by no stage before the probes) queue behind the
    originals' parts and fill whichever process finishes first; each stacked training
    group (the originals, then the controls) is split into up to ``jobs`` parts, each
    part padded as the whole group (:class:`kgtest.ensemble.Shadow`: the same
    weights); the control parts and the stacked unlearning methods run side by side; then
    each seed's unstacked variants (``never_trained``, RMU) build as one task per seed,
    ``jobs`` at a time; then ``jobs`` tasks each probe a part of the seeds side by side
    (greedy decoding stacked; scores per model: the records of one process) and write
    their reports, at one thread as ``kgtest run --jobs N`` would. ``stack_probes``
    False: one task per seed for all its remaining stages. Tasks are silent: one line
    per finished task here.
    """
    from kgtest.pipeline import MODEL_SECTIONS, corpus_stage, train_stage, world_of
    from kgtest.unlearn.stacked_run import method_builds
    from kgtest.workers import WithParent, stage_pool

    with stage_pool(jobs - 1, dirs) as workers, WithParent(workers, jobs - 1) as pool:
        _await = partial(_await_tasks, here=pool)
        log(f"[seeds] world and corpus of {len(cfgs)} seeds -> {Path(dirs[0]).parent} "
            f"(this process and {jobs - 1} worker{'s' * (jobs > 2)})")
        for _ in range(jobs - 1):  # the workers start (imports: seconds) meanwhile
            pool.submit(_warm)
        worlds = [world_of(c) for c in cfgs]
        for c, d, w in zip(cfgs, dirs, worlds, strict=True):
            corpus_stage(c, d, w)
        groups = stacked_groups(original_members(cfgs, dirs, worlds, log=log))
        originals = _parts(pool, train_originals, groups, jobs, (cfgs, dirs, worlds),
                           "original models")
        # the world stages (closure, files, a drawing) are read by no stage before the
        # probes: queued behind the originals, they fill whichever process finished its part
        drawn = {pool.submit(_timed, _world_task, c, d, w): f"world of seed {c.run.seed}"
                 for c, d, w in zip(cfgs, dirs, worlds, strict=True)}
        _await(originals, log, beside=drawn, beside_first=False)
        _await({pool.submit(_timed, train_stage, c, d, world=w):  # one task per seed
                f"original model of seed {c.run.seed} trained alone"
                for c, d, w in zip(cfgs, dirs, worlds, strict=True)
                if not (stage_path(d, "model", c.key(*MODEL_SECTIONS)) / ".done").exists()},
               log, beside=drawn)
        groups = stacked_groups(control_members(cfgs, dirs, worlds))
        tasks = _parts(pool, train_controls, groups, jobs, (cfgs, dirs, worlds), "controls")
        for method, deep in sorted(method_builds(cfgs), key=lambda b: not b[1]):
            tasks[pool.submit(_timed, unlearn_methods, cfgs, dirs, worlds, log=_quiet,
                              only=(method, deep))] = f"unlearning {method}{' deep' * deep}"
        log(f"[seeds] controls and unlearning: {len(tasks)} stacked tasks")
        _await({**drawn, **tasks}, log)
        if not stack_probes:
            log(f"[seeds] the rest of each seed (never_trained, unstacked methods, probes, "
                f"report), {min(jobs, len(cfgs))} at a time")
            return _await({pool.submit(_timed, _seed_task, c, d, command):
                           f"seed {c.run.seed}: probes and report"
                           for c, d in zip(cfgs, dirs, strict=True)}, log)
        n = min(jobs, len(cfgs))
        log(f"[seeds] each seed's unstacked variants (never_trained, unstacked methods), "
            f"{n} at a time; then the seeds' probes side by side in {n} groups")
        _await({pool.submit(_timed, _variants_task, c, d):
                f"seed {c.run.seed}: unstacked variants"
                for c, d in zip(cfgs, dirs, strict=True)}, log)
        parts = [slice(len(cfgs) * i // n, len(cfgs) * (i + 1) // n) for i in range(n)]
        done = _await({pool.submit(_timed, _probe_side_by_side, cfgs[p], dirs[p], command,
                                   _quiet): f"probes of {p.stop - p.start} seeds side by "
                       f"side, reports" for p in parts}, log)
        return [summary for part in done for summary in part]


def _parts(pool, fn, groups: list[list[tuple]], jobs: int, args: tuple, what: str) -> dict:
    """Each stacked group split into up to ``jobs`` parts of nearly equal size, one task
    each (``fn(*args, part=(group, part))``), the larger parts first (the first free
    process takes them: a worker still starting gets a smaller one): future -> what."""
    tasks = {}
    for group in groups:
        n = min(jobs, len(group))
        for here in sorted((group[len(group) * i // n:len(group) * (i + 1) // n]
                            for i in range(n)), key=len, reverse=True):
            tasks[pool.submit(_timed, fn, *args, log=_quiet, part=(group, here))] = \
                f"{what}: {len(here)} of {len(group)} stacked"
    return tasks


def _warm() -> None:
    """A worker's first task: import what the stages use."""
    import kgtest.pipeline  # noqa: F401  (torch, transformers, the stages)
    import kgtest.unlearn.stacked_run  # noqa: F401


def _world_task(cfg: ExperimentConfig, run_dir: Path, world) -> Path:
    from kgtest.pipeline import world_stage

    return world_stage(cfg, run_dir, world)


def _variants_task(cfg: ExperimentConfig, run_dir: Path) -> None:
    """The variants :func:`kgtest.pipeline.run_variants` builds (finished ones reused)."""
    from kgtest.pipeline import world_of
    from kgtest.variants import build_variant, variant_builds

    ctx = _contexts([cfg], [run_dir], [world_of(cfg)])[0]
    for build in variant_builds(cfg):
        build_variant(ctx, build, quiet=True)


def _seed_task(cfg: ExperimentConfig, run_dir: Path, command: str) -> Path:
    from kgtest.pipeline import run_experiment

    return run_experiment(cfg, run_dir, command=command, log=_quiet, jobs=1)


def _quiet(msg: str) -> None:
    """The log of a worker's task (the parent logs each task as it ends)."""


def _timed(fn, *args, **kwargs):
    """``(fn(...), wall seconds, CPU seconds of this process)``: a task in a worker."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t, time.process_time() - c


def _await_tasks(tasks: dict, log, beside: dict | None = None, *, beside_first: bool = True,
                 here=None) -> list:
    """Wait for every future of ``tasks`` (future -> what), logging each as it ends;
    their results in ``tasks``' order (a failed task raises here). ``beside``: other
    futures still running or queued, submitted before ``tasks`` (``beside_first``) or
    after (named if a worker dies). ``here``: the :class:`kgtest.workers.WithParent`
    whose queued tasks (these or others) this process runs while it waits (a worker's
    failure is then seen once this process has finished the task it is running)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    out: dict = {}
    while len(out) < len(tasks):
        ended = [f for f in tasks if f.done() and f not in out]
        if not ended and here is not None and here.work_here():
            continue  # ran a queued task here
        if not ended:
            ended = [f for f in wait([f for f in tasks if f not in out],
                                     return_when=FIRST_COMPLETED).done]
        for fut in ended:
            _one_ended(fut, tasks, beside, beside_first, out, log)
    return [out[f] for f in tasks]


def _one_ended(fut, tasks: dict, beside, beside_first: bool, out: dict, log) -> None:
    """A finished task of :func:`_await_tasks`: its result into ``out`` and one log line;
    a failed task raises (one line if a worker process died)."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        out[fut], wall, cpu = fut.result()
    except BrokenProcessPool:  # a worker was killed (out of memory, SIGKILL): one line
        # the pool fails every unfinished task: name the earliest submitted, which the
        # workers were running (first in, first out)
        order = ({**(beside or {}), **tasks} if beside_first
                 else {**tasks, **(beside or {})})  # submission order
        broken = [w for f, w in order.items()
                  if f.done() and isinstance(f.exception(), BrokenProcessPool)]
        raise InputError(f"--seeds --jobs: a worker process died during "
                         f"{(broken or [tasks[fut]])[0]!r} or a task beside it "
                         f"(killed? out of memory?); rerun to resume the finished "
                         f"stages, or use fewer --jobs") from None
    log(f"[seeds] {tasks[fut]}: {wall:.0f} s, {cpu:.0f} s CPU")
