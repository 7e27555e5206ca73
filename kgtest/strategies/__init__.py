"""Hypothesis strategies for kgtest: rules, worlds, targets and deletion sets.

Every strategy *builds* valid values (``@composite``, no ``.filter`` or ``assume``), so
hypothesis never gives up looking for one, and shrinks toward small worlds and short
rules: fewer entities, facts and rules, one-atom bodies, the variable ``X`` everywhere.
Size bounds are arguments; keep them small and property tests run in milliseconds.

Strategies at a glance, by module (import them all from here):

- :mod:`~kgtest.strategies.datalog`: :func:`rules` one safe Datalog rule over given
  relations; :func:`rule_sets` a list of distinct rules, recursive or stratified;
- :mod:`~kgtest.strategies.random_worlds`: :func:`worlds` a
  :class:`~kgtest.worlds.world.World` of random entities, facts and rules, optionally with
  *planted* targets: derived facts built to have an exact number of independent proofs
  and an exact derivation depth (the module says how a planted target is built);
- :mod:`~kgtest.strategies.deletion`: :func:`targets` a fact of a given world with a
  proof count and depth in given ranges; :func:`worlds_with_targets` a ``(world,
  target)`` pair where such a target exists by construction (a planted one is always
  among the candidates); :func:`deletion_sets` an inclusion-minimal deletion set of a
  target (every minimal set can be drawn), or a superset of one;
- :mod:`~kgtest.strategies.composition`: :func:`composition_worlds` worlds a tiny model
  can learn (functional base relations, two-hop chain rules demonstrated on many
  entities), for model-level claims (:mod:`kgtest.claims_model`);
  :func:`composition_world` rebuilds one from its printed numbers.

Examples
--------
>>> from hypothesis import given, settings
>>> from kgtest.claims import closure_of
>>> @settings(max_examples=20, database=None, derandomize=True)
... @given(worlds(max_entities=4, max_facts=6))
... def closure_contains_base_facts(world):
...     assert len(closure_of(world)) >= len(world.facts)
>>> closure_contains_base_facts()
"""

from kgtest.strategies.composition import composition_world, composition_worlds
from kgtest.strategies.datalog import rule_sets, rules
from kgtest.strategies.deletion import deletion_sets, targets, worlds_with_targets
from kgtest.strategies.random_worlds import worlds

__all__ = [
    "rules",
    "rule_sets",
    "worlds",
    "targets",
    "worlds_with_targets",
    "deletion_sets",
    "composition_worlds",
    "composition_world",
]
