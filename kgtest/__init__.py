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

# Every public name loads on first use, so a command imports only the modules it runs
# (``kgtest world closure`` neither the world samplers nor the deletion-set search, nor
# torch: the model-side entry points load_experiment and train_experiment).
_LAZY = {
    "InputError": "kgtest.errors",
    "Closure": "kgtest.symbolic.closure",
    "forward_chain": "kgtest.symbolic.closure",
    "forward_chain_names": "kgtest.symbolic.closure",
    "DeletionResult": "kgtest.symbolic.deletion",
    "deep_unlearns": "kgtest.symbolic.deletion",
    "is_minimal": "kgtest.symbolic.deletion",
    "minimal_deletion_sets": "kgtest.symbolic.deletion",
    "recall_accuracy": "kgtest.symbolic.deletion",
    "Vocab": "kgtest.symbolic.facts",
    "read_tsv": "kgtest.symbolic.facts",
    "Rule": "kgtest.symbolic.rules",
    "parse_rules": "kgtest.symbolic.rules",
    "read_rules": "kgtest.symbolic.rules",
    "SAMPLERS": "kgtest.worlds.samplers",
    "sample_world": "kgtest.worlds.samplers",
    "world_from_tsv": "kgtest.worlds.samplers",
    "WorldConfig": "kgtest.worlds.spec",
    "load_world_spec": "kgtest.worlds.spec",
    "World": "kgtest.worlds.world",
    "load_experiment": "kgtest.experiment",
    "train_experiment": "kgtest.pipeline",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'kgtest' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
