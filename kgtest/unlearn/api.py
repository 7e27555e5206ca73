"""Unlearn a trained run, or build its controls: what ``kgtest unlearn`` and ``kgtest run`` call.

``unlearn_run(RUN, cfg, "NPO", deep=False)`` reads a trained run (its model stage, corpus
and split), tunes the method on the validation targets (:mod:`kgtest.unlearn.tune`),
unlearns the reported forget targets at the chosen setting, and writes a stage folder::

    RUN/unlearn-npo[-deep]-<key>/
        model/         full Hugging Face checkpoint (safetensors + tokenizer)
        unlearn.json   method, hyperparameters, tuning grid and choice, forget set ids,
                       extra facts (deep), steps, accuracies before/after, seconds

``control_run(RUN, "filter")`` writes ``RUN/control-filter-<key>/`` (``model/`` +
``control.json``) the same way. Keys hash the model stage and every setting used, so a
re-run reuses finished work (see :mod:`kgtest.stages`); files appear only when complete.

``RUN`` is a run folder holding one ``model-*`` stage, a model stage folder, or a
:class:`~kgtest.pipeline.TrainedRun`.

Examples
--------
>>> apply_overrides(UnlearnConfig(), "NPO", ["beta=0.2", "unlearn.tune_lrs=[1e-4]"]).params
{'NPO': {'beta': 0.2}}
>>> apply_overrides(UnlearnConfig(), "NPO", ["gama=2"])
Traceback (most recent call last):
...
kgtest.errors.InputError: --set gama: not an [unlearn] key nor a hyperparameter of NPO ...
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kgtest.config import apply_overrides as _apply
from kgtest.config import build, config_hash, to_dict
from kgtest.corpus.in_context import in_context_stream
from kgtest.corpus.io import read_corpus
from kgtest.corpus.render import Corpus
from kgtest.corpus.splits import Split
from kgtest.errors import InputError
from kgtest.model import load_model, load_tokenizer, save_model
from kgtest.seeds import stage_seed
from kgtest.stages import run_stage
from kgtest.symbolic.facts import atomic_write_text
from kgtest.train import resolve_device
from kgtest.train_config import pinned_threads, run_threads
from kgtest.unlearn.config import CONTROLS, UnlearnConfig
from kgtest.unlearn.controls import control_corpus, never_trained, train_control
from kgtest.unlearn.data import (
    OWN_ROLES,
    chance_level,
    deletion_sets,
    direct_accuracy,
    direct_docs,
    forget_set,
    majority_floor,
    method_docs,
    retain_docs,
)
from kgtest.unlearn.loop import LoopConfig, unlearn
from kgtest.unlearn.methods import METHODS
from kgtest.unlearn.tune import curve_log, epochs_to_steps, tune

if TYPE_CHECKING:
    from kgtest.experiment import ExperimentConfig
    from kgtest.worlds.world import World

__all__ = ["RunContext", "load_run", "apply_overrides", "method_params", "unlearn_run",
           "control_run", "Variant", "variant_name", "unlearn_variant", "unlearn_stage",
           "control_variant",
           "control_stage", "ControlTraining", "control_training", "write_control"]


# --- reading a trained run ---------------------------------------------------------------------

@dataclass
class RunContext:
    """A trained run: its folders, typed experiment config and world (given, never re-sampled).

    The pipeline builds one from what it already holds (:meth:`of`); ``kgtest unlearn
    RUN_DIR`` reads one back from a folder (:func:`load_run`).
    """

    run_dir: Path  # where unlearn-*/control-* stages go
    model_stage: Path  # RUN/model-<key>
    corpus_dir: Path  # RUN/corpus-<key>
    cfg: ExperimentConfig  # the experiment the model stage was trained under
    world: World  # the world the corpus was rendered from
    threads: int = 0  # intra-op threads of every stage built here (0: the run's, n_threads)

    @classmethod
    def of(cls, cfg: ExperimentConfig, trained, world: World, threads: int = 0) -> RunContext:
        """The context of a :class:`~kgtest.pipeline.TrainedRun` trained under ``cfg``."""
        stage = Path(trained.stage_dir)
        return cls(run_dir=stage.parent, model_stage=stage,
                   corpus_dir=Path(trained.corpus_dir), cfg=cfg, world=world,
                   threads=threads)

    @property
    def n_threads(self) -> int:
        """The intra-op threads unlearning, tuning and retraining run with: ``threads``, else
        the run's (:func:`~kgtest.train_config.run_threads` of ``train.threads``)."""
        return self.threads or run_threads(self.cfg.train.threads,
                                           resolve_device(self.cfg.train.device))

    def __getstate__(self) -> dict:  # to a worker process: the fields, not the loaded caches
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def model_dir(self) -> Path:
        return self.model_stage / "model"

    @cached_property
    def corpus(self) -> Corpus:
        return read_corpus(self.corpus_dir)

    @cached_property
    def split(self) -> Split:
        return Split.load(self.corpus_dir / "split.json")

    @property
    def seed(self) -> int:
        return self.cfg.run.seed

    def unlearn_seed(self, cfg: UnlearnConfig) -> int:
        """The unlearning seed: ``cfg.seed``, or derived from the run seed when None."""
        return stage_seed(self.seed, "unlearn") if cfg.seed is None else int(cfg.seed)

    def section(self, cls, name: str):
        """A config section of the run (``cls`` is its type, kept for old callers)."""
        return getattr(self.cfg, name)

    @cached_property
    def closure(self):
        closure = self.world.close()
        if not np.array_equal(np.asarray(closure.facts), self.corpus.facts):
            raise InputError(f"{self.corpus_dir}: the run's world does not match this corpus")
        return closure

    @cached_property
    def fixed(self) -> np.ndarray:
        return self.world.fixed_mask(self.closure)

    @cached_property
    def kb(self) -> np.ndarray:
        """Facts the model may be said to know: every fact not held out and not fixed."""
        return ~self.split.mask("held_out") & ~self.fixed

    def train_steps(self) -> int:
        """Optimiser steps the original model took (its metrics.json; else train.steps)."""
        metrics = self.model_stage / "metrics.json"
        if metrics.exists():
            return int(json.loads(metrics.read_text())["steps"])
        return self.cfg.train.steps

    def unlearn_config(self) -> UnlearnConfig:
        """The run's ``[unlearn]`` section (defaults when the spec had none)."""
        return self.cfg.unlearn


def _done(p: Path) -> bool:
    return (p / ".done").exists()


def _model_stage(path: Path) -> Path:
    """``path`` itself when it is a model stage folder, else its one finished model stage."""
    if not path.is_dir():
        raise InputError(f"{path}: no such run folder")
    if (path / "model" / "config.json").is_file() and (path / "config.json").is_file():
        return path
    stages = sorted(p for p in path.glob("model-*") if _done(p))
    if not stages:
        raise InputError(f"{path}: no trained model here (no finished model-* stage); "
                         f"train one first (kgtest train SPEC --out {path})")
    if len(stages) > 1:
        raise InputError(f"{path}: {len(stages)} trained models "
                         f"({', '.join(p.name for p in stages)}); pass one of them")
    return stages[0]


def load_run(run) -> RunContext:
    """Read a trained run back from its folder (``kgtest unlearn RUN_DIR``, the exports).

    ``run`` is a model stage folder (``RUN/model-<key>``), a run folder holding exactly one
    finished model stage, a :class:`~kgtest.pipeline.TrainedRun` (its corpus folder is
    used as it is) or a :class:`RunContext` (returned as it is). The experiment comes back
    from the stage's ``config.json``, the corpus folder from the same key function the
    pipeline uses (:meth:`~kgtest.experiment.ExperimentConfig.key`), the world is sampled
    once from the config's ``[world]`` section.
    """
    from kgtest.experiment import experiment_from_dict
    from kgtest.worlds.samplers import sample_world

    if isinstance(run, RunContext):
        return run
    trained_corpus = Path(run.corpus_dir) if hasattr(run, "corpus_dir") else None
    stage = _model_stage(Path(run.stage_dir if hasattr(run, "stage_dir") else run))
    where = stage / "config.json"
    try:
        data = json.loads(where.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{where}: cannot read ({err})") from None
    cfg = experiment_from_dict(data, where=str(where))
    run_dir = stage.parent
    corpus_dir = trained_corpus or run_dir / f"corpus-{cfg.key('world', 'split', 'corpus')}"
    if not _done(corpus_dir):
        found = sorted(p for p in run_dir.glob("corpus-*") if _done(p))
        if len(found) != 1:
            raise InputError(f"{run_dir}: cannot tell which corpus {stage.name} was "
                             f"trained on (expected {corpus_dir.name})")
        corpus_dir = found[0]
    world = sample_world(cfg.world, seed=stage_seed(cfg.run.seed, "world"))
    return RunContext(run_dir=run_dir, model_stage=stage, corpus_dir=corpus_dir, cfg=cfg,
                      world=world)


# --- settings ----------------------------------------------------------------------------------

def apply_overrides(cfg: UnlearnConfig, method: str, overrides=()) -> UnlearnConfig:
    """Apply ``key=value`` overrides: an ``[unlearn]`` key (``unlearn.`` prefix optional)
    or a hyperparameter of ``method`` (``beta=0.2`` sets ``params.<method>.beta``)."""
    spec = METHODS.get(method)
    keys = {f.name for f in fields(UnlearnConfig)}
    hyper = [f.name for f in fields(spec.hyper)]
    data = to_dict(cfg)
    for item in overrides:
        key, eq, text = item.partition("=")
        key = key.strip().removeprefix("unlearn.")
        if not eq:
            raise InputError(f"--set: expected key=value, got {item!r}")
        head = key.split(".")[0]
        if head in keys:
            data = _apply(data, [f"{key}={text}"], where="--set")
        elif key in hyper:
            data = _apply(data, [f"params.{method}.{key}={text}"], where="--set")
        else:
            raise InputError(f"--set {key}: not an [unlearn] key nor a hyperparameter of "
                             f"{method} (hyperparameters: {', '.join(hyper) or 'none'}; "
                             f"keys: {', '.join(sorted(keys))})")
    if not overrides:  # the typed config as it came, no round trip through a dict
        return cfg
    return build(UnlearnConfig, data, where="--set", section="unlearn")


def method_params(cfg: UnlearnConfig, method: str):
    """The method's resolved hyperparameters: defaults, ``retain_loss``, ``params.<method>``."""
    spec = METHODS.get(method)
    table = {}
    if "retain_loss" in {f.name for f in fields(spec.hyper)}:
        table["retain_loss"] = cfg.retain_loss
    table.update(cfg.params.get(method, {}))
    return spec.resolve(table, where="unlearn.params")


# --- unlearning --------------------------------------------------------------------------------

def _utility_facts(ctx: RunContext) -> set[int]:
    """The retained facts the utility probe will score (its direct and CoT samples)."""
    from kgtest.probes.probes import utility_retain_facts

    sample = utility_retain_facts(ctx.corpus, ctx.split, ctx.cfg.probes.utility_limit,
                                  stage_seed(ctx.seed, "probes"))
    return set(sample["direct"]) | set(sample["cot"])


def _retain_eval(ctx: RunContext, avoid: set, limit: int, seed: int) -> tuple:
    """Direct-probe documents of a seeded sample of retained facts stated in training,
    disjoint from ``avoid`` and from the utility probe's facts (so tuning never selects on
    what the report scores as utility)."""
    corpus, labels = ctx.corpus, ctx.split.labels
    stated = sorted({x["id"] for d in corpus.train if d["kind"] in ("statement", "qa")
                     for x in d["facts"] if x["role"] in OWN_ROLES})
    scored = _utility_facts(ctx)
    pool = [f for f in stated if labels[f] == "retain" and f not in avoid and f not in scored]
    rng = np.random.default_rng(seed)
    if len(pool) > limit:
        pool = sorted(rng.choice(pool, limit, replace=False).tolist())
    return direct_docs(corpus, pool)


def _forget(ctx: RunContext, cfg: UnlearnConfig, targets, deep: bool):
    kw = {}
    if deep:
        kw = dict(closure=ctx.closure, kb=ctx.kb, fixed=ctx.fixed,
                  restarts=cfg.deletion_restarts, time_limit=cfg.deletion_time_limit,
                  seed=stage_seed(ctx.unlearn_seed(cfg), "deletion"))
    return forget_set(ctx.corpus, targets, deep=deep, kinds=cfg.forget_kinds,
                      include_cot_premise_docs=cfg.include_cot_premise_docs, **kw)


def unlearn_data(ctx: RunContext, cfg: UnlearnConfig, deep: bool) -> tuple:
    """What unlearning one run needs besides the model, for the per-seed and the stacked
    path alike: ``(forget set, validation set or None, retain documents, tuning's retain
    sample, LoopConfig)``; the retain documents and sample avoid every forget and
    validation fact."""
    split = ctx.split
    fs = _forget(ctx, cfg, split.forget, deep)
    if cfg.tune and len(split.validation) == 0:
        raise InputError("unlearn: tuning needs validation targets but split.n_validation "
                         "is 0 (set split.n_validation > 0, or unlearn.tune = false)")
    val = _forget(ctx, cfg, split.validation, deep) if cfg.tune else None
    avoid = set(fs.facts.tolist()) | (set(val.facts.tolist()) if val else set())
    avoid |= set(split.validation.tolist())
    useed = ctx.unlearn_seed(cfg)
    retain_eval = _retain_eval(ctx, avoid, cfg.retain_eval, stage_seed(useed, "retain"))
    loop = LoopConfig(batch_size=cfg.batch_size, retain_batch_size=cfg.retain_batch_size,
                      weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip, seed=useed,
                      device=cfg.device, progress=cfg.progress)
    return fs, val, retain_docs(ctx.corpus, avoid), retain_eval, loop


def _tune(ctx: RunContext, cfg: UnlearnConfig, model, tok, val, retain, method, hp, name,
          retain_eval, loop: LoopConfig):
    """Tune on the validation targets; warnings go to stderr (and the record)."""
    floor = float(np.mean(majority_floor(ctx.corpus.facts, val.targets)))
    tuning = tune(model, tok, val, retain, method, hp,
                  forget_eval=direct_docs(ctx.corpus, val.targets), retain_eval=retain_eval,
                  floor=floor, margin=cfg.level_margin, utility_floor=cfg.utility_floor,
                  lrs=cfg.tune_lrs, epochs=cfg.tune_epochs, name=name, loop=loop)
    for line in tuning.warnings:
        print(f"kgtest: warning: {line}", file=sys.stderr)
    return tuning


def unlearn_model(ctx: RunContext, cfg: UnlearnConfig, method: str, *, deep: bool = False):
    """Tune (on validation targets) and unlearn (the forget targets) one method.

    Every method forgets the same units (:func:`~kgtest.unlearn.data.method_docs`); the
    number of steps is ``epochs`` of the forget set (tuned on the validation set, so each
    document gets the same updates). Runs with the run's intra-op threads
    (:attr:`RunContext.n_threads`, recorded as ``threads``). Returns the unlearned model,
    its tokenizer and the ``unlearn.json`` record.
    """
    with pinned_threads(ctx.n_threads) as threads:
        model, tok, record = _unlearn_model(ctx, cfg, method, deep)
    return model, tok, {**record, "threads": threads}


def _unlearn_model(ctx: RunContext, cfg: UnlearnConfig, method: str, deep: bool):
    t_start = time.perf_counter()
    spec = METHODS.get(method)
    hp = method_params(cfg, method)
    dev = resolve_device(cfg.device)
    model, tok = load_model(ctx.model_dir, device=dev, expect=ctx.cfg.model)
    fs, val, retain, retain_eval, loop = unlearn_data(ctx, cfg, deep)
    tuning, lr, epochs = None, cfg.lr, cfg.epochs
    if cfg.tune:
        tuning = _tune(ctx, cfg, model, tok, val, retain, method, hp,
                       f"{method}{'_deep' if deep else ''}", retain_eval, loop)
        lr, epochs = tuning.choice["lr"], tuning.choice["epochs"]
    t_tuned = time.perf_counter()
    docs, idk = method_docs(fs, spec.pairs)
    steps = epochs_to_steps(epochs, len(docs), cfg.batch_size)
    forget_eval = direct_docs(ctx.corpus, fs.targets)
    before = {"forget_acc": direct_accuracy(model, tok, forget_eval),
              "retain_acc": direct_accuracy(model, tok, retain_eval)}
    res = unlearn(model, tok, docs, retain, method, hp, idk_docs=idk,
                  loop=replace(loop, lr=lr, steps=steps))
    after = {"forget_acc": direct_accuracy(model, tok, forget_eval),
             "retain_acc": direct_accuracy(model, tok, retain_eval)}
    record = {
        "method": method, "deep": deep, "hyperparameters": res.hyperparameters,
        "lr": lr, "epochs": epochs, "steps": steps, "tuned": tuning is not None,
        "tuning": tuning.to_json() if tuning else None,
        "warnings": list(tuning.warnings) if tuning else [],
        "forget_set": fs.summary(),
        "validation_set": val.summary() if val else None,
        "n_retain_docs": len(retain), "n_retain_eval": len(retain_eval),
        "retain_eval_facts": sorted(int(x["id"]) for d in retain_eval for x in d["facts"]),
        "trainable_parameters": res.trainable,
        "before": before, "after": after,
        "chance": chance_level(ctx.corpus, fs.targets, ctx.world.entity_type),
        "floor": float(np.mean(majority_floor(ctx.corpus.facts, fs.targets))),
        "history": res.history,
        "seconds": {"tune": round(t_tuned - t_start, 3), "unlearn": round(res.seconds, 3),
                    "total": round(time.perf_counter() - t_start, 3)},
        "seed": str(loop.seed),
        "config": to_dict(cfg), "model_stage": ctx.model_stage.name,
        "corpus": ctx.corpus_dir.name, "device": str(dev),
    }
    return model, tok, record


@dataclass(frozen=True)
class Variant:
    """A finished control or unlearned model: what the probes need of it."""

    name: str  # the records' variant column: filter, NPO, NPO_deep...
    stage_dir: Path  # RUN/control-<kind>-<key> or RUN/unlearn-<method>[-deep]-<key>
    removed: tuple[int, ...] | None  # facts it deleted (None: the probes' default)

    @property
    def model_dir(self) -> Path:
        return self.stage_dir / "model"


def variant_name(method: str, deep: bool) -> str:
    """``NPO`` / ``NPO_deep``: the variant column of the records."""
    return f"{method}_deep" if deep else method


def unlearn_stage(ctx: RunContext, cfg: UnlearnConfig, method: str,
                  deep: bool) -> tuple[str, str]:
    """An unlearned variant's stage folder prefix and key."""
    hp = method_params(cfg, method)
    relevant = {k: v for k, v in to_dict(cfg).items()
                if k not in ("methods", "deep", "controls", "params", "progress", "device",
                             "control_steps")}
    key = config_hash(ctx.model_stage.name, method, deep, to_dict(hp), relevant)
    return f"unlearn-{method.lower()}{'-deep' if deep else ''}", key


def unlearn_variant(ctx: RunContext, cfg: UnlearnConfig, method: str, *, deep: bool = False,
                    force: bool = False) -> Variant:
    """Unlearn ``ctx``'s forget targets with one method (the stage reused when finished).

    ``cfg`` is used as it is (no overrides: see :func:`unlearn_run`). Returns the
    :class:`Variant`, its removed facts the forget set's (targets, plus the deletion sets
    when ``deep``).
    """
    name, key = unlearn_stage(ctx, cfg, method, deep)

    def build_stage(tmp: Path) -> None:
        model, tok, record = unlearn_model(ctx, cfg, method, deep=deep)
        save_model(model, tok, tmp / "model")
        atomic_write_text(tmp / "unlearn.json", json.dumps(record, indent=1) + "\n")
        atomic_write_text(tmp / "unlearn_log.jsonl", curve_log(record))

    stage = run_stage(ctx.run_dir, name, key, build_stage, force=force)
    record = json.loads((stage / "unlearn.json").read_text())
    return Variant(variant_name(method, deep), stage, tuple(record["forget_set"]["facts"]))


def unlearn_run(run, cfg: UnlearnConfig | None = None, method: str = "NPO", *,
                deep: bool = False, overrides=(), force: bool = False) -> Path:
    """Unlearn a trained run's forget targets with one method; returns the stage folder.

    Parameters
    ----------
    run : path, TrainedRun or RunContext
        A run folder, a model stage folder, a :class:`~kgtest.pipeline.TrainedRun` (read
        back by :func:`load_run`) or a :class:`RunContext`.
    cfg : UnlearnConfig, optional
        Default: the run's ``[unlearn]`` section (or the defaults).
    method : str
        A registered method (``kgtest.unlearn.METHODS.names()``).
    deep : bool
        Forget the targets plus the smallest minimal deletion set of each.
    overrides : sequence of str
        ``key=value``: ``[unlearn]`` keys or the method's hyperparameters (``beta=0.2``).
    force : bool
        Recompute even if the stage is finished.

    Returns
    -------
    Path
        ``RUN/unlearn-<method>[-deep]-<key>`` with ``model/`` and ``unlearn.json``.

    Raises
    ------
    InputError
        An unknown method or key, a wrong hyperparameter type, targets not in the world,
        an empty forget set, a folder that holds no trained run.
    """
    ctx = load_run(run)
    cfg = apply_overrides(cfg if cfg is not None else ctx.unlearn_config(), method, overrides)
    return unlearn_variant(ctx, cfg, method, deep=deep, force=force).stage_dir


def control_variant(ctx: RunContext, cfg: UnlearnConfig, kind: str, *,
                    force: bool = False) -> Variant:
    """Build one control of ``ctx`` (the stage reused when finished); see :func:`control_run`.

    Its removed facts: the dropped facts of a retrained control, None for ``never_trained``.
    """
    name, key, steps = control_stage(ctx, cfg, kind)
    stage = run_stage(ctx.run_dir, name, key,
                      lambda tmp: _build_control(ctx, cfg, kind, steps, tmp), force=force)
    info = json.loads((stage / "control.json").read_text())
    dropped = info.get("dropped_facts")
    return Variant(kind, stage, None if dropped is None else tuple(dropped))


def control_stage(ctx: RunContext, cfg: UnlearnConfig, kind: str) -> tuple[str, str, int]:
    """A control's stage folder prefix, key and training steps."""
    if kind not in CONTROLS:
        raise InputError(f"unknown control {kind!r} (known: {', '.join(CONTROLS)})")
    deletion_cfg = ([cfg.deletion_restarts, cfg.deletion_time_limit, ctx.unlearn_seed(cfg)]
                    if kind == "ignorance" else None)
    steps = cfg.control_steps or ctx.train_steps()
    key = config_hash(ctx.model_stage.name, kind, deletion_cfg,
                      steps if kind != "never_trained" else None)
    return f"control-{kind.replace('_', '-')}", key, steps


@dataclass
class ControlTraining:
    """A retrained control before training: its corpus, settings and record so far."""

    corpus: Corpus  # the filtered training corpus
    tokenizer: object  # the original's
    model_cfg: object  # ModelConfig: the original's
    train_cfg: object  # TrainConfig: the original's, for ``steps``, its batch order
    init_seed: int  # the original's initialisation seed
    stream: object  # the in-context stream of the filtered corpus, or None
    record: dict  # control.json so far
    t0: float  # when the stage started (for its seconds)


def control_training(ctx: RunContext, cfg: UnlearnConfig, kind: str,
                     steps: int) -> ControlTraining:
    """What a retrained control (``filter``, ``ignorance``) trains, not yet trained."""
    t0 = time.perf_counter()
    tok = load_tokenizer(ctx.model_dir)  # the weights: not needed to retrain
    init_seed = stage_seed(ctx.seed, "model")
    record: dict = {"kind": kind, "model_stage": ctx.model_stage.name,
                    "corpus": ctx.corpus_dir.name, "init_seed": init_seed,
                    "threads": ctx.n_threads}
    sets = None
    if kind == "ignorance":
        sets = deletion_sets(ctx.closure, ctx.split.forget, kb=ctx.kb, fixed=ctx.fixed,
                             restarts=cfg.deletion_restarts,
                             time_limit=cfg.deletion_time_limit,
                             seed=stage_seed(ctx.unlearn_seed(cfg), "deletion"))
    filtered, dropped, checked = control_corpus(ctx.corpus, ctx.split, kind, deletion=sets)
    train_cfg = ctx.cfg.train
    train_cfg = replace(train_cfg, steps=steps, progress=cfg.progress, threads=ctx.n_threads,
                        seed=stage_seed(ctx.seed, "batches") if train_cfg.seed is None
                        else train_cfg.seed)  # the original's batch order
    stream = in_context_stream(ctx.closure, filtered, ctx.split,
                               seed=stage_seed(ctx.seed, "icl"))  # as the original's
    record.update({
        "dropped_facts": dropped, "deletion_sets": {str(k): v for k, v in
                                                    (sets or {}).items()},
        "extra_facts": len(dropped) - len(ctx.split.forget),
        "docs_removed": len(ctx.corpus.train) - len(filtered.train),
        "docs_kept": len(filtered.train), "hygiene_checked": checked,
    })
    return ControlTraining(filtered, tok, ctx.cfg.model, train_cfg, init_seed, stream, record,
                           t0)


def write_control(tmp: Path, record: dict, t0: float, res=None) -> None:
    """``control.json``: the record, the training's steps and loss (``res``), the seconds."""
    record = dict(record)
    if res is not None:
        record.update({"steps": res.steps, "final_loss": res.final_loss})
    record["seconds"] = round(time.perf_counter() - t0, 3)
    atomic_write_text(tmp / "control.json", json.dumps(record, indent=1) + "\n")


def _build_control(ctx: RunContext, cfg: UnlearnConfig, kind: str, steps: int,
                   tmp: Path) -> None:
    if kind == "never_trained":
        t0 = time.perf_counter()
        tok = load_tokenizer(ctx.model_dir)
        init_seed = stage_seed(ctx.seed, "model")
        never_trained(tok, ctx.cfg.model, tmp / "model", init_seed=init_seed)
        write_control(tmp, {"kind": kind, "model_stage": ctx.model_stage.name,
                            "corpus": ctx.corpus_dir.name, "init_seed": init_seed,
                            "threads": ctx.n_threads}, t0)
        return
    job = control_training(ctx, cfg, kind, steps)
    res = train_control(job.corpus, job.tokenizer, job.model_cfg, job.train_cfg, tmp,
                        init_seed=job.init_seed, extra=job.stream)
    write_control(tmp, job.record, job.t0, res)


def control_run(run, kind: str, cfg: UnlearnConfig | None = None, *,
                overrides=(), force: bool = False) -> Path:
    """Build one control (``filter``, ``ignorance``, ``never_trained``) of a trained run.

    Retrained controls use the original's tokenizer, model config, initialisation seed and
    training config, for the number of steps the original took (``stop_at`` off; or
    ``cfg.control_steps``). Returns
    ``RUN/control-<kind>-<key>`` with ``model/`` and ``control.json`` (dropped facts,
    documents removed, hygiene-checked documents, training steps and seconds).
    """
    if kind not in CONTROLS:
        raise InputError(f"unknown control {kind!r} (known: {', '.join(CONTROLS)})")
    ctx = load_run(run)
    cfg = cfg if cfg is not None else ctx.unlearn_config()
    if overrides:
        data = to_dict(cfg)
        for item in overrides:
            data = _apply(data, [item.removeprefix("unlearn.")], where="--set")
        cfg = build(UnlearnConfig, data, where="--set", section="unlearn")
    return control_variant(ctx, cfg, kind, force=force).stage_dir
