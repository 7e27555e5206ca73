"""World samplers: :func:`sample_world` from a spec, :func:`world_from_tsv` from a user's KG.

The registry :data:`SAMPLERS` holds every sampler; each family lives in its own module and
registers itself with ``@SAMPLERS.register(name, ...)`` above its definition:

=====================  ===================================================================
``random_composition``  typed functional relations, composition rules, several hops
                        (:mod:`kgtest.worlds.composition`)
``family_tree``         genealogies with gender and kinship rules (:mod:`~.family`)
``taxonomy``            is-a hierarchy with property inheritance (:mod:`~.taxonomy`)
``dual_use``            benign and harmful domains with shared rules (:mod:`~.dual_use`)
``edu_relat``           EDU-RELAT itself (Wu et al. 2024), whole or a connected part
                        (:mod:`~.edu_relat`)
=====================  ===================================================================

Every sampler is deterministic given its seed (one ``numpy.random.Generator``, never the
global RNG), honours the Zipf knob and can plant targets with an exact proof count, which
:func:`sample_world` then checks on the closure.

Examples
--------
>>> from kgtest.worlds.spec import WorldConfig
>>> cfg = WorldConfig(sampler="random_composition", n_planted=2, planted_proofs=3)
>>> w = sample_world(cfg, seed=0)
>>> c = w.close()
>>> c.proof_count[c.index(w.planted)].tolist()
[3, 3]
>>> sample_world(WorldConfig(), seed=0).facts.tolist() == w.facts.tolist()
False
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from kgtest.errors import InputError
from kgtest.symbolic.facts import fact_keys
from kgtest.symbolic.kb import read_kb
from kgtest.symbolic.rules import Rule, check_body_relations, read_rules
from kgtest.worlds.config import WorldConfig
from kgtest.worlds.registry import SAMPLERS, SampleContext, check_planted
from kgtest.worlds.world import World

__all__ = ["SAMPLERS", "sample_world", "world_rules", "world_from_tsv", "estimate_size",
           "check_world_size"]


def world_rules(cfg: WorldConfig, *, where: str = "") -> tuple[Rule, ...] | None:
    """Read the rules file a config names, checked against the sampler's relations.

    ``cfg.rules`` is resolved against ``cfg.base_dir`` (absolute paths are kept). Returns
    None when the config names no file and the sampler makes its own rules.

    Raises
    ------
    InputError
        ``where: key 'world.rules': ...`` when the file is missing or the sampler needs
        one; ``file.dl:line:col: ...`` for a syntax error or a relation the world lacks.
    """
    at = f"{where}: " if where else ""
    info = SAMPLERS.get(cfg.sampler, where=at)
    if not cfg.rules:
        if info.needs_rules:
            raise InputError(f"{at}key 'world.rules': sampler '{cfg.sampler}' needs a rules "
                             "file (Datalog .dl, path relative to the spec)")
        return None
    path = Path(cfg.base_dir or ".") / cfg.rules
    if not path.is_file():
        raise InputError(f"{at}key 'world.rules': rules file '{path}' not found")
    known = (*info.relations(cfg.sampler_params()), *cfg.extra_relations)
    return tuple(read_rules(path, relations=known))


def _geometric(r: float, n: int) -> float:
    """``1 + r + ... + r**n`` without a loop (inf when it overflows)."""
    try:
        return float(n + 1) if r == 1 else (r ** (n + 1) - 1) / (r - 1)
    except OverflowError:
        return math.inf


def _composition_size(p) -> tuple[float, float]:
    deg = max(p.out_degree, 1)
    base = p.n_entities * p.n_relations * deg * p.density
    derived = p.n_derived * max(p.hops - 1, 0) * p.n_entities * float(deg) ** min(p.hops, 64)
    return p.n_entities, base + derived


def _family_size(p) -> tuple[float, float]:
    people = 3 * p.n_families * _geometric(max(p.children * p.marry_prob, 1.0), p.generations)
    return people, 48 * people  # parents, gender, spouse; kinship rules multiply them ~12x


def _taxonomy_size(p) -> tuple[float, float]:
    kinds = max(p.n_roots, 1) * _geometric(max(p.branching, 1.0), p.depth)
    per_kind = (p.depth + 1) * (1 + p.properties_per_kind * (p.depth + 1))
    return kinds + p.n_properties, kinds * per_kind  # is-a chains inherit properties


def _dual_use_size(p) -> tuple[float, float]:
    ents, deg = 2 * p.n_entities, max(p.out_degree, 1)
    return ents, ents * deg * (len(p.base_relations) + len(p.derived_relations) * deg)


#: Sampler -> params -> (entities, closure facts): rough upper estimates, before sampling.
_SIZES = {"random_composition": _composition_size, "family_tree": _family_size,
          "taxonomy": _taxonomy_size, "dual_use": _dual_use_size}
#: Memory a world costs per entity and per closure fact, through closure and corpus.
_BYTES_PER_ENTITY, _BYTES_PER_FACT = 300, 1000


def _available_memory() -> int:
    """Bytes of memory available now (Linux ``MemAvailable``; else physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return 2**62


def estimate_size(cfg: WorldConfig) -> tuple[float, float, float] | None:
    """Rough upper estimate of a world's (entities, closure facts, bytes) before sampling.

    None for a sampler registered without an estimate. Used to refuse, in one line, a
    world that cannot fit in memory instead of allocating until ``MemoryError``.

    Examples
    --------
    >>> from kgtest.worlds.spec import WorldConfig
    >>> ents, facts, nbytes = estimate_size(WorldConfig(params={"n_entities": 100}))
    >>> ents, facts >= 100 * 4
    (100, True)
    """
    fn = _SIZES.get(cfg.sampler)
    if fn is None:
        return None
    ents, facts = fn(cfg.sampler_params())
    return ents, facts, ents * _BYTES_PER_ENTITY + facts * _BYTES_PER_FACT


def check_world_size(cfg: WorldConfig, *, where: str = "", available: int | None = None
                     ) -> None:
    """Refuse a world whose estimated size does not fit in ``available`` bytes of memory,
    or that asks for more composed relations than its base relations can make.

    Raises
    ------
    InputError
        ``where: [world.params] about N entities and M facts need ~X GB ...``.

    Examples
    --------
    >>> from kgtest.worlds.spec import WorldConfig
    >>> check_world_size(WorldConfig(params={"n_entities": 10**8}), available=2**34)
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: [world.params] about 1e+08 entities and 1e+09 facts need ~959 GB ...
    """
    at = f"{where}: " if where else ""
    if cfg.sampler == "random_composition":  # more would be silently capped when sampling
        p = cfg.sampler_params()
        if p.hops >= 2 and p.n_derived > p.n_relations ** 2:
            raise InputError(f"{at}key 'world.params.n_derived' is {p.n_derived}, but "
                             f"{p.n_relations} base relations compose into at most "
                             f"{p.n_relations ** 2} two-hop relations")
    est = estimate_size(cfg)
    if est is None:
        return
    ents, facts, need = est
    have = _available_memory() if available is None else available
    if need > have:
        raise InputError(f"{at}[world.params] about {ents:.3g} entities and {facts:.3g} facts "
                         f"need ~{need / 2**30:.3g} GB of memory; {have / 2**30:.3g} GB is "
                         f"available (make the '{cfg.sampler}' world smaller)")


def sample_world(cfg: WorldConfig, *, seed: int) -> World:
    """Sample the world a config describes.

    Parameters
    ----------
    cfg : WorldConfig
        The ``[world]`` section (see :mod:`kgtest.worlds.spec`).
    seed : int
        The world seed: the same seed gives the same world, on any machine.

    Returns
    -------
    World
        With ``cfg.n_planted`` planted targets, each checked to have exactly
        ``cfg.planted_proofs`` independent derivations; ``meta`` records the spec.

    Examples
    --------
    >>> from kgtest.worlds.spec import WorldConfig
    >>> w = sample_world(WorldConfig(params={"n_entities": 8, "n_relations": 2}), seed=1)
    >>> len(w.entities), len(w.facts), w.name
    (8, 16, 'random_composition')
    """
    info = SAMPLERS.get(cfg.sampler)
    check_world_size(cfg)
    params = cfg.sampler_params()
    rules = world_rules(cfg)
    name = cfg.name or cfg.sampler
    ctx = SampleContext(rng=np.random.default_rng(seed), rules=rules, zipf=cfg.zipf,
                        n_planted=cfg.n_planted, planted_proofs=cfg.planted_proofs, name=name)
    world = info.fn(params, ctx)
    if rules is not None:  # a user's rules file: a body relation must occur somewhere
        check_body_relations(rules, {world.relations.name(int(r))
                                     for r in np.unique(world.facts[:, 1])})
    if cfg.n_planted:
        check_planted(world, cfg.planted_proofs)
    meta = {"sampler": cfg.sampler, "seed": int(seed), "description": cfg.description,
            "rules_file": cfg.rules, "n_planted": cfg.n_planted,
            "planted_proofs": cfg.planted_proofs, "zipf": cfg.zipf, "params": dict(cfg.params)}
    world.meta.update(meta)
    return world


def world_from_tsv(
    facts_path: str | os.PathLike,
    rules_path: str | os.PathLike,
    fixed_path: str | os.PathLike | None = None,
    *,
    allow_dead_rules: bool = False,
) -> World:
    """A world from a user's own KG: TSV facts plus a Datalog rules file.

    Read with :func:`kgtest.symbolic.kb.read_kb`, the reader under ``kgtest world
    closure`` too; its module docstring says what a file means. In short: kgtest's own
    annotated ``facts.tsv`` (columns ``kind``, ``fixed``, ``domain``) gives its base facts
    only (derived rows are dropped), with their fixed flags and domains, so a written world
    reads back as itself; a fact listed twice is kept once (its first line's domain; fixed
    if any line or the fixed file says so).

    Parameters
    ----------
    facts_path : path
        ``subject<TAB>relation<TAB>object`` per line, ``#`` comments, an optional header
        line ``subject relation object ...`` naming annotation columns.
    rules_path : path
        Datalog rules (``.dl``).
    fixed_path : path, optional
        Facts known and never deleted (attributes such as gender), same TSV format.
    allow_dead_rules : bool
        Accept rules whose body names a relation no fact or head has (they never fire);
        refused by default, as by ``kgtest world closure`` without ``--allow-dead-rules``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "f.tsv").write_text("ann\\tparent\\tbob\\nbob\\tparent\\tcy\\n")
    >>> _ = (d / "r.dl").write_text("grandparent(X, Z) :- parent(X, Y), parent(Y, Z).\\n")
    >>> w = world_from_tsv(d / "f.tsv", d / "r.dl")
    >>> len(w.facts), len(w.close())
    (2, 3)
    """
    kb = read_kb(facts_path, rules_path, fixed_path, allow_dead_rules=allow_dead_rules)
    _, first, inv = np.unique(fact_keys(kb.facts, len(kb.entities)), return_index=True,
                              return_inverse=True)
    fixed = np.zeros(len(first), dtype=bool)
    np.logical_or.at(fixed, inv.ravel(), kb.fixed)  # fixed if any of its lines says so
    by_line = np.argsort(first)  # distinct facts in file order (their first line)
    relations = kb.relations.copy()
    for rule in kb.rules:
        for rel in rule.relations:
            relations.add(rel)
    return World(entities=kb.entities, relations=relations,
                 entity_type=np.zeros(len(kb.entities), dtype=np.int64),
                 type_names=("entity",), facts=kb.facts[first[by_line]], rules=kb.rules,
                 fixed=fixed[by_line], domain=kb.domain[first[by_line]],
                 domain_names=kb.domain_names, name=Path(facts_path).stem,
                 meta={"facts_file": str(facts_path), "rules_file": str(rules_path)})
