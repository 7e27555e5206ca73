"""Hypothesis strategies for kgtest: rules, worlds, targets and deletion sets.

Every strategy *builds* valid values (``@composite``, no ``.filter`` or ``assume``), so
hypothesis never gives up looking for one, and shrinks toward small worlds and short
rules: fewer entities, facts and rules, one-atom bodies, the variable ``X`` everywhere.
Size bounds are arguments; keep them small and property tests run in milliseconds.

Strategies at a glance:

- :func:`rules` one safe Datalog rule over given relations;
- :func:`rule_sets` a list of distinct rules, recursive or stratified;
- :func:`worlds` a :class:`~kgtest.worlds.world.World` of random entities, facts and
  rules, optionally with *planted* targets: derived facts built to have an exact number
  of independent proofs and an exact derivation depth;
- :func:`targets` a fact of a given world with a proof count and depth in given ranges;
- :func:`worlds_with_targets` a ``(world, target)`` pair where such a target exists by
  construction (a planted one is always among the candidates);
- :func:`deletion_sets` an inclusion-minimal deletion set of a target (every minimal set
  can be drawn), or a superset of one.

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

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from kgtest.claims import KB, closure_of, derivation_depth, fact_id, kb_mask
from kgtest.symbolic.facts import Vocab
from kgtest.symbolic.rules import Atom, Inequality, Rule, Term
from kgtest.worlds.world import World

__all__ = [
    "rules",
    "rule_sets",
    "worlds",
    "targets",
    "worlds_with_targets",
    "deletion_sets",
]

_VARIABLES = ("X", "Y", "Z", "W", "V", "U")


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise InvalidArgument(msg)


def _check_range(name: str, lo: int, hi: int, least: int = 0) -> None:
    _check(lo >= least, f"{name}: lower bound must be >= {least}, got {lo}")
    _check(hi >= lo, f"{name}: upper bound {hi} is below lower bound {lo}")


# --- rules ---------------------------------------------------------------------------------


def rules(
    relations: Sequence[str] = ("r0", "r1", "r2"),
    *,
    heads: Sequence[str] | None = None,
    min_body: int = 1,
    max_body: int = 2,
    max_variables: int = 3,
    constants: Sequence[str] = (),
    inequalities: bool = True,
) -> st.SearchStrategy[Rule]:
    """A safe Datalog rule over binary ``relations``.

    Body atoms use ``relations``; the head uses ``heads`` (default: ``relations``). Each
    argument is a variable (an earlier one or the next fresh one, at most
    ``max_variables`` distinct) or, if ``constants`` are given, one of them. Head
    variables and ``!=`` conditions use body variables only, so the rule is safe by
    construction. Shrinks toward ``r(X, X) :- r(X, X).``-like one-atom rules.

    Parameters
    ----------
    relations : sequence of str
        Relations for body atoms (lowercase names).
    heads : sequence of str, optional
        Relations for the head; default ``relations``.
    min_body, max_body : int
        Number of body atoms.
    max_variables : int
        Distinct variables, at most 6 (``X Y Z W V U``).
    constants : sequence of str
        Entity names that may appear as constants.
    inequalities : bool
        Allow one ``A != B`` condition between distinct body variables.

    Examples
    --------
    >>> from hypothesis import find
    >>> r = find(rules(["parent"], max_body=2), lambda r: len(r.atoms) == 2
    ...          and len(r.variables) == 3 and r.head.args[0] != r.head.args[1])
    >>> len(r.atoms), r.relations, len(r.variables)
    (2, ('parent',), 3)
    """
    relations, heads = tuple(relations), tuple(heads if heads is not None else relations)
    _check(bool(relations) and bool(heads), "rules: need at least one relation and head")
    _check_range("rules: body", min_body, max_body, least=1)
    _check(1 <= max_variables <= len(_VARIABLES),
           f"rules: max_variables must be in 1..{len(_VARIABLES)}, got {max_variables}")
    return _rules(relations, heads, min_body, max_body, max_variables, tuple(constants),
                  inequalities)


@st.composite
def _rules(draw, relations, heads, min_body, max_body, max_variables, constants, ineq):
    k = draw(st.integers(min_body, max_body))
    n_vars, atoms = 0, []
    for _ in range(k):
        rel = draw(st.sampled_from(relations))
        args = []
        for _ in range(2):
            if constants and draw(st.booleans()):
                args.append(Term(draw(st.sampled_from(constants))))
                continue
            i = draw(st.integers(0, min(n_vars, max_variables - 1)))  # n_vars: a fresh one
            n_vars = max(n_vars, i + 1)
            args.append(Term(_VARIABLES[i]))
        atoms.append(Atom(rel, (args[0], args[1])))
    body_vars = [Term(v) for v in _VARIABLES[:n_vars]]
    pool = body_vars + [Term(c) for c in constants]
    head = Atom(draw(st.sampled_from(heads)),
                (draw(st.sampled_from(pool)), draw(st.sampled_from(pool))))
    body: list[Atom | Inequality] = list(atoms)
    if ineq and n_vars >= 2 and draw(st.booleans()):
        i = draw(st.integers(0, n_vars - 2))
        j = draw(st.integers(i + 1, n_vars - 1))
        body.append(Inequality(body_vars[i], body_vars[j]))
    return Rule(head, tuple(body))


def rule_sets(
    relations: Sequence[str] = ("r0", "r1", "r2"),
    *,
    min_rules: int = 0,
    max_rules: int = 3,
    recursive: bool = True,
    inputs: Sequence[str] = (),
    **rule_kwargs,
) -> st.SearchStrategy[list[Rule]]:
    """A list of distinct rules (by their text) over ``relations``.

    Heads are always among ``relations``; bodies may also read the ``inputs`` relations,
    which no rule derives. With ``recursive=False`` the rules are stratified by the order
    of ``relations``: a rule for ``relations[j]`` reads only ``relations[:j]`` and
    ``inputs``, so no relation depends on itself. Other keyword arguments go to
    :func:`rules`.

    Examples
    --------
    >>> from hypothesis import find
    >>> from kgtest.claims import is_recursive
    >>> rs = find(rule_sets(["a", "b", "c"], recursive=False, min_rules=3), lambda rs: True)
    >>> len(rs), is_recursive(rs), all(r.head.relation != "a" for r in rs)
    (3, False, True)
    """
    relations, inputs = tuple(relations), tuple(inputs)
    _check_range("rule_sets: rules", min_rules, max_rules)
    _check(bool(relations), "rule_sets: need at least one relation")
    if recursive:
        one = rules(relations + inputs, heads=relations, **rule_kwargs)
    else:
        strata = [j for j in range(len(relations)) if j > 0 or inputs]
        _check(bool(strata) or max_rules == 0,
               "rule_sets: recursive=False needs two relations, or inputs")
        if not strata:
            return st.just([])
        one = st.sampled_from(strata).flatmap(
            lambda j: rules(relations[:j] + inputs, heads=(relations[j],), **rule_kwargs))
    return st.lists(one, min_size=min_rules, max_size=max_rules, unique_by=str)


# --- worlds --------------------------------------------------------------------------------


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


# --- targets and deletion sets -------------------------------------------------------------


def _deletable(world: World, t: int) -> bool:
    if not world.fixed.any():  # nothing is fixed: every fact can be deleted
        return True
    c = closure_of(world)
    fixed = world.fixed_mask(c)
    return not fixed[t] and not c.derivable(t, kept=fixed)


def targets(
    world: World,
    *,
    min_proofs: int = 1,
    max_proofs: int | None = None,
    min_depth: int = 1,
    max_depth: int | None = None,
    stated: bool | None = None,
    deletable: bool = True,
) -> st.SearchStrategy[int]:
    """A closure fact id of ``world`` whose proof count and depth lie in the given ranges.

    Depth is :func:`kgtest.claims.derivation_depth` (0 for a fact the other base facts
    cannot derive), so a stated target's depth is that of its derivations. ``stated``
    picks base facts (True), implied facts (False) or either (None). ``deletable`` keeps
    only facts that some deletion set can make underivable (not fixed, not derivable from
    the fixed facts alone). Tail facts: ``min_proofs=0, max_proofs=0, min_depth=0``.

    The candidates are computed when the strategy is made; if there are none, this raises
    ``InvalidArgument`` at once rather than filtering. Draw the world from
    :func:`worlds` with a matching ``planted=...`` (or use :func:`worlds_with_targets`)
    to have a candidate by construction.

    Examples
    --------
    >>> from hypothesis import find
    >>> w = find(worlds(planted=1, planted_proofs=(3, 3), planted_depth=(1, 1)),
    ...          lambda w: True)
    >>> t = find(targets(w, min_proofs=3), lambda t: True)
    >>> from kgtest.claims import proof_count, derivation_depth
    >>> proof_count(w, t), derivation_depth(w, t)
    (3, 1)
    """
    _check(min_proofs >= 0 and min_depth >= 0, "targets: bounds must be >= 0")
    c = closure_of(world)
    hi_p = np.inf if max_proofs is None else max_proofs
    hi_d = np.inf if max_depth is None else max_depth
    pc = c.proof_count
    cands = []
    for f in np.flatnonzero((pc >= min_proofs) & (pc <= hi_p)).tolist():
        if stated is not None and (f < c.n_base) != stated:
            continue
        depth = derivation_depth(world, f) or 0
        if not min_depth <= depth <= hi_d:
            continue
        if deletable and not _deletable(world, f):
            continue
        cands.append(f)
    if not cands:
        raise InvalidArgument(
            f"targets: the world has no fact with proofs in [{min_proofs}, {max_proofs}], "
            f"depth in [{min_depth}, {max_depth}], stated={stated}; draw it from "
            f"worlds(planted=1, planted_proofs=..., planted_depth=...) or use "
            f"worlds_with_targets(...) so that one exists by construction")
    return st.sampled_from(cands)


def worlds_with_targets(
    *,
    min_proofs: int = 1,
    max_proofs: int = 3,
    min_depth: int = 1,
    max_depth: int = 2,
    stated: bool | None = None,
    **world_bounds,
) -> st.SearchStrategy[tuple[World, int]]:
    """A ``(world, target)`` pair: a :func:`worlds` draw with one planted target in the
    ranges, then a :func:`targets` draw among *all* matching facts (planted or not).

    Keyword arguments other than the target's go to :func:`worlds`.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from kgtest.claims import proof_count
    >>> @settings(max_examples=20, database=None, derandomize=True)
    ... @given(worlds_with_targets(min_proofs=2, max_proofs=2, max_entities=4))
    ... def two_proofs(case):
    ...     world, target = case
    ...     assert proof_count(world, target) == 2
    >>> two_proofs()
    """
    _check_range("worlds_with_targets: proofs", min_proofs, max_proofs, least=1)
    _check_range("worlds_with_targets: depth", min_depth, max_depth, least=1)
    _check("planted" not in world_bounds, "worlds_with_targets plants its own target")
    ws = worlds(planted=1, planted_proofs=(min_proofs, max_proofs),
                planted_depth=(min_depth, max_depth), planted_stated=stated, **world_bounds)
    return _with_target(ws, min_proofs, max_proofs, min_depth, max_depth, stated)


@st.composite
def _with_target(draw, ws, min_proofs, max_proofs, min_depth, max_depth, stated):
    w = draw(ws)
    t = draw(targets(w, min_proofs=min_proofs, max_proofs=max_proofs, min_depth=min_depth,
                     max_depth=max_depth, stated=stated))
    return w, t


def deletion_sets(
    world: World,
    target: int | Sequence[str],
    *,
    kb: KB = "base",
    minimal: bool = True,
) -> st.SearchStrategy[tuple[int, ...]]:
    """A set of closure fact ids whose deletion deep-unlearns ``target``, sorted.

    Built by greedy pruning: start from every deletable KB fact in the target's backward
    cone (which always deep-unlearns it), then, in a drawn order, put back each fact whose
    return keeps the target underivable. The result is inclusion-minimal, and every
    minimal deletion set is reachable (order the facts outside it first). It shrinks to
    the set that the identity order gives. With ``minimal=False``, extra deletable KB
    facts are added (a superset still deep-unlearns). ``kb`` as in :mod:`kgtest.claims`.

    Raises ``InvalidArgument`` at once when no deletion set exists (the fixed facts alone
    derive the target).

    Examples
    --------
    >>> from kgtest.symbolic.rules import parse_rules
    >>> from kgtest.claims import all_minimal_deletion_sets
    >>> w = World.from_names([("a", "p", "b"), ("b", "p", "c"), ("a", "g", "c")],
    ...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    >>> from hypothesis import find
    >>> find(deletion_sets(w, ("a", "g", "c")), lambda s: True)
    (1, 2)
    >>> sorted(map(sorted, all_minimal_deletion_sets(w, ("a", "g", "c"))))
    [[0, 2], [1, 2]]
    """
    t = fact_id(world, target)
    _check(_deletable(world, t), f"deletion_sets: fact {t} is fixed or derivable from the "
                                 "fixed facts alone; no deletion set exists")
    c = closure_of(world)
    kbm = kb_mask(world, kb)
    cone_kb = [int(f) for f in c.cone(t).facts if kbm[f]]
    present = kbm | world.fixed_mask(c)
    others = np.flatnonzero(kbm).tolist()
    return _deletion_sets(c, t, present, tuple(cone_kb), tuple(others), minimal)


@st.composite
def _deletion_sets(draw, c, t, present, cone_kb, others, minimal):
    order = draw(st.permutations(cone_kb))
    deleted = set(cone_kb)
    for f in order:
        deleted.discard(f)
        kept = present.copy()
        kept[list(deleted)] = False
        if c.derivable(t, kept):
            deleted.add(f)
    if not minimal and others:
        deleted |= set(draw(st.lists(st.sampled_from(others), unique=True)))
    return tuple(sorted(deleted))
