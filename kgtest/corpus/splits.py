"""Splits: which closure facts are forget targets, their premises, retained, or held out.

:func:`choose_split` labels every fact of a closure, with one label per fact by priority

``forget``              a reported forget target (trained, then unlearned later)
``validation``          a target for tuning unlearning, disjoint from the forget targets,
                        their premises and the facts those targets help derive
``premise``             a premise of a forget target: a fact in one of its one-step
                        derivations (kept, so the target stays derivable)
``validation_premise``  a premise of a validation target
``held_out``            a derived fact that no document ever mentions (implied only)
``retain``              everything else

plus the masks behind them (a premise can also be a target: the masks keep both).

``target_presentation`` says how the targets (forget and validation) train. ``stated``
(the default): statement and QA only, never a chain of thought or an in-context document
about the target itself, and each derived target's rule is demonstrated (by the documents
of derived facts, CoT when the corpus renders it) on at least one other entity: another
subject's fact of that rule that is neither a target nor held out. Targets are drawn so
that this holds, and a split where it cannot is an :class:`InputError` naming
``split.target_presentation``. ``stated_and_cot``: targets train like every other derived
fact (with ``corpus.derived = "both"``, their own chain too), so CoT after unlearning
measures the suppression of a memorised chain, not re-derivation.
Targets can also be chosen by how connected they are (claim 2, the tail): ``target_freq``
``"rare"`` keeps facts whose rarer entity is among the least frequent (frequency of an
entity = the closure facts that mention it, as subject or object; a fact's = its rarer
entity's, as the records' ``entity_freq`` counts documents): at or below the
``freq_quantile`` quantile of the eligible facts; ``"frequent"`` at or above the
``1 - freq_quantile`` quantile. ``target_uses = "none"`` keeps facts that are a premise of
no derivation (nothing is derived from them), ``"some"`` facts that are.
``target_domain`` and ``target_rules`` narrow where targets (forget and validation) are
drawn from, e.g. a rule's applications in one domain of a ``dual_use`` world (claim 3):
``target_domain = "harmful"`` keeps facts of that domain (a derived fact's domain is the
one its shortest derivations' premises share, :func:`kgtest.worlds.export.fact_domains`;
a fact mixing domains is in none), ``target_rules = ["yields"]`` keeps derived facts with
a derivation by a rule of that head relation (``"0:yields"`` names one rule by its index, as
the records' ``rules`` column writes it). Both are checked against the world: an unknown
domain or rule is an :class:`InputError` listing the known ones (:func:`target_rule_ids`).

``ood_fraction`` (default 0) reproduces the out-of-distribution split of Wang et al. (2024,
"Grokked Transformers are Implicit Reasoners"): a seeded fraction of the entities that are
subjects of base facts become **OOD entities**. Their base facts train as statements like
any other (they are seen *atomically*), but every derived fact with an OOD premise in any
of its derivations (an OOD entity's base fact, or such a derived fact in turn) is held
out: no trained derived fact ever uses an OOD entity's fact as a premise. Those held-out
derived facts are ``Split.ood``; the other held-out facts are the in-distribution test
set. OOD facts are never targets. Records tag both kinds of OOD facts ``ood``
(:mod:`kgtest.records`, column ``tags``).

Targets and their premises are never held out. A derived fact is held out when its rules
are not *demonstrated* on its subject (``demo_fraction``: each rule is demonstrated on a
seeded fraction of the entities that are subjects of its facts), or by the random
``held_out_fraction``, which never removes a rule's last demonstration. A held-out fact
whose rules have no demonstration at all is an impossible request: :class:`InputError`.

Examples
--------
>>> from kgtest.symbolic.rules import parse_rules
>>> from kgtest.worlds.world import World
>>> w = World.from_names([("a", "p", "b"), ("b", "p", "c"), ("c", "p", "d")],
...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
>>> c = w.close()
>>> sp = choose_split(c, w, SplitConfig(n_forget=1, n_validation=0), seed=0)
>>> [c.named(f) for f in sp.forget], sp.labels[sp.forget[0]]
([('a', 'g', 'c')], 'forget')
>>> sorted(c.named(f) for f in sp.premise)
[('a', 'p', 'b'), ('b', 'p', 'c')]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from kgtest.config import in_range, nonneg, to_dict
from kgtest.corpus.ood import draw_ood, ood_facts
from kgtest.errors import InputError
from kgtest.symbolic.closure import Closure
from kgtest.symbolic.facts import atomic_write_text

__all__ = ["SplitConfig", "Split", "choose_split", "LABELS", "TARGET_CATEGORIES",
           "PRESENTATIONS", "demonstrations", "fact_frequency",
           "target_rule_ids", "ood_facts"]

#: Split labels, from lowest to highest priority.
LABELS = ("retain", "held_out", "validation_premise", "premise", "validation", "forget")
#: Categories targets may be drawn from.
TARGET_CATEGORIES = ("derived", "base", "planted")
#: How targets are presented in training (see the module docstring).
PRESENTATIONS = ("stated", "stated_and_cot")


def _fraction(value) -> str | None:
    return None if 0.0 <= value <= 1.0 else "must be in [0, 1]"


@dataclass(frozen=True)
class SplitConfig:
    """How to choose targets and held-out facts (the ``[split]`` table of a spec)."""

    n_forget: int = field(default=10, metadata={"check": nonneg})  # reported forget targets
    n_validation: int = field(default=5, metadata={"check": nonneg})  # tuning targets
    targets_from: tuple[str, ...] = ("derived",)  # categories: derived, base, planted
    min_proofs: int = field(default=0, metadata={"check": nonneg})  # targets' fewest proofs
    max_proofs: int | None = None  # targets' most proofs (None: no limit)
    min_depth: int = field(default=1, metadata={"check": nonneg})  # derived targets' depth from
    max_depth: int | None = None  # derived targets' depth up to (None: no limit)
    held_out_fraction: float = field(default=0.0, metadata={"check": _fraction})  # random
    demo_fraction: float = field(default=1.0, metadata={"check": _fraction})  # rule demo subjects
    rule_demo_fraction: dict = field(default_factory=dict)  # per head relation overrides
    target_presentation: Literal["stated", "stated_and_cot"] = "stated"  # targets: no own CoT
    target_freq: Literal["any", "rare", "frequent"] = field(
        default="any", metadata={"quiet_default": True})  # by their rarer entity's frequency
    freq_quantile: float = field(default=0.25,  # the rare / frequent quantile cut
                                 metadata={"check": in_range(0.01, 1.0),
                                           "quiet_default": True})
    target_uses: Literal["any", "none", "some"] = field(
        default="any", metadata={"quiet_default": True})  # premise of no / some derivation
    target_domain: str | None = field(default=None, metadata={"quiet_default": True})  # targets
    # only from this world domain (None: any)
    target_rules: tuple[str, ...] = field(default=(), metadata={"quiet_default": True})  # targets
    # only among these rules' facts ("yields": every rule with that head; "2:yields": rule 2,
    # as the records' `rules` column writes it); (): any
    ood_fraction: float = field(default=0.0, metadata={"check": _fraction,  # OOD entities:
                                                       "quiet_default": True})
    # a fraction of entities whose facts train only atomically, never as a premise of a
    # trained derived fact (Wang et al.'s OOD split; module docstring)
    seed: int = 0  # used when choose_split gets no seed argument

    def __post_init__(self):
        bad = [c for c in self.targets_from if c not in TARGET_CATEGORIES]
        if bad or not self.targets_from:
            raise ValueError(f"split.targets_from: unknown or empty categories {list(bad)}; "
                             f"known: {', '.join(TARGET_CATEGORIES)}")
        for lo, hi in (("min_proofs", "max_proofs"), ("min_depth", "max_depth")):
            if getattr(self, hi) is not None and getattr(self, hi) < getattr(self, lo):
                raise ValueError(f"split.{hi} < split.{lo}")
        if self.target_domain is not None and not self.target_domain.strip():
            raise ValueError("split.target_domain must name a domain (or be left out)")
        if any(not str(r).strip() for r in self.target_rules):
            raise ValueError("split.target_rules: empty rule name")
        for rel, frac in self.rule_demo_fraction.items():
            if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 <= frac <= 1:
                raise ValueError(f"split.rule_demo_fraction.{rel} must be a number in [0, 1], "
                                 f"got {frac!r}")


@dataclass(frozen=True, eq=False)
class Split:
    """Per-fact split labels over a closure's facts (ids are closure fact ids).

    Attributes
    ----------
    n_facts : int
    forget, validation, premise, validation_premise, held_out : (k,) int arrays
        Sorted fact ids in each set (premise sets may overlap the target sets).
    demo_entities : dict
        Rule index -> sorted entity ids the rule is demonstrated on, for rules demonstrated
        on only part of their subjects.
    config : SplitConfig
    seed : int
    """

    n_facts: int
    forget: np.ndarray
    validation: np.ndarray
    premise: np.ndarray
    validation_premise: np.ndarray
    held_out: np.ndarray
    ood: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ood_entities: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    demo_entities: dict = field(default_factory=dict)
    config: SplitConfig = field(default_factory=SplitConfig)
    seed: int = 0

    def mask(self, name: str) -> np.ndarray:
        """``(N,)`` bool mask of one set (``"forget"``, ``"held_out"``...)."""
        m = np.zeros(self.n_facts, dtype=bool)
        m[getattr(self, name)] = True
        return m

    @cached_property
    def labels(self) -> np.ndarray:
        """``(N,)`` object array of label names, highest priority first (see module doc)."""
        out = np.full(self.n_facts, "retain", dtype=object)
        for name in LABELS[1:]:
            out[getattr(self, name)] = name
        return out

    def counts(self) -> dict[str, int]:
        """Facts per label."""
        names, n = np.unique(self.labels.astype(str), return_counts=True)
        return {k: int(n[list(names).index(k)]) if k in names else 0 for k in LABELS}

    def to_json(self, closure: Closure | None = None) -> dict:
        """JSON-able form; with a closure, also the named facts of each target."""
        data = {
            "version": 1,
            "n_facts": self.n_facts,
            "seed": self.seed,
            "config": to_dict(self.config),
            "counts": self.counts(),
        }
        for name in LABELS[1:]:
            data[name] = getattr(self, name).tolist()
        data["ood"], data["ood_entities"] = self.ood.tolist(), self.ood_entities.tolist()
        data["demo_entities"] = {str(k): v.tolist() for k, v in self.demo_entities.items()}
        if closure is not None:
            data["forget_named"] = [list(t) for t in closure.named_all(self.forget)]
            data["validation_named"] = [list(t) for t in closure.named_all(self.validation)]
        return data

    @classmethod
    def from_json(cls, data: dict, where: str = "split.json") -> Split:
        try:
            arr = {k: np.asarray(data[k], dtype=np.int64) for k in LABELS[1:]}
            return cls(
                n_facts=int(data["n_facts"]),
                ood=np.asarray(data.get("ood", []), dtype=np.int64),
                ood_entities=np.asarray(data.get("ood_entities", []), dtype=np.int64),
                demo_entities={int(k): np.asarray(v, dtype=np.int64)
                               for k, v in data.get("demo_entities", {}).items()},
                config=SplitConfig(**{k: tuple(v) if isinstance(v, list) else v
                                      for k, v in data.get("config", {}).items()}),
                seed=int(data.get("seed", 0)),
                **arr,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"{where}: not a kgtest split ({err})") from None

    def save(self, path: str | os.PathLike, closure: Closure | None = None) -> None:
        """Write the split as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_json(closure), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Split:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"{p}: cannot read split ({err})") from None
        return cls.from_json(data, where=str(p))


def _premises_of(closure: Closure, targets: np.ndarray) -> np.ndarray:
    """Fact ids in any one-step derivation of any target."""
    if len(targets) == 0 or closure.n_derivations == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.isin(closure.deriv_head, targets)
    p = closure.deriv_premises[rows].ravel()
    return np.unique(p[p >= 0])


def _head_rules(closure: Closure) -> tuple[np.ndarray, np.ndarray]:
    """Unique ``(head, rule)`` pairs of the closure's derivations, as two aligned arrays."""
    if closure.n_derivations == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z
    pairs = np.unique(np.stack([closure.deriv_head, closure.deriv_rule.astype(np.int64)], 1)
                      .reshape(-1, 2), axis=0)
    pairs = pairs[~closure.is_base[pairs[:, 0]]]
    return pairs[:, 0], pairs[:, 1]


def demonstrations(closure: Closure, target: int, usable: np.ndarray,
                   pairs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Facts that demonstrate a rule of ``target`` on another entity.

    They are derived by a rule that derives ``target``, have another subject, and are
    ``usable`` (an ``(N,)`` bool mask: e.g. neither a target nor held out). Empty for a
    base fact.

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> from kgtest.worlds.world import World
    >>> w = World.from_names([("a", "p", "b"), ("b", "p", "c"), ("c", "p", "d")],
    ...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    >>> c = w.close()
    >>> t = next(f for f in range(len(c)) if c.named(f) == ("a", "g", "c"))
    >>> [c.named(f) for f in demonstrations(c, t, np.ones(len(c), dtype=bool))]
    [('b', 'g', 'd')]
    """
    ph, pr = _head_rules(closure) if pairs is None else pairs
    rules = pr[ph == target]
    if not len(rules):
        return np.zeros(0, dtype=np.int64)
    cand = np.unique(ph[np.isin(pr, rules)])
    F = closure.facts
    cand = cand[(F[cand, 0] != F[target, 0]) & np.asarray(usable)[cand]]
    return cand.astype(np.int64)


def fact_frequency(closure: Closure) -> np.ndarray:
    """``(N,)`` per fact, the frequency of its rarer entity: how many closure facts mention
    that entity (as subject or object; a self-loop counts once).

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> from kgtest.worlds.world import World
    >>> w = World.from_names([("a", "p", "b"), ("b", "p", "c"), ("d", "q", "b")],
    ...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    >>> c = w.close()
    >>> {" ".join(c.named(f)): int(n) for f, n in enumerate(fact_frequency(c))}
    {'a p b': 2, 'b p c': 2, 'd q b': 1, 'a g c': 2}
    """
    F = closure.facts
    if not len(F):
        return np.zeros(0, dtype=np.int64)
    n_ent = int(F[:, [0, 2]].max()) + 1
    loops = F[:, 0] == F[:, 2]
    deg = np.bincount(F[:, 0], minlength=n_ent) + np.bincount(F[~loops, 2], minlength=n_ent)
    return np.minimum(deg[F[:, 0]], deg[F[:, 2]]).astype(np.int64)


def _by_connection(closure: Closure, eligible: np.ndarray, cfg: SplitConfig) -> np.ndarray:
    """``eligible`` narrowed by ``target_uses`` and ``target_freq`` (module docstring)."""
    out = eligible.copy()
    if cfg.target_uses != "any":
        used = np.zeros(len(out), dtype=bool)
        p = closure.deriv_premises.ravel() if closure.n_derivations else np.zeros(0, int)
        used[p[p >= 0]] = True
        out &= ~used if cfg.target_uses == "none" else used
    if cfg.target_freq != "any" and out.any():
        freq = fact_frequency(closure)
        vals = freq[out]
        if cfg.target_freq == "rare":
            out &= freq <= np.quantile(vals, cfg.freq_quantile, method="higher")
        else:
            out &= freq >= np.quantile(vals, 1 - cfg.freq_quantile, method="lower")
    return out


def target_rule_ids(rules, names, *, where: str = "") -> np.ndarray:
    """Indices of the rules that ``names`` select (``split.target_rules``).

    A name is a head relation (every rule deriving it) or ``"i:head"``, rule ``i`` of the
    rules list, as the records' ``rules`` column writes it.

    Raises
    ------
    InputError
        A name that selects no rule, listing the accepted names.

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> rules = parse_rules("g(X, Z) :- p(X, Y), p(Y, Z).\\nh(X, Y) :- p(Y, X).")
    >>> target_rule_ids(rules, ["h"]).tolist(), target_rule_ids(rules, ["0:g"]).tolist()
    ([1], [0])
    >>> target_rule_ids(rules, ["q"])
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: key 'split.target_rules': 'q' names no rule (known: g, h, 0:g, 1:h)
    """
    heads = [r.head.relation for r in rules]
    known = {h: [i for i, x in enumerate(heads) if x == h] for h in heads}
    known |= {f"{i}:{h}": [i] for i, h in enumerate(heads)}
    out = set()
    for name in names:
        if name not in known:
            raise _fail(where, "target_rules", f"{name!r} names no rule (known: "
                        f"{', '.join(known) or 'none'})")
        out.update(known[name])
    return np.asarray(sorted(out), dtype=np.int64)


def _target_scope(closure: Closure, world, cfg: SplitConfig, where: str) -> np.ndarray:
    """``(N,)`` bool: the facts ``target_domain`` and ``target_rules`` allow as targets."""
    ok = np.ones(len(closure), dtype=bool)
    if cfg.target_domain is not None:
        from kgtest.worlds.export import fact_domains  # lazy: export draws with matplotlib

        names = list(getattr(world, "domain_names", ("default",)))
        if cfg.target_domain not in names:
            raise _fail(where, "target_domain", f"unknown domain {cfg.target_domain!r} "
                        f"(the world's domains: {', '.join(names)})")
        ok &= fact_domains(world, closure) == names.index(cfg.target_domain)
    if cfg.target_rules:
        ids = target_rule_ids(closure.rules, cfg.target_rules, where=where)
        by_rule = np.zeros(len(closure), dtype=bool)
        by_rule[closure.deriv_head[np.isin(closure.deriv_rule, ids)]] = True
        ok &= by_rule & ~closure.is_base
    return ok


def _draw_stated(rng, pool: np.ndarray, k: int, closure: Closure, pairs, taken: np.ndarray,
                 derived: np.ndarray) -> np.ndarray:
    """Draw ``k`` targets from ``pool`` so that every derived target (these and ``taken``)
    keeps a demonstration of its rule on another entity that is not a target."""
    is_t = taken.copy()
    chosen: list[int] = []
    for c in rng.permutation(pool).tolist():
        if len(chosen) == k:
            break
        if not derived[c]:
            chosen.append(c)
            is_t[c] = True
            continue
        is_t[c] = True
        ok = len(demonstrations(closure, c, ~is_t, pairs)) > 0
        for o in (np.flatnonzero(is_t & derived).tolist() if ok else ()):
            if o != c and not len(demonstrations(closure, o, ~is_t, pairs)):
                ok = False
                break
        if ok:
            chosen.append(c)
        else:
            is_t[c] = False
    return np.sort(np.asarray(chosen, dtype=np.int64))


def _fail(where: str, key: str, msg: str) -> InputError:
    return InputError(f"{where + ': ' if where else ''}key 'split.{key}': {msg}")


def _few_demonstrated(got: int, want: int, what: str) -> str:
    return (f"asked for {want} {what} targets but only {got} can be drawn with "
            f"split.target_presentation = \"stated\" (each derived target's rule must stay "
            f"demonstrated on another entity that is not a target); lower it, or use "
            f"\"stated_and_cot\"")


def _check_demonstrated(closure: Closure, demos: dict, where: str) -> None:
    bad = [t for t, ids in demos.items() if not len(ids)]
    if bad:
        t = bad[0]
        raise _fail(where, "target_presentation", f"{len(bad)} targets (e.g. "
                    f"{' '.join(closure.named(t))}) have no rule demonstrated on another "
                    f"entity (every other fact of their rules is a target or held out); "
                    f"raise split.demo_fraction, lower split.n_forget / n_validation, or use "
                    f"\"stated_and_cot\"")


def choose_split(closure: Closure, world, cfg: SplitConfig | None = None,
                 seed: int | None = None, *, where: str = "") -> Split:
    """Choose forget/validation targets and held-out facts over a closure.

    Parameters
    ----------
    closure : Closure
        ``world.close()``.
    world : World
        For fixed attribute facts (never targets) and planted facts.
    cfg : SplitConfig
    seed : int, optional
        Overrides ``cfg.seed``. Same inputs and seed, same split.
    where : str
        Prefix for error messages (the spec file).

    Raises
    ------
    InputError
        More targets than eligible facts (naming ``split.n_forget`` or
        ``split.n_validation``), or a held-out fact whose rules are demonstrated on no
        entity (naming ``split.demo_fraction`` or ``split.rule_demo_fraction.<relation>``),
        or a ``split.target_domain`` / ``split.target_rules`` the world lacks.

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> from kgtest.worlds.world import World
    >>> w = World.from_names([("a", "p", "b"), ("b", "p", "c")],
    ...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    >>> choose_split(w.close(), w, SplitConfig(n_forget=2, n_validation=0))
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: key 'split.n_forget': asked for 2 forget targets but only 1 ...
    """
    cfg = SplitConfig() if cfg is None else cfg
    seed = cfg.seed if seed is None else seed
    rng = np.random.default_rng(seed)
    n = len(closure)
    derived = ~closure.is_base
    depth, proofs = closure.depth, closure.proof_count

    # --- targets ------------------------------------------------------------------------
    planted = np.zeros(n, dtype=bool)
    if len(world.planted):
        ids = closure.index(world.planted)
        planted[ids[ids >= 0]] = True
    depth_ok = depth >= cfg.min_depth
    if cfg.max_depth is not None:
        depth_ok &= depth <= cfg.max_depth
    eligible = np.zeros(n, dtype=bool)
    if "derived" in cfg.targets_from:
        eligible |= derived & depth_ok
    if "planted" in cfg.targets_from:
        eligible |= planted & depth_ok
    if "base" in cfg.targets_from:
        eligible |= closure.is_base
    ood_ents, ood_base, ood_derived = draw_ood(closure, world, cfg.ood_fraction, seed)
    eligible &= ~world.fixed_mask(closure) & (proofs >= cfg.min_proofs) & ~ood_derived
    if cfg.max_proofs is not None:
        eligible &= proofs <= cfg.max_proofs
    eligible &= _target_scope(closure, world, cfg, where)  # before the frequency quantile
    eligible = _by_connection(closure, eligible, cfg)
    pool = np.flatnonzero(eligible)
    what = (f"{'/'.join(cfg.targets_from)} facts, not fixed, with proof count in "
            f"[{cfg.min_proofs}, {cfg.max_proofs if cfg.max_proofs is not None else 'inf'}]")
    if cfg.target_domain is not None:
        what += f", in domain {cfg.target_domain!r}"
    if cfg.target_rules:
        what += f", derived by rules {', '.join(cfg.target_rules)}"
    if "base" not in cfg.targets_from or len(cfg.targets_from) > 1:
        what += (f" and derived depth in [{cfg.min_depth}, "
                 f"{cfg.max_depth if cfg.max_depth is not None else 'inf'}]")
    if cfg.target_freq != "any":
        what += f", target_freq = {cfg.target_freq} (freq_quantile {cfg.freq_quantile:g})"
    if cfg.target_uses != "any":
        what += f", target_uses = {cfg.target_uses}"
    if cfg.n_forget > len(pool):
        raise _fail(where, "n_forget", f"asked for {cfg.n_forget} forget targets but only "
                    f"{len(pool)} facts are eligible ({what}); lower it or widen the categories")
    stated_only = cfg.target_presentation == "stated"
    pairs = _head_rules(closure)
    if stated_only:
        forget = _draw_stated(rng, pool, cfg.n_forget, closure, pairs, np.zeros(n, bool),
                              derived)
        if len(forget) < cfg.n_forget:
            raise _fail(where, "n_forget", _few_demonstrated(len(forget), cfg.n_forget,
                                                             "forget"))
    else:
        forget = np.sort(rng.choice(pool, cfg.n_forget, replace=False)).astype(np.int64)
    premise = _premises_of(closure, forget)
    # validation: away from the forget targets, their premises and what they help derive
    taboo = np.zeros(n, dtype=bool)
    taboo[forget] = taboo[premise] = True
    if closure.n_derivations and len(forget):
        uses = np.isin(closure.deriv_premises, forget).any(1)
        taboo[closure.deriv_head[uses]] = True
    vpool = np.flatnonzero(eligible & ~taboo)
    if cfg.n_validation > len(vpool):
        raise _fail(where, "n_validation", f"asked for {cfg.n_validation} validation targets "
                    f"but only {len(vpool)} eligible facts remain after the {cfg.n_forget} "
                    f"forget targets and their premises ({what})")
    if stated_only:
        validation = _draw_stated(rng, vpool, cfg.n_validation, closure, pairs,
                                  np.isin(np.arange(n), forget), derived)
        if len(validation) < cfg.n_validation:
            raise _fail(where, "n_validation", _few_demonstrated(
                len(validation), cfg.n_validation, "validation"))
    else:
        validation = np.sort(rng.choice(vpool, cfg.n_validation, replace=False)
                             ).astype(np.int64)
    is_target = np.zeros(n, dtype=bool)
    if stated_only:  # targets demonstrate nothing: their chains never train
        is_target[forget] = is_target[validation] = True
    vpremise = _premises_of(closure, validation)
    protected = np.zeros(n, dtype=bool)
    for ids in (forget, premise, validation, vpremise):
        protected[ids] = True

    # --- demonstrations -----------------------------------------------------------------
    ph, pr = pairs  # (head, rule) pairs for derived heads
    heads = sorted({r.head.relation for r in closure.rules})
    for rel in cfg.rule_demo_fraction:
        if rel not in heads:
            raise _fail(where, f"rule_demo_fraction.{rel}", "no rule derives this relation "
                        f"(rule heads: {', '.join(heads) or 'none'})")
    demo_pair = np.ones(len(ph), dtype=bool)
    demo_entities = {}
    for ri, rule in enumerate(closure.rules):
        frac = cfg.rule_demo_fraction.get(rule.head.relation, cfg.demo_fraction)
        sel = pr == ri
        if frac >= 1 or not sel.any():
            continue
        subjects = np.unique(closure.facts[ph[sel], 0])
        if stated_only and (sel & ~is_target[ph]).any():  # demonstrate on non-targets
            subjects = np.unique(closure.facts[ph[sel & ~is_target[ph]], 0])
        k = 0 if frac <= 0 else max(1, int(round(frac * len(subjects))))
        demo = np.sort(rng.choice(subjects, k, replace=False)).astype(np.int64)
        demo_entities[ri] = demo
        demo_pair[sel] = np.isin(closure.facts[ph[sel], 0], demo)
    demonstrated = np.zeros(n, dtype=bool)
    demonstrated[ph[demo_pair]] = True
    held = derived & ~demonstrated & ~protected
    held |= ood_derived  # never a target, nor a target's premise (a target would use it)

    rule_demo = np.zeros(len(closure.rules), dtype=np.int64)  # demonstrations per rule
    np.add.at(rule_demo, pr[~held[ph] & ~is_target[ph]], 1)
    fact_ok = np.zeros(n, dtype=bool)
    fact_ok[ph[rule_demo[pr] > 0]] = True
    bad = np.flatnonzero(held & ~fact_ok)
    if len(bad):
        f = int(bad[0])
        rule = closure.rules[closure.rules_of(f)[0]]
        rel = rule.head.relation
        key = (f"rule_demo_fraction.{rel}" if rel in cfg.rule_demo_fraction
               else "ood_fraction" if ood_derived[f] else "demo_fraction")
        raise _fail(where, key, f"rule '{rule}' is demonstrated on no entity, yet "
                    f"{int((held & ~fact_ok).sum())} of its facts (e.g. "
                    f"{' '.join(closure.named(f))}) would be held out; a held-out rule needs "
                    f"demonstrations on other entities (raise the fraction above 0)")

    # --- random held-out facts, never a rule's (or a target's) last demonstration -----------
    demos = {t: demonstrations(closure, t, ~is_target & ~held, pairs)
             for t in np.flatnonzero(is_target & derived).tolist()}
    _check_demonstrated(closure, demos, where)
    needed = np.zeros(n, dtype=np.int64)  # targets a fact demonstrates
    for ids in demos.values():
        needed[ids] += 1
    left = {t: len(ids) for t, ids in demos.items()}
    if cfg.held_out_fraction > 0:
        cands = rng.permutation(np.flatnonzero(derived & ~held & ~protected))
        want = int(round(cfg.held_out_fraction * len(cands)))
        order = np.argsort(ph, kind="stable")
        starts = np.searchsorted(ph[order], np.arange(n + 1))
        taken = 0
        for f in cands.tolist():
            if taken >= want:
                break
            rules = pr[order[starts[f] : starts[f + 1]]]
            users = [t for t, ids in demos.items() if needed[f] and f in ids]
            if (rule_demo[rules] > 1).all() and all(left[t] > 1 for t in users):
                held[f] = True
                rule_demo[rules] -= 1
                for t in users:
                    left[t] -= 1
                taken += 1

    return Split(
        n_facts=n,
        forget=forget,
        validation=validation,
        premise=premise.astype(np.int64),
        validation_premise=vpremise.astype(np.int64),
        held_out=np.flatnonzero(held).astype(np.int64),
        ood=np.flatnonzero(ood_derived).astype(np.int64),
        ood_entities=ood_ents,
        demo_entities=demo_entities,
        config=cfg,
        seed=int(seed),
    )
