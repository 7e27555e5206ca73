"""Targets: which facts a split may unlearn, and the draw of forget and validation targets.

:func:`kgtest.corpus.splits.choose_split` asks :func:`eligible_targets` for the facts that
may be targets and :func:`draw_targets` for the forget and validation targets among them.

Eligible: a fact of ``split.targets_from`` (derived facts within ``min_depth`` ..
``max_depth``, planted facts, base facts) whose proof count is within ``min_proofs`` ..
``max_proofs``, not a fixed attribute fact of the world and not out of distribution.
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

Validation targets are drawn away from the forget targets, their premises and the facts
those targets help derive. With ``target_presentation = "stated"`` every derived target
keeps a demonstration of its rule on another entity that is not a target
(:func:`demonstrations`).

Examples
--------
>>> from kgtest.corpus.splits import SplitConfig
>>> from kgtest.worlds.world import World
>>> w = World.example()  # a p b, b p c, c p d; g(X, Z) :- p(X, Y), p(Y, Z).
>>> c = w.close()
>>> ok, what = eligible_targets(c, w, SplitConfig(), np.zeros(len(c), dtype=bool))
>>> sorted(c.named(f) for f in np.flatnonzero(ok))
[('a', 'g', 'c'), ('b', 'g', 'd')]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kgtest.errors import InputError
from kgtest.symbolic.closure import Closure

if TYPE_CHECKING:
    from kgtest.corpus.splits import SplitConfig

__all__ = ["eligible_targets", "draw_targets", "demonstrations", "fact_frequency",
           "target_rule_ids", "premises_of", "head_rules", "split_error"]


def split_error(where: str, key: str, msg: str) -> InputError:
    """The error for a bad ``split.<key>``: ``where: key 'split.<key>': msg``."""
    return InputError(f"{where + ': ' if where else ''}key 'split.{key}': {msg}")


def premises_of(closure: Closure, targets: np.ndarray) -> np.ndarray:
    """Fact ids in any one-step derivation of any target."""
    if len(targets) == 0 or closure.n_derivations == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.isin(closure.deriv_head, targets)
    p = closure.deriv_premises[rows].ravel()
    return np.unique(p[p >= 0])


def head_rules(closure: Closure) -> tuple[np.ndarray, np.ndarray]:
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
    >>> from kgtest.worlds.world import World
    >>> w = World.example()  # a p b, b p c, c p d; g(X, Z) :- p(X, Y), p(Y, Z).
    >>> c = w.close()
    >>> t = next(f for f in range(len(c)) if c.named(f) == ("a", "g", "c"))
    >>> [c.named(f) for f in demonstrations(c, t, np.ones(len(c), dtype=bool))]
    [('b', 'g', 'd')]
    """
    ph, pr = head_rules(closure) if pairs is None else pairs
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
            raise split_error(where, "target_rules", f"{name!r} names no rule (known: "
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
            raise split_error(where, "target_domain", f"unknown domain {cfg.target_domain!r} "
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


def _few_demonstrated(got: int, want: int, what: str) -> str:
    return (f"asked for {want} {what} targets but only {got} can be drawn with "
            f"split.target_presentation = \"stated\" (each derived target's rule must stay "
            f"demonstrated on another entity that is not a target); lower it, or use "
            f"\"stated_and_cot\"")


def _describe(cfg: SplitConfig) -> str:
    """The eligibility rules of ``cfg`` in words, for the too-few-targets errors."""
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
    return what


def eligible_targets(closure: Closure, world, cfg: SplitConfig, ood_derived: np.ndarray,
                     *, where: str = "") -> tuple[np.ndarray, str]:
    """``(N,)`` bool mask of the facts that may be targets, and its rules in words.

    ``ood_derived`` marks the derived facts out of distribution (never targets).

    Raises
    ------
    InputError
        A ``split.target_domain`` or ``split.target_rules`` the world lacks.

    Examples
    --------
    >>> from kgtest.corpus.splits import SplitConfig
    >>> from kgtest.symbolic.rules import parse_rules
    >>> from kgtest.worlds.world import World
    >>> w = World.from_names([("a", "p", "b"), ("b", "p", "c")],
    ...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    >>> c = w.close()
    >>> ok, what = eligible_targets(c, w, SplitConfig(targets_from=("base",)),
    ...                             np.zeros(len(c), dtype=bool))
    >>> int(ok.sum()), what
    (2, 'base facts, not fixed, with proof count in [0, inf]')
    """
    n = len(closure)
    depth, proofs = closure.depth, closure.proof_count
    planted = np.zeros(n, dtype=bool)
    if len(world.planted):
        ids = closure.index(world.planted)
        planted[ids[ids >= 0]] = True
    depth_ok = depth >= cfg.min_depth
    if cfg.max_depth is not None:
        depth_ok &= depth <= cfg.max_depth
    eligible = np.zeros(n, dtype=bool)
    if "derived" in cfg.targets_from:
        eligible |= ~closure.is_base & depth_ok
    if "planted" in cfg.targets_from:
        eligible |= planted & depth_ok
    if "base" in cfg.targets_from:
        eligible |= closure.is_base
    eligible &= ~world.fixed_mask(closure) & (proofs >= cfg.min_proofs) & ~ood_derived
    if cfg.max_proofs is not None:
        eligible &= proofs <= cfg.max_proofs
    eligible &= _target_scope(closure, world, cfg, where)  # before the frequency quantile
    return _by_connection(closure, eligible, cfg), _describe(cfg)


def _draw(rng, pool: np.ndarray, k: int, closure: Closure, pairs, taken: np.ndarray,
          cfg: SplitConfig, what: str, where: str) -> np.ndarray:
    """``k`` targets from ``pool`` (``what``: "forget" or "validation"), sorted."""
    if cfg.target_presentation != "stated":
        return np.sort(rng.choice(pool, k, replace=False)).astype(np.int64)
    got = _draw_stated(rng, pool, k, closure, pairs, taken, ~closure.is_base)
    if len(got) < k:
        key = "n_forget" if what == "forget" else "n_validation"
        raise split_error(where, key, _few_demonstrated(len(got), k, what))
    return got


def draw_targets(rng: np.random.Generator, closure: Closure, eligible: np.ndarray,
                 what: str, cfg: SplitConfig, *, where: str = ""
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Draw the forget targets, then the validation targets, from the ``eligible`` facts.

    Validation targets avoid the forget targets, their premises and the facts those
    targets help derive. ``what`` describes ``eligible`` for the errors. Returns two
    sorted int arrays of fact ids: ``(forget, validation)``.

    Raises
    ------
    InputError
        More targets than eligible facts, naming ``split.n_forget`` or
        ``split.n_validation``.

    Examples
    --------
    >>> from kgtest.corpus.splits import SplitConfig
    >>> from kgtest.worlds.world import World
    >>> w = World.example()  # a p b, b p c, c p d; g(X, Z) :- p(X, Y), p(Y, Z).
    >>> c = w.close()
    >>> cfg = SplitConfig(n_forget=1, n_validation=1, target_presentation="stated_and_cot")
    >>> forget, validation = draw_targets(np.random.default_rng(0), c, ~c.is_base, "", cfg)
    >>> [c.named(f) for f in forget], [c.named(f) for f in validation]
    ([('b', 'g', 'd')], [('a', 'g', 'c')])
    """
    n = len(closure)
    pool = np.flatnonzero(eligible)
    if cfg.n_forget > len(pool):
        raise split_error(where, "n_forget", f"asked for {cfg.n_forget} forget targets but "
                          f"only {len(pool)} facts are eligible ({what}); lower it or widen "
                          f"the categories")
    pairs = head_rules(closure)
    forget = _draw(rng, pool, cfg.n_forget, closure, pairs, np.zeros(n, bool), cfg, "forget",
                   where)
    taboo = np.zeros(n, dtype=bool)
    taboo[forget] = taboo[premises_of(closure, forget)] = True
    if closure.n_derivations and len(forget):
        uses = np.isin(closure.deriv_premises, forget).any(1)
        taboo[closure.deriv_head[uses]] = True
    vpool = np.flatnonzero(eligible & ~taboo)
    if cfg.n_validation > len(vpool):
        raise split_error(where, "n_validation", f"asked for {cfg.n_validation} validation "
                          f"targets but only {len(vpool)} eligible facts remain after the "
                          f"{cfg.n_forget} forget targets and their premises ({what})")
    validation = _draw(rng, vpool, cfg.n_validation, closure, pairs,
                       np.isin(np.arange(n), forget), cfg, "validation", where)
    return forget, validation
