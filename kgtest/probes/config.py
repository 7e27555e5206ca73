"""The ``[probes]`` section of an experiment spec.

Examples
--------
>>> from kgtest.config import build
>>> cfg = build(ProbesConfig, {"probes": ["direct", "cot"], "relearn": {"steps": [20]}},
...             where="spec.toml", section="probes")
>>> cfg.probes, cfg.relearn.steps
(('direct', 'cot'), (20,))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kgtest.config import did_you_mean, in_range, nonneg, positive
from kgtest.errors import InputError
from kgtest.probes.probes import DEFAULT_PROBES, PROBES
from kgtest.probes.relearn import RelearnConfig
from kgtest.unlearn.config import CONTROLS

__all__ = ["ProbesConfig"]


@dataclass(frozen=True)
class ProbesConfig:
    """Which probes run on every variant, and their knobs."""

    probes: tuple[str, ...] = DEFAULT_PROBES  # registered probe names, run on every variant
    facts: Literal["targets", "held_out", "base"] = "targets"  # what the probes ask: the
    # forget targets, the held-out derived facts, or every base fact (kgtest.probes.probes.asked)
    relearn: RelearnConfig = field(default_factory=RelearnConfig)  # [probes.relearn] grid
    quantize_bits: tuple[int, ...] = field(default=(8, 4), metadata={"check": in_range(2, 16)}
                                           )  # round-to-nearest weight widths (2..16 bits)
    quantize_group_size: int = field(default=0, metadata={"check": nonneg}
                                     )  # weights per scale (32/64/128); 0: per channel
    quantize_embeddings: bool = False  # also quantize embeddings and the output head
    utility_limit: int = field(default=100, metadata={"check": positive})  # facts per utility
    batch_size: int = field(default=256, metadata={"check": positive})  # prompts per forward
    n_boot: int = field(default=2000, metadata={"check": positive})  # bootstrap resamples
    control: str = "filter"  # the control excess re-derivation subtracts (in unlearn.controls)
    seed: int | None = field(default=None, metadata={"check": nonneg})  # attacks, bootstrap
    # (None: each derived from run.seed, see kgtest.seeds)

    def __post_init__(self):
        for name in self.probes:
            try:
                PROBES.get(name)
            except InputError as err:
                raise InputError(f"key 'probes.probes': {err}") from None
        if self.control not in CONTROLS:
            raise InputError(f"key 'probes.control': unknown control {self.control!r} "
                             f"({did_you_mean(self.control, CONTROLS)}known: "
                             f"{', '.join(CONTROLS)})")
