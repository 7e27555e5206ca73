"""Shared fixtures: tiny configs for every sampler (fast enough for property tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgtest.worlds.spec import WorldConfig

GENERATORS = Path(__file__).resolve().parents[2] / "generators"

# per sampler: a small config (rules from the catalogue) and the largest plantable k
SMALL = {
    "random_composition": (dict(params={"n_entities": 20, "n_relations": 3}), 6),
    "family_tree": (dict(rules="family.dl", params={"n_families": 2, "generations": 2}), 2),
    "taxonomy": (dict(rules="taxonomy.dl", params={"depth": 2, "branching": 2.0}), 6),
    "dual_use": (dict(rules="dual_use.dl", params={"n_entities": 12}), 6),
}


def _small_config(sampler: str, **knobs) -> WorldConfig:
    kwargs, _ = SMALL[sampler]
    return WorldConfig(sampler=sampler, base_dir=str(GENERATORS), **kwargs, **knobs)


@pytest.fixture(scope="session")
def small_config():
    """``small_config(sampler, **knobs)``: a tiny WorldConfig for ``sampler``."""
    return _small_config


@pytest.fixture(scope="session")
def max_k():
    """Largest plantable proof count per sampler."""
    return {name: k for name, (_, k) in SMALL.items()}


@pytest.fixture(scope="session")
def generators() -> Path:
    return GENERATORS


@pytest.fixture(params=sorted(SMALL))
def sampler(request) -> str:
    return request.param
