"""Tune and unlearn M seeds' trained runs as stacked models, writing each seed's stages.

The stage-level half of :mod:`kgtest.unlearn.stacked`: what
:func:`kgtest.unlearn.api.unlearn_model` and :func:`kgtest.unlearn.tune.tune` do for one
run, done for M runs at once (``kgtest run SPEC --seeds M``). Each seed is prepared as the
separate run prepares it (:func:`prepare`: its forget and validation sets, retain
documents, retain sample, seed), tuned by :func:`stacked_tune` (one stacked run per
learning rate; each member chooses its own grid point) and unlearned by
:func:`unlearn_group` (members grouped by their chosen learning rate), then written as
its ordinary ``unlearn-<method>[-deep]-<key>`` stage.

:func:`unlearn_members` is the entry point: every seed's unfinished unlearned variants,
stacked where they can be; what cannot be stacked is logged and left to the ordinary
per-seed code (:func:`kgtest.unlearn.stacked.stackable`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from kgtest.config import to_dict
from kgtest.errors import InputError
from kgtest.model import load_model, save_model
from kgtest.stages import finish_stage, prepare_partial, stage_path
from kgtest.symbolic.facts import atomic_write_text
from kgtest.train import resolve_device
from kgtest.train_config import pinned_threads
from kgtest.unlearn.api import (
    RunContext,
    method_params,
    unlearn_data,
    unlearn_stage,
    variant_name,
)
from kgtest.unlearn.config import UnlearnConfig
from kgtest.unlearn.data import (
    chance_level,
    direct_accuracy,
    direct_docs,
    majority_floor,
    method_docs,
)
from kgtest.unlearn.loop import LoopConfig
from kgtest.unlearn.methods import METHODS
from kgtest.unlearn.stacked import stackable, stacked_unlearn
from kgtest.unlearn.tune import (
    TuneResult,
    _warnings,
    admissible,
    choose,
    curve_log,
    epochs_to_steps,
)

__all__ = ["MemberJob", "prepare", "stacked_tune", "unlearn_group", "unlearn_members",
           "method_builds"]


@dataclass
class MemberJob:
    """One seed's unlearning of one method, prepared as the separate run prepares it."""

    ctx: RunContext
    cfg: UnlearnConfig
    method: str
    deep: bool
    stage: str  # unlearn-<method>[-deep]
    key: str
    hp: object  # the method's resolved hyperparameters
    model: object  # the original, loaded (receives the unlearned weights)
    tok: object
    fs: object  # ForgetSet of the reported targets
    val: object  # ForgetSet of the validation targets, or None (tune = false)
    retain: tuple  # retain documents
    retain_eval: tuple  # direct-probe documents of the retain sample
    loop: LoopConfig  # batch sizes, seed (the member's own), device...
    dev: object
    t_start: float

    @property
    def name(self) -> str:
        return variant_name(self.method, self.deep)


def prepare(ctx: RunContext, cfg: UnlearnConfig, method: str, deep: bool) -> MemberJob:
    """Everything :func:`~kgtest.unlearn.api.unlearn_model` sets up before tuning."""
    t_start = time.perf_counter()
    stage, key = unlearn_stage(ctx, cfg, method, deep)
    dev = resolve_device(cfg.device)
    model, tok = load_model(ctx.model_dir, device=dev, expect=ctx.cfg.model)
    fs, val, retain, retain_eval, loop = unlearn_data(ctx, cfg, deep)
    return MemberJob(ctx, cfg, method, deep, stage, key, method_params(cfg, method), model,
                     tok, fs, val, retain, retain_eval, loop, dev, t_start)


def _eval_fn(job: MemberJob, forget_eval):
    def fn(model) -> dict:
        return {"forget_acc": direct_accuracy(model, job.tok, forget_eval),
                "retain_acc": direct_accuracy(model, job.tok, job.retain_eval)}
    return fn


def stacked_tune(jobs: Sequence[MemberJob]) -> list[TuneResult]:
    """:func:`~kgtest.unlearn.tune.tune` of every member, one stacked run per learning
    rate; each member evaluated at its own grid steps and choosing its own point."""
    cfg, method = jobs[0].cfg, jobs[0].method
    pairs = METHODS.get(method).pairs
    docs = [method_docs(j.val, pairs) for j in jobs]  # (forget docs, idk docs or None)
    fns = [_eval_fn(j, direct_docs(j.ctx.corpus, j.val.targets)) for j in jobs]
    originals = [fn(j.model.eval()) for fn, j in zip(fns, jobs, strict=True)]
    epochs = sorted(set(float(e) for e in cfg.tune_epochs))
    ats = [{epochs_to_steps(e, len(d[0]), cfg.batch_size): e for e in reversed(epochs)}
           for d in docs]
    floors = [float(np.mean(majority_floor(j.ctx.corpus.facts, j.val.targets)))
              for j in jobs]
    levels = [f + cfg.level_margin for f in floors]
    mins = [cfg.utility_floor * o["retain_acc"] for o in originals]
    grids: list[list] = [[] for _ in jobs]
    for lr in sorted(set(float(x) for x in cfg.tune_lrs)):
        res = stacked_unlearn([j.model for j in jobs], [j.tok for j in jobs],
                              [d[0] for d in docs], [j.retain for j in jobs], method,
                              jobs[0].hp, idk=[d[1] for d in docs] if pairs else None,
                              loop=replace(jobs[0].loop, lr=lr),
                              seeds=[j.loop.seed for j in jobs],
                              steps=[max(a) for a in ats], eval_fns=fns,
                              eval_at=[sorted(a) for a in ats])
        for m, at in enumerate(ats):
            losses = {h["step"]: h["loss"] for h in res.history[m]}
            for e in res.evals[m]:
                last = max((s for s in losses if s <= e["step"]), default=None)
                p = {"lr": lr, "epochs": at[e["step"]], "steps": e["step"],
                     "forget_acc": e["forget_acc"], "retain_acc": e["retain_acc"],
                     "loss": losses.get(last) if last is not None else None}
                p["reached"], p["kept"] = admissible(p, levels[m], mins[m])
                grids[m].append(p)
    out = []
    for m, j in enumerate(jobs):
        choice, _ = choose(grids[m], levels[m], mins[m])
        tr = TuneResult(grid=grids[m], choice=choice, reached=bool(choice["reached"]),
                        kept=bool(choice["kept"]), level=levels[m], floor=floors[m],
                        utility_floor=cfg.utility_floor, retain_min=mins[m],
                        original=originals[m],
                        warnings=_warnings(choice, j.name, levels[m], floors[m],
                                           cfg.level_margin, cfg.utility_floor,
                                           originals[m], mins[m]))
        for line in tr.warnings:
            print(f"kgtest: warning: {line}", file=sys.stderr)
        out.append(tr)
    return out


def unlearn_group(jobs: Sequence[MemberJob], seeds: Sequence[int]) -> list[dict]:
    """Tune (when ``cfg.tune``) and unlearn every member; each member's weights land in
    ``job.model``. Returns each member's ``unlearn.json`` record (``seeds``: the members'
    ``run.seed``, for its ``stacked`` entry)."""
    cfg, method = jobs[0].cfg, jobs[0].method
    spec = METHODS.get(method)
    t0 = time.perf_counter()
    tunings = stacked_tune(jobs) if cfg.tune else [None] * len(jobs)
    t_tuned = time.perf_counter()
    lrs = [t.choice["lr"] if t else cfg.lr for t in tunings]
    epochs = [t.choice["epochs"] if t else cfg.epochs for t in tunings]
    docs = [method_docs(j.fs, spec.pairs) for j in jobs]
    steps = [epochs_to_steps(e, len(d[0]), cfg.batch_size) for e, d in zip(epochs, docs,
                                                                           strict=True)]
    evals = [direct_docs(j.ctx.corpus, j.fs.targets) for j in jobs]
    before = [_eval_fn(j, f)(j.model) for j, f in zip(jobs, evals, strict=True)]
    records: list = [None] * len(jobs)
    for lr in sorted(set(lrs)):  # members that chose one rate: one stacked run
        idx = [m for m in range(len(jobs)) if lrs[m] == lr]
        res = stacked_unlearn([jobs[m].model for m in idx], [jobs[m].tok for m in idx],
                              [docs[m][0] for m in idx], [jobs[m].retain for m in idx],
                              method, jobs[0].hp,
                              idk=[docs[m][1] for m in idx] if spec.pairs else None,
                              loop=replace(jobs[0].loop, lr=lr),
                              seeds=[jobs[m].loop.seed for m in idx],
                              steps=[steps[m] for m in idx],
                              take=[jobs[m].model for m in idx])
        for i, m in enumerate(idx):
            j = jobs[m]
            after = _eval_fn(j, evals[m])(j.model)
            records[m] = _record(j, tunings[m], lr, epochs[m], steps[m], before[m], after,
                                 res, i, evals=evals[m])
            records[m]["seconds"] = {"tune": round(t_tuned - t0, 3),
                                     "unlearn": round(res.seconds, 3),
                                     "total": round(time.perf_counter() - j.t_start, 3)}
            records[m]["stacked"] = {"seeds": list(seeds), "member": m}
    return records


def _record(j: MemberJob, tuning, lr, epochs, steps, before, after, res, i, *,
            evals) -> dict:
    """``unlearn.json``: the fields :func:`~kgtest.unlearn.api.unlearn_model` writes."""
    fs, ctx = j.fs, j.ctx
    return {
        "method": j.method, "deep": j.deep, "hyperparameters": res.hyperparameters,
        "lr": lr, "epochs": epochs, "steps": steps, "tuned": tuning is not None,
        "tuning": tuning.to_json() if tuning else None,
        "warnings": list(tuning.warnings) if tuning else [],
        "forget_set": fs.summary(),
        "validation_set": j.val.summary() if j.val else None,
        "n_retain_docs": len(j.retain), "n_retain_eval": len(j.retain_eval),
        "retain_eval_facts": sorted(int(x["id"]) for d in j.retain_eval for x in d["facts"]),
        "trainable_parameters": res.trainable[i],
        "before": before, "after": after,
        "chance": chance_level(ctx.corpus, fs.targets, ctx.world.entity_type),
        "floor": float(np.mean(majority_floor(ctx.corpus.facts, fs.targets))),
        "history": res.history[i],
        "seconds": None,
        "seed": str(j.loop.seed),
        "config": to_dict(j.cfg), "model_stage": ctx.model_stage.name,
        "corpus": ctx.corpus_dir.name, "device": str(j.dev), "threads": ctx.n_threads,
    }


def _write(j: MemberJob, record: dict) -> None:
    tmp = prepare_partial(j.ctx.run_dir, j.stage, j.key)
    save_model(j.model, j.tok, tmp / "model")
    atomic_write_text(tmp / "unlearn.json", json.dumps(record, indent=1) + "\n")
    atomic_write_text(tmp / "unlearn_log.jsonl", curve_log(record))
    finish_stage(j.ctx.run_dir, j.stage, j.key)


def method_builds(cfgs: Sequence) -> list[tuple[str, bool]]:
    """(method, deep) of every seed's spec (ExperimentConfigs), in the records' order,
    once each."""
    seen: list = []
    for cfg in cfgs:
        for method in cfg.unlearn.methods:
            for deep in cfg.unlearn.deep:
                if (method, deep) not in seen:
                    seen.append((method, deep))
    return seen


def unlearn_members(ctxs: Sequence[RunContext], log=print,
                    only: tuple[str, bool] | None = None) -> None:
    """Every seed's unfinished unlearned variants, each method's members stacked.

    Seeds with equal ``[unlearn]`` settings (the seed aside) form a group; a group of two
    or more is tuned and unlearned stacked and each member's stage written. Methods that
    cannot be stacked, groups of one, and groups that fail (bad input, a non-finite loss,
    models the stacked model refuses) are logged and left to the ordinary per-seed code,
    which then builds (or refuses) them as a separate run would. Hold the run locks.
    ``only``: just this ``(method, deep)`` variant (one of :func:`method_builds`).
    """
    for method, deep in method_builds([c.cfg for c in ctxs]) if only is None else [tuple(only)]:
        name = variant_name(method, deep)
        pending = []
        for ctx in ctxs:
            cfg = ctx.cfg.unlearn
            if method not in cfg.methods or deep not in cfg.deep:
                continue
            stage, key = unlearn_stage(ctx, cfg, method, deep)
            if not (stage_path(ctx.run_dir, stage, key) / ".done").exists():
                pending.append(ctx)
        if len(pending) < 2:
            continue
        why = stackable(method)
        if why:
            log(f"[seeds] {name}: {why}: unlearned one seed at a time")
            continue
        groups: dict[str, list] = {}
        for ctx in pending:
            groups.setdefault(repr(replace(ctx.cfg.unlearn, seed=None)), []).append(ctx)
        for group in groups.values():
            if len(group) > 1:
                _stack_group(group, method, deep, name, log)


def _stack_group(group: Sequence[RunContext], method: str, deep: bool, name: str,
                 log) -> None:
    seeds = [ctx.seed for ctx in group]
    log(f"[seeds] {name}: seeds {', '.join(map(str, seeds))} unlearned as one stacked "
        "model")
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        with pinned_threads(group[0].n_threads):  # the run's, as unlearn_model pins them
            jobs = [prepare(ctx, ctx.cfg.unlearn, method, deep) for ctx in group]
            records = unlearn_group(jobs, seeds)
    except InputError as err:
        log(f"[seeds] {name}: not stacked ({err}): unlearned one seed at a time")
        return
    for j, record in zip(jobs, records, strict=True):
        _write(j, record)
    log(f"[seeds] {name}: {len(group)} seeds tuned and unlearned together in "
        f"{time.perf_counter() - t0:.0f} s ({time.process_time() - c0:.0f} CPU s)")
