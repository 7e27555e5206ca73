"""Model-level claims: train a tiny model on a given world, unlearn, probe, get records.

Symbolic claims (:mod:`kgtest.claims`) ask the reasoner; a *model-level* claim asks what a
trained model does on a world hypothesis drew. This module is the bridge:

- :func:`composition_worlds` (from :mod:`kgtest.strategies`) a hypothesis strategy of
  worlds a tiny model can learn, with derivable targets whose rules are demonstrated on
  other entities, by construction (:func:`composition_world` rebuilds one from its printed
  numbers);
- :func:`model_records` the whole pipeline on one :class:`~kgtest.worlds.world.World`
  object (no spec file): corpus, training, controls, unlearning, probes; returns tidy rows
  (:mod:`kgtest.records`);
- :func:`rate` and :func:`difference` (from :mod:`kgtest.report.aggregate`) read a rate, or a
  paired difference of two rates, off the rows with its two-level bootstrap;
- :func:`check_trainable` says, before any training, why a world cannot host the
  experiment (too few derived facts, or none whose rule is demonstrated elsewhere).

A claim then reads like a symbolic one, with a budget you choose::

    from hypothesis import given, note, settings
    from kgtest.claims_model import composition_worlds, model_records, rate

    @settings(max_examples=3, deadline=None, database=None)
    @given(composition_worlds())
    def test_filter_cot_beats_chance(world):
        records = model_records(world)
        r = rate(records, variant="filter", probe="cot")
        note(str(r))
        assert r.lo > r.chance

**What happens to a world** (:func:`model_records`): its closure is split (``n_forget``
derived forget targets, ``n_validation`` tuning targets, a ``held_out_fraction`` of
derived facts never shown), rendered as a symbolic corpus with derived facts both stated
and demonstrated as chains of thought (targets stated only: their own chain is never
shown, their rule is, on other entities), and a tiny GPT-2 is trained on it (stopping early
once direct recall and CoT on held-out facts reach ``stop_at``). The controls are
retrained from the same initialisation for the same number of steps (``filter``: no
document mentions a target); each method is tuned on the validation targets and then
unlearns the forget targets; every variant is probed on the forget targets and the rows
are gated by what the original model knew. Every stage is the one ``kgtest run`` uses
(:func:`kgtest.corpus.io.build_corpus`, :func:`kgtest.train.train`,
:func:`kgtest.unlearn.api.unlearn_model`, :func:`kgtest.unlearn.controls.train_control`,
:func:`kgtest.probes.probes.evaluate`); only the world comes from the caller instead of a
``[world]`` section.

Examples
--------
>>> from hypothesis import find
>>> w = find(composition_worlds(min_entities=8, max_entities=8), lambda w: True)
>>> len(w.entities), [str(r) for r in w.rules]
(8, ['r0_r0(X, Z) :- r0(X, Y), r0(Y, Z).'])
>>> check_trainable(w, n_forget=2, n_validation=1) is None
True
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgtest.config import RESULTS_SCHEME, config_hash, to_dict
from kgtest.corpus.render import CorpusConfig
from kgtest.corpus.splits import SplitConfig
from kgtest.errors import InputError
from kgtest.report.aggregate import Rate, difference, rate  # noqa: F401  (public here too)
from kgtest.strategies.composition import (  # noqa: F401  (public here too)
    composition_world,
    composition_worlds,
)
from kgtest.worlds.world import World

__all__ = [
    "composition_worlds",
    "composition_world",
    "model_records",
    "default_config",
    "check_trainable",
    "rate",
    "difference",
    "Rate",
    "world_key",
]


# --- settings ---------------------------------------------------------------------------------

#: Share of the non-target derived facts never shown: the original's CoT is measured on them.
HELD_OUT_FRACTION = 0.2
#: Retained facts the utility probe reserves (and NPO's tuning therefore avoids).
UTILITY_LIMIT = 20


def default_config():
    """The experiment :func:`model_records` runs unless told otherwise (its world unused).

    A tiny GPT-2 (2 layers, d = 32), at most 1500 steps at lr 3e-3, stopping once direct
    recall >= 0.99 and CoT on held-out facts >= 0.95; 6 forget and 3 validation targets,
    20% of the other derived facts held out; derived facts stated *and* shown as CoT,
    except the targets, which are stated only (``split.target_presentation = "stated"``:
    their rule is demonstrated on other entities); NPO (plain, not deep) tuned over lr
    1e-3 x {5, 15} epochs of the forget set under the utility floor, with 20 retained
    facts reserved for the utility probe; the filter control; the direct and CoT probes.
    Returns an :class:`~kgtest.experiment.ExperimentConfig`.

    Examples
    --------
    >>> cfg = default_config()
    >>> cfg.model.preset, cfg.unlearn.methods, cfg.unlearn.controls, cfg.probes.probes
    ('tiny', ('NPO',), ('filter',), ('direct', 'cot'))
    """
    from kgtest.experiment import ExperimentConfig, RunConfig
    from kgtest.model import ModelConfig
    from kgtest.probes.config import ProbesConfig
    from kgtest.train import TrainConfig
    from kgtest.unlearn.config import UnlearnConfig

    return ExperimentConfig(
        run=RunConfig(name="claim", seed=0),
        split=SplitConfig(n_forget=6, n_validation=3, held_out_fraction=HELD_OUT_FRACTION),
        corpus=CorpusConfig(surface="symbolic", derived="both"),
        model=ModelConfig(preset="tiny"),
        train=TrainConfig(steps=1500, lr=3e-3, eval_every=250, threads=1, progress=False,
                          tensorboard=False, checkpoint_every=0,
                          stop_at={"direct": 0.99, "cot": 0.95}),
        unlearn=UnlearnConfig(methods=("NPO",), deep=(False,), controls=("filter",),
                              tune_lrs=(1e-3,), tune_epochs=(5.0, 15.0), progress=False,
                              device="cpu"),
        # utility_limit: the utility probe's facts are kept out of NPO's tuning sample;
        # with the default 100 they would be every retained fact of a claim-sized world,
        # leaving tuning no retained fact to check its utility floor on
        probes=ProbesConfig(probes=("direct", "cot"), n_boot=1000,
                            utility_limit=UTILITY_LIMIT),
    )


def _settings(config, *, seed, n_forget, n_validation, methods, controls, probes, steps,
              preset, deep):
    cfg = default_config() if config is None else config
    rep = dataclasses.replace
    run = rep(cfg.run, seed=seed) if seed is not None else cfg.run
    split = cfg.split
    if n_forget is not None:
        split = rep(split, n_forget=n_forget)
    if n_validation is not None:
        split = rep(split, n_validation=n_validation)
    train = rep(cfg.train, steps=steps) if steps is not None else cfg.train
    model = rep(cfg.model, preset=preset) if preset is not None else cfg.model
    un = cfg.unlearn
    if methods is not None:
        un = rep(un, methods=tuple(methods))
    if controls is not None:
        un = rep(un, controls=tuple(controls))
    if deep is not None:
        un = rep(un, deep=tuple(deep))
    pr = rep(cfg.probes, probes=tuple(probes)) if probes is not None else cfg.probes
    return rep(cfg, run=run, split=split, train=train, model=model, unlearn=un, probes=pr)


# --- is a world usable ------------------------------------------------------------------------


def world_key(world: World) -> str:
    """A short hash of everything that defines a world (names, facts, rules, labels).

    Two worlds with the same key give the same corpus, model and records for the same
    settings; :func:`model_records` caches on it.

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> w = World.from_names([("a", "p", "b")], parse_rules("q(Y, X) :- p(X, Y)."))
    >>> world_key(w) == world_key(World.from_names([("a", "p", "b")],
    ...                                            parse_rules("q(Y, X) :- p(X, Y).")))
    True
    """
    data = {
        "entities": list(world.entities.names), "relations": list(world.relations.names),
        "entity_type": world.entity_type.tolist(), "types": list(world.type_names),
        "facts": world.facts.tolist(), "rules": [str(r) for r in world.rules],
        "fixed": world.fixed.tolist(), "domain": world.domain.tolist(),
        "domains": list(world.domain_names), "planted": world.planted.tolist(),
    }
    return config_hash(data)


def check_trainable(world: World, *, n_forget: int = 6, n_validation: int = 3,
                    split: SplitConfig | None = None, seed: int = 0) -> str | None:
    """Why ``world`` cannot host a model-level experiment, or None if it can.

    The experiment needs ``n_forget`` forget and ``n_validation`` validation targets among
    the derived facts (what :func:`~kgtest.corpus.splits.choose_split` picks from), and,
    for a chain-of-thought probe to mean anything, each target's rule demonstrated on
    some *other* fact of the world. This runs the split :func:`model_records` would run
    with run seed ``seed`` (cheap, no training), so the answer is the split's own: a
    degenerate world drawn by a generic strategy (no rules, no derived facts, one derived
    fact per rule) gets a one-line reason instead of a silently empty result. A ``split``
    config, when given, replaces ``n_forget`` and ``n_validation``.

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> w = World.from_names([("a", "p", "b"), ("b", "p", "c")],
    ...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    >>> print(check_trainable(w, n_forget=1, n_validation=0))
    key 'split.n_forget': asked for 1 forget targets but only 0 can be drawn with ...
    >>> print(check_trainable(w, n_forget=2, n_validation=0))
    key 'split.n_forget': asked for 2 forget targets but only 1 facts are eligible ...
    """
    from kgtest.corpus.splits import choose_split
    from kgtest.seeds import stage_seed

    cfg = split if split is not None else SplitConfig(
        n_forget=n_forget, n_validation=n_validation, held_out_fraction=HELD_OUT_FRACTION)
    closure = world.close()
    try:
        sp = choose_split(closure, world, cfg, seed=stage_seed(seed, "split"))
    except InputError as err:
        return str(err)
    shown = np.ones(len(closure), dtype=bool)
    shown[sp.held_out] = False
    shown[sp.forget] = False
    for t in sp.forget.tolist():
        rules = closure.rules_of(t)
        heads = np.flatnonzero(np.isin(closure.deriv_rule, rules))
        others = {int(h) for h in closure.deriv_head[heads].tolist()} - {t}
        if not any(shown[h] for h in others):
            rule = closure.rules[int(rules[0])]
            return (f"forget target {' '.join(closure.named(t))}: no other fact of its rule "
                    f"'{rule}' is demonstrated, so nothing could teach a model to re-derive it")
    return None


# --- the pipeline on a given world ------------------------------------------------------------


def _write_json(path: Path, data) -> None:
    from kgtest.symbolic.facts import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1, default=str) + "\n")


def _records(world: World, cfg, run_dir: Path, log) -> list[dict]:
    """The pipeline's stages on a given world: corpus, training, then
    :func:`kgtest.pipeline.run_variants` (controls, methods, probes)."""
    import torch

    from kgtest.corpus.io import build_corpus
    from kgtest.pipeline import TrainedRun, run_variants, train_stage
    from kgtest.stages import run_stage

    wkey = world_key(world)
    keys = {s: config_hash(wkey, cfg.run.seed, *(getattr(cfg, x) for x in parts),
                           *([{"results_scheme": RESULTS_SCHEME}] if "train" in parts else []))
            for s, parts in {"corpus": ("split", "corpus"),
                             "model": ("split", "corpus", "model", "train")}.items()}

    def build_c(tmp: Path) -> None:
        build_corpus(world, cfg.split, cfg.corpus, tmp, seed=cfg.run.seed)
        _write_json(tmp / "world.json", {"key": wkey, "name": world.name, "meta": world.meta})

    log(f"corpus and training in {run_dir}")
    corpus_dir = run_stage(run_dir, "corpus", keys["corpus"], build_c)
    model_stage = train_stage(cfg, run_dir, corpus_dir, key=keys["model"], world=world)
    trained = TrainedRun(corpus_dir, model_stage / "model", model_stage,
                         json.loads((model_stage / "metrics.json").read_text()))
    before = torch.get_num_threads()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    try:
        return run_variants(cfg, run_dir, world, trained,
                            run_id=f"{world.name}-{wkey[:8]}-seed{cfg.run.seed}",
                            world_seed=world.meta.get("edge_seed", world.meta.get("seed")),
                            log=log)
    finally:
        torch.set_num_threads(before)


_CACHE: dict[str, list[dict]] = {}


def model_records(world: World, *, seed: int | None = None, n_forget: int | None = None,
                  n_validation: int | None = None, methods: Sequence[str] | None = None,
                  controls: Sequence[str] | None = None, probes: Sequence[str] | None = None,
                  steps: int | None = None, preset: str | None = None,
                  deep: Sequence[bool] | None = None, config=None,
                  workdir: str | os.PathLike | None = None, cache: bool = True,
                  log=None) -> list[dict]:
    """Train a tiny model on ``world``, unlearn, probe; return the tidy records.

    Parameters
    ----------
    world : World
        Any world with enough derived targets (see :func:`check_trainable`); draw them
        with :func:`composition_worlds` to have that by construction.
    seed : int, optional
        The run seed (split, corpus, initialisation); default ``config.run.seed`` (0).
    n_forget, n_validation : int, optional
        Forget targets (the rows' facts) and tuning targets; default 6 and 3.
    methods, deep : sequence, optional
        Unlearning methods and their variants (``deep=(False, True)`` adds ``NPO_deep``);
        default ``("NPO",)``, ``(False,)``.
    controls : sequence of str, optional
        ``filter``, ``ignorance``, ``never_trained``; default ``("filter",)``.
    probes : sequence of str, optional
        Registered probes (:data:`kgtest.probes.probes.PROBES`); default
        ``("direct", "cot")``. Gating uses the original's direct and CoT answers either way.
    steps : int, optional
        Most training steps of the original (controls take as many as it took).
    preset : str, optional
        Model size preset; default ``"tiny"``.
    config : ExperimentConfig, optional
        Every other setting (split, corpus, model, train, unlearn, probes sections; its
        ``[world]`` is ignored); default :func:`default_config`. The keyword arguments
        above override it.
    workdir : path, optional
        Keep the stage folders here (``<workdir>/<world key>/corpus-*``, ``model-*``...),
        reused by a later call with the same world and settings. Default: a temporary
        folder, deleted on return.
    cache : bool
        Reuse the records of an identical call earlier in this process (same
        :func:`world_key` and settings), so several claims over the same worlds train once.
    log : callable, optional
        Called with one progress line per stage.

    Returns
    -------
    list of dict
        Rows with every column of :data:`kgtest.records.COLUMNS`, for every variant
        (``original``, the controls, the methods) x probe x forget target; ``gated_in``
        filled. A fresh copy on every call.

    Raises
    ------
    InputError
        The world cannot host the experiment (:func:`check_trainable`'s reason, naming
        the key to change), or a setting is invalid.

    Examples
    --------
    A seconds-scale run (a real claim trains longer; see ``docs/claims.md``):

    >>> from hypothesis import find
    >>> w = find(composition_worlds(min_entities=8, max_entities=8), lambda w: True)
    >>> rows = model_records(w, n_forget=2, n_validation=1, steps=30)
    >>> sorted({(r["variant"], r["probe"]) for r in rows})
    [('NPO', 'cot'), ('NPO', 'direct'), ('filter', 'cot'), ('filter', 'direct'), \
('original', 'cot'), ('original', 'direct')]
    >>> len(rows), rows[0]["split"]
    (12, 'forget')
    """
    cfg = _settings(config, seed=seed, n_forget=n_forget, n_validation=n_validation,
                    methods=methods, controls=controls, probes=probes, steps=steps,
                    preset=preset, deep=deep)
    return _cached_records(world, cfg, workdir, cache, log or (lambda msg: None))


def _cached_records(world: World, cfg, workdir, cache: bool, say) -> list[dict]:
    """:func:`model_records` once its settings are resolved: check, cache, run."""
    why = check_trainable(world, split=cfg.split, seed=cfg.run.seed)
    if why is not None:
        raise InputError(f"model_records: this world cannot host the experiment: {why} "
                         f"(draw worlds with kgtest.strategies.composition_worlds, whose "
                         f"targets exist by construction)")
    key = config_hash(world_key(world), {k: to_dict(getattr(cfg, k)) for k in
                                         ("run", "split", "corpus", "model", "train",
                                          "unlearn", "probes")})
    if cache and key in _CACHE:
        return [dict(r) for r in _CACHE[key]]
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="kgtest-claim-") as tmp:
            rows = _records(world, cfg, Path(tmp), say)
    else:
        rows = _records(world, cfg, Path(workdir) / world_key(world), say)
    if cache:
        _CACHE[key] = [dict(r) for r in rows]
    return rows
