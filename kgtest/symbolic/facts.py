"""Facts as integer triples over interned names, and TSV input/output.

A fact is ``(subject, relation, object)``. kgtest never stores one Python object per
fact: names are interned once in a :class:`Vocab` and a set of facts is an ``(n, 3)``
``int64`` array of ids (columns subject, relation, object). Entities and relations have
separate vocabularies.

Examples
--------
>>> ents, rels = Vocab(), Vocab()
>>> triples = encode([("ann", "parent", "bob"), ("bob", "parent", "cy")], ents, rels)
>>> triples.tolist()
[[0, 0, 1], [1, 0, 2]]
>>> decode(triples[:1], ents, rels)
[('ann', 'parent', 'bob')]
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from kgtest.perms import respect_umask
from kgtest.symbolic.tsv import MAX_BYTES, Table, read_bytes, scan
from kgtest.symbolic.tsv_write import format_chunks

__all__ = [
    "Vocab",
    "encode",
    "decode",
    "fact_keys",
    "read_tsv",
    "read_facts",
    "table_triples",
    "facts_tsv_bytes",
    "facts_tsv_chunks",
    "write_tsv",
    "atomic_write_text",
]


class Vocab:
    """An append-only interning table: name <-> dense integer id.

    Examples
    --------
    >>> v = Vocab(["a", "b"])
    >>> v.add("c"), v.id("a"), v.name(1), len(v)
    (2, 0, 'b', 3)
    >>> "b" in v
    True
    """

    def __init__(self, names: Iterable[str] = ()):
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        for name in names:
            self.add(name)

    def add(self, name: str) -> int:
        """Return the id of ``name``, interning it if new."""
        i = self._index.get(name)
        if i is None:
            i = len(self._names)
            self._names.append(name)
            self._index[name] = i
        return i

    def add_all(self, names: Iterable[str]) -> np.ndarray:
        """Ids of ``names`` (interning new ones in order), as an int64 array.

        >>> Vocab(["a"]).add_all(["b", "a", "b"]).tolist()
        [1, 0, 1]
        """
        names = list(names)
        start = len(self._names)
        index = dict(zip(names, range(start, start + len(names)), strict=True))
        if len(index) == len(names) and self._index.keys().isdisjoint(index):
            self._names.extend(names)  # all new and distinct (a fresh table): in bulk
            self._index.update(index)
            return np.arange(start, start + len(names), dtype=np.int64)
        add = self.add
        return np.fromiter((add(n) for n in names), dtype=np.int64, count=len(names))

    def id(self, name: str) -> int:
        """Return the id of a known name; ``KeyError`` if unknown."""
        return self._index[name]

    def get(self, name: str, default: int = -1) -> int:
        return self._index.get(name, default)

    def name(self, i: int) -> str:
        return self._names[i]

    @property
    def names(self) -> list[str]:
        """All names, in id order (a copy)."""
        return list(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self):
        return iter(self._names)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} names)"

    def copy(self) -> Vocab:
        out = Vocab()
        out._names, out._index = list(self._names), dict(self._index)
        return out


def encode(facts: Iterable[Sequence[str]], entities: Vocab, relations: Vocab) -> np.ndarray:
    """Intern string triples into an ``(n, 3)`` int64 array (adds unseen names)."""
    add_e, add_r = entities.add, relations.add
    rows = [(add_e(s), add_r(r), add_e(o)) for s, r, o in facts]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def decode(triples: np.ndarray, entities: Vocab, relations: Vocab) -> list[tuple[str, str, str]]:
    """Turn an ``(n, 3)`` id array back into string triples."""
    t = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
    en = np.empty(len(entities), dtype=object)  # vectorised gathers, no per-row Python
    en[:] = entities._names
    rn = np.empty(len(relations), dtype=object)
    rn[:] = relations._names
    return list(zip(en[t[:, 0]].tolist(), rn[t[:, 1]].tolist(), en[t[:, 2]].tolist(),
                    strict=True))


def fact_keys(triples: np.ndarray, n_entities: int) -> np.ndarray:
    """One int64 key per fact, ``(r * E + s) * E + o``: equal keys iff equal facts.

    Sorting by key groups facts by relation, then subject. Valid while
    ``n_relations * n_entities**2 < 2**63`` (about 3e9 entities for 1 relation).
    """
    t = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
    e = np.int64(max(n_entities, 1))
    return (t[:, 1] * e + t[:, 0]) * e + t[:, 2]


def read_facts(
    path: str | os.PathLike,
    entities: Vocab | None = None,
    relations: Vocab | None = None,
    *,
    max_bytes: int = MAX_BYTES,
) -> tuple[np.ndarray, Vocab, Vocab]:
    """Read a facts TSV straight into an ``(n, 3)`` id array (fast: no per-line Python).

    The format is that of :mod:`kgtest.symbolic.tsv`: ``subject<TAB>relation<TAB>object``
    per line; a UTF-8 BOM is dropped; lines whose first non-space character is ``#`` are
    comments (``#`` elsewhere belongs to the name); spaces around a column are stripped;
    an optional first-line header ``subject<TAB>relation<TAB>object[<TAB>...]`` is skipped
    and allows as many extra (ignored) annotation columns as it names; without one, a line
    with a fourth column is an error. Names are interned into ``entities`` / ``relations``
    (fresh vocabularies when None) in order of first appearance (subject before object),
    as :func:`encode` would.

    Raises
    ------
    InputError
        One line naming the file and line (the offending line shortened).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "kb.tsv"
    >>> _ = p.write_text("subject\\trelation\\tobject\\nann\\tparent\\tbob #2\\n")
    >>> triples, ents, rels = read_facts(p)
    >>> triples.tolist(), ents.names, rels.names
    ([[0, 0, 1]], ['ann', 'bob #2'], ['parent'])
    """
    entities = Vocab() if entities is None else entities
    relations = Vocab() if relations is None else relations
    return table_triples(scan(read_bytes(path, max_bytes), str(path)), entities, relations)


def table_triples(table: Table, entities: Vocab, relations: Vocab
                  ) -> tuple[np.ndarray, Vocab, Vocab]:
    """The ``(n, 3)`` id array of a scanned :class:`~kgtest.symbolic.tsv.Table`, its names
    interned into ``entities`` / ``relations`` (first appearance, subject before object)."""
    so, ent_names = table.intern([0, 2])
    r, rel_names = table.intern([1])
    ent_ids = entities.add_all(ent_names)
    rel_ids = relations.add_all(rel_names)
    triples = np.empty((len(table), 3), dtype=np.int64)
    if len(table):  # fresh vocabularies number names as the table does: no gathers
        fresh = np.array_equal(ent_ids, np.arange(len(ent_ids)))
        triples[:, 0], triples[:, 2] = (so[:, 0], so[:, 1]) if fresh else (ent_ids[so[:, 0]],
                                                                           ent_ids[so[:, 1]])
        triples[:, 1] = r[:, 0] if np.array_equal(rel_ids, np.arange(len(rel_ids))) else \
            rel_ids[r[:, 0]]
    return triples, entities, relations


def read_tsv(path: str | os.PathLike) -> list[tuple[str, str, str]]:
    """Read a facts TSV as string triples (the format of :func:`read_facts`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "kb.tsv"
    >>> _ = p.write_text("# my facts\\nann\\tparent\\tbob\\n")
    >>> read_tsv(p)
    [('ann', 'parent', 'bob')]
    """
    triples, ents, rels = read_facts(path)
    return decode(triples, ents, rels)


def facts_tsv_bytes(
    triples: np.ndarray,
    entities: Vocab,
    relations: Vocab,
    extra: Sequence[tuple[Sequence[str], np.ndarray]] = (),
    header: Sequence[str] | None = None,
) -> bytes:
    """Facts as TSV bytes, one join per column (see :func:`kgtest.symbolic.tsv.format_columns`).

    ``extra`` columns are ``(table, ids)`` pairs appended after the object (row ``i``
    shows ``table[ids[i]]``); ``header`` is an optional first line.

    Examples
    --------
    >>> e, r = Vocab(["ann", "bob"]), Vocab(["parent"])
    >>> facts_tsv_bytes(np.array([[0, 0, 1]]), e, r, [(["base"], np.zeros(1, int))]).decode()
    'ann\\tparent\\tbob\\tbase\\n'
    """
    return b"".join(bytes(c) for c in facts_tsv_chunks(triples, entities, relations, extra,
                                                        header))


def facts_tsv_chunks(
    triples: np.ndarray,
    entities: Vocab,
    relations: Vocab,
    extra: Sequence[tuple[Sequence[str], np.ndarray]] = (),
    header: Sequence[str] | None = None,
) -> Iterator[bytes | memoryview]:
    """The bytes of :func:`facts_tsv_bytes` a block of rows at a time, for writing
    straight to a file (:func:`atomic_write_text`); each chunk is valid until the next.

    >>> e, r = Vocab(["ann", "bob"]), Vocab(["parent"])
    >>> b"".join(bytes(c) for c in facts_tsv_chunks(np.array([[0, 0, 1]]), e, r))
    b'ann\\tparent\\tbob\\n'
    """
    t = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
    en, rn = entities.names, relations.names
    cols: list = [(en, t[:, 0]), "\t", (rn, t[:, 1]), "\t", (en, t[:, 2])]
    for table, ids in extra:
        cols += ["\t", (table, ids)]
    if header is not None:
        yield ("\t".join(header) + "\n").encode()
    yield from format_chunks(cols)


def atomic_write_text(path: str | os.PathLike,
                      text: str | bytes | Iterable[bytes | memoryview]) -> None:
    """Write ``text`` (str, bytes as they are, or an iterable of bytes-like chunks written
    one after another) to ``path`` via a temporary file and a rename (never half-written)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(text, str):
                f.write(text.encode("utf-8"))
            elif isinstance(text, bytes | bytearray | memoryview):
                f.write(text)
            else:
                for chunk in text:
                    f.write(chunk)
        respect_umask(tmp)  # mkstemp makes 0600
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tsv(
    path: str | os.PathLike,
    rows: Iterable[Sequence[object]],
    header: Sequence[str] | None = None,
) -> None:
    """Write rows as TSV atomically, with an optional header line."""
    lines = []
    if header is not None:
        lines.append("\t".join(header))
    lines.extend("\t".join(str(c) for c in row) for row in rows)
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
