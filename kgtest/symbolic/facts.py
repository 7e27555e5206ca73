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
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from kgtest.errors import InputError
from kgtest.perms import respect_umask

__all__ = [
    "Vocab",
    "encode",
    "decode",
    "fact_keys",
    "read_tsv",
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
    rows = [(entities.add(s), relations.add(r), entities.add(o)) for s, r, o in facts]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def decode(triples: np.ndarray, entities: Vocab, relations: Vocab) -> list[tuple[str, str, str]]:
    """Turn an ``(n, 3)`` id array back into string triples."""
    en, rn = entities.names, relations.names
    return [(en[s], rn[r], en[o]) for s, r, o in np.asarray(triples).tolist()]


def fact_keys(triples: np.ndarray, n_entities: int) -> np.ndarray:
    """One int64 key per fact, ``(r * E + s) * E + o``: equal keys iff equal facts.

    Sorting by key groups facts by relation, then subject. Valid while
    ``n_relations * n_entities**2 < 2**63`` (about 3e9 entities for 1 relation).
    """
    t = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
    e = np.int64(max(n_entities, 1))
    return (t[:, 1] * e + t[:, 0]) * e + t[:, 2]


def read_tsv(path: str | os.PathLike) -> list[tuple[str, str, str]]:
    """Read ``subject<TAB>relation<TAB>object`` lines; ``#`` starts a comment.

    Blank lines are skipped. Extra columns after the first three are ignored, so
    kgtest's own annotated output can be read back. A line with fewer than three
    non-empty columns raises :class:`InputError` naming the file and line.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"{p}: cannot read facts file ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise InputError(f"{p}: not a UTF-8 text file") from None
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        body = line.split("#", 1)[0].rstrip("\r\n")
        if not body.strip():
            continue
        cols = [c.strip() for c in body.split("\t")]
        if len(cols) < 3 or not all(cols[:3]):
            raise InputError(
                f"{p}:{lineno}: expected 'subject<TAB>relation<TAB>object', got {line.strip()!r}"
            )
        out.append((cols[0], cols[1], cols[2]))
    return out


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename (never half-written)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
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
