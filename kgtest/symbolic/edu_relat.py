"""EDU-RELAT (Wu et al. 2024), the published deep-unlearning benchmark, bundled with kgtest.

The data lives in ``kgtest/data/edu_relat/`` (TSV + Datalog, MIT licensed; see the
README and LICENSE there): 400 family-relationship facts (the KB), the 100 people's
genders (fixed attributes, never deleted), 48 rules, and 55 evaluation targets with the
minimal deletion sets the authors found by 100 randomised restarts each.

Examples
--------
>>> data = load_edu_relat()
>>> len(data.facts), len(data.fixed), len(data.rules), len(data.targets)
(400, 100, 48, 55)
>>> closure, kb, fixed = data.close()
>>> len(closure), int(kb.sum()), int(fixed.sum())
(662, 400, 100)
>>> t = data.targets[0]
>>> t.fact, t.published_min_size
(('person66', 'husband', 'person65'), 4)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

from kgtest.symbolic.closure import Closure, forward_chain_names
from kgtest.symbolic.facts import read_tsv
from kgtest.symbolic.rules import Rule, read_rules

__all__ = ["EduRelat", "EduRelatTarget", "load_edu_relat"]

Triple = tuple[str, str, str]


@dataclass(frozen=True)
class EduRelatTarget:
    """One evaluation target and what the benchmark's authors found for it.

    Attributes
    ----------
    fact : (str, str, str)
        The target fact; ``rel(X, Y)`` reads "Y is X's rel".
    published_min_size : int
        Size of the smallest minimal deletion set they found.
    published_set_sizes : tuple of int
        Sizes of all distinct minimal sets they found (100 restarts).
    published_smallest_set : tuple of (str, str, str)
        Their smallest set.
    """

    fact: Triple
    published_min_size: int
    published_set_sizes: tuple[int, ...]
    published_smallest_set: tuple[Triple, ...]


@dataclass(frozen=True)
class EduRelat:
    """The benchmark: KB facts, fixed gender facts, rules and targets (all as names)."""

    facts: tuple[Triple, ...]
    fixed: tuple[Triple, ...]
    rules: tuple[Rule, ...]
    targets: tuple[EduRelatTarget, ...]

    def close(self) -> tuple[Closure, np.ndarray, np.ndarray]:
        """The closure of KB + genders, with ``(N,)`` bool masks of the KB and fixed facts."""
        closure = forward_chain_names(self.facts + self.fixed, self.rules)
        kb = np.zeros(len(closure), dtype=bool)
        fixed = np.zeros(len(closure), dtype=bool)
        kb[: len(self.facts)] = True  # input facts keep input order, no duplicates here
        fixed[len(self.facts) : closure.n_base] = True
        return closure, kb, fixed


def load_edu_relat() -> EduRelat:
    """Load the bundled EDU-RELAT benchmark (reads only files inside the package)."""
    root = resources.files("kgtest").joinpath("data", "edu_relat")
    with resources.as_file(root) as folder:
        facts = tuple(read_tsv(folder / "edu_relat_facts.tsv"))
        fixed = tuple(read_tsv(folder / "edu_relat_gender.tsv"))
        rules = tuple(read_rules(folder / "edu_relat.dl"))
        raw = json.loads((folder / "targets.json").read_text(encoding="utf-8"))
    if len(set(facts)) != len(facts) or set(facts) & set(fixed):
        raise ValueError("bundled EDU-RELAT data has duplicate facts")  # a corrupted copy
    targets = tuple(
        EduRelatTarget(
            fact=tuple(t["target"]),
            published_min_size=int(t["published_min_deletion_set_size"]),
            published_set_sizes=tuple(int(x) for x in t["published_set_sizes"]),
            published_smallest_set=tuple(tuple(f) for f in t["published_smallest_set"]),
        )
        for t in raw
    )
    return EduRelat(facts=facts, fixed=fixed, rules=rules, targets=targets)
