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
Which facts may be targets (by category, depth, proof count, how connected they are, a
world domain or a rule) and the draw of the targets are :mod:`kgtest.corpus.targets`.

``ood_fraction`` (default 0) reproduces the out-of-distribution split of Wang et al. (2024,
"Grokked Transformers are Implicit Reasoners"): a seeded fraction of the entities that are
subjects of base facts become **OOD entities**. Their base facts train as statements like
any other (they are seen *atomically*), but every derived fact with an OOD premise in any
of its derivations (an OOD entity's base fact, or such a derived fact in turn) is held
out: no trained derived fact ever uses an OOD entity's fact as a premise. Those held-out
derived facts are ``Split.ood``; the other held-out facts are the in-distribution test
set. OOD facts are never targets. Records tag both kinds of OOD facts ``ood``
(:mod:`kgtest.records`, column ``tags``).

**Stop and scored halves.** Early stopping must never select on facts the report
scores, so the held-out facts are cut in two, once, here (:func:`halve_held_out`, seeded
from the split's own seed, itself derived from ``run.seed``): :attr:`Split.held_out_stop`
is asked only by the in-loop evaluation (:func:`kgtest.train_eval.eval_sets`: the ``cot``
stop criterion and the ``latent_id`` / ``latent_ood`` grokking curves of the training
log), :attr:`Split.held_out_scored` by every probe that asks held-out facts (``implied``
rows of the ``latent`` probe, ``utility_rule`` and ``utility_loss`` of the ``utility``
probe, ``probes.facts = "held_out"``). The cut is stratified by :attr:`Split.ood`, so both
halves hold in- and out-of-distribution facts where there are some; an odd stratum gives
its extra fact to the scored half (a world with one held-out fact scores it and has no
in-loop CoT question: training then drops ``cot`` from ``stop_at``). Everything about
*training* (no document mentions a held-out fact, in-context documents avoid them, the
knowledge base of deep unlearning, exports by label) still uses the whole ``held_out``.

Targets and their premises are never held out. A derived fact is held out when its rules
are not *demonstrated* on its subject (``demo_fraction``: each rule is demonstrated on a
seeded fraction of the entities that are subjects of its facts), or by the random
``held_out_fraction``, which never removes a rule's last demonstration. A held-out fact
whose rules have no demonstration at all is an impossible request: :class:`InputError`.

Examples
--------
>>> from kgtest.worlds.world import World
>>> w = World.example()  # a p b, b p c, c p d; g(X, Z) :- p(X, Y), p(Y, Z).
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
from kgtest.corpus.targets import (
    demonstrations,
    draw_targets,
    eligible_targets,
    fact_frequency,
    head_rules,
    premises_of,
    split_error,
    target_rule_ids,
)
from kgtest.errors import InputError
from kgtest.seeds import stage_seed
from kgtest.symbolic.closure import Closure
from kgtest.symbolic.facts import atomic_write_text

__all__ = ["SplitConfig", "Split", "choose_split", "halve_held_out", "LABELS",
           "TARGET_CATEGORIES",
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

    @cached_property
    def _halves(self) -> tuple[np.ndarray, np.ndarray]:
        return halve_held_out(self.held_out, self.ood, self.seed)

    @property
    def held_out_stop(self) -> np.ndarray:
        """Held-out facts the in-loop evaluation asks (early stopping), never probed."""
        return self._halves[0]

    @property
    def held_out_scored(self) -> np.ndarray:
        """Held-out facts the probes ask and the report scores, never used to stop."""
        return self._halves[1]

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


def halve_held_out(held_out: np.ndarray, ood: np.ndarray, seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Cut held-out fact ids into a stop half and a scored half (module docstring).

    Within each stratum (held-out facts in :attr:`Split.ood`, the others) a seeded
    permutation gives the first ``floor(k / 2)`` facts to the stop half and the rest to the
    scored half, so the scored half gets the odd one out (one held-out fact: scored). The
    permutation's seed is ``stage_seed(seed, "held_out")`` (``seed``: the split's seed).

    Returns
    -------
    stop, scored : (k,) int64 arrays
        Sorted, disjoint, their union ``held_out``.

    Examples
    --------
    >>> stop, scored = halve_held_out(np.arange(5), np.zeros(0, dtype=np.int64), seed=0)
    >>> len(stop), len(scored), sorted(stop.tolist() + scored.tolist())
    (2, 3, [0, 1, 2, 3, 4])
    >>> [a.tolist() for a in halve_held_out(np.array([7]), np.array([7]), seed=0)]
    [[], [7]]
    """
    held = np.asarray(held_out, dtype=np.int64)
    rng = np.random.default_rng(stage_seed(int(seed), "held_out"))
    in_ood = np.isin(held, np.asarray(ood, dtype=np.int64))
    stop, scored = [], []
    for stratum in (held[~in_ood], held[in_ood]):
        perm = rng.permutation(np.sort(stratum))
        stop.append(perm[: len(perm) // 2])
        scored.append(perm[len(perm) // 2:])
    return (np.sort(np.concatenate(stop)).astype(np.int64),
            np.sort(np.concatenate(scored)).astype(np.int64))


def _check_demonstrated(closure: Closure, demos: dict, where: str) -> None:
    bad = [t for t, ids in demos.items() if not len(ids)]
    if bad:
        t = bad[0]
        raise split_error(where, "target_presentation", f"{len(bad)} targets (e.g. "
                          f"{' '.join(closure.named(t))}) have no rule demonstrated on "
                          f"another entity (every other fact of their rules is a target or "
                          f"held out); raise split.demo_fraction, lower split.n_forget / "
                          f"n_validation, or use \"stated_and_cot\"")


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
    ood_ents, _, ood_derived = draw_ood(closure, world, cfg.ood_fraction, seed)
    eligible, what = eligible_targets(closure, world, cfg, ood_derived, where=where)
    forget, validation = draw_targets(rng, closure, eligible, what, cfg, where=where)
    premise, vpremise = premises_of(closure, forget), premises_of(closure, validation)
    is_target = np.zeros(n, dtype=bool)
    if cfg.target_presentation == "stated":  # targets demonstrate nothing: no chain trains
        is_target[forget] = is_target[validation] = True
    protected = np.zeros(n, dtype=bool)
    for ids in (forget, premise, validation, vpremise):
        protected[ids] = True
    pairs = head_rules(closure)
    demonstrated, demo_entities = _demonstrate(rng, closure, cfg, pairs, is_target, where)
    held = ~closure.is_base & ~demonstrated & ~protected
    held |= ood_derived  # never a target, nor a target's premise (a target would use it)
    rule_demo = _check_held(closure, cfg, pairs, held, is_target, ood_derived, where)
    demos = {t: demonstrations(closure, t, ~is_target & ~held, pairs)
             for t in np.flatnonzero(is_target & ~closure.is_base).tolist()}
    _check_demonstrated(closure, demos, where)
    if cfg.held_out_fraction > 0:
        _hold_at_random(rng, closure, cfg, pairs, held, held | protected, rule_demo, demos)
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


def _demonstrate(rng, closure: Closure, cfg: SplitConfig, pairs, is_target: np.ndarray,
                 where: str) -> tuple[np.ndarray, dict]:
    """Draw the subjects each rule is demonstrated on (``demo_fraction``, per relation
    ``rule_demo_fraction``; on non-targets when there are some).

    Returns the ``(N,)`` bool mask of the derived facts with a demonstrated derivation, and
    rule index -> demonstrated entities for the rules demonstrated on only some subjects.
    """
    ph, pr = pairs  # (head, rule) pairs for derived heads
    heads = sorted({r.head.relation for r in closure.rules})
    for rel in cfg.rule_demo_fraction:
        if rel not in heads:
            raise split_error(where, f"rule_demo_fraction.{rel}", "no rule derives this "
                              f"relation (rule heads: {', '.join(heads) or 'none'})")
    demo_pair = np.ones(len(ph), dtype=bool)
    demo_entities = {}
    for ri, rule in enumerate(closure.rules):
        frac = cfg.rule_demo_fraction.get(rule.head.relation, cfg.demo_fraction)
        sel = pr == ri
        if frac >= 1 or not sel.any():
            continue
        subjects = np.unique(closure.facts[ph[sel], 0])
        if cfg.target_presentation == "stated" and (sel & ~is_target[ph]).any():
            subjects = np.unique(closure.facts[ph[sel & ~is_target[ph]], 0])
        k = 0 if frac <= 0 else max(1, int(round(frac * len(subjects))))
        demo = np.sort(rng.choice(subjects, k, replace=False)).astype(np.int64)
        demo_entities[ri] = demo
        demo_pair[sel] = np.isin(closure.facts[ph[sel], 0], demo)
    demonstrated = np.zeros(len(closure), dtype=bool)
    demonstrated[ph[demo_pair]] = True
    return demonstrated, demo_entities


def _check_held(closure: Closure, cfg: SplitConfig, pairs, held: np.ndarray,
                is_target: np.ndarray, ood_derived: np.ndarray, where: str) -> np.ndarray:
    """Demonstrations per rule (``(R,)`` int); a held-out fact whose rules have none is an
    :class:`InputError` naming the fraction to raise."""
    ph, pr = pairs
    rule_demo = np.zeros(len(closure.rules), dtype=np.int64)  # demonstrations per rule
    np.add.at(rule_demo, pr[~held[ph] & ~is_target[ph]], 1)
    fact_ok = np.zeros(len(closure), dtype=bool)
    fact_ok[ph[rule_demo[pr] > 0]] = True
    bad = np.flatnonzero(held & ~fact_ok)
    if len(bad):
        f = int(bad[0])
        rule = closure.rules[closure.rules_of(f)[0]]
        rel = rule.head.relation
        key = (f"rule_demo_fraction.{rel}" if rel in cfg.rule_demo_fraction
               else "ood_fraction" if ood_derived[f] else "demo_fraction")
        raise split_error(where, key, f"rule '{rule}' is demonstrated on no entity, yet "
                          f"{int((held & ~fact_ok).sum())} of its facts (e.g. "
                          f"{' '.join(closure.named(f))}) would be held out; a held-out rule "
                          f"needs demonstrations on other entities (raise the fraction above 0)")
    return rule_demo


def _hold_at_random(rng, closure: Closure, cfg: SplitConfig, pairs, held: np.ndarray,
                    kept: np.ndarray, rule_demo: np.ndarray, demos: dict) -> None:
    """Hold out a random ``held_out_fraction`` of the derived facts not in ``kept``, in
    place, never a rule's (or a target's, ``demos``) last demonstration."""
    n = len(closure)
    ph, pr = pairs
    needed = np.zeros(n, dtype=np.int64)  # targets a fact demonstrates
    for ids in demos.values():
        needed[ids] += 1
    left = {t: len(ids) for t, ids in demos.items()}
    cands = rng.permutation(np.flatnonzero(~closure.is_base & ~kept))
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
