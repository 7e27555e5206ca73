"""M seeds of one experiment in one process: ``kgtest run SPEC --seeds M``.

:func:`run_seeds` writes the M ordinary run folders that M separate runs
(``kgtest run SPEC --set run.seed=s`` for ``s = run.seed, ..., run.seed + M - 1``) would
write, with the same stage folders and keys, so caching, ``kgtest report``, ``kgtest pack``
and sweeps see no difference, and a later single-seed run reuses them. What is shared
is the work, not the results:

- **stacked**: the original models of all seeds train as one stacked model
  (:func:`kgtest.ensemble.train_ensemble`, each member on its own seed's corpus,
  tokenizer, initialisation and batch order), then each member is written as its
  seed's ordinary ``model-<key>`` stage;
- **one seed at a time** (the ordinary code, inside the same process): world, corpus,
  the retrained controls, unlearning with its tuning grid, probes and the report.

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
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from kgtest.checkpoint import LOG
from kgtest.errors import InputError
from kgtest.experiment import ExperimentConfig, load_experiment
from kgtest.stages import finish_stage, prepare_partial, run_lock, stage_path
from kgtest.symbolic.facts import atomic_write_text

__all__ = ["seed_configs", "run_dir_of", "run_seeds", "train_originals"]

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
              command: str = "", log=print) -> list[Path]:
    """Run every seed's experiment, the originals trained stacked; returns the summaries.

    The M run folders are locked for the whole call. Finished stages are reused, as by
    :func:`kgtest.pipeline.run_experiment` (which then runs each seed's remaining stages).
    """
    from kgtest.pipeline import corpus_stage, run_experiment, world_stage

    dirs = [run_dir_of(out, c) for c in cfgs]
    if len(set(dirs)) != len(dirs):
        raise InputError("--seeds: two seeds share a run folder")
    with contextlib.ExitStack() as stack:
        for d in dirs:
            stack.enter_context(run_lock(d, command=command or None))
        log(f"[seeds] world and corpus of {len(cfgs)} seeds -> {Path(out)}")
        for c, d in zip(cfgs, dirs, strict=True):
            world_stage(c, d)
            corpus_stage(c, d)
        train_originals(cfgs, dirs, log=log)
        return [run_experiment(c, d, command=command, log=log)
                for c, d in zip(cfgs, dirs, strict=True)]


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


def _groups(jobs) -> list[list[int]]:
    """Members that can train as one stacked model: equal settings, the batch seed aside."""
    groups: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(repr(replace(job.cfg, seed=None)), []).append(i)
    return list(groups.values())


def train_originals(cfgs: Sequence[ExperimentConfig], dirs: Sequence[Path], *,
                    log=print) -> list[Path]:
    """Each seed's ``model-<key>`` stage, the unfinished ones trained as stacked models.

    Hold the run folders' locks (:func:`run_seeds` does). Returns the model stage folders.
    """
    from kgtest.distributed import dist_info
    from kgtest.pipeline import MODEL_SECTIONS, corpus_stage, train_job, train_stage

    finals = [stage_path(d, "model", c.key(*MODEL_SECTIONS)) for c, d in zip(cfgs, dirs,
                                                                               strict=True)]
    todo = [i for i, f in enumerate(finals) if not (f / ".done").exists()]
    if dist_info().world_size > 1:
        todo = []  # torchrun: data parallelism, one seed at a time (train_stage)
    jobs, stackable = {}, []
    for i in todo:
        jobs[i] = train_job(cfgs[i], corpus_stage(cfgs[i], dirs[i]))
        why = _unstackable(cfgs[i], jobs[i])
        if why:
            log(f"[seeds] seed {cfgs[i].run.seed}: {why}: trained on its own")
        else:
            stackable.append(i)
    for group in _groups([jobs[i] for i in stackable]):
        members = [stackable[g] for g in group]
        if len(members) > 1:
            _train_stacked(members, cfgs, dirs, jobs, log)
    return [train_stage(c, d) for c, d in zip(cfgs, dirs, strict=True)]  # the rest, solo


def _train_stacked(members: list[int], cfgs, dirs, jobs, log) -> None:
    """Train ``members`` (indices into cfgs) as one stacked model; write their stages."""
    from kgtest.ensemble import MEMBER_DIR, train_ensemble
    from kgtest.pipeline import MODEL_SECTIONS, write_model_stage
    from kgtest.train import TrainResult

    seeds = [cfgs[i].run.seed for i in members]
    log(f"[seeds] training seeds {', '.join(map(str, seeds))} as one stacked model")
    first = jobs[members[0]]
    scratch = Path(tempfile.mkdtemp(prefix=".seeds.tmp-", dir=dirs[members[0]]))
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        res = train_ensemble([jobs[i].model for i in members],
                             [jobs[i].tokenizer for i in members],
                             [jobs[i].docs for i in members], first.cfg, scratch,
                             eval_fn=[jobs[i].eval_fn for i in members],
                             batch_seeds=[jobs[i].cfg.seed for i in members])
        logs = split_log(scratch / LOG, len(members), res.steps)
        for m, i in enumerate(members):
            key = cfgs[i].key(*MODEL_SECTIONS)
            tmp = prepare_partial(dirs[i], "model", key)
            os.replace(scratch / MEMBER_DIR.format(m), tmp / "model")
            atomic_write_text(tmp / LOG, "".join(json.dumps(e) + "\n" for e in logs[m]))
            result = TrainResult(steps=res.steps[m], final_loss=res.final_losses[m],
                                 metrics=res.metrics[m], stopped_early=res.stopped_early[m],
                                 tokens=res.tokens[m], seconds=res.seconds,
                                 cpu_seconds=res.cpu_seconds, model_dir=tmp / "model")
            write_model_stage(cfgs[i], tmp, jobs[i], result,
                              stacked={"seeds": seeds, "member": m})
            finish_stage(dirs[i], "model", key)
        log(f"[seeds] {len(members)} models trained together in "
            f"{time.perf_counter() - t0:.0f} s ({time.process_time() - c0:.0f} CPU s)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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
