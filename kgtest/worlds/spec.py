"""World specs: loading and checking the ``[world]`` TOML section (a :class:`WorldConfig`).

A spec in ``generators/`` is a TOML file with one ``[world]`` table that names a sampler,
the knobs every sampler shares, a rules file, and a ``[world.params]`` table with the
sampler's own sizes::

    [world]
    sampler = "family_tree"
    rules = "family.dl"        # relative to this spec file
    n_planted = 4              # targets planted with exactly planted_proofs derivations
    planted_proofs = 2         # or a list cycled over the targets: [1, 2, 4, 8]
    zipf = 0.0                 # Zipf exponent of entity frequency; 0 = uniform

    [world.params]             # checked against the sampler's parameter dataclass
    n_families = 3
    generations = 3

An experiment spec embeds the same table as its ``[world]`` section. Its loader builds it
with ``kgtest.config.build(WorldConfig, toml["world"], where=path, section="world")`` and
then sets ``base_dir`` to the spec's folder (``dataclasses.replace(cfg, base_dir=...)``)
and calls :func:`check_world_config` so the rules file is checked with the spec's name;
:func:`load_world_spec` does exactly that for a world spec.

Examples
--------
>>> cfg = load_world_spec("generators/family.toml", ["world.params.generations=2"])
>>> cfg.sampler, cfg.rules, cfg.sampler_params().generations
('family_tree', 'family.dl', 2)
>>> WorldConfig(sampler="family_tre")
Traceback (most recent call last):
...
kgtest.errors.InputError: key 'world.sampler': unknown sampler 'family_tre' (did you mean ...
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from kgtest.config import apply_overrides, build, close_match, load_toml
from kgtest.errors import InputError
from kgtest.worlds.config import WorldConfig
from kgtest.worlds.samplers import check_world_size, world_rules

__all__ = ["WorldConfig", "load_world_spec", "check_world_config"]


def check_world_config(cfg: WorldConfig, *, where: str) -> WorldConfig:
    """Check what construction cannot: the rules file exists and names known relations,
    and the world's estimated size fits in memory.

    ``where`` (the spec path) prefixes the error for a missing file; rule errors name the
    ``.dl`` file, line and column. Returns ``cfg``.
    """
    world_rules(cfg, where=where)
    check_world_size(cfg, where=where)
    return cfg


def load_world_spec(path: str | os.PathLike, overrides=()) -> WorldConfig:
    """Load and check a world spec (a TOML file with a ``[world]`` table).

    Parameters
    ----------
    path : path
        The spec. Other top-level tables (an experiment's ``[train]``...) are ignored,
        so an experiment spec also works here.
    overrides : iterable of str
        ``--set`` items such as ``"world.zipf=1.2"`` or ``"world.params.n_families=5"``;
        a key outside ``world.`` (``train.lr=...``) is an error, not silently ignored.

    Returns
    -------
    WorldConfig
        With ``base_dir`` the spec's folder and ``name`` defaulting to the file's stem.

    Raises
    ------
    InputError
        One line naming the spec and the key: unknown key (with did-you-mean), wrong
        type, negative size, unknown sampler, missing rules file; rules errors name the
        ``.dl`` file, line and column.

    Examples
    --------
    >>> load_world_spec("generators/taxonomy.toml", ["world.params.depth=-1"])
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: generators/taxonomy.toml: [world] key 'world.params.depth' must ...
    """
    p = Path(path)
    _check_world_keys(overrides)
    data = apply_overrides(load_toml(p), overrides)
    if "world" not in data:
        close = close_match("world", data)
        hint = f" (found '{close}': did you mean 'world'?)" if close else ""
        raise InputError(f"{p}: no [world] table{hint}")
    cfg = build(WorldConfig, data["world"], where=str(p), section="world")
    cfg = dataclasses.replace(cfg, base_dir=str(p.parent / cfg.base_dir), name=cfg.name or p.stem)
    return check_world_config(cfg, where=str(p))


def _check_world_keys(overrides) -> None:
    """Refuse a ``--set`` key that is not a ``world.*`` key: the spec would ignore it."""
    fields = {f.name for f in dataclasses.fields(WorldConfig)}
    for item in overrides:
        key, eq, _ = item.partition("=")
        key = key.strip()
        if eq and (key.split(".")[0] != "world" or "." not in key):
            hint = f" (did you mean 'world.{key}'?)" if key.split(".")[0] in fields else ""
            raise InputError(f"--set {key}: a world spec takes only world.* keys, such as "
                             f"world.zipf=1.2{hint}")
