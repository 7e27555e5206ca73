"""The :func:`worlds` strategy: random worlds, optionally with planted targets.

**How a planted target is built.** Planted target ``g`` with ``k`` proofs and depth ``d``
is ``goal{g}(a, b)``: ``k`` disjoint ``edge{g}`` paths of ``d + 1`` edges lead from ``a``
to ``b`` through fresh entities ``v{g}_{path}_{step}``, with the rules
``reach{g}_1(X, Z) :- edge{g}(X, Y), edge{g}(Y, Z).``,
``reach{g}_j(X, Z) :- reach{g}_{j-1}(X, Y), edge{g}(Y, Z).`` and
``goal{g}(X, Z) :- reach{g}_{d-1}(X, Y), edge{g}(Y, Z).`` (for ``d = 1`` the goal rule has
two ``edge`` atoms). The random rules may read the planted relations in their bodies but
never derive them, and no random fact uses them, so the planted counts stay exact: proof
count ``k``, derivation depth ``d``, ``k`` pairwise-disjoint supports, and a smallest
deletion set of ``k`` facts (``k + 1`` when the target is also stated). Planted relations
and entities come on top of the ``max_relations`` and ``max_entities`` bounds.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from kgtest.strategies.datalog import _check, _check_range, rule_sets
from kgtest.symbolic.facts import Vocab
from kgtest.symbolic.rules import Atom, Rule, Term
from kgtest.worlds.world import World

__all__ = ["worlds"]



def worlds(
    *,
    min_entities: int = 2,
    max_entities: int = 5,
    min_relations: int = 1,
    max_relations: int = 3,
    min_facts: int = 0,
    max_facts: int = 8,
    min_rules: int = 0,
    max_rules: int = 3,
    max_body: int = 2,
    max_variables: int = 3,
    recursive: bool = True,
    inequalities: bool = True,
    constants: bool = False,
    fixed: bool = False,
    planted: int = 0,
    planted_proofs: tuple[int, int] = (1, 3),
    planted_depth: tuple[int, int] = (1, 2),
    planted_stated: bool | None = None,
) -> st.SearchStrategy[World]:
    """A random :class:`~kgtest.worlds.world.World`, valid by construction.

    Entities ``e0, e1, ...`` (one type), relations ``r0, r1, ...``, distinct base facts
    over them, and a :func:`rule_sets` draw whose bodies may also read the planted
    relations. Shrinks toward fewer entities, relations, facts and rules.

    Parameters
    ----------
    min_entities, max_entities, min_relations, max_relations, min_facts, max_facts,
    min_rules, max_rules : int
        Size bounds of the random part (planted targets come on top).
    max_body, max_variables, inequalities, recursive : see :func:`rules`, :func:`rule_sets`
    constants : bool
        Let rules use entity names as constants.
    fixed : bool
        Mark a drawn subset of the random base facts as fixed (never deleted).
    planted : int
        Number of planted targets (see the module docstring); they are in
        ``world.planted`` and described in ``world.meta["planted"]``.
    planted_proofs, planted_depth : (int, int)
        Inclusive ranges of each planted target's proof count and derivation depth.
    planted_stated : bool or None
        Whether planted targets are also base facts; None draws it per target.

    Examples
    --------
    The smallest world with one planted target of two proofs at depth 2:

    >>> from hypothesis import find
    >>> from kgtest.claims import describe
    >>> w = find(worlds(planted=1, planted_proofs=(2, 2), planted_depth=(2, 2),
    ...                 planted_stated=False), lambda w: True)
    >>> print(describe(w, target=("e0", "goal0", "e1")))
    % 6 entities, 4 relations, 6 base facts (0 fixed), 2 rules, 11 closure facts
    reach0_1(X, Z) :- edge0(X, Y), edge0(Y, Z).
    goal0(X, Z) :- reach0_1(X, Y), edge0(Y, Z).
    edge0(e0, v0_0_1).  % [0]
    edge0(v0_0_1, v0_0_2).  % [1]
    edge0(v0_0_2, e1).  % [2]
    edge0(e0, v0_1_1).  % [3]
    edge0(v0_1_1, v0_1_2).  % [4]
    edge0(v0_1_2, e1).  % [5]
    % target [10] goal0(e0, e1): implied, 2 proof(s), derivation depth 2
    >>> w.meta["planted"]
    [{'fact': ['e0', 'goal0', 'e1'], 'proofs': 2, 'depth': 2, 'stated': False}]
    """
    _check_world_bounds(min_entities, max_entities, min_relations, max_relations, min_facts,
                        max_facts, min_rules, max_rules, recursive, planted, planted_proofs,
                        planted_depth)
    return _worlds(min_entities, max_entities, min_relations, max_relations, min_facts,
                   max_facts, min_rules, max_rules, max_body, max_variables, recursive,
                   inequalities, constants, fixed, planted, tuple(planted_proofs),
                   tuple(planted_depth), planted_stated)


def _check_world_bounds(min_entities, max_entities, min_relations, max_relations, min_facts,
                        max_facts, min_rules, max_rules, recursive, planted, planted_proofs,
                        planted_depth) -> None:
    """:func:`worlds`' arguments, checked before anything is drawn."""
    _check_range("worlds: entities", min_entities, max_entities, least=1)
    _check_range("worlds: relations", min_relations, max_relations, least=1)
    _check_range("worlds: facts", min_facts, max_facts)
    _check(min_facts <= min_entities**2 * min_relations,
           f"worlds: min_facts={min_facts} distinct facts do not fit in "
           f"{min_entities} entities and {min_relations} relations")
    _check_range("worlds: rules", min_rules, max_rules)
    _check(recursive or min_rules == 0 or min_relations >= 2 or planted > 0,
           "worlds: recursive=False with min_rules > 0 needs min_relations >= 2 or planted")
    _check(planted >= 0, f"worlds: planted must be >= 0, got {planted}")
    _check_range("worlds: planted_proofs", *planted_proofs, least=1)
    _check_range("worlds: planted_depth", *planted_depth, least=1)


def _plant(g: int, a: str, b: str, k: int, d: int):
    """Relations, rules, facts (name triples) of planted target ``goal{g}(a, b)``."""
    edge, goal = f"edge{g}", f"goal{g}"
    reach = [f"reach{g}_{j}" for j in range(1, d)]
    x, y, z = Term("X"), Term("Y"), Term("Z")
    chain = [edge, *reach, goal]  # chain[j] holds for walks of j + 1 edges (j >= 1)
    rules_ = []
    for j in range(1, d + 1):
        first = Atom(chain[j - 1], (x, y))
        rules_.append(Rule(Atom(chain[j], (x, z)), (first, Atom(edge, (y, z)))))
    entities, facts = [], []
    for i in range(k):
        path = [a, *(f"v{g}_{i}_{s}" for s in range(1, d + 1)), b]
        entities += path[1:-1]
        facts += [(u, edge, v) for u, v in zip(path, path[1:], strict=False)]
    return [edge, *reach, goal], rules_, entities, facts


@st.composite
def _worlds(draw, min_entities, max_entities, min_relations, max_relations, min_facts,
            max_facts, min_rules, max_rules, max_body, max_variables, recursive,
            inequalities, constants, fixed, planted, planted_proofs, planted_depth,
            planted_stated):
    n_ent = draw(st.integers(min_entities, max_entities))
    n_rel = draw(st.integers(min_relations, max_relations))
    ents = [f"e{i}" for i in range(n_ent)]
    rels = [f"r{i}" for i in range(n_rel)]
    max_facts = min(max_facts, n_ent * n_ent * n_rel)
    # one integer per fact (fewer draws than a tuple); 0 is r0(e0, e0)
    codes = draw(st.lists(st.integers(0, n_ent * n_ent * n_rel - 1),
                          min_size=min_facts, max_size=max_facts, unique=True))
    triples = [((c // n_ent) % n_ent, c // (n_ent * n_ent), c % n_ent) for c in codes]
    is_fixed = ([draw(st.booleans()) for _ in triples] if fixed else [False] * len(triples))

    p_rels, p_rules, p_ents, p_facts, stated, meta = [], [], [], [], [], []
    for g in range(planted):
        k = draw(st.integers(*planted_proofs))
        d = draw(st.integers(*planted_depth))
        st_ = draw(st.booleans()) if planted_stated is None else planted_stated
        if n_ent >= 2:  # two distinct random entities as the endpoints
            ia = draw(st.integers(0, n_ent - 1))
            ib = draw(st.integers(0, n_ent - 2))
            a, b = ents[ia], ents[ib + (ib >= ia)]
        else:
            a, b = f"v{g}_a", f"v{g}_b"
            p_ents += [a, b]
        r_, ru, en, fa = _plant(g, a, b, k, d)
        p_rels += r_
        p_rules += ru
        p_ents += en
        p_facts += fa
        if st_:
            stated.append((a, f"goal{g}", b))
        meta.append({"fact": [a, f"goal{g}", b], "proofs": k, "depth": d, "stated": st_})

    rule_list = draw(rule_sets(
        rels, min_rules=min_rules, max_rules=max_rules, recursive=recursive,
        inputs=tuple(p_rels), max_body=max_body, max_variables=max_variables,
        inequalities=inequalities, constants=tuple(ents) if constants else ()))

    entities, relations = Vocab(ents + p_ents), Vocab(rels + p_rels)
    named = [(ents[s], rels[r], ents[o]) for s, r, o in triples] + p_facts + stated
    facts = np.array([(entities.id(s), relations.id(r), entities.id(o)) for s, r, o in named],
                     dtype=np.int64).reshape(-1, 3)
    fixed_arr = np.array(is_fixed + [False] * (len(p_facts) + len(stated)), dtype=bool)
    goals = np.array([(entities.id(m["fact"][0]), relations.id(m["fact"][1]),
                       entities.id(m["fact"][2])) for m in meta], dtype=np.int64).reshape(-1, 3)
    return World(
        entities=entities,
        relations=relations,
        entity_type=np.zeros(len(entities), dtype=np.int64),
        type_names=("entity",),
        facts=facts,
        rules=tuple(rule_list) + tuple(p_rules),
        fixed=fixed_arr,
        domain=np.zeros(len(facts), dtype=np.int64),
        planted=goals,
        name="hypothesis",
        meta={"planted": meta},
    )
