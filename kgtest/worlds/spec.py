"""World specs: the ``[world]`` TOML section, as a typed frozen :class:`WorldConfig`.

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
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

from kgtest.config import apply_overrides, build, load_toml, nonneg
from kgtest.errors import InputError
from kgtest.worlds.samplers import SAMPLERS, check_world_size, world_rules

__all__ = ["WorldConfig", "load_world_spec", "check_world_config"]


def _positive(value) -> str | None:
    vals = value if isinstance(value, tuple) else (value,)
    if not vals:
        return "must be >= 1 or a non-empty list of counts >= 1"
    return "must be >= 1" if min(vals) < 1 else None


@dataclass(frozen=True)
class WorldConfig:
    """The ``[world]`` section: which sampler, its shared knobs and its parameters.

    Construction checks the sampler name and ``params`` (unknown key, wrong type,
    negative size), raising :class:`InputError` naming the key.
    """

    sampler: str = "random_composition"  # registered sampler name (see kgtest.worlds.SAMPLERS)
    rules: str = ""  # Datalog rules file, relative to base_dir; "" = the sampler's own rules
    name: str = ""  # label of the world; load_world_spec uses the spec file's stem
    description: str = ""  # one line for the catalogue and describe_world
    n_planted: int = field(default=0, metadata={"check": nonneg})  # targets to plant
    # exact k per target; a list ([1, 2, 4, 8]) is cycled over the planted targets
    planted_proofs: int | tuple[int, ...] = field(default=2, metadata={"check": _positive})
    zipf: float = field(default=0.0, metadata={"check": nonneg})  # entity-frequency exponent
    extra_relations: tuple[str, ...] = ()  # rule-head relations beyond the sampler's own
    params: dict = field(default_factory=dict)  # [world.params]: the sampler's own sizes
    base_dir: str = ""  # folder `rules` is relative to; loaders set it to the spec's folder

    def __post_init__(self):
        SAMPLERS.get(self.sampler, where="key 'world.sampler': ")
        self.sampler_params()

    def sampler_params(self):
        """``params`` as the sampler's frozen parameter dataclass (checked)."""
        info = SAMPLERS.get(self.sampler, where="key 'world.sampler': ")
        try:
            return build(info.params, self.params, where="", section="world.params")
        except InputError as err:  # re-raised without build's empty file prefix
            raise InputError(str(err).removeprefix(": ")) from None


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
        ``--set`` items such as ``"world.zipf=1.2"`` or ``"world.params.n_families=5"``.

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
    data = apply_overrides(load_toml(p), overrides)
    if "world" not in data:
        close = difflib.get_close_matches("world", list(data), n=1)
        hint = f" (found '{close[0]}': did you mean 'world'?)" if close else ""
        raise InputError(f"{p}: no [world] table{hint}")
    cfg = build(WorldConfig, data["world"], where=str(p), section="world")
    cfg = dataclasses.replace(cfg, base_dir=str(p.parent / cfg.base_dir), name=cfg.name or p.stem)
    return check_world_config(cfg, where=str(p))
