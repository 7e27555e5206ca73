"""The pipeline: the only module that knows the order of the stages.

::

    cfg      = load_experiment(SPEC)                          (kgtest.experiment)
    world    = world_of(cfg)                                   sampled once per run
    world-   = world_stage(cfg, RUN, world)                    closure, drawing, stats
    corpus-  = corpus_stage(cfg, RUN, world)                   split + rendered documents
    model-   = train_stage(cfg, RUN, corpus, world=world)      tokenizer, model, training
    records- = records_stage(cfg, RUN, world, trained)         in it, run_variants: the
               control-* and unlearn-* stages, then probes -> records, summary, plots,
               published at the top of RUN/

:func:`run_experiment` runs them all; :func:`train_experiment` the first three;
:mod:`kgtest.claims_model` calls :func:`train_stage` and :func:`run_variants` on a world
it is given. Each stage writes a folder ``RUN/<stage>-<key>/`` whose key hashes the run
seed and the config sections the stage depends on, through the one atomic-stage helper
:func:`kgtest.stages.run_stage` (built in a temporary folder, marker last, renamed into
place, the run folder locked), so re-running a spec reuses finished stages and a changed
setting recomputes only what depends on it. Training resumes from its last checkpoint if
a run is interrupted. ``jobs`` > 1 runs the controls, unlearning and probes in worker
processes (:mod:`kgtest.variants`). Under ``torchrun``
(``torchrun --nproc_per_node N -m kgtest train SPEC``), rank 0 builds the world and corpus
stages while the others wait, and every rank trains its shard (DistributedDataParallel).

Examples
--------
>>> import tempfile
>>> from kgtest.experiment import load_experiment
>>> cfg = load_experiment("experiments/quickstart.toml")
>>> run = tempfile.mkdtemp()
>>> corpus_dir = corpus_stage(cfg, run)
>>> (corpus_dir / "train.jsonl").exists(), corpus_dir.name.startswith("corpus-")
(True, True)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from kgtest.config import config_hash, to_dict
from kgtest.corpus.in_context import in_context_stream
from kgtest.corpus.io import build_corpus, read_corpus
from kgtest.corpus.splits import Split
from kgtest.distributed import dist_info, run_stage_ranked
from kgtest.errors import InputError
from kgtest.experiment import ExperimentConfig
from kgtest.interop.runinfo import write_run_info
from kgtest.report.runs import STAGES
from kgtest.seeds import seed_strings, stage_seed
from kgtest.symbolic.facts import atomic_write_text
from kgtest.train_config import resolve_device, run_threads
from kgtest.train_eval import EvalSets, make_eval_fn, measurable_stop, run_eval_sets
from kgtest.worlds.export import describe_world, write_world
from kgtest.worlds.samplers import sample_world
from kgtest.worlds.world import World

__all__ = ["world_of", "world_stage", "corpus_stage", "train_stage", "TrainedRun",
           "train_experiment", "run_variants", "run_experiment"]


def _write_config(cfg: ExperimentConfig, out: Path) -> None:
    data = {"source": cfg.source, "overrides": list(cfg.overrides), **to_dict(cfg)}
    atomic_write_text(out / "config.json", json.dumps(data, indent=1) + "\n")


def world_of(cfg: ExperimentConfig) -> World:
    """The run's world: ``cfg.world`` sampled with the run's world seed (once per run)."""
    return sample_world(cfg.world, seed=stage_seed(cfg.run.seed, "world"))


def world_stage(cfg: ExperimentConfig, run_dir: str | os.PathLike,
                world: World | None = None) -> Path:
    """Close the world; write facts, rules, derivations, stats and a drawing.

    ``world`` is :func:`world_of` ``(cfg)``, sampled here when not given.
    """

    def build(tmp: Path) -> None:
        nonlocal world
        world = world or world_of(cfg)
        closure = world.close()
        write_world(world, closure, tmp)
        atomic_write_text(tmp / "summary.txt", describe_world(world, closure) + "\n")
        _write_config(cfg, tmp)

    return run_stage_ranked(run_dir, "world", cfg.key("world"), build)


def corpus_stage(cfg: ExperimentConfig, run_dir: str | os.PathLike,
                 world: World | None = None) -> Path:
    """World -> closure -> split -> rendered, hygiene-checked corpus (JSONL)."""

    def build(tmp: Path) -> None:
        build_corpus(world or world_of(cfg), cfg.split, cfg.corpus, tmp, seed=cfg.run.seed,
                     where=cfg.source)
        _write_config(cfg, tmp)

    return run_stage_ranked(run_dir, "corpus", cfg.key("world", "split", "corpus"), build)


# --- training ---------------------------------------------------------------------------


def corpus_tokenizer(cfg: ExperimentConfig, corpus):
    """The run's tokenizer: word-level (symbolic) or BPE (natural) over every document part,
    so entities seen only in probes still have ids; with ``model.init_from``, that
    checkpoint's tokenizer plus every entity name as a token."""
    from kgtest.corpus.tokenizer import build_tokenizer

    if cfg.model.init_from:
        from kgtest.pretrained import pretrained_tokenizer

        return pretrained_tokenizer(cfg.model.init_from, corpus.surface.entity_display)
    texts = [d["text"] for part in ("train", "eval", "unknown", "in_context")
             for d in corpus.part(part)]
    return build_tokenizer(texts, kind="word" if cfg.corpus.surface == "symbolic" else "bpe")


@dataclass(frozen=True)
class TrainedRun:
    """Where a trained model and its corpus live, with its final metrics."""

    corpus_dir: Path
    model_dir: Path  # the HF checkpoint (save_pretrained + tokenizer)
    stage_dir: Path  # train_log.jsonl, metrics.json
    metrics: dict


@dataclass
class TrainJob:
    """What the training stage trains: a fresh model, its data and its loop settings."""

    model: object  # PreTrainedModel, initialised from the run's model seed
    tokenizer: object  # PreTrainedTokenizerFast
    docs: list  # the corpus's training documents
    cfg: object  # TrainConfig: the run's, with its batch seed (and stop_at as measurable)
    eval_fn: object  # make_eval_fn(tokenizer, sets)
    sets: EvalSets
    stream: object  # the fresh-per-step in-context stream (corpus.icl), or None
    seeds: dict  # the run's stage seeds


MODEL_SECTIONS = ("world", "split", "corpus", "model", "train")  # the model stage's key


def train_job(cfg: ExperimentConfig, corpus_dir: Path, world: World | None = None, *,
              build: bool = True) -> TrainJob:
    """The training stage's inputs for ``cfg`` on a finished corpus stage (``world``: the
    run's, sampled from ``cfg`` when not given); ``build`` False: settings only, no model
    (``model`` None; :func:`initial_model` builds it)."""
    corpus = read_corpus(corpus_dir)
    split = Split.load(corpus_dir / "split.json")
    tok = corpus_tokenizer(cfg, corpus)
    seeds = cfg.seeds()
    model = initial_model(cfg, tok) if build else None
    world = world or world_of(cfg)
    sets = run_eval_sets(cfg, corpus, split, entity_type=world.entity_type)
    train_cfg = measurable_stop(replace(cfg.train, seed=seeds["batches"]), sets)
    stream = in_context_stream(world.close(), corpus, split,
                               seed=seeds["icl"])
    if stream is not None and not train_cfg.answer_only_loss:
        raise InputError("corpus.icl.per_step > 0 writes made-up premises: it needs "
                         "train.answer_only_loss = true")
    return TrainJob(model, tok, list(corpus.train), train_cfg, make_eval_fn(tok, sets), sets,
                    stream, seeds)


def initial_model(cfg: ExperimentConfig, tokenizer):
    """The run's freshly initialised model (its ``model`` seed): what the training stage
    trains."""
    from kgtest.model import build_model

    return build_model(cfg.model, tokenizer, seed=cfg.seeds()["model"])


def write_model_stage(cfg: ExperimentConfig, tmp: Path, job: TrainJob, result,
                      **extra) -> None:
    """A trained model stage's ``metrics.json`` (``result``: a TrainResult) and config."""
    sets, seeds = job.sets, job.seeds
    metrics = {
        "steps": result.steps, "final_loss": result.final_loss,
        "stopped_early": result.stopped_early, "tokens": result.tokens,
        "seconds": result.seconds, **{f"acc_{k}": v for k, v in result.metrics.items()},
        "n_eval_direct": len(sets.direct), "n_eval_cot": len(sets.cot),
        **{f"n_eval_{k}": len(getattr(sets, k)) for k in ("latent_id", "latent_ood")
           if getattr(sets, k)},
        "seeds": seed_strings({k: seeds[k] for k in ("model", "batches", "eval")}),
        "threads": run_threads(job.cfg.threads, resolve_device(job.cfg.device)), **extra,
    }
    atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    _write_config(cfg, tmp)


def train_stage(cfg: ExperimentConfig, run_dir: str | os.PathLike,
                corpus_dir: Path | None = None, *, key: str | None = None,
                world: World | None = None) -> Path:
    """Tokenizer + model + training loop on the corpus's training documents.

    ``key`` overrides the stage key and ``world`` the run's world (for corpora built
    outside :func:`corpus_stage`, such as :mod:`kgtest.claims_model`'s worlds, which no
    ``[world]`` section describes).
    """
    from kgtest.train import train

    corpus_dir = corpus_dir or corpus_stage(cfg, run_dir, world)

    def build(tmp: Path) -> None:
        job = train_job(cfg, corpus_dir, world)
        result = train(job.model, job.tokenizer, job.docs, job.cfg, tmp, eval_fn=job.eval_fn,
                       resume=True, extra=job.stream)
        if dist_info().is_main:  # under torchrun, rank 0 writes the stage
            write_model_stage(cfg, tmp, job, result)

    key = key or cfg.key(*MODEL_SECTIONS)
    return run_stage_ranked(run_dir, "model", key, build, collective=True)


def train_experiment(cfg: ExperimentConfig, run_dir: str | os.PathLike,
                     world: World | None = None, *, world_files: bool = True) -> TrainedRun:
    """Run world, corpus and training stages (reusing finished ones), the run folder locked
    (by rank 0 alone under ``torchrun``); ``world`` is :func:`world_of` ``(cfg)``, sampled
    where a stage needs it when not given. ``world_files`` False: not the world stage
    (its files and drawing), which no later stage reads (``--seeds --jobs``: a worker may
    be writing it meanwhile)."""
    from kgtest.stages import run_lock

    with run_lock(run_dir) if dist_info().is_main else contextlib.nullcontext():
        if world_files:
            world_stage(cfg, run_dir, world)
        corpus_dir = corpus_stage(cfg, run_dir, world)
        stage_dir = train_stage(cfg, run_dir, corpus_dir, world=world)
    metrics = json.loads((stage_dir / "metrics.json").read_text())
    return TrainedRun(corpus_dir, stage_dir / "model", stage_dir, metrics)


# --- the variants of one trained run -------------------------------------------------------


def stage_threads(cfg: ExperimentConfig, jobs: int = 1) -> int:
    """The intra-op threads of a run's stages after training: 1 in a stage pool
    (``jobs`` > 1, or in one of its workers: one thread per worker), else the run's
    (:func:`~kgtest.train_config.run_threads` of ``train.threads``)."""
    if jobs > 1:
        return 1
    return run_threads(cfg.train.threads, resolve_device(cfg.train.device))


def run_variants(cfg: ExperimentConfig, run_dir: str | os.PathLike, world: World,
                 trained: TrainedRun, *, run_id: str | None = None,
                 world_seed: int | None = None, jobs: int = 1, log=print,
                 stages: list[str] | None = None) -> list[dict]:
    """Controls, unlearned variants and probes of one trained run: its tidy records.

    Builds each control of ``cfg.unlearn.controls`` and each method x deep variant
    (stages reused when finished), then probes the original and every variant on
    ``cfg.probes.facts`` and gates the rows by what the original knew. ``world`` is the
    one the corpus was rendered from (never re-sampled here).

    Parameters
    ----------
    cfg : ExperimentConfig
        Its ``unlearn`` and ``probes`` sections (and the rest, as the model was trained).
    run_dir : path
        Where the ``control-*`` and ``unlearn-*`` stages go (the run folder).
    world : World
    trained : TrainedRun
        The original model (:func:`train_experiment`).
    run_id, world_seed
        Recorded on every row; default ``<run.name>-seed<run.seed>`` and the run's world
        seed.
    jobs : int
        Worker processes (one torch thread each) for the independent stages: controls and
        unlearned variants, then each variant's probes as soon as it is built. The
        records are the ones a serial run at one thread gives (:mod:`kgtest.variants`).
        Serially, every stage runs with the run's threads (:func:`stage_threads`).
    log : callable
        One progress line per stage.
    stages : list, optional
        Gets the names of the control and unlearning stage folders used appended.

    Returns
    -------
    list of dict
        Rows for ``original``, the controls, the methods (in that order) x probe x fact.
    """
    from kgtest.unlearn.api import RunContext
    from kgtest.variants import ProbeJob, build_variant, run_parallel, stage_line, variant_builds

    threads = stage_threads(cfg, jobs)
    ctx = RunContext.of(cfg, trained, world, threads=threads)
    seeds = cfg.seeds()
    probe = ProbeJob(cfg=cfg, corpus_dir=Path(trained.corpus_dir), world=world,
                     run_id=run_id or f"{cfg.run.name}-seed{cfg.run.seed}",
                     seeds={"world": seeds["world"] if world_seed is None else world_seed,
                            "train": seeds["batches"], "unlearn": seeds["unlearn"],
                            "attack": seeds["attack"], "probes": seeds["probes"]},
                     threads=threads)
    builds = variant_builds(cfg)
    if jobs > 1:
        return run_parallel(ctx, builds, probe, jobs=jobs, log=log, stages=stages)
    variants = {"original": trained.model_dir}
    removed: dict[str, list[int]] = {}
    for build in builds:
        log(stage_line(build))
        v = build_variant(ctx, build)
        if stages is not None:
            stages.append(v.stage_dir.name)
        variants[v.name] = v.model_dir
        if v.removed is not None:
            removed[v.name] = list(v.removed)
    log(f"[5/5] probes {', '.join(cfg.probes.probes)} on {len(variants)} variants")
    return probe.evaluate(variants, removed, log)


# --- the whole experiment -----------------------------------------------------------------

#: What a run publishes at the top of its folder from its records stage (kgtest.stages.publish).
PUBLISHED = ("records.jsonl", "records.parquet", "summary.md", "summary.json", "plots",
             "seeds.json", STAGES)
RECORDS_MARK = ".records.key"  # written last by publish: the records stage on display


def drop_records(run_dir: str | os.PathLike) -> None:
    """Remove a run folder's records stages and their published outputs (hold its lock, or
    own the folder): its next run reuses every model stage and redoes the probes and the
    report only (as the benchmarks and tests that time or compare those do)."""
    run = Path(run_dir)
    for p in [*run.glob("records-*"), *(run / n for n in (*PUBLISHED, RECORDS_MARK))]:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def run_experiment(cfg: ExperimentConfig, run_dir: str | os.PathLike, *,
                   command: str = "", log=print, jobs: int = 1) -> Path:
    """Everything: world, corpus, training, controls, unlearning, probes, report.

    Finished stages are reused (each is keyed by the configs it depends on), so an
    interrupted run resumes where it stopped. The run folder is locked for the whole run
    (a second process on it gets :class:`kgtest.stages.RunBusy`; ``jobs`` > 1 runs the
    controls, unlearning and probes in that many worker processes, which share the
    lock). Records, summary and plots are built in the ``records-<key>`` stage and then
    published at the top of the run folder (:func:`kgtest.stages.publish`), so a run that
    fails never replaces the outputs of an earlier one. Returns the ``summary.md`` path.
    """
    from kgtest.stages import publish, published, run_lock

    run_dir = Path(run_dir)
    with run_lock(run_dir, command=command or None):
        write_run_info(cfg, run_dir, command)  # spec.toml, run.json (versions, git), command
        log(f"[1/5] world and corpus -> {run_dir}")
        world = world_of(cfg)
        trained = train_experiment(cfg, run_dir, world)
        log(f"[2/5] original model: {trained.model_dir}")
        stage = records_stage(cfg, run_dir, world, trained, command=command, log=log,
                              jobs=jobs)
        if not (published(stage, run_dir, RECORDS_MARK)
                and all((run_dir / n).exists() == (stage / n).exists() for n in PUBLISHED)):
            publish(stage, run_dir, PUBLISHED, marker=RECORDS_MARK)
    return run_dir / "summary.md"


def records_stage(cfg: ExperimentConfig, run_dir: str | os.PathLike, world: World,
                  trained: TrainedRun, *, command: str = "", log=print, jobs: int = 1) -> Path:
    """:func:`run_variants` and the report: ``RUN/records-<key>/`` with the records, the
    summary (``summary.md``, ``summary.json``), ``plots/`` and ``stages.json`` (the stage
    folders the records came from: the report reads only those, not the folders an earlier
    configuration of this run folder left)."""
    from kgtest.records import read_records, write_records
    from kgtest.report import report
    from kgtest.report.runs import stages_in_use

    run_dir = Path(run_dir)

    def build(tmp: Path) -> None:
        all_seeds = cfg.seeds()
        atomic_write_text(tmp / "seeds.json",  # and the intra-op threads the stages used
                          json.dumps({"run": str(cfg.run.seed), **seed_strings(all_seeds),
                                      "threads": str(stage_threads(cfg, jobs))},
                                     indent=1) + "\n")
        stages = [Path(trained.corpus_dir).name, Path(trained.stage_dir).name]
        rows = run_variants(cfg, run_dir, world, trained, jobs=jobs, log=log, stages=stages)
        write_records(rows, tmp)
        atomic_write_text(tmp / STAGES, json.dumps({"stages": stages}, indent=1) + "\n")
        with stages_in_use(run_dir, stages):
            report([run_dir], tmp, records=read_records(tmp), command=command,
                   control=cfg.probes.control, n_boot=cfg.probes.n_boot,
                   seed=all_seeds["bootstrap"])

    key = cfg.key("world", "split", "corpus", "model", "train", "unlearn", "probes")
    return run_stage_ranked(run_dir, "records", key, build)


def ensemble_stage(cfg: ExperimentConfig, run_dir: str | os.PathLike, members: int) -> Path:
    """Train ``members`` models of the spec together (:func:`kgtest.ensemble.train_ensemble`).

    Member ``m`` is initialised from model seed ``stage_seed(run.seed + m, "model")``, so
    member 0 has the initial weights ``kgtest train`` would use; all members see the same
    batches (``cfg.seeds()["batches"]``). Writes ``RUN/ensemble-<key>/member-<m>/`` (ordinary HF
    checkpoints), ``train_log.jsonl`` and ``metrics.json`` (one entry per member).
    """
    from kgtest.ensemble import train_ensemble
    from kgtest.errors import InputError
    from kgtest.model import build_model

    if members < 1:
        raise InputError(f"--ensemble must be >= 1, got {members}")
    corpus_dir = corpus_stage(cfg, run_dir)

    def build(tmp: Path) -> None:
        corpus = read_corpus(corpus_dir)
        split = Split.load(corpus_dir / "split.json")
        tok = corpus_tokenizer(cfg, corpus)
        models = [build_model(cfg.model, tok, seed=stage_seed(cfg.run.seed + m, "model"))
                  for m in range(members)]
        seeds = cfg.seeds()
        sets = run_eval_sets(cfg, corpus, split, entity_type=world_of(cfg).entity_type)
        res = train_ensemble(models, tok, list(corpus.train),
                             measurable_stop(replace(cfg.train, seed=seeds["batches"]), sets), tmp,
                             eval_fn=make_eval_fn(tok, sets))
        metrics = {"members": members, "steps": list(res.steps),
                   "final_loss": list(res.final_losses), "metrics": list(res.metrics),
                   "stopped_early": list(res.stopped_early), "tokens": list(res.tokens),
                   "seconds": res.seconds}
        atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1) + "\n")
        _write_config(cfg, tmp)

    key = config_hash(cfg.key("world", "split", "corpus", "model", "train"), members)
    return run_stage_ranked(run_dir, "ensemble", key, build)
