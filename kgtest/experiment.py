"""An experiment spec: one TOML file, one typed frozen section per pipeline stage.

::

    [run]      name, seed                      (RunConfig)
    [world]    sampler, rules, knobs, params   (kgtest.worlds.spec.WorldConfig)
    [split]    targets, held-out facts         (kgtest.corpus.splits.SplitConfig)
    [corpus]   surface, augmentation           (kgtest.corpus.render.CorpusConfig)
    [model]    arch, preset, sizes             (kgtest.model.ModelConfig)
    [train]    steps, lr, batch, stop_at       (kgtest.train.TrainConfig)
    [unlearn]  methods, deep, controls, tuning (kgtest.unlearn.config.UnlearnConfig)
    [probes]   probes, relearn grid, bits      (kgtest.probes.config.ProbesConfig)

Every key has a default, so an empty file is a valid experiment. ``--set key=value``
overrides any key (``--set train.steps=100``). Errors name the file and the dotted key.

Examples
--------
>>> cfg = load_experiment("experiments/quickstart.toml", ["train.steps=7"])
>>> cfg.train.steps, cfg.world.sampler
(7, 'random_composition')
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from kgtest.config import (
    RESULTS_SCHEME,
    apply_overrides,
    build,
    check_name,
    check_seed,
    config_hash,
    did_you_mean,
    load_toml,
)
from kgtest.corpus.render import CorpusConfig
from kgtest.corpus.splits import SplitConfig, target_rule_ids
from kgtest.errors import InputError
from kgtest.model import ModelConfig
from kgtest.probes.config import ProbesConfig
from kgtest.seeds import run_seeds
from kgtest.train import TrainConfig
from kgtest.unlearn.config import UnlearnConfig
from kgtest.worlds.samplers import world_rules
from kgtest.worlds.spec import WorldConfig, check_world_config

__all__ = ["RunConfig", "ExperimentConfig", "load_experiment", "experiment_from_dict"]


@dataclass(frozen=True)
class RunConfig:
    """The ``[run]`` section."""

    name: str = field(default="experiment", metadata={"check": check_name})  # run folder label
    seed: int = field(default=0, metadata={"check": check_seed})  # each stage derives its own


@dataclass(frozen=True)
class ExperimentConfig:
    """All sections of an experiment spec (see the module docstring)."""

    run: RunConfig = field(default_factory=RunConfig)
    world: WorldConfig = field(default_factory=WorldConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    source: str = ""  # the spec file this came from (not part of any stage hash)
    overrides: tuple[str, ...] = ()  # the --set overrides applied (for the report)

    def key(self, *sections: str) -> str:
        """Hash of the run seed and the named sections: a stage folder's key."""
        world = dataclasses.replace(self.world, base_dir="") if "world" in sections else None
        if world is not None and world.rules:  # the rules file's content, not its path
            world = dataclasses.replace(world, rules="sha256:" + _rules_identity(self.world))
        model = self.model
        if model.init_from and "model" in sections:  # the checkpoint's content, not its path
            from kgtest.pretrained import checkpoint_identity

            model = dataclasses.replace(
                model, init_from="sha256:" + checkpoint_identity(model.init_from))
        parts = [self.run.seed] + [world if s == "world" else model if s == "model"
                                   else getattr(self, s) for s in sections]
        if "train" in sections:  # results of older code are never reused
            parts.append({"results_scheme": RESULTS_SCHEME})
        return config_hash(*parts)

    def seeds(self) -> dict[str, int]:
        """Every stage's seed (:func:`kgtest.seeds.run_seeds`): derived from ``run.seed``,
        or the explicit ``train.seed`` (batch order), ``unlearn.seed``, ``probes.seed``
        (attacks and bootstrap) where one is set.

        >>> a, b = ExperimentConfig().seeds(), ExperimentConfig(run=RunConfig(seed=1)).seeds()
        >>> all(a[s] != b[s] for s in a)
        True
        """
        return run_seeds(self.run.seed, batches=self.train.seed, unlearn=self.unlearn.seed,
                         attack=self.probes.seed, bootstrap=self.probes.seed)


def _rules_identity(world) -> str:
    """SHA-256 of the rules file ``world.rules`` names (an edited file: another world)."""
    import hashlib

    path = Path(world.base_dir or ".") / world.rules
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise InputError(f"key 'world.rules': cannot read rules file '{path}' "
                         f"({e.strerror or e})") from None


def _check_target_scope(split: SplitConfig, world, where: str) -> None:
    """``split.target_domain`` / ``target_rules`` name a domain and rules the world has
    (rules of a sampler that writes its own are checked when the split is drawn)."""
    if split.target_domain is not None:
        domains = tuple(getattr(world.sampler_params(), "domains", ("default",)))
        if split.target_domain not in domains:
            raise InputError(f"{where}: key 'split.target_domain': unknown domain "
                             f"{split.target_domain!r} (the world's domains: "
                             f"{', '.join(domains)})")
    rules = world_rules(world, where=where) if split.target_rules else None
    if rules is not None:
        target_rule_ids(rules, split.target_rules, where=where)


SECTIONS = ("run", "world", "split", "corpus", "model", "train", "unlearn", "probes")


def load_experiment(path: str | os.PathLike, overrides=()) -> ExperimentConfig:
    """Read, override and validate an experiment spec.

    Raises
    ------
    InputError
        ``<file>: <what>`` for a missing file, bad TOML, an unknown section or key, a
        wrong type, an impossible value, a rules file that is missing or names
        relations the world lacks, or a ``model.init_from`` that is not a causal-LM
        checkpoint folder (a relative one is resolved against the spec's folder).
    """
    p = Path(path)
    where = str(p)
    data = apply_overrides(load_toml(p), overrides, where=f"{where} (--set)")
    cfg = _build(data, where)
    if cfg.unlearn.controls and cfg.probes.control not in cfg.unlearn.controls:
        raise InputError(f"{where}: key 'probes.control': {cfg.probes.control!r} is not built "
                         f"(unlearn.controls: {', '.join(cfg.unlearn.controls)})")
    world = dataclasses.replace(cfg.world, base_dir=str(p.parent.resolve()))
    check_world_config(world, where=where)
    _check_target_scope(cfg.split, world, where)
    model = cfg.model
    if model.init_from:  # relative to the spec's folder, as world.rules
        from kgtest.pretrained import check_checkpoint

        path = check_checkpoint(p.parent / Path(model.init_from).expanduser(),
                                where=f"{where}: model.init_from")
        model = dataclasses.replace(model, init_from=path)
    return dataclasses.replace(cfg, world=world, model=model, source=where,
                               overrides=tuple(overrides))


def experiment_from_dict(data: dict, *, where: str) -> ExperimentConfig:
    """An experiment written out by a stage (``config.json``: the sections plus ``source``
    and ``overrides``), typed and checked again; ``where`` names the file in errors.

    >>> cfg = load_experiment("experiments/quickstart.toml", ["train.steps=7"])
    >>> from kgtest.config import to_dict
    >>> data = {"source": cfg.source, "overrides": list(cfg.overrides), **to_dict(cfg)}
    >>> experiment_from_dict(data, where="config.json") == cfg
    True
    """
    data = dict(data)
    source, overrides = data.pop("source", ""), tuple(data.pop("overrides", ()))
    return dataclasses.replace(_build(data, where), source=source, overrides=overrides)


def _build(data: dict, where: str) -> ExperimentConfig:
    """The sections of ``data`` as a typed :class:`ExperimentConfig` (errors name ``where``)."""
    for key in data:
        if key not in SECTIONS:
            hint = did_you_mean(key, SECTIONS)
            raise InputError(f"{where}: unknown section '[{key}]' "
                             f"({hint}known: {', '.join(SECTIONS)})")
    return build(ExperimentConfig, data, where=where)  # every section, nested
