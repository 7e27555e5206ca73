"""Tests for the Datalog parser: what it accepts, what it prints, what it refuses and where."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kgtest.errors import InputError
from kgtest.symbolic.closure import forward_chain_names
from kgtest.symbolic.rules import (
    Atom,
    Inequality,
    Rule,
    Term,
    check_body_relations,
    format_rules,
    parse_rule,
    parse_rules,
    read_rules,
)

# --- what it accepts -----------------------------------------------------------------------


def test_variables_and_constants():
    r = parse_rule("father(X, Y) :- parent(X, Y), gender(X, male).")
    assert r.head == Atom("father", (Term("X"), Term("Y")))
    assert r.atoms[1] == Atom("gender", (Term("X"), Term("male")))
    assert [t.is_var for t in r.atoms[1].args] == [True, False]
    assert r.variables == ("X", "Y")
    assert r.relations == ("father", "parent", "gender")
    # uppercase or underscore start: variable; lowercase or digit start: constant
    r = parse_rule("p(_x, Abc) :- q(_x, Abc), r(Abc, 42), s(Abc, x_Y).")
    assert [t.is_var for a in r.atoms for t in a.args] == [True, True, True, False, True, False]


def test_inequality():
    r = parse_rule("sibling(X, Y) :- parent(Z, X), parent(Z, Y), X != Y.")
    assert r.inequalities == (Inequality(Term("X"), Term("Y")),)
    assert len(r.atoms) == 2 and len(r.body) == 3
    r = parse_rule("p(X, Y) :- X != bob, q(X, Y), alice != Y.")
    assert r.body[0] == Inequality(Term("X"), Term("bob"))
    assert r.inequalities[1] == Inequality(Term("alice"), Term("Y"))
    assert str(r) == "p(X, Y) :- X != bob, q(X, Y), alice != Y."


def test_comments_and_layout():
    text = """% kinship
    grandparent(X, Z) :-   % a comment inside a rule
        parent(X, Y),
        parent(Y, Z).   % trailing
    % the end"""
    (r,) = parse_rules(text)
    assert str(r) == "grandparent(X, Z) :- parent(X, Y), parent(Y, Z)."
    rules = parse_rules("a(X,Y):-b(X,Y).b(X,Y):-a(Y,X).\r\nc(X, Y) :- a(X, Y).")
    assert [x.head.relation for x in rules] == ["a", "b", "c"]


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_any_number_of_body_atoms(k):
    vs = [f"X{i}" for i in range(k + 1)]
    body = ", ".join(f"e({vs[i]}, {vs[i + 1]})" for i in range(k))
    r = parse_rule(f"path{k}({vs[0]}, {vs[-1]}) :- {body}.")
    assert len(r.atoms) == k
    assert r.variables[:2] == (vs[0], vs[-1]) and len(r.variables) == k + 1


def test_format_rules_round_trip():
    text = ("grandparent(X, Z) :- parent(X, Y), parent(Y, Z).\n"
            "sibling(X, Y) :- parent(Z, X), parent(Z, Y), X != Y.\n")
    rules = parse_rules(text)
    assert format_rules(rules) == text
    assert parse_rules(format_rules(rules)) == rules


def test_read_rules(tmp_path):
    path = tmp_path / "kin.dl"
    path.write_text("gp(X, Z) :- p(X, Y), p(Y, Z).\n", encoding="utf-8")
    assert [str(r) for r in read_rules(path)] == ["gp(X, Z) :- p(X, Y), p(Y, Z)."]
    assert len(read_rules(path, relations=["gp", "p"])) == 1


# --- what it refuses, and where ---------------------------------------------------------------


def refusal(text, **kw) -> str:
    with pytest.raises(InputError) as info:
        parse_rules(text, where="kin.dl", **kw)
    msg = str(info.value)
    assert "\n" not in msg  # one line
    return msg


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ("p(X, Y) :- q(X, Y) r(X, Y).", "1:20", "expected ',' or '.', got 'r'"),
        ("p(X, Y) :- q(X, Y)", "1:19", "expected ',' or '.', got end of file"),
        ("p(X, Y) :- q(X, Y).\n  p(X, Y) :- q(X; Y).", "2:17", "unexpected character ';'"),
        ("p(X, Y).", "1:8", "expected ':-'"),
        ("p(X, Y) :- q(X, ).", "1:17", "expected a variable or constant, got ')'"),
        ("p(X, Y) :-\n\tq(X, Y),\n\tP(Y, X).", "3:2", "relation name 'P' must start lowercase"),
        ("p(X, Y) :- q(X Y).", "1:16", "expected ')', got 'Y'"),
    ],
)
def test_syntax_errors(text, where, reason):
    msg = refusal(text)
    assert msg.startswith(f"kin.dl:{where}: ")
    assert reason in msg


def test_non_binary_atoms():
    msg = refusal("p(X, Y) :- q(X, Y).\n   r(X, Y) :- q(X, Y, Z).")
    assert msg.startswith("kin.dl:2:15: atom 'q' has 3 arguments")
    assert refusal("p(X) :- q(X, Y).").startswith("kin.dl:1:1: atom 'p' has 1 arguments")


def test_unsafe_rules():
    msg = refusal("ok(X, Y) :- q(X, Y).\nuncle(X, Z) :- parent(X, Y).")
    assert msg.startswith("kin.dl:2:10: unsafe rule: variable Z")
    msg = refusal("p(X, Y) :- q(X, Y), X != W.")
    assert msg.startswith("kin.dl:1:26: unsafe rule: variable W")
    msg = refusal("p(X, Y) :- X != Y.")
    assert msg.startswith("kin.dl:1:1: rule for 'p' has no body atom")


def test_unknown_relations():
    text = "gp(X, Z) :- p(X, Y), p(Y, Z).\n\ngp(X, Z) :- p(X, Y),  parnet(Y, Z)."
    msg = refusal(text, relations=["gp", "p"])
    assert msg.startswith("kin.dl:3:23: unknown relation 'parnet' (known: gp, p)")
    assert refusal(text, relations=["p"]).startswith("kin.dl:1:1: unknown relation 'gp'")
    assert len(parse_rules(text, relations=["gp", "p", "parnet"])) == 2


def test_body_relation_in_no_fact_and_no_head():
    """A body relation nothing has (a typo) is refused where it is written; a head is fine."""
    rules = parse_rules("gp(X, Z) :- p(X, Y), p(Y, Z).\nggp(X, Z) :- gp(X, Y),  parnet(Y, Z).",
                        where="kin.dl")
    with pytest.raises(InputError, match=r"^kin\.dl:2:25: relation 'parnet' in the body of a "
                                         r"'ggp' rule .*did you mean 'parent'"):
        check_body_relations(rules, {"parent", "p"})
    check_body_relations(rules, {"p", "parnet"})  # gp is a rule head: allowed in a body


def test_anonymous_variable_is_fresh_per_occurrence():
    """``_`` matches anything, independently: not one shared variable."""
    r = parse_rule("has_child(X, yes) :- parent(X, _), gender(_, _).")
    anon = [t for a in r.atoms for t in a.args if t.name != "X"]
    assert len({t.name for t in anon}) == 3 and all(t.is_var for t in anon)
    assert str(r) == "has_child(X, yes) :- parent(X, _), gender(_, _)."
    assert parse_rule(str(r)) == r
    # with a shared _, gender(_, _) would need an entity that is its own gender: no facts
    facts = [("ann", "parent", "bob"), ("bob", "gender", "male")]
    closure = forward_chain_names(facts, [r])
    assert closure.find("ann", "has_child", "yes") >= 0
    # a named _x is an ordinary variable: shared between its occurrences
    shared = parse_rule("self(X, yes) :- parent(X, _x), gender(_x, _x).")
    assert forward_chain_names(facts, [shared]).find("ann", "self", "yes") < 0
    assert refusal("p(X, _) :- q(X, Y).").startswith("kin.dl:1:6: unsafe rule: variable _")


@pytest.mark.parametrize("text", ["", "   \n\n", "% nothing but a comment\n% and another"])
def test_empty_rule_file(text, tmp_path):
    assert refusal(text) == "kin.dl:1:1: no rules found (empty rules file)"
    path = tmp_path / "empty.dl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=r"empty\.dl:1:1: no rules found"):
        read_rules(path)


def test_read_rules_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.dl"
    path.write_text("% kinship\ngp(X, Z) :- p(X, Y), p(Y, Z)\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"^{path}:3:1: expected ',' or '.', got end of file"):
        read_rules(path)
    with pytest.raises(InputError, match=r"missing\.dl: cannot read rules file"):
        read_rules(tmp_path / "missing.dl")
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(InputError, match="not a UTF-8 text file"):
        read_rules(path)


# --- round trip, over generated rules ------------------------------------------------------------

LOWER, UPPER, DIGITS = "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789"
NAME_CHARS = LOWER + UPPER + DIGITS + "_"


def names(first: str, rest: str = NAME_CHARS, max_rest: int = 4):
    return st.builds(str.__add__, st.sampled_from(first), st.text(rest, max_size=max_rest))


relation_names = names(LOWER, LOWER + DIGITS + "_", 6)
# "_" alone is the anonymous variable (tested below); "_x" is a named one
variable_names = st.one_of(names(UPPER), st.builds(str.__add__, st.just("_"),
                                                   st.text(NAME_CHARS, min_size=1, max_size=4)))
constant_names = names(LOWER + DIGITS)


@st.composite
def safe_rules(draw):
    """Rules built safe: head and inequality terms are body variables or constants."""
    body_terms = st.one_of(variable_names, constant_names).map(Term)
    atoms = [Atom(draw(relation_names), (draw(body_terms), draw(body_terms)))
             for _ in range(draw(st.integers(1, 4)))]
    bound = sorted({t.name for a in atoms for t in a.args if t.is_var})
    safe = constant_names if not bound else st.one_of(st.sampled_from(bound), constant_names)
    safe_terms = safe.map(Term)
    body: list[Atom | Inequality] = list(atoms)
    for _ in range(draw(st.integers(0, 2))):
        q = Inequality(draw(safe_terms), draw(safe_terms))
        body.insert(draw(st.integers(0, len(body))), q)
    head = Atom(draw(relation_names), (draw(safe_terms), draw(safe_terms)))
    return Rule(head, tuple(body))


def tokens(rule: Rule) -> list[str]:
    """The rule's canonical tokens, in order."""
    def atom(a):
        return [a.relation, "(", a.args[0].name, ",", a.args[1].name, ")"]

    out = atom(rule.head) + [":-"]
    for i, b in enumerate(rule.body):
        if i:
            out.append(",")
        out += atom(b) if isinstance(b, Atom) else [b.left.name, "!=", b.right.name]
    return out + ["."]


@settings(max_examples=200, deadline=None)
@given(safe_rules())
def test_round_trip(rule):
    text = str(rule)
    again = parse_rule(text)
    assert again == rule
    assert str(again) == text


SEPARATORS = ("", " ", "  ", "\n", "\t", " % a comment\n", "\r\n")


@settings(max_examples=100, deadline=None)
@given(st.lists(safe_rules(), min_size=1, max_size=3), st.randoms(use_true_random=False))
def test_any_layout_prints_back_canonically(rules, rng):
    """Whitespace, newlines and comments between tokens change nothing."""
    text = "".join(tok + rng.choice(SEPARATORS) for r in rules for tok in tokens(r))
    assert parse_rules(text) == rules
    assert format_rules(parse_rules(text)) == format_rules(rules)
