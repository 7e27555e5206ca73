"""A user's knowledge base on disk: facts TSV (optionally annotated), fixed facts, rules.

:func:`read_kb` is the one reader under ``kgtest world closure`` / ``deletion-set``
(:func:`kgtest.cli_world.load_kb`, built for million-fact files) and
:func:`kgtest.worlds.samplers.world_from_tsv` (a :class:`~kgtest.worlds.world.World`), so
both accept the same files, with the same checks and the same error lines.

What a facts file means
-----------------------
- The format is :mod:`kgtest.symbolic.tsv`'s: ``subject<TAB>relation<TAB>object`` per
  line, ``#`` comment lines, an optional header line ``subject relation object ...``.
- **Annotations**: a header may name more columns. Three are read; any other is ignored
  (``proof_count``, ``depth``, ``planted``... of ``kgtest world build``'s ``facts.tsv``):

  ``kind``
      ``base`` or ``derived``. **Derived rows are dropped**: they are what the rules
      derive, and reading them as base facts would give every one of them a proof of its
      own (a stated fact), change proof counts and let a deletion set "delete" a derived
      fact. So a written ``facts.tsv`` reads back as the world that wrote it.
  ``fixed``
      ``1``/``true`` or ``0``/``false`` (any case): a fixed fact is known and never
      deleted (an attribute such as gender); it still takes part in derivations.
  ``domain``
      A domain name per base fact (``World.domain_names``, first-appearance order).

  A row with fewer cells than the header names takes the defaults (``base``, not fixed,
  domain ``default``); another ``kind`` or ``fixed`` value is an error naming the line.
- **Fixed file** (optional): more facts, same format (annotations ignored), all fixed, in
  the first domain.
- **Duplicates** stay in :attr:`KB.facts` (the closure drops them; a
  :class:`~kgtest.worlds.world.World` keeps the first line): a fact is fixed if any of its
  lines, or the fixed file, says so.
- **Rules**: Datalog (:func:`kgtest.symbolic.rules.read_rules`). A body relation that no
  fact and no rule head has is refused (a typo such as ``parnet``) unless
  ``allow_dead_rules`` (EDU-RELAT's published rules name a relation no fact has).
- A facts file without a base fact is an error.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "f.tsv").write_text("subject\\trelation\\tobject\\tkind\\tfixed\\n"
...                              "ann\\tparent\\tbob\\tbase\\t0\\n"
...                              "bob\\tparent\\tcy\\tbase\\t1\\n"
...                              "ann\\tgrandparent\\tcy\\tderived\\t0\\n")
>>> _ = (d / "r.dl").write_text("grandparent(X, Z) :- parent(X, Y), parent(Y, Z).\\n")
>>> kb = read_kb(d / "f.tsv", d / "r.dl")
>>> kb.facts.tolist(), kb.fixed.tolist(), kb.relations.names
([[0, 0, 1], [1, 0, 2]], [False, True], ['parent'])
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from kgtest.errors import InputError
from kgtest.symbolic.facts import Vocab, read_facts, table_triples
from kgtest.symbolic.rules import Rule, check_body_relations, read_rules
from kgtest.symbolic.tsv import read_bytes, scan

__all__ = ["KB", "read_kb"]

_TRUE, _FALSE = ("1", "true"), ("0", "false", "")


@dataclass(frozen=True)
class KB:
    """What :func:`read_kb` read. Row ``i`` of ``facts``, ``fixed`` and ``domain`` is one
    line: the facts file's base rows in file order, then the fixed file's."""

    facts: np.ndarray  # (n, 3) int64 ids; duplicates kept
    fixed: np.ndarray  # (n,) bool: never deleted
    domain: np.ndarray  # (n,) int64 index into domain_names
    domain_names: tuple[str, ...]
    entities: Vocab
    relations: Vocab  # exactly the relations of the facts (rule-only relations not added)
    rules: tuple[Rule, ...]


def read_kb(facts_path: str | os.PathLike, rules_path: str | os.PathLike,
            fixed_path: str | os.PathLike | None = None, *,
            allow_dead_rules: bool = False) -> KB:
    """Read a facts TSV (with its annotations), an optional fixed-facts TSV and a rules
    file, with the semantics of the module docstring.

    Vectorised (no Python per line): the annotation columns are interned like names, so
    a million-line file reads in about a second.

    Raises
    ------
    InputError
        One line naming the file and line: a malformed line, an unknown ``kind`` or
        ``fixed`` value, no base fact, a rules error, a dead rule.

    Examples
    --------
    See the module docstring.
    """
    where = str(facts_path)
    table = scan(read_bytes(facts_path), where)
    kind = _values(table, "kind", ("base", "derived", ""))
    if kind is not None:
        table = table.select(kind != 1)
    if not len(table):
        raise InputError(f"{where}: no facts in file" + (" (every row is derived)"
                                                         if kind is not None and len(kind)
                                                         else ""))
    flag = _values(table, "fixed", (*_TRUE, *_FALSE))
    fixed = np.zeros(len(table), bool) if flag is None else flag < len(_TRUE)
    domain, domain_names = np.zeros(len(table), np.int64), ("default",)
    if "domain" in table.header:
        domain, names = table.cells("domain")
        domain_names = tuple(n or "default" for n in names)
    facts, ents, rels = table_triples(table, Vocab(), Vocab())
    if fixed_path is not None:
        fx = read_facts(fixed_path, ents, rels)[0]
        facts = np.concatenate([facts, fx])
        fixed = np.concatenate([fixed, np.ones(len(fx), bool)])
        domain = np.concatenate([domain, np.zeros(len(fx), np.int64)])
    rules = read_rules(rules_path)
    if not allow_dead_rules:  # rels: exactly the relations of the facts and fixed facts
        check_body_relations(rules, rels.names)
    return KB(facts, fixed, domain, domain_names, ents, rels, tuple(rules))


def _values(table, name: str, allowed: tuple[str, ...]) -> np.ndarray | None:
    """Each row's index in ``allowed`` of its cell in column ``name`` (case-insensitive);
    None without the column. A value not allowed is an error naming its first line."""
    got = table.cells(name)
    if got is None:
        return None
    ids, values = got
    index = []
    for k, v in enumerate(values):
        if v.lower() not in allowed:
            line = int(table.line[np.argmax(ids == k)])
            shown = ", ".join(repr(a) for a in allowed if a)
            raise InputError(f"{table.where}:{line}: column '{name}' must be one of {shown}, "
                             f"got {v[:80]!r}")
        index.append(allowed.index(v.lower()))
    return np.asarray(index, dtype=np.int64)[ids] if len(ids) else np.zeros(0, np.int64)
