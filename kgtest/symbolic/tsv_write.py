"""Columnar writing of text rows with numpy: no Python object per row.

A row is a concatenation of cells, one row per line; each column is a constant string or a
``(table, ids)`` pair (row ``i`` shows ``table[ids[i]]``). :func:`format_columns` returns
the rows as one ``bytes``; :func:`format_chunks` yields them a block of rows at a time
(what :func:`kgtest.symbolic.facts.atomic_write_text` writes straight to a file, so a
2M-line file never exists twice in memory).

How: each constant is folded into the table before it; each table becomes a ``(V, words)``
matrix of its strings zero-padded to whole uint64 words. For a block of rows, the cells'
byte offsets come from a cumulative sum of their lengths, and every cell's words are
stored at its offset through a uint64 view of the output with a 1-byte stride, in offset
order: a cell's padding spills into the cells after it, which are stored later and
overwrite it.

Examples
--------
>>> format_columns([(["ann", "bob"], [0, 1]), "\\t", (["x"], [0, 0])]).decode()
'ann\\tx\\nbob\\tx\\n'
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["format_columns", "format_chunks"]

MAX_WORDS = 64  # uint64 words per row; longer rows are joined in Python


def format_columns(columns: Sequence, rows_per_chunk: int = 1 << 16) -> bytes:
    """Rows of concatenated cells, one per line, as UTF-8 bytes.

    Each column is a constant ``str`` (the same in every row, e.g. a tab) or a pair
    ``(table, ids)``: row ``i`` shows ``table[ids[i]]`` (``str`` or UTF-8 ``bytes``). All
    ``ids`` have one length; a cell must not contain a newline.

    Examples
    --------
    >>> format_columns([(["a", "bb"], [1, 0, 1]), "\\t", (["0", "1"], [0, 0, 1])])
    b'bb\\t0\\na\\t0\\nbb\\t1\\n'
    """
    return b"".join(bytes(c) for c in format_chunks(columns, rows_per_chunk))


def format_chunks(columns: Sequence, rows_per_chunk: int = 1 << 16) -> Iterator[memoryview]:
    """The bytes of :func:`format_columns`, ``rows_per_chunk`` rows at a time.

    Each chunk is a view of one buffer that the next chunk overwrites: write or copy it
    before asking for the next.

    Examples
    --------
    >>> [bytes(c) for c in format_chunks([(["a", "bb"], [1, 0, 1])])]
    [b'bb\\na\\nbb\\n']
    """
    mats, sel, n = _prepare(columns)
    width = sum(m.words for m in mats)
    if width > MAX_WORDS:  # long cells: padding would cost more than it saves
        cells = [[t[i] for i in ids.tolist()] for t, ids in
                 zip((m.cells() for m in mats), sel, strict=True)]
        yield memoryview(b"".join(b"".join(row) for row in zip(*cells, strict=True)))
        return
    pad = 8 * max(m.words for m in mats)  # a row's padding spills this far past its end
    step = max(1024, min(rows_per_chunk, (1 << 22) // width))  # at most 4M cells a chunk
    buf = np.zeros(0, dtype=np.uint8)
    for a in range(0, n, step):
        rows = [ids[a : a + step] for ids in sel]
        lens = [m.lens[r] for m, r in zip(mats, rows, strict=True)]  # (rows,) per column
        line = lens[0].copy()  # (rows,) bytes per row
        for ln in lens[1:]:
            line += ln
        end = np.cumsum(line)
        total = int(end[-1])
        at = np.subtract(end, line, out=line)  # (rows,) each row's first byte
        if len(buf) < total + pad:
            buf = np.zeros(max(total + pad, 2 * len(buf)), dtype=np.uint8)
        _store(buf, mats, rows, lens, at, width)
        yield memoryview(buf)[:total]


def _store(buf: np.ndarray, mats: list, rows: list, lens: list, at: np.ndarray,
           width: int) -> None:
    """Store the cells of one chunk of rows into ``buf``; ``at`` (rows,) holds each row's
    first byte and is advanced cell by cell."""
    # (len(buf) - 7,) uint64 view with a 1-byte stride: words[i] = the 8 bytes at i
    words = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))
    pos = np.empty((len(at), width), dtype=np.int64)  # (rows, width) byte offsets
    val = np.empty((len(at), width), dtype=np.uint64)  # (rows, width) the words there
    k = 0
    for m, r, ln in zip(mats, rows, lens, strict=True):
        for w in range(m.words):
            np.add(at, 8 * w, out=pos[:, k])
            val[:, k] = m.mat[r, w]
            k += 1
        at += ln
    words[pos.ravel()] = val.ravel()  # row-major: offsets ascending, stored in order


def _prepare(columns: Sequence) -> tuple[list, list[np.ndarray], int]:
    """Fold constants into the column before them (a leading one is its own column):
    ``(word matrices, ids per column, rows)``."""
    cols: list[tuple[list, bytes, np.ndarray | None]] = []  # (table, suffix, ids)
    for c in (*columns, "\n"):
        if isinstance(c, str):
            if cols:  # fold the constant into the previous column's strings
                table, suffix, ids = cols[-1]
                cols[-1] = (table, suffix + c.encode(), ids)
            else:
                cols.append(([c], b"", None))
        else:
            cols.append((list(c[0]), b"", np.asarray(c[1], dtype=np.int64)))
    n = next((len(ids) for _, _, ids in cols if ids is not None), 0)
    if any(ids is not None and len(ids) != n for _, _, ids in cols):
        raise ValueError("format_columns: columns of different lengths")
    sel = [np.zeros(n, dtype=np.int64) if ids is None else ids for _, _, ids in cols]
    return [_Words(table, suffix) for table, suffix, _ in cols], sel, n


class _Words:
    """A column's strings (each followed by ``suffix``) as a ``(V, words)`` uint64 matrix,
    zero-padded, and their lengths in bytes ``(V,)``."""

    def __init__(self, table: list, suffix: bytes = b""):
        self.table, self.suffix = table, suffix
        blob, lens = _joined(table)
        lens += len(suffix)
        self.lens = lens
        self.words = max(1, -(-int(lens.max(initial=0)) // 8))
        if self.words > MAX_WORDS:
            return
        mat = np.zeros((len(table), 8 * self.words), dtype=np.uint8)
        _fill(mat.ravel(), np.frombuffer(blob, dtype=np.uint8), lens - len(suffix))
        for j, byte in enumerate(suffix):
            mat[np.arange(len(table)), lens - len(suffix) + j] = byte
        self.mat = mat.view("<u8")  # (V, words)

    def cells(self) -> list[bytes]:
        """The strings with their suffix, as bytes."""
        enc = [t.encode("utf-8") if isinstance(t, str) else bytes(t) for t in self.table]
        return [t + self.suffix for t in enc]


def _fill(flat: np.ndarray, blob: np.ndarray, lens: np.ndarray, chunk: int = 1 << 22) -> None:
    """Copy string ``i`` (``lens[i]`` bytes of ``blob``, one after another) to the start
    of row ``i`` of the ``(V, w)`` byte matrix ``flat`` (raveled), ``chunk`` bytes at a
    time (the scatter's offsets are 8 bytes per byte copied)."""
    width = len(flat) // max(len(lens), 1)
    ends = np.cumsum(lens)  # (V,) each string's end in blob
    # blob byte j of string i goes to flat[i * width + j - start_i]
    shift = np.arange(len(lens), dtype=np.int64) * width - (ends - lens)  # (V,)
    a = 0
    while a < len(lens):
        b = max(a + 1, int(np.searchsorted(ends, ends[a] - lens[a] + chunk, "right")))
        lo, hi = int(ends[a] - lens[a]), int(ends[b - 1])
        flat[np.repeat(shift[a:b], lens[a:b]) + np.arange(lo, hi)] = blob[lo:hi]
        a = b


def _joined(table: list) -> tuple[bytes, np.ndarray]:
    """All strings of ``table`` as one UTF-8 blob, and each one's length in bytes."""
    try:
        text = "".join(table)  # TypeError if a cell is bytes
    except TypeError:
        text = None
    if text is not None:
        blob = text.encode("utf-8")
        if len(blob) == len(text):  # ASCII: bytes = characters
            return blob, np.fromiter(map(len, table), dtype=np.int64, count=len(table))
    enc = [t.encode("utf-8") if isinstance(t, str) else bytes(t) for t in table]
    return b"".join(enc), np.fromiter(map(len, enc), dtype=np.int64, count=len(enc))
