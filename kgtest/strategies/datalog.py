"""Strategies for Datalog rules: :func:`rules` (one safe rule) and :func:`rule_sets`
(distinct rules, recursive or stratified); also the argument checks the other strategy
modules share (a bad bound raises hypothesis' ``InvalidArgument`` before anything is drawn).
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from kgtest.symbolic.rules import Atom, Inequality, Rule, Term

__all__ = ["rules", "rule_sets"]

_VARIABLES = ("X", "Y", "Z", "W", "V", "U")


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise InvalidArgument(msg)


def _check_range(name: str, lo: int, hi: int, least: int = 0) -> None:
    _check(lo >= least, f"{name}: lower bound must be >= {least}, got {lo}")
    _check(hi >= lo, f"{name}: upper bound {hi} is below lower bound {lo}")



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
