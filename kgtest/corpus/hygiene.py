"""The hygiene check: no training document mentions a fact it must not, or says more or
less than it claims.

:func:`check_hygiene` re-parses every training document of a
:class:`~kgtest.corpus.render.Corpus` with its surface and compares what the text says
with the ``(fact, role)`` pairs the document claims. The corpus stage runs it on every
corpus it writes, and the controls on every filtered corpus.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kgtest.corpus.surface import ParseError

if TYPE_CHECKING:
    from kgtest.corpus.render import Corpus
    from kgtest.corpus.splits import Split

__all__ = ["HygieneError", "check_hygiene"]


class HygieneError(AssertionError):
    """A training document mentions a forbidden fact, or says something it does not claim."""


def check_hygiene(corpus: Corpus, split: Split | None = None, *, forbid=()) -> int:
    """Check every training document, by its claims and by re-parsing its text.

    Forbidden facts are the split's held-out facts, the corpus's filtered facts and
    ``forbid``. Each training document must have ``text == prompt + completion``, claim
    no forbidden fact, parse back (:meth:`Corpus.parse`) to exactly the ``(fact, role)``
    pairs it claims, state only closure facts, and use no held-out template.

    Returns
    -------
    int
        The number of training documents checked.

    Raises
    ------
    HygieneError
        Naming the document id and the fact.
    """
    bad = set(corpus.dropped) | {int(f) for f in forbid}
    if split is not None:
        bad |= set(split.held_out.tolist())
    sf = corpus.surface

    def fail(d: dict, msg: str):
        raise HygieneError(f"training document {d['id']} ({d['kind']}): {msg}; "
                           f"text {d['text']!r}")

    def name(f: int) -> str:
        return f"fact {f} {' '.join(corpus.named(f))!r}"

    for d in corpus.train:
        if d["text"] != d["prompt"] + d["completion"]:
            fail(d, "text is not prompt + completion")
        claimed = {(x["id"], x["role"]) for x in d["facts"]}
        for f, role in sorted(claimed):
            if f in bad:
                fail(d, f"claims forbidden {name(f)} as {role!r}")
        try:
            mentions = corpus.parse(d)
        except ParseError as err:
            fail(d, str(err))
        said = set()
        for fid, role, template, (s, r, o) in mentions:
            if template and template != "inverse":
                kind, _, idx = template.partition(":")
                held = sf.statement_held if kind == "statement" else sf.question_held
                if int(idx) in held[r]:
                    fail(d, f"uses held-out template {template} for relation "
                            f"{sf.relation_names[r]!r}")
            if role == "question":
                asked = [f for f, rl in claimed if rl == "question"
                         and corpus.facts[f, 0] == s and corpus.facts[f, 1] == r]
                if not asked:
                    fail(d, f"asks about ({sf.entity_names[s]}, {sf.relation_names[r]}) "
                            f"without claiming it")
                said.update((f, "question") for f in asked)
                continue
            if fid < 0:
                fail(d, f"states ({sf.entity_names[s]}, {sf.relation_names[r]}, "
                        f"{sf.entity_names[o]}), which is not a fact of the closure")
            if fid in bad:
                fail(d, f"text mentions forbidden {name(fid)} as {role!r}")
            said.add((fid, role))
        if said != claimed:
            extra = sorted(said - claimed)
            missing = sorted(claimed - said)
            fail(d, f"text says {[(f, r) for f, r in extra]} not claimed, and claims "
                    f"{[(f, r) for f, r in missing]} not said")
    return len(corpus.train)
