"""Datalog rules over binary predicates: parse, check, print.

The syntax is the community's own::

    % a comment runs to the end of the line
    grandparent(X, Z) :- parent(X, Y), parent(Y, Z).
    father(X, Y) :- parent(X, Y), gender(X, male).
    sibling(X, Y) :- parent(Z, X), parent(Z, Y), X != Y.

A term starting with an uppercase letter or ``_`` is a variable; anything else
(lowercase start or digit) is a constant entity name. ``_`` alone is the anonymous
variable: each occurrence is a fresh variable that matches anything. Every atom is binary. A rule is
*safe* when each variable of its head and of its ``!=`` conditions appears in a body atom.
Printing a parsed rule gives back its canonical text (``str(parse_rule(s)) == s`` for
canonical ``s``: one space after commas, `` :- `` and `` != `` spaced, final ``.``).

Examples
--------
>>> r = parse_rule("grandparent(X, Z) :- parent(X, Y), parent(Y, Z).")
>>> r.head.relation, [a.relation for a in r.atoms], r.variables
('grandparent', ['parent', 'parent'], ('X', 'Z', 'Y'))
>>> str(r)
'grandparent(X, Z) :- parent(X, Y), parent(Y, Z).'
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kgtest.errors import InputError, reading

__all__ = [
    "Term",
    "Atom",
    "Inequality",
    "Rule",
    "parse_rule",
    "parse_rules",
    "read_rules",
    "format_rules",
    "check_body_relations",
]


@dataclass(frozen=True)
class Term:
    """A variable (``X``) or a constant entity name (``male``)."""

    name: str  # an anonymous ``_`` gets a unique internal name ``_#k`` (one per occurrence)

    @property
    def is_var(self) -> bool:
        return self.name[0].isupper() or self.name[0] == "_"

    @property
    def is_anonymous(self) -> bool:
        return self.name.startswith("_#")

    def __str__(self) -> str:
        return "_" if self.is_anonymous else self.name


@dataclass(frozen=True)
class Atom:
    """``relation(left, right)``."""

    relation: str
    args: tuple[Term, Term]
    at: str = field(default="", compare=False, repr=False)  # "file:line:col" when parsed

    def __str__(self) -> str:
        return f"{self.relation}({self.args[0]}, {self.args[1]})"


@dataclass(frozen=True)
class Inequality:
    """``left != right``: a filter on a derivation, not a premise."""

    left: Term
    right: Term

    def __str__(self) -> str:
        return f"{self.left} != {self.right}"


@dataclass(frozen=True)
class Rule:
    """``head :- body.`` with body literals (atoms and inequalities) in source order."""

    head: Atom
    body: tuple[Atom | Inequality, ...]

    @property
    def atoms(self) -> tuple[Atom, ...]:
        """Body atoms in order: these are a derivation's premises."""
        return tuple(b for b in self.body if isinstance(b, Atom))

    @property
    def inequalities(self) -> tuple[Inequality, ...]:
        return tuple(b for b in self.body if isinstance(b, Inequality))

    @property
    def variables(self) -> tuple[str, ...]:
        """Distinct variable names, head first, then body, in order of appearance."""
        seen: dict[str, None] = {}
        for atom in (self.head, *self.atoms):
            for t in atom.args:
                if t.is_var:
                    seen.setdefault(t.name)
        return tuple(seen)

    @property
    def relations(self) -> tuple[str, ...]:
        """Relations named anywhere in the rule (head first)."""
        seen: dict[str, None] = {self.head.relation: None}
        for a in self.atoms:
            seen.setdefault(a.relation)
        return tuple(seen)

    def __str__(self) -> str:
        return f"{self.head} :- {', '.join(str(b) for b in self.body)}."


# --- parsing -------------------------------------------------------------------------

_TOKEN = re.compile(
    r"(?P<ws>[ \t\r]+)|(?P<nl>\n)|(?P<comment>%[^\n]*)|(?P<implies>:-)|(?P<neq>!=)"
    r"|(?P<name>[A-Za-z0-9_]+)|(?P<punct>[(),.])|(?P<bad>.)"
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    line: int
    col: int


def _tokenize(text: str, where: str) -> list[_Tok]:
    toks, line, line_start = [], 1, 0
    for m in _TOKEN.finditer(text):
        kind, col = m.lastgroup, m.start() - line_start + 1
        if kind == "nl":
            line, line_start = line + 1, m.end()
        elif kind == "bad":
            raise InputError(f"{where}:{line}:{col}: unexpected character {m.group()!r}")
        elif kind not in ("ws", "comment"):
            toks.append(_Tok(kind, m.group(), line, col))
    toks.append(_Tok("eof", "", line, len(text) - line_start + 1))
    return toks


class _Parser:
    def __init__(self, text: str, where: str, relations: set[str] | None):
        self.toks = _tokenize(text, where)
        self.i = 0
        self.where = where
        self.relations = relations
        self.n_anon = 0

    def error(self, tok: _Tok, msg: str) -> InputError:
        return InputError(f"{self.where}:{tok.line}:{tok.col}: {msg}")

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self, kind: str, text: str | None = None, what: str | None = None) -> _Tok:
        tok = self.peek()
        if tok.kind != kind or (text is not None and tok.text != text):
            want = what or repr(text or kind)
            got = "end of file" if tok.kind == "eof" else repr(tok.text)
            raise self.error(tok, f"expected {want}, got {got}")
        self.i += 1
        return tok

    def term(self) -> Term:
        text = self.take("name", what="a variable or constant").text
        if text == "_":  # anonymous: a fresh variable per occurrence
            self.n_anon += 1
            return Term(f"_#{self.n_anon}")
        return Term(text)

    def atom(self) -> Atom:
        name = self.take("name", what="a relation name")
        if name.text[0].isupper() or name.text[0] == "_":
            raise self.error(name, f"relation name {name.text!r} must start lowercase")
        if self.relations is not None and name.text not in self.relations:
            known = ", ".join(sorted(self.relations)) or "none"
            raise self.error(name, f"unknown relation {name.text!r} (known: {known})")
        self.take("punct", "(")
        args = [self.term()]
        while self.peek().text == ",":
            self.i += 1
            args.append(self.term())
        self.take("punct", ")", what="')'")
        if len(args) != 2:
            raise self.error(name, f"atom {name.text!r} has {len(args)} arguments; rules are "
                                   "over binary relations, rel(Subject, Object)")
        return Atom(name.text, (args[0], args[1]), at=f"{self.where}:{name.line}:{name.col}")

    def literal(self) -> Atom | Inequality:
        # an inequality starts with a term followed by '!='; an atom with name '('
        if self.peek().kind == "name" and self.toks[self.i + 1].kind == "neq":
            left = self.term()
            self.i += 1
            return Inequality(left, self.term())
        return self.atom()

    def rule(self) -> Rule:
        start, first = self.peek(), self.i
        head = self.atom()
        self.take("implies", what="':-' (facts belong in a TSV file, not the rules file)")
        body = [self.literal()]
        while self.peek().text == ",":
            self.i += 1
            body.append(self.literal())
        self.take("punct", ".", what="',' or '.'")
        rule = Rule(head, tuple(body))
        bound = {t.name for a in rule.atoms for t in a.args if t.is_var}
        if not rule.atoms:
            raise self.error(start, f"rule for {head.relation!r} has no body atom")
        for t in (*head.args, *(x for q in rule.inequalities for x in (q.left, q.right))):
            if t.is_var and t.name not in bound:
                # point at its first occurrence (in the head or an inequality)
                at = next(k for k in self.toks[first : self.i] if k.text == str(t))
                raise self.error(at, f"unsafe rule: variable {t} in "
                                     f"{head.relation!r} rule is not bound by a body atom")
        return rule

    def rules(self) -> list[Rule]:
        out = []
        while self.peek().kind != "eof":
            out.append(self.rule())
        return out


def parse_rules(
    text: str, *, where: str = "<rules>", relations: Iterable[str] | None = None
) -> list[Rule]:
    """Parse Datalog text into rules.

    Parameters
    ----------
    text : str
        Rules, each ending in ``.``; ``%`` comments.
    where : str
        Name used in error messages (usually the file path).
    relations : iterable of str, optional
        The relation vocabulary; a rule naming any other relation is refused.

    Raises
    ------
    InputError
        ``where:line:col: reason`` for a syntax error, a non-binary atom, an unsafe
        rule, an unknown relation, or text with no rules at all.

    Examples
    --------
    >>> [str(r) for r in parse_rules("p(X, Y) :- q(Y, X). % flip")]
    ['p(X, Y) :- q(Y, X).']
    >>> parse_rules("p(X) :- q(X, Y).")
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: <rules>:1:1: atom 'p' has 1 arguments; rules are over binary ...
    """
    parser = _Parser(text, where, None if relations is None else set(relations))
    rules = parser.rules()
    if not rules:
        raise InputError(f"{where}:1:1: no rules found (empty rules file)")
    return rules


def parse_rule(text: str) -> Rule:
    """Parse exactly one rule."""
    rules = parse_rules(text)
    if len(rules) != 1:
        raise InputError(f"<rule>:1:1: expected one rule, got {len(rules)}")
    return rules[0]


def read_rules(path: str | os.PathLike, relations: Iterable[str] | None = None) -> list[Rule]:
    """Read and parse a ``.dl`` rules file (errors name the file, line and column)."""
    p = Path(path)
    with reading(p, "rules"):
        text = p.read_text(encoding="utf-8")
    return parse_rules(text, where=str(p), relations=relations)


def format_rules(rules: Iterable[Rule]) -> str:
    """Rules as Datalog text, one per line (parses back to the same rules)."""
    return "".join(f"{r}\n" for r in rules)


def check_body_relations(rules: Iterable[Rule], known: Iterable[str]) -> None:
    """Refuse a body relation that no fact (``known``) and no rule head has.

    Such a rule can never fire: almost always a typo (``parnet(X, Y)``). The error points
    at the atom: ``file:line:col`` of the rules file.

    Raises
    ------
    InputError
        ``file:line:col: relation 'parnet' ... (did you mean 'parent'? ...)``.

    Examples
    --------
    >>> rules = parse_rules("gp(X, Z) :- parnet(X, Y), parent(Y, Z).", where="r.dl")
    >>> check_body_relations(rules, {"parent"})
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: r.dl:1:13: relation 'parnet' in the body of a 'gp' rule is in ...
    """
    rules = list(rules)
    have = set(known) | {r.head.relation for r in rules}
    for rule in rules:
        for atom in rule.atoms:
            if atom.relation in have:
                continue
            from kgtest.config import did_you_mean  # only on this error: config is big

            hint = did_you_mean(atom.relation, sorted(have))
            names = sorted(have)
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise InputError(f"{atom.at or '<rules>'}: relation {atom.relation!r} in the body "
                             f"of a {rule.head.relation!r} rule is in no fact and no rule "
                             f"head, so the rule never fires ({hint}known: {shown or 'none'})")
