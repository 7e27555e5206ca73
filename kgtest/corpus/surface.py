"""Surfaces: how a fact becomes text, and how that text parses back into facts.

Two surfaces render the same documents:

``symbolic``
    One whitespace token per entity and per relation, as in Grokked Transformers: the
    world's own names. Statements are ``s r o``; several statements are joined by
    `` . ``; markers are ``Q`` (question), ``?``, ``T`` (the chain of thought follows) and
    ``A`` (the answer follows). An inverse statement writes ``o ~r s``.
``natural``
    Generated multi-token names (``"Mara Velt"``, deterministic by seed; entities named as
    constants in rules, such as ``male``, keep their own name), relation names as phrases
    (``works_at`` -> ``works at``) and several sentence templates. Per relation a seeded
    shuffle holds out ``held_out`` statement templates and question templates; those are
    never used in training documents and are kept for the paraphrase probe.

Every statement template ends in ``{o}.``, so a probe can cut the object off the end. The
parser (:meth:`Surface.parse`) is the inverse of the renderer: it reads any document text
back into ``(subject, relation, object, role, template)`` mentions; hygiene checks use it
so that what a document *says* is checked, not only what it claims.

Examples
--------
>>> from kgtest.symbolic.facts import Vocab
>>> s = symbolic_surface(Vocab(["ann", "bob"]), Vocab(["parent"]))
>>> s.qa_prompt(0, 0) + s.answer(1)
'Q ann parent ? A bob'
>>> [m[:4] for m in s.parse("ann parent bob . bob ~parent ann")]
[(0, 0, 1, 'stated'), (0, 0, 1, 'stated')]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kgtest.errors import InputError
from kgtest.symbolic.facts import Vocab

__all__ = [
    "Surface",
    "ParseError",
    "symbolic_surface",
    "natural_surface",
    "STATEMENT_TEMPLATES",
    "QUESTION_TEMPLATES",
    "INVERSE_TEMPLATE",
    "UNKNOWN",
]

#: Forward statement templates (natural surface). Each ends in ``{o}.``.
STATEMENT_TEMPLATES = (
    "The {r} of {s} is {o}.",
    "{s}'s {r} is {o}.",
    "For {s}, the {r} is {o}.",
    "As for {s}, their {r} is {o}.",
    "Records show that the {r} of {s} is {o}.",
    "It is known that {s}'s {r} is {o}.",
)
#: Question templates (natural surface), asked as ``Question: <q> Answer: ``.
QUESTION_TEMPLATES = (
    "Who is the {r} of {s}?",
    "What is {s}'s {r}?",
    "For {s}, who is the {r}?",
    "Name the {r} of {s}.",
    "Who is {s}'s {r}?",
    "Tell me the {r} of {s}.",
)
#: The inverse statement (object first), rendered when ``CorpusConfig.inverse`` is on.
INVERSE_TEMPLATE = "{o} is the {r} of {s}."
#: The completion of ``unknown`` documents (both surfaces).
UNKNOWN = "unknown"

_SYMBOLIC_MARKERS = frozenset({"Q", "A", "T", "?", ".", UNKNOWN})
_RESERVED_WORDS = frozenset({"Question", "Answer", "Reasoning", "The", "For", "As", "Records",
                             "It", "Name", "Who", "What", "Tell", UNKNOWN})


class ParseError(ValueError):
    """Text that no surface rule produces (a rendering bug, or a corrupted document)."""


@dataclass(frozen=True, eq=False)
class Surface:
    """A fitted surface: display names and, for ``natural``, per-relation templates.

    Attributes
    ----------
    kind : {"symbolic", "natural"}
    entity_names, relation_names : tuple of str
        World names, indexed like the closure's vocabularies.
    entity_display, relation_display : tuple of str
        What the text says for each entity and relation.
    statement_train, statement_held, question_train, question_held : tuple of tuples
        Per relation, indices into :data:`STATEMENT_TEMPLATES` / :data:`QUESTION_TEMPLATES`
        usable in training, and held out for the paraphrase probe (natural only).
    """

    kind: str
    entity_names: tuple[str, ...]
    relation_names: tuple[str, ...]
    entity_display: tuple[str, ...]
    relation_display: tuple[str, ...]
    statement_train: tuple[tuple[int, ...], ...] = ()
    statement_held: tuple[tuple[int, ...], ...] = ()
    question_train: tuple[tuple[int, ...], ...] = ()
    question_held: tuple[tuple[int, ...], ...] = ()
    _cache: dict = field(default_factory=dict, repr=False)

    # --- sizes -----------------------------------------------------------------------
    @property
    def natural(self) -> bool:
        return self.kind == "natural"

    def n_statement_variants(self, relation: int) -> int:
        """Distinct training statement forms of a relation (1 for ``symbolic``)."""
        return len(self.statement_train[relation]) if self.natural else 1

    def n_question_variants(self, relation: int) -> int:
        """Distinct training question forms of a relation (1 for ``symbolic``)."""
        return len(self.question_train[relation]) if self.natural else 1

    # --- rendering ---------------------------------------------------------------------
    def _stmt_template(self, r: int, variant: int, held: bool) -> int:
        pool = (self.statement_held if held else self.statement_train)[r]
        return pool[variant % len(pool)]

    def _q_template(self, r: int, variant: int, held: bool) -> int:
        pool = (self.question_held if held else self.question_train)[r]
        return pool[variant % len(pool)]

    def statement(self, s: int, r: int, o: int, variant: int = 0, *, held: bool = False) -> str:
        """One statement of fact ``(s, r, o)`` (``variant`` picks a training template)."""
        e, rel = self.entity_display, self.relation_display
        if not self.natural:
            return f"{e[s]} {rel[r]} {e[o]}"
        t = STATEMENT_TEMPLATES[self._stmt_template(r, variant, held)]
        return t.format(s=e[s], r=rel[r], o=e[o])

    def inverse_statement(self, s: int, r: int, o: int) -> str:
        """The fact stated object first: ``o ~r s`` / ``"O is the r of S."``."""
        e, rel = self.entity_display, self.relation_display
        if not self.natural:
            return f"{e[o]} ~{rel[r]} {e[s]}"
        return INVERSE_TEMPLATE.format(s=e[s], r=rel[r], o=e[o])

    def statement_probe(self, s: int, r: int, o: int, variant: int = 0, *,
                        held: bool = False) -> tuple[str, str]:
        """``(prompt, completion)``: a statement cut before its object (no final period)."""
        if not self.natural:
            e, rel = self.entity_display, self.relation_display
            return f"{e[s]} {rel[r]} ", e[o]
        full = self.statement(s, r, o, variant, held=held)
        obj = self.entity_display[o]
        return full[: -len(obj) - 1], obj

    def join(self, statements: Sequence[str]) -> str:
        """Several statements as one passage (`` . `` symbolic, a space natural)."""
        return (" " if self.natural else " . ").join(statements)

    def _question(self, s: int, r: int, variant: int, held: bool) -> str:
        e, rel = self.entity_display, self.relation_display
        if not self.natural:
            return f"Q {e[s]} {rel[r]} ?"
        t = QUESTION_TEMPLATES[self._q_template(r, variant, held)]
        return "Question: " + t.format(s=e[s], r=rel[r])

    @property
    def answer_marker(self) -> str:
        """What comes before an answer: ``" A "`` / ``" Answer: "``."""
        return " Answer: " if self.natural else " A "

    def qa_prompt(self, s: int, r: int, variant: int = 0, *, held: bool = False) -> str:
        """``"Q s r ? A "`` / ``"Question: Who is the r of S? Answer: "``."""
        return self._question(s, r, variant, held) + self.answer_marker

    def cot_prompt(self, s: int, r: int, variant: int = 0) -> str:
        """``"Q s r ? T "`` / ``"Question: ... Reasoning: "``; the chain follows."""
        return self._question(s, r, variant, False) + (" Reasoning: " if self.natural
                                                       else " T ")

    def cot_completion(self, steps: Sequence[str], o: int) -> str:
        """The chain, then the answer: ``"a r b . b r c . A c"``."""
        if self.natural:
            return self.join(steps) + " Answer: " + self.entity_display[o]
        return "".join(f"{x} . " for x in steps) + "A " + self.entity_display[o]

    def in_context_prompt(self, steps: Sequence[str], s: int, r: int, variant: int = 0) -> str:
        """Premises, then the question: ``"a r b . b r c . Q a r2 ? A "``."""
        sep = " " if self.natural else " . "
        return self.join(steps) + sep + self.qa_prompt(s, r, variant)

    def answer(self, o: int) -> str:
        """The completion that names entity ``o``."""
        return self.entity_display[o]

    def split_answer(self, text: str) -> tuple[str, str] | None:
        """``(chain, answer)`` of a completion, or None if it has no answer marker.

        The one answer parser: the probes, in-loop evaluation (early stopping) and the
        exports all read a model's (or a document's) answer with it. ``chain`` is the text
        before the last :attr:`answer_marker` (the reasoning of a CoT completion, '' when
        the marker starts it); ``answer`` is the text after it, stripped, compared
        exactly with :meth:`answer` (a trailing ``.`` or more words make it wrong). Only
        this surface's own marker counts: ``" A "`` on ``symbolic``, ``" Answer: "`` on
        ``natural``.

        Examples
        --------
        >>> s = symbolic_surface(Vocab(["a", "b", "c"]), Vocab(["r"]))
        >>> s.split_answer("a r b . b r c . A c"), s.split_answer("A c"), s.split_answer("c")
        (('a r b . b r c .', 'c'), ('', 'c'), None)
        """
        text = " " + text
        k = text.rfind(self.answer_marker)
        if k < 0:
            return None
        return text[1:k], text[k + len(self.answer_marker):].strip()

    # --- parsing -----------------------------------------------------------------------
    @property
    def _lookup(self):
        if "lookup" not in self._cache:
            ents = {name: i for i, name in enumerate(self.entity_display)}
            rels = {name: (i, False) for i, name in enumerate(self.relation_display)}
            if not self.natural:
                rels.update({f"~{name}": (i, True) for i, name in enumerate(self.relation_display)})
            self._cache["lookup"] = (ents, rels)
        return self._cache["lookup"]

    @property
    def _regexes(self):
        if "regex" not in self._cache:
            rel_alt = "|".join(re.escape(r) for r in sorted(self.relation_display, key=len,
                                                            reverse=True))

            def compile_(t: str) -> re.Pattern:
                parts = re.split(r"(\{[sro]\})", t)
                pat = "".join({"{s}": "(?P<s>.+?)", "{o}": "(?P<o>.+?)",
                               "{r}": f"(?P<r>{rel_alt})"}.get(p, re.escape(p)) for p in parts)
                return re.compile(pat)

            stmts = [(f"statement:{i}", compile_(t)) for i, t in enumerate(STATEMENT_TEMPLATES)]
            stmts.append(("inverse", compile_(INVERSE_TEMPLATE)))
            qs = [(f"question:{i}", compile_(t)) for i, t in enumerate(QUESTION_TEMPLATES)]
            self._cache["regex"] = (stmts, qs)
        return self._cache["regex"]

    def _match(self, text: str, patterns, what: str) -> tuple[int, int, int, str]:
        ents, rels = self._lookup
        found = []
        for name, pat in patterns:
            m = pat.fullmatch(text)
            if m is None:
                continue
            g = m.groupdict()
            s, o = ents.get(g["s"], -1), ents.get(g.get("o"), -1) if "o" in g else -2
            if s < 0 or o == -1:
                continue
            found.append((s, rels[g["r"]][0], o, name))
        if len({f[:3] for f in found}) != 1:
            why = "no template matches" if not found else "ambiguous"
            raise ParseError(f"cannot parse {what} {text!r}: {why}")
        return found[0]

    def parse(self, text: str) -> list[tuple[int, int, int, str, str | None]]:
        """Read a document back into mentions ``(s, r, o, role, template)``.

        ``role`` is ``"stated"`` for statements of a passage with no question,
        ``"premise"`` for statements before a question or in a chain, ``"answer"`` for the
        asked fact when the text answers it, and ``"question"`` (with ``o = -1``) when the
        answer is ``unknown``. ``template`` names the natural template used
        (``"statement:3"``, ``"inverse"``, ``"question:0"``) or is None.

        Raises
        ------
        ParseError
            Text the surface cannot produce.

        Examples
        --------
        >>> from kgtest.symbolic.facts import Vocab
        >>> s = symbolic_surface(Vocab(["a", "b", "c"]), Vocab(["p", "g"]))
        >>> s.parse("Q a g ? T a p b . b p c . A c")
        [(0, 0, 1, 'premise', None), (1, 0, 2, 'premise', None), (0, 1, 2, 'answer', None)]
        """
        if self.natural:
            return self._parse_natural(text)
        return self._parse_symbolic(text)

    def _parse_symbolic(self, text: str) -> list[tuple]:
        ents, rels = self._lookup
        toks = text.split()
        out: list[tuple] = []
        i = 0

        def fail(msg: str):
            raise ParseError(f"cannot parse {text!r} at token {i}: {msg}")

        def statements(role: str, stop: str | None) -> None:
            nonlocal i
            while True:
                if i + 3 > len(toks):
                    fail("expected 'subject relation object'")
                a, rel, b = toks[i : i + 3]
                if a not in ents or b not in ents or rel not in rels:
                    fail(f"{' '.join(toks[i:i + 3])!r} is not a statement")
                r, inv = rels[rel]
                s, o = (ents[b], ents[a]) if inv else (ents[a], ents[b])
                out.append((s, r, o, role, None))
                i += 3
                if i == len(toks):
                    if stop is not None:
                        fail(f"expected '. {stop}'")
                    return
                if toks[i] != ".":
                    fail("expected '.'")
                i += 1
                if stop is not None and i < len(toks) and toks[i] == stop:
                    return

        if toks and toks[0] != "Q":
            statements("premise" if "Q" in toks else "stated", "Q" if "Q" in toks else None)
        if i == len(toks):
            if not toks:
                fail("empty document")
            return out
        # Q s r ? (A o | T chain . A o)
        if len(toks) < i + 6 or toks[i] != "Q" or toks[i + 3] != "?":
            fail("expected 'Q subject relation ?'")
        s, r = ents.get(toks[i + 1], -1), rels.get(toks[i + 2], (-1, True))
        if s < 0 or r[0] < 0 or r[1]:
            fail("unknown subject or relation in question")
        i += 4
        if toks[i] == "T":
            i += 1
            statements("premise", "A")
        if toks[i] != "A" or i + 2 != len(toks):
            fail("expected 'A answer' at the end")
        ans = toks[i + 1]
        if ans == UNKNOWN:
            out.append((s, r[0], -1, "question", None))
        elif ans in ents:
            out.append((s, r[0], ents[ans], "answer", None))
        else:
            fail(f"unknown answer {ans!r}")
        return out

    def _sentences(self, passage: str, role: str) -> list[tuple]:
        stmts, _ = self._regexes
        out = []
        for sent in re.split(r"(?<=\.) ", passage):
            s, r, o, name = self._match(sent, stmts, "statement")
            out.append((s, r, o, role, name))
        return out

    def _parse_natural(self, text: str) -> list[tuple]:
        _, qs = self._regexes
        ents, _ = self._lookup
        if "Question: " not in text:
            if not text:
                raise ParseError("cannot parse an empty document")
            return self._sentences(text, "stated")
        k = text.index("Question: ")
        if k and text[k - 1] != " ":
            raise ParseError(f"cannot parse {text!r}: expected a space before 'Question:'")
        out = self._sentences(text[: k - 1], "premise") if k else []
        rest = text[k + len("Question: "):]
        chain = None
        if " Reasoning: " in rest:
            q, rest = rest.split(" Reasoning: ", 1)
            if " Answer: " not in rest:
                raise ParseError(f"cannot parse {text!r}: no 'Answer:' after the reasoning")
            chain, ans = rest.rsplit(" Answer: ", 1)
        elif " Answer: " in rest:
            q, ans = rest.split(" Answer: ", 1)
        else:
            raise ParseError(f"cannot parse {text!r}: no 'Answer:'")
        s, r, _, name = self._match(q, qs, "question")
        if chain is not None:
            out.extend(self._sentences(chain, "premise"))
        if ans == UNKNOWN:
            out.append((s, r, -1, "question", name))
        elif ans in ents:
            out.append((s, r, ents[ans], "answer", name))
        else:
            raise ParseError(f"cannot parse {text!r}: unknown answer {ans!r}")
        return out

    # --- persistence -------------------------------------------------------------------
    def to_json(self) -> dict:
        """JSON-able form (``Surface.from_json`` reads it back)."""
        return {
            "kind": self.kind,
            "entity_names": list(self.entity_names),
            "relation_names": list(self.relation_names),
            "entity_display": list(self.entity_display),
            "relation_display": list(self.relation_display),
            "statement_train": [list(x) for x in self.statement_train],
            "statement_held": [list(x) for x in self.statement_held],
            "question_train": [list(x) for x in self.question_train],
            "question_held": [list(x) for x in self.question_held],
            "statement_templates": list(STATEMENT_TEMPLATES),
            "question_templates": list(QUESTION_TEMPLATES),
            "inverse_template": INVERSE_TEMPLATE,
        }

    @classmethod
    def from_json(cls, data: dict) -> Surface:
        tt = lambda key: tuple(tuple(x) for x in data.get(key, []))  # noqa: E731
        return cls(
            kind=data["kind"],
            entity_names=tuple(data["entity_names"]),
            relation_names=tuple(data["relation_names"]),
            entity_display=tuple(data["entity_display"]),
            relation_display=tuple(data["relation_display"]),
            statement_train=tt("statement_train"),
            statement_held=tt("statement_held"),
            question_train=tt("question_train"),
            question_held=tt("question_held"),
        )


def symbolic_surface(entities: Vocab, relations: Vocab) -> Surface:
    """The one-token-per-name surface over the world's own names.

    Raises
    ------
    InputError
        A name with whitespace, a name equal to a marker (``Q A T ? . unknown``), or a
        relation whose inverse token ``~r`` is itself a relation name.

    Examples
    --------
    >>> s = symbolic_surface(Vocab(["ann", "bob"]), Vocab(["parent"]))
    >>> s.statement(0, 0, 1), s.inverse_statement(0, 0, 1)
    ('ann parent bob', 'bob ~parent ann')
    """
    names = list(entities) + list(relations)
    for name in names:
        if not name or any(c.isspace() for c in name):
            raise InputError(f"corpus.surface: 'symbolic' needs one-word names; {name!r} has "
                             f"whitespace (use surface = \"natural\")")
        if name in _SYMBOLIC_MARKERS or name.startswith("~"):
            raise InputError(f"corpus.surface: name {name!r} collides with a symbolic marker "
                             f"({' '.join(sorted(_SYMBOLIC_MARKERS))} or a leading '~')")
    ents, rels = tuple(entities), tuple(relations)
    return Surface("symbolic", ents, rels, ents, rels)


_ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "kr", "st", "th", "sh")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "nd")


def _word(rng: np.random.Generator, syllables: int) -> str:
    parts = [_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
             for _ in range(syllables)]
    return ("".join(parts) + _CODAS[rng.integers(len(_CODAS))]).capitalize()


def generate_names(n: int, seed: int | np.random.Generator = 0,
                   avoid: Sequence[str] = ()) -> list[str]:
    """``n`` distinct two-word person names ("Mara Velt"), deterministic by seed.

    Examples
    --------
    >>> generate_names(3, seed=0) == generate_names(3, seed=0)
    True
    >>> all(len(name.split()) == 2 for name in generate_names(5))
    True
    """
    rng = np.random.default_rng(seed)
    seen = set(avoid)
    out = []
    while len(out) < n:
        first, last = _word(rng, 2), _word(rng, int(rng.integers(1, 3)))
        name = f"{first} {last}"
        if name in seen or first in _RESERVED_WORDS or last in _RESERVED_WORDS:
            continue
        seen.add(name)
        out.append(name)
    return out


def natural_surface(entities: Vocab, relations: Vocab, *, seed: int | np.random.Generator = 0,
                    held_out: int = 1, keep_names: Sequence[str] = ()) -> Surface:
    """Generated names and per-relation template splits, deterministic by ``seed``.

    Parameters
    ----------
    held_out : int
        Statement templates and question templates held out per relation (>= 1).
    keep_names : sequence of str
        Entities shown under their own name (constants of rules, e.g. ``male``).

    Examples
    --------
    >>> s = natural_surface(Vocab(["ann", "bob"]), Vocab(["parent"]), seed=0)
    >>> text = s.statement(0, 0, 1)
    >>> s.parse(text)[0][:4]
    (0, 0, 1, 'stated')
    >>> set(s.statement_held[0]).isdisjoint(s.statement_train[0])
    True
    """
    if not 1 <= held_out < min(len(STATEMENT_TEMPLATES), len(QUESTION_TEMPLATES)):
        raise InputError(f"corpus.held_out_templates must be in [1, "
                         f"{min(len(STATEMENT_TEMPLATES), len(QUESTION_TEMPLATES)) - 1}], "
                         f"got {held_out}")
    rng = np.random.default_rng(seed)
    keep = {n for n in keep_names if n in entities}
    for name in keep:
        if name in _RESERVED_WORDS or ":" in name or "." in name:
            raise InputError(f"corpus.surface: entity name {name!r} cannot be shown as is")
    generated = iter(generate_names(len(entities) - len(keep), rng, avoid=sorted(keep)))
    display = tuple(n if n in keep else next(generated) for n in entities)
    rel_display = []
    for name in relations:
        phrase = " ".join(name.replace("_", " ").split())
        if not phrase or any(c in phrase for c in ".?:") or phrase in rel_display:
            raise InputError(f"corpus.surface: relation {name!r} cannot be phrased naturally")
        rel_display.append(phrase)
    st_train, st_held, q_train, q_held = [], [], [], []
    for _ in relations:
        p = rng.permutation(len(STATEMENT_TEMPLATES)).tolist()
        st_held.append(tuple(sorted(p[:held_out])))
        st_train.append(tuple(p[held_out:]))
        p = rng.permutation(len(QUESTION_TEMPLATES)).tolist()
        q_held.append(tuple(sorted(p[:held_out])))
        q_train.append(tuple(p[held_out:]))
    return Surface("natural", tuple(entities), tuple(relations), display, tuple(rel_display),
                   tuple(st_train), tuple(st_held), tuple(q_train), tuple(q_held))
