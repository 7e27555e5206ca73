"""The pipeline: the only module that knows the order of the stages.

::

    spec -> world -> closure -> split -> corpus -> tokenizer + model -> train
         -> controls + unlearned variants -> records + report -> published at RUN/

Each stage writes a folder ``RUN/<stage>-<key>/`` whose key hashes the run seed and the
config sections the stage depends on, through the one atomic-stage helper
:func:`kgtest.stages.run_stage` (built in a temporary folder, marker last, renamed into
place, the run folder locked), so re-running a spec reuses finished stages and a changed
setting recomputes only what depends on it. Training resumes from its last checkpoint if
a run is interrupted. Under ``torchrun``
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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kgtest.config import config_hash, to_dict
from kgtest.corpus.in_context import in_context_stream
from kgtest.corpus.io import build_corpus, read_corpus
from kgtest.corpus.splits import Split
from kgtest.distributed import dist_info, run_stage_ranked
from kgtest.errors import InputError
from kgtest.experiment import ExperimentConfig
from kgtest.interop.runinfo import write_run_info
from kgtest.progress import probe_progress
from kgtest.seeds import seed_strings, stage_seed
from kgtest.symbolic.facts import atomic_write_text
from kgtest.worlds.export import describe_world, write_world
from kgtest.worlds.samplers import sample_world

__all__ = ["world_stage", "corpus_stage", "train_stage", "make_eval_fn", "TrainedRun",
           "train_experiment"]


def _world(cfg: ExperimentConfig):
    return sample_world(cfg.world, seed=stage_seed(cfg.run.seed, "world"))


def _write_config(cfg: ExperimentConfig, out: Path) -> None:
    data = {"source": cfg.source, "overrides": list(cfg.overrides), **to_dict(cfg)}
    atomic_write_text(out / "config.json", json.dumps(data, indent=1) + "\n")


def world_stage(cfg: ExperimentConfig, run_dir: str | os.PathLike) -> Path:
    """Sample and close the world; write facts, rules, derivations, stats and a drawing."""

    def build(tmp: Path) -> None:
        world = _world(cfg)
        closure = world.close()
        write_world(world, closure, tmp)
        atomic_write_text(tmp / "summary.txt", describe_world(world, closure) + "\n")
        _write_config(cfg, tmp)

    return run_stage_ranked(run_dir, "world", cfg.key("world"), build)


def corpus_stage(cfg: ExperimentConfig, run_dir: str | os.PathLike) -> Path:
    """World -> closure -> split -> rendered, hygiene-checked corpus (JSONL)."""

    def build(tmp: Path) -> None:
        build_corpus(_world(cfg), cfg.split, cfg.corpus, tmp, seed=cfg.run.seed,
                     where=cfg.source)
        _write_config(cfg, tmp)

    return run_stage_ranked(run_dir, "corpus", cfg.key("world", "split", "corpus"), build)


# --- in-loop evaluation ---------------------------------------------------------------

def final_answer(text: str) -> str:
    """The answer after the last ``A`` / ``Answer:`` marker of a completion ('' if none).

    >>> final_answer("a r b . b r c . A c"), final_answer("Ann is ... Answer: Bob Ng.")
    ('c', 'Bob Ng.')
    """
    text = " " + text
    marks = [(text.rfind(m), m) for m in (" A ", " Answer: ")]
    i, m = max(marks)
    return text[i + len(m):].strip() if i >= 0 else ""


def is_correct(output: str, doc: dict) -> bool:
    """Greedy output vs a document's completion: exact answer (CoT: the final answer)."""
    if doc["kind"] == "cot":
        ans = final_answer(output)
        return bool(ans) and ans == final_answer(doc["completion"])
    return output.strip() == doc["completion"].strip()


@dataclass(frozen=True)
class EvalSets:
    """The documents the in-loop evaluation asks (a fixed, seeded sample)."""

    direct: tuple  # QA on facts stated in training
    cot: tuple  # CoT questions on held-out derived facts (rule demonstrated elsewhere)
    # with split.ood_fraction > 0, the latent (no CoT) question on held-out derived facts,
    # in distribution and out of it (Split.ood): Wang et al.'s grokking curves
    latent_id: tuple = ()
    latent_ood: tuple = ()


def eval_sets(corpus, split: Split, *, limit: int = 200, seed: int = 0,
              avoid=()) -> EvalSets:
    """Pick the in-loop evaluation questions from a corpus's eval documents.

    Early stopping must not select on the facts the report scores: the forget and
    validation targets and ``avoid`` (the utility probe's retained facts) are never asked.
    """
    skip = set(split.forget.tolist()) | set(split.validation.tolist()) | {int(f) for f in avoid}
    trained = {f["id"] for d in corpus.train if d["kind"] in ("statement", "qa")
               for f in d["facts"] if f["role"] in ("stated", "answer")} - skip
    held = set(split.held_out.tolist()) - skip
    ood = set(split.ood.tolist())
    direct, cot, latent = [], [], {False: [], True: []}
    for d in corpus.eval:
        ans = [f["id"] for f in d["facts"] if f["role"] == "answer"]
        if not ans:
            continue
        if d.get("probe") == "direct" and ans[0] in trained:
            direct.append(d)
        elif d.get("probe") == "direct" and ans[0] in held and ood:
            latent[ans[0] in ood].append(d)
        elif d.get("probe") == "cot" and ans[0] in held:
            cot.append(d)
    rng = np.random.default_rng(seed)

    def sample(docs):
        if len(docs) <= limit:
            return tuple(docs)
        return tuple(docs[i] for i in sorted(rng.choice(len(docs), limit, replace=False)))

    return EvalSets(direct=sample(direct), cot=sample(cot), latent_id=sample(latent[False]),
                    latent_ood=sample(latent[True]))


def _scored(cfg: ExperimentConfig, corpus, split: Split) -> set[int]:
    """The retained facts the utility probe will score (kept out of early stopping)."""
    from kgtest.probes.probes import utility_retain_facts

    kept = utility_retain_facts(corpus, split, cfg.probes.utility_limit, cfg.seeds()["probes"])
    return set(kept["direct"]) | set(kept["cot"])


def make_eval_fn(tokenizer, sets: EvalSets):
    """``eval_fn(model) -> {"direct": acc, "cot": acc}`` for :func:`kgtest.train.train`,
    plus ``latent_id`` and ``latent_ood`` where ``sets`` has them (``split.ood_fraction``)."""
    from kgtest.probes.scoring import greedy_complete

    def accuracy(model, docs, max_new: int) -> float:
        if not docs:
            return float("nan")
        outs = greedy_complete(model, tokenizer, [d["prompt"] for d in docs], max_new)
        hits = [is_correct(o, d) for o, d in zip(outs, docs, strict=True)]
        return float(np.mean(hits))

    def eval_fn(model) -> dict[str, float]:
        out = {"direct": accuracy(model, sets.direct, 8)}
        if sets.cot:
            longest = max(len(tokenizer(d["completion"])["input_ids"]) for d in sets.cot)
            out["cot"] = accuracy(model, sets.cot, longest + 4)
        for name in ("latent_id", "latent_ood"):
            if getattr(sets, name):
                out[name] = accuracy(model, getattr(sets, name), 8)
        return out

    return eval_fn


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


def train_stage(cfg: ExperimentConfig, run_dir: str | os.PathLike,
                corpus_dir: Path | None = None, *, key: str | None = None) -> Path:
    """Tokenizer + model + training loop on the corpus's training documents.

    ``key`` overrides the stage key (for corpora built outside :func:`corpus_stage`, such
    as :mod:`kgtest.claims_model`'s worlds, which no ``[world]`` section describes).
    """
    from kgtest.model import build_model
    from kgtest.train import train

    corpus_dir = corpus_dir or corpus_stage(cfg, run_dir)

    def build(tmp: Path) -> None:
        corpus = read_corpus(corpus_dir)
        split = Split.load(corpus_dir / "split.json")
        tok = corpus_tokenizer(cfg, corpus)
        seeds = cfg.seeds()
        model = build_model(cfg.model, tok, seed=seeds["model"])
        sets = eval_sets(corpus, split, seed=seeds["eval"], avoid=_scored(cfg, corpus, split))
        train_cfg = replace(cfg.train, seed=seeds["batches"])
        if not sets.cot and "cot" in train_cfg.stop_at:  # no held-out facts to measure CoT on
            train_cfg = replace(train_cfg, stop_at={k: v for k, v in train_cfg.stop_at.items()
                                                    if k != "cot"})
        stream = in_context_stream(_world(cfg).close(), corpus, split,
                                   seed=cfg.seeds()["icl"])
        if stream is not None and not train_cfg.answer_only_loss:
            raise InputError("corpus.icl.per_step > 0 writes made-up premises: it needs "
                             "train.answer_only_loss = true")
        result = train(model, tok, list(corpus.train), train_cfg, tmp,
                       eval_fn=make_eval_fn(tok, sets), resume=True, extra=stream)
        if not dist_info().is_main:  # under torchrun, rank 0 writes the stage
            return
        metrics = {
            "steps": result.steps, "final_loss": result.final_loss,
            "stopped_early": result.stopped_early, "tokens": result.tokens,
            "seconds": result.seconds, **{f"acc_{k}": v for k, v in result.metrics.items()},
            "n_eval_direct": len(sets.direct), "n_eval_cot": len(sets.cot),
            **{f"n_eval_{k}": len(getattr(sets, k)) for k in ("latent_id", "latent_ood")
               if getattr(sets, k)},
            "seeds": seed_strings({k: seeds[k] for k in ("model", "batches", "eval")}),
        }
        atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1) + "\n")
        _write_config(cfg, tmp)

    key = key or cfg.key("world", "split", "corpus", "model", "train")
    return run_stage_ranked(run_dir, "model", key, build, collective=True)


def train_experiment(cfg: ExperimentConfig, run_dir: str | os.PathLike) -> TrainedRun:
    """Run world, corpus and training stages (reusing finished ones), the run folder locked
    (by rank 0 alone under ``torchrun``)."""
    from kgtest.stages import run_lock

    with run_lock(run_dir) if dist_info().is_main else contextlib.nullcontext():
        world_stage(cfg, run_dir)
        corpus_dir = corpus_stage(cfg, run_dir)
        stage_dir = train_stage(cfg, run_dir, corpus_dir)
    metrics = json.loads((stage_dir / "metrics.json").read_text())
    return TrainedRun(corpus_dir, stage_dir / "model", stage_dir, metrics)


# --- the whole experiment -----------------------------------------------------------------


def variant_name(method: str, deep: bool) -> str:
    """``NPO`` / ``NPO_deep``: the variant column of the records."""
    return f"{method}_deep" if deep else method


#: What a run publishes at the top of its folder from its records stage (kgtest.stages.publish).
PUBLISHED = ("records.jsonl", "records.parquet", "summary.md", "summary.json", "plots",
             "seeds.json")
RECORDS_MARK = ".records.key"  # written last by publish: the records stage on display


def run_experiment(cfg: ExperimentConfig, run_dir: str | os.PathLike, *,
                   command: str = "", log=print) -> Path:
    """Everything: world, corpus, training, controls, unlearning, probes, report.

    Finished stages are reused (each is keyed by the configs it depends on), so an
    interrupted run resumes where it stopped. The run folder is locked for the whole run
    (a second process on it gets :class:`kgtest.stages.RunBusy`). Records, summary and
    plots are built in the ``records-<key>`` stage and then published at the top of the
    run folder (:func:`kgtest.stages.publish`), so a run that fails never replaces the
    outputs of an earlier one. Returns the ``summary.md`` path.
    """
    from kgtest.stages import publish, published, run_lock

    run_dir = Path(run_dir)
    with run_lock(run_dir, command=command or None):
        write_run_info(cfg, run_dir, command)  # spec.toml, run.json (versions, git), command
        log(f"[1/5] world and corpus -> {run_dir}")
        world_stage(cfg, run_dir)
        trained = train_experiment(cfg, run_dir)
        log(f"[2/5] original model: {trained.model_dir}")
        variants, removed = _variants(cfg, trained, log)
        log(f"[5/5] probes {', '.join(cfg.probes.probes)} on {len(variants)} variants")
        stage = records_stage(cfg, run_dir, trained, variants, removed, command=command,
                              log=log)
        if not (published(stage, run_dir, RECORDS_MARK)
                and all((run_dir / n).exists() == (stage / n).exists() for n in PUBLISHED)):
            publish(stage, run_dir, PUBLISHED, marker=RECORDS_MARK)
    return run_dir / "summary.md"


def _variants(cfg: ExperimentConfig, trained: TrainedRun, log
              ) -> tuple[dict[str, Path], dict[str, list[int]]]:
    """Controls and unlearned variants: ``{name: model dir}`` and each one's removed facts."""
    from kgtest.unlearn.api import control_run, unlearn_run

    variants: dict[str, Path] = {"original": trained.model_dir}
    removed: dict[str, list[int]] = {}
    for kind in cfg.unlearn.controls:
        log(f"[3/5] control: {kind}")
        stage = control_run(trained, kind, cfg.unlearn)
        variants[kind] = stage / "model"
        info = json.loads((stage / "control.json").read_text())
        if "dropped_facts" in info:
            removed[kind] = list(info["dropped_facts"])
    for method in cfg.unlearn.methods:
        for deep in cfg.unlearn.deep:
            name = variant_name(method, deep)
            log(f"[4/5] unlearning: {name}")
            stage = unlearn_run(trained, cfg.unlearn, method, deep=deep)
            variants[name] = stage / "model"
            info = json.loads((stage / "unlearn.json").read_text())
            removed[name] = list(info["forget_set"]["facts"])
    return variants, removed


def records_stage(cfg: ExperimentConfig, run_dir: str | os.PathLike, trained: TrainedRun,
                  variants: dict[str, Path], removed: dict[str, list[int]], *,
                  command: str = "", log=print) -> Path:
    """Probe every variant and report: ``RUN/records-<key>/`` with the records, the summary
    (``summary.md``, ``summary.json``) and ``plots/``."""
    from kgtest.probes.context import ProbeContext
    from kgtest.probes.probes import asked, evaluate
    from kgtest.records import read_records, write_records
    from kgtest.report import report

    run_dir = Path(run_dir)

    def build(tmp: Path) -> None:
        all_seeds = cfg.seeds()
        atomic_write_text(tmp / "seeds.json",
                          json.dumps({"run": str(cfg.run.seed), **seed_strings(all_seeds)},
                                     indent=1) + "\n")
        seeds = {"world": all_seeds["world"], "train": all_seeds["batches"],
                 "unlearn": all_seeds["unlearn"], "attack": all_seeds["attack"],
                 "probes": all_seeds["probes"]}
        ctx = ProbeContext.from_run(
            trained.corpus_dir, _world(cfg), run_id=f"{cfg.run.name}-seed{cfg.run.seed}",
            seeds=seeds, removed=removed, relearn=cfg.probes.relearn,
            quantize_bits=cfg.probes.quantize_bits, utility_limit=cfg.probes.utility_limit,
            quantize_group_size=cfg.probes.quantize_group_size,
            quantize_embeddings=cfg.probes.quantize_embeddings,
            batch_size=cfg.probes.batch_size)
        with probe_progress(len(variants) * len(cfg.probes.probes),
                            lambda msg: log(f"      {msg}")) as plog:  # a bar on a terminal
            rows = evaluate(variants, ctx, probes=cfg.probes.probes, log=plog,
                            facts=asked(ctx, cfg.probes.facts))
        write_records(rows, tmp)
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
        sets = eval_sets(corpus, split, seed=seeds["eval"], avoid=_scored(cfg, corpus, split))
        res = train_ensemble(models, tok, list(corpus.train),
                             replace(cfg.train, seed=seeds["batches"]), tmp,
                             eval_fn=make_eval_fn(tok, sets))
        metrics = {"members": members, "steps": list(res.steps),
                   "final_loss": list(res.final_losses), "metrics": list(res.metrics),
                   "stopped_early": list(res.stopped_early), "tokens": list(res.tokens),
                   "seconds": res.seconds}
        atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1) + "\n")
        _write_config(cfg, tmp)

    key = config_hash(cfg.key("world", "split", "corpus", "model", "train"), members)
    return run_stage_ranked(run_dir, "ensemble", key, build)
