"""The variants of one trained run, built and probed serially or in a pool of workers.

:func:`kgtest.pipeline.run_variants` lists what to build (:func:`variant_builds`: each
control, then each method x deep variant, in records order), builds each one
(:func:`build_variant`, a stage of :mod:`kgtest.unlearn.api`) and probes them all
(:class:`ProbeJob`). With ``jobs`` > 1 (:func:`run_parallel`) the builds run in worker
processes (:func:`kgtest.workers.stage_pool`), the original is probed meanwhile, and each
variant is probed as soon as it is built and the original's probing is done; the rows are
then put in the serial order and gated by the original's answers, so the records are
those of a serial run at one thread.

Examples
--------
>>> from kgtest.experiment import load_experiment
>>> cfg = load_experiment("tests/data/tiny.toml")
>>> [b[-1] for b in variant_builds(cfg)]
['filter', 'ignorance', 'never_trained', 'NPO', 'NPO_deep']
>>> stage_line(variant_builds(cfg)[-1])
'[4/5] unlearning: NPO_deep'
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kgtest.train_config import pinned_threads
from kgtest.unlearn.api import (
    RunContext,
    Variant,
    control_variant,
    unlearn_variant,
    variant_name,
)

__all__ = ["variant_builds", "build_variant", "stage_line", "ProbeJob", "run_parallel"]


def variant_builds(cfg) -> list[tuple]:
    """``("control", kind, name)`` and ``("unlearn", method, deep, name)``, records order."""
    return ([("control", kind, kind) for kind in cfg.unlearn.controls]
            + [("unlearn", method, deep, variant_name(method, deep))
               for method in cfg.unlearn.methods for deep in cfg.unlearn.deep])


def stage_line(build: tuple) -> str:
    """The progress line of one entry of :func:`variant_builds`."""
    what = "control" if build[0] == "control" else "unlearning"
    return f"[{3 if build[0] == 'control' else 4}/5] {what}: {build[-1]}"


def build_variant(ctx: RunContext, build: tuple, *, quiet: bool = False) -> Variant:
    """One entry of :func:`variant_builds` on a trained run (its stage reused when done);
    ``quiet``: no progress bars (workers side by side; ``progress`` is in no stage key)."""
    cfg = replace(ctx.cfg.unlearn, progress=False) if quiet else ctx.cfg.unlearn
    if build[0] == "control":
        return control_variant(ctx, cfg, build[1])
    return unlearn_variant(ctx, cfg, build[1], deep=build[2])


@dataclass(frozen=True)
class ProbeJob:
    """Everything the probes need besides the models (picklable, for a worker)."""

    cfg: Any  # ExperimentConfig: its [probes] section
    corpus_dir: Path
    world: Any  # World
    run_id: str
    seeds: dict  # world, train, unlearn, attack, probes: recorded on every row
    threads: int = 1  # intra-op threads of every probe and attack (the run's; 1 in a pool)

    def context(self, removed: dict):
        """A :class:`~kgtest.probes.context.ProbeContext` with ``removed`` facts per variant."""
        from kgtest.probes.context import ProbeContext

        p = self.cfg.probes
        return ProbeContext.from_run(
            self.corpus_dir, self.world, run_id=self.run_id, seeds=self.seeds,
            removed=removed, relearn=p.relearn, quantize_bits=p.quantize_bits,
            utility_limit=p.utility_limit, quantize_group_size=p.quantize_group_size,
            quantize_embeddings=p.quantize_embeddings, batch_size=p.batch_size)

    def evaluate(self, variants: dict, removed: dict, log) -> list[dict]:
        """Every variant probed in this process (a progress bar on a terminal), gated."""
        from kgtest.probes.probes import asked, evaluate
        from kgtest.progress import probe_progress

        ctx = self.context(removed)
        with pinned_threads(self.threads), probe_progress(
                len(variants) * len(self.cfg.probes.probes),
                lambda msg: log(f"      {msg}")) as plog:
            return evaluate(variants, ctx, probes=self.cfg.probes.probes, log=plog,
                            facts=asked(ctx, self.cfg.probes.facts))

    def probe(self, name: str, model_dir: Path, removed: tuple | None,
              original_state: dict | None) -> tuple[list[dict], dict | None, dict | None]:
        """One variant's ungated rows. The original (``original_state`` None) also gives
        its answers per gate and the state it leaves for the others' probes."""
        from kgtest.probes.probes import asked, probe_variant

        ctx = self.context({} if removed is None else {name: list(removed)})
        first = original_state is None
        if not first:
            ctx.adopt(original_state)
        with pinned_threads(self.threads):
            rows, known = probe_variant(name, model_dir, ctx, self.cfg.probes.probes,
                                        asked(ctx, self.cfg.probes.facts), gate_source=first)
        return rows, known, (ctx.original_state() if first else None)


def _expected_cost(build: tuple) -> int:
    """Rank of a build by its usual cost: retrained controls (a whole training run), deep
    methods (more documents to forget), plain methods, the untrained control (none)."""
    if build[0] == "control":
        return 3 if build[1] == "never_trained" else 0
    return 1 if build[2] else 2


def _quiet_build(ctx: RunContext, build: tuple) -> Variant:
    return build_variant(ctx, build, quiet=True)


def _timed(fn, *args):
    """``(fn(*args), wall seconds, CPU seconds of this process)``: a task in a worker."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - t, time.process_time() - c


def run_parallel(ctx: RunContext, builds: list[tuple], probe: ProbeJob, *, jobs: int,
                 log, stages: list[str] | None = None) -> list[dict]:
    """:func:`kgtest.pipeline.run_variants` on ``jobs`` worker processes; the same rows
    (and the same stage folder names appended to ``stages``, in ``builds`` order)."""
    from kgtest.probes.probes import gate
    from kgtest.workers import stage_pool

    names = ["original"] + [b[-1] for b in builds]
    rows: dict[str, list[dict]] = {}
    built: dict[str, Variant] = {}
    known = state = None
    with stage_pool(jobs, ctx.run_dir) as pool:
        todo: dict[Future, tuple[str, str]] = {
            pool.submit(_timed, probe.probe, "original", ctx.model_dir, None, None):
                ("probe", "original")}
        for b in sorted(builds, key=_expected_cost):  # the longest first: a short tail
            log(stage_line(b))
            todo[pool.submit(_timed, _quiet_build, ctx, b)] = ("build", b[-1])
        while todo:
            done, _ = wait(todo, return_when=FIRST_COMPLETED)
            for fut in done:
                what, name = todo.pop(fut)
                result, wall, cpu = fut.result()  # a failed stage raises here; the pool goes
                if what == "build":
                    built[name] = result
                    log(f"      built {name} ({result.stage_dir.name}): {wall:.0f} s, "
                        f"{cpu:.0f} s CPU")
                else:
                    rows[name] = result[0]
                    log(f"      probed {name}: {wall:.0f} s, {cpu:.0f} s CPU")
                    if name == "original":
                        known, state = result[1], result[2]
            if state is not None:  # the original is probed: probe what is built
                for name in [n for n in built if n not in rows
                             and ("probe", n) not in todo.values()]:
                    v = built[name]
                    todo[pool.submit(_timed, probe.probe, name, v.model_dir, v.removed,
                                     state)] = ("probe", name)
    log(f"[5/5] probes {', '.join(probe.cfg.probes.probes)} on {len(names)} variants")
    if stages is not None:
        stages += [built[b[-1]].stage_dir.name for b in builds]
    return gate([r for n in names for r in rows[n]], known)
