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
from kgtest.symbolic.facts import read_tsv
from kgtest.symbolic.rules import Rule, check_body_relations, read_rules
from kgtest.worlds.config import WorldConfig
from kgtest.worlds.registry import SAMPLERS, SampleContext, WorldBuilder, check_planted
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


_HEADER = ("subject", "relation", "object")


def world_from_tsv(
    facts_path: str | os.PathLike,
    rules_path: str | os.PathLike,
    fixed_path: str | os.PathLike | None = None,
) -> World:
    """A world from a user's own KG: TSV facts plus a Datalog rules file.

    Parameters
    ----------
    facts_path : path
        ``subject<TAB>relation<TAB>object`` per line, ``#`` comments. A header line
        starting ``subject relation object`` is allowed; with kgtest's own ``facts.tsv``
        (columns ``kind``, ``fixed``, ``domain``) only base facts are read, with their
        fixed flags and domains, so a written world reads back as itself.
    rules_path : path
        Datalog rules (``.dl``).
    fixed_path : path, optional
        Facts known and never deleted (attributes such as gender), same TSV format.

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
    facts_path = Path(facts_path)
    rules = read_rules(rules_path)
    header, rows = _read_annotated(facts_path)
    b = WorldBuilder(("entity",), domain_names=_domains(header, rows))
    dom_ix = {d: i for i, d in enumerate(b.domain_names)}
    for row in rows:
        if "kind" in header and row[header.index("kind")] != "base":
            continue
        s, r, o = (b.entity(row[0]), row[1], b.entity(row[2]))
        fixed = "fixed" in header and row[header.index("fixed")] in ("1", "true", "True")
        dom = dom_ix[row[header.index("domain")]] if "domain" in header else 0
        b.add(s, r, o, fixed=fixed, domain=dom)
    if fixed_path is not None:
        for s, r, o in read_tsv(fixed_path):
            b.add(b.entity(s), r, b.entity(o), fixed=True)
    check_body_relations(rules, b.relations.names)
    return b.build(rules, name=facts_path.stem, meta={"facts_file": str(facts_path),
                                                      "rules_file": str(rules_path)})


def _read_annotated(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header (or the three default columns) and rows; plain files go through read_tsv."""
    try:
        first = next((ln for ln in path.read_text(encoding="utf-8-sig").splitlines()
                      if ln.strip() and not ln.lstrip().startswith("#")), "")
    except (OSError, UnicodeDecodeError):
        first = ""  # read_tsv reports it
    cols = [c.strip() for c in first.split("\t")]
    if tuple(cols[:3]) != _HEADER:
        return list(_HEADER), [list(t) for t in read_tsv(path)]
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        body = "" if line.lstrip().startswith("#") else line  # '#' in a name is kept
        if not body.strip() or body.strip() == first.strip():
            continue
        row = [c.strip() for c in body.split("\t")]
        if len(row) < len(cols) or not all(row[:3]):
            raise InputError(f"{path}:{lineno}: expected {len(cols)} tab-separated columns "
                             f"({', '.join(cols)}), got {line.strip()!r}")
        rows.append(row)
    return cols, rows


def _domains(header: list[str], rows: list[list[str]]) -> tuple[str, ...]:
    if "domain" not in header:
        return ("default",)
    j = header.index("domain")
    names = list(dict.fromkeys(r[j] for r in rows if "kind" not in header
                               or r[header.index("kind")] == "base"))
    return tuple(names) or ("default",)
