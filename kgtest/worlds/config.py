"""The ``[world]`` section as a typed frozen :class:`WorldConfig`.

Construction checks what needs no file: the sampler name and its ``params``. Loading a
world spec and the checks that read files (the rules) or estimate the world's size are
in :mod:`kgtest.worlds.spec`.

Examples
--------
>>> WorldConfig(sampler="family_tree", params={"generations": 2}).sampler_params().generations
2
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kgtest.config import build, nonneg, positive
from kgtest.errors import InputError
from kgtest.worlds.registry import SAMPLERS

__all__ = ["WorldConfig"]


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
    planted_proofs: int | tuple[int, ...] = field(default=2, metadata={"check": positive})
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
