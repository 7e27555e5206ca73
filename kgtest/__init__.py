"""kgtest: a synthetic testbed for what machine unlearning really removes.

The symbolic core (rules, closure with proofs, deletion sets) and worlds import without
torch; model-side entry points (``load_experiment``, ``train_experiment``) load lazily.

Examples
--------
>>> import kgtest
>>> rules = kgtest.parse_rules("grandparent(X, Z) :- parent(X, Y), parent(Y, Z).")
>>> c = kgtest.forward_chain_names([("a", "parent", "b"), ("b", "parent", "c")], rules)
>>> c.named(2)
('a', 'grandparent', 'c')
"""

from kgtest.errors import InputError
from kgtest.symbolic.closure import Closure, forward_chain, forward_chain_names
from kgtest.symbolic.deletion import (
    DeletionResult,
    deep_unlearns,
    is_minimal,
    minimal_deletion_sets,
    recall_accuracy,
)
from kgtest.symbolic.facts import Vocab, read_tsv
from kgtest.symbolic.rules import Rule, parse_rules, read_rules
from kgtest.worlds.samplers import SAMPLERS, sample_world, world_from_tsv
from kgtest.worlds.spec import WorldConfig, load_world_spec
from kgtest.worlds.world import World

__version__ = "0.1.0"

__all__ = [
    "Closure",
    "DeletionResult",
    "InputError",
    "Rule",
    "SAMPLERS",
    "Vocab",
    "World",
    "WorldConfig",
    "deep_unlearns",
    "forward_chain",
    "forward_chain_names",
    "is_minimal",
    "load_experiment",
    "load_world_spec",
    "minimal_deletion_sets",
    "parse_rules",
    "read_rules",
    "read_tsv",
    "recall_accuracy",
    "sample_world",
    "train_experiment",
    "world_from_tsv",
]

_LAZY = {"load_experiment": "kgtest.experiment", "train_experiment": "kgtest.pipeline"}


def __getattr__(name):  # torch-backed entry points load on first use
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kgtest' has no attribute {name!r}")
