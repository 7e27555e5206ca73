"""Columnar TSV reading and writing on bytes with numpy: no Python object per line.

The format (what :func:`kgtest.symbolic.facts.read_facts` accepts):

- UTF-8 text, one fact per line, ``subject<TAB>relation<TAB>object``; a leading UTF-8 BOM
  is dropped; lines end in ``\\n`` or ``\\r\\n``.
- A line whose first character other than spaces is ``#`` is a comment; a line of only
  whitespace is blank; both are skipped. ``#`` anywhere else is part of a name.
- Spaces (and ``\\r``, ``\\v``, ``\\f``) around a column are stripped; a name may contain
  inner spaces, never a tab.
- The first line that is not blank may be a header: its first three columns are
  ``subject``, ``relation``, ``object`` (optionally after ``#``, as in kgtest's own
  annotated files). It is skipped. A header that names ``k`` columns allows rows of 3 to
  ``k`` columns (the extra ones are annotations: :meth:`Table.cells` reads one by its header
  name, a row without it gets ``''``); without a header every row has exactly 3 columns. A
  header-like row anywhere else is an error.
- Bounded: a NUL byte, a line over :data:`MAX_LINE` bytes or a file over ``max_bytes``
  is refused before the rest is read.

Any violation raises :class:`~kgtest.errors.InputError` naming the file and line, with the
offending line shortened to :data:`ECHO` characters.

Reading finds every line and tab with vectorised byte scans, cuts the three name columns
as ``(start, end)`` byte ranges and interns them with one :func:`numpy.unique` on the
names packed into fixed-width keys; only each distinct name is decoded to ``str``.
Writing is :mod:`kgtest.symbolic.tsv_write` (:func:`format_columns`, re-exported here).

Examples
--------
>>> tab = scan(b"# kin\\nann\\tparent\\tbob\\nbob\\tparent\\tcy\\n", "f.tsv")
>>> tab.names("s"), tab.names("r")
(['ann', 'bob'], ['parent'])
>>> format_columns([(["ann", "bob"], [0, 1]), "\\t", (["x"], [0, 0])]).decode()
'ann\\tx\\nbob\\tx\\n'
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

import numpy as np

from kgtest.errors import InputError, reading
from kgtest.symbolic.tsv_write import format_columns

__all__ = ["MAX_LINE", "MAX_BYTES", "ECHO", "read_bytes", "scan", "Table", "format_columns"]

MAX_LINE = 1 << 20  # bytes per line: a longer line is surely not a fact
MAX_BYTES = 2 << 30  # bytes per file (about 100M facts: far past what fits in memory)
ECHO = 80  # characters of a bad line shown in an error
NL = b"\n"
HEADER = (b"subject", b"relation", b"object")
_CHUNK = 1 << 24
_WHOLE = 1 << 28  # a regular file up to this size is read at once

_WS = np.zeros(256, dtype=bool)  # stripped around columns (tab and newline separate them)
_WS[[ord(c) for c in " \r\v\f"]] = True


def _shorten(text: str) -> str:
    return text if len(text) <= ECHO else f"{text[:ECHO]}... ({len(text):,} characters)"


def read_bytes(path, max_bytes: int = MAX_BYTES) -> bytes:
    """The file's bytes, refusing NUL bytes, over-long lines and over-large files early.

    Reads in 16 MiB chunks, so an endless input (``/dev/zero``, a runaway pipe) ends with
    one :class:`InputError` after at most one chunk past the limit that it breaks.
    """
    chunks, size, lines, line_len = [], 0, 1, 0
    with reading(path, "facts"), open(path, "rb") as f:
        st = os.fstat(f.fileno())
        whole = st.st_size + 1 if stat.S_ISREG(st.st_mode) else 0
        step = whole if 0 < whole <= min(max_bytes, _WHOLE) else _CHUNK  # one read, no join
        while True:
            chunk = f.read(step)
            step = _CHUNK
            if not chunk:
                break
            if b"\0" in chunk:
                at = chunk.index(b"\0")
                raise InputError(f"{path}:{lines + chunk.count(NL, 0, at)}: NUL byte: "
                                 "not a text file")
            line_len = _check_lines(chunk, line_len, lines, path)
            lines += chunk.count(b"\n")
            size += len(chunk)
            if size > max_bytes:
                raise InputError(f"{path}: larger than {max_bytes:,} bytes; refusing to read "
                                 "it whole (split it, or raise max_bytes)")
            chunks.append(chunk)
    return b"".join(chunks)


def _check_lines(chunk: bytes, line_len: int, lines: int, path) -> int:
    """Refuse a line over MAX_LINE bytes (``line_len`` bytes of it were in earlier chunks,
    ``lines`` newlines came before); return the length of the chunk's unfinished line."""
    first, last = chunk.find(b"\n"), chunk.rfind(b"\n")
    if (0 <= first and line_len + first <= MAX_LINE and len(chunk) - 1 - last <= MAX_LINE
            and _newline_every(chunk, first, last, MAX_LINE // 2)):
        return len(chunk) - 1 - last  # every line is short: no per-line arrays
    nl = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
    lens = np.diff(np.concatenate([[-1 - line_len], nl, [len(chunk)]])) - 1  # last: open
    if lens.max() > MAX_LINE:
        at = lines + int(np.argmax(lens > MAX_LINE))
        raise InputError(f"{path}:{at}: line longer than {MAX_LINE:,} bytes: not a facts file")
    return int(lens[-1])


def _newline_every(chunk: bytes, first: int, last: int, block: int) -> bool:
    """True if ``(a, a + block]`` holds a newline for every ``a = first + k * block <
    last``: then consecutive newlines in ``[first, last]`` are under ``2 * block`` apart."""
    return all(chunk.find(b"\n", a + 1, a + 1 + block) >= 0
               for a in range(first, last, block))


class Table:
    """Three name columns cut out of a TSV file's bytes (see :func:`scan`).

    ``data`` is the file's bytes (BOM dropped, a final newline added); ``start`` and
    ``end`` are ``(n, 3)`` byte offsets of each row's subject, relation and object;
    ``line`` is each row's 1-based line number; ``header`` the header's column names
    (``()`` without one). Annotation columns are cut only when asked (:meth:`cells`), from
    ``tabs`` (every tab's offset), ``first_tab`` (each row's first tab in ``tabs``),
    ``n_cells`` (cells per row) and ``eol`` (each row's newline).
    """

    def __init__(self, data: bytes, start: np.ndarray, end: np.ndarray, line: np.ndarray,
                 where: str, header: tuple[str, ...] = (), tabs=None, first_tab=None,
                 n_cells=None, eol=None):
        self.data, self.start, self.end, self.line, self.where = data, start, end, line, where
        self.header, self.tabs, self.first_tab = header, tabs, first_tab
        self.n_cells, self.eol = n_cells, eol
        buf = data if len(data) >= 8 else data + bytes(8 - len(data))  # no copy if long
        # (len(buf) - 7,) uint64 view with a 1-byte stride: _words[i] = the 8 bytes at i
        self._words = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))

    def __len__(self) -> int:
        return len(self.start)

    def select(self, rows: np.ndarray) -> Table:
        """The table of the given rows (a boolean mask or indices), in that order."""
        def pick(a):
            return None if a is None else a[rows]

        return Table(self.data, self.start[rows], self.end[rows], self.line[rows], self.where,
                     self.header, self.tabs, pick(self.first_tab), pick(self.n_cells),
                     pick(self.eol))

    def cells(self, name: str) -> tuple[np.ndarray, list[str]] | None:
        """Annotation column ``name`` (as the header names it): each row's value id and
        the distinct values (first-appearance order, stripped; ``''`` where a row has
        fewer cells); None when the header has no such column.

        >>> t = scan(b"subject\\trelation\\tobject\\tkind\\na\\tp\\tb\\tbase\\nb\\tp\\ta\\n", "f")
        >>> ids, values = t.cells("kind")
        >>> ids.tolist(), values, t.cells("fixed")
        ([0, 1], ['base', ''], None)
        """
        if name not in self.header:
            return None
        j = self.header.index(name)
        if j < 3:
            raise ValueError(f"cells: {name!r} is a name column; use intern()")
        if self.first_tab is None:  # a header of three columns: no annotations
            return None
        last = max(len(self.tabs) - 1, 0)
        has = self.n_cells > j
        start = np.where(has, self.tabs[np.minimum(self.first_tab + j - 1, last)] + 1, self.eol)
        end = np.where(self.n_cells > j + 1, self.tabs[np.minimum(self.first_tab + j, last)],
                       self.eol)
        _strip(np.frombuffer(self.data, dtype=np.uint8), start, end)
        ids, values = self._intern(start, end)
        return ids.ravel(), values

    def _intern(self, s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Ids (first-appearance order over the raveled ranges) and distinct names."""
        shape = s.shape
        s, e = s.ravel(), e.ravel()
        if len(s) == 0:
            return np.zeros(shape, dtype=np.int64), []
        first, inv = _first_unique(_pack(self._words, s, e))
        return inv.reshape(shape), _decode(self.data, s[first], e[first])

    def intern(self, cols: Sequence[int]) -> tuple[np.ndarray, list[str]]:
        """Ids (in first-appearance order, row-major over ``cols``) and distinct names.

        >>> t = scan(b"a\\tp\\tb\\nb\\tp\\ta\\n", "f")
        >>> ids, names = t.intern([0, 2])
        >>> ids.tolist(), names
        ([[0, 1], [1, 0]], ['a', 'b'])
        """
        return self._intern(_columns(self.start, cols), _columns(self.end, cols))

    def names(self, col: str) -> list[str]:
        """Distinct names of one column (``"s"``, ``"r"`` or ``"o"``), first-appearance."""
        return self.intern(["sro".index(col)])[1]

    def rows(self, cols: Sequence[int] = (0, 1, 2)) -> list[tuple[str, ...]]:
        """The rows as string tuples (decodes every field: for small files and tests)."""
        d = self.data
        return [tuple(d[a:b].decode("utf-8") for a, b in zip(s, e, strict=True))
                for s, e in zip(self.start[:, cols].tolist(), self.end[:, cols].tolist(),
                                strict=True)]


def _decode(data: bytes, s: np.ndarray, e: np.ndarray) -> list[str]:
    """``[data[a:b].decode() for a, b in zip(s, e)]`` for ranges without a newline: the
    ranges are gathered into one buffer, one per line, decoded and split at once."""
    if len(s) == 0:
        return []
    lens = e - s
    put = np.cumsum(lens + 1) - (lens + 1)  # (k,) where each range goes in the buffer
    buf = np.full(int(put[-1] + lens[-1] + 1), 10, dtype=np.uint8)  # newline-terminated
    keep = np.ones(len(buf), dtype=bool)
    keep[put + lens] = False  # the newlines
    dst = np.flatnonzero(keep)  # (sum(lens),) buffer offsets of the ranges' bytes
    buf[dst] = np.frombuffer(data, dtype=np.uint8)[dst + np.repeat(s - put, lens)]
    return buf.tobytes().decode("utf-8").split("\n")[:-1]


def _columns(a: np.ndarray, cols: Sequence[int]) -> np.ndarray:
    """``a[:, cols]`` as a C-ordered copy (so ``ravel`` is row-major: s0, o0, s1, ...)."""
    out = np.empty((len(a), len(cols)), dtype=a.dtype)
    for j, c in enumerate(cols):
        out[:, j] = a[:, c]
    return out


_LOW = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


def _pack(words: np.ndarray, s: np.ndarray, e: np.ndarray) -> list[np.ndarray]:
    """Each byte range as uint64 words, zero-padded: equal words iff equal bytes (names
    never contain NUL, refused on reading, so padding cannot make distinct names equal).

    ``words`` is :attr:`Table._words` (``words[i]``: the 8 bytes at ``i``); a word that
    would run past the data is read at the last full word and shifted down.
    """
    lens = e - s
    nwords = max(1, -(-int(lens.max()) // 8))
    last = len(words) - 1
    out = []
    for k in range(nwords):
        if k == 0:  # read at s itself, clamped in place for a moment (no copy)
            past = np.flatnonzero(s > last)  # (few,) within 8 bytes of the end
            held = s[past]
            s[past] = last
            w = words[s]  # (m,) past the last word: the last word, shifted down below
            s[past] = held
            over = held - last
        else:
            at = s + 8 * k
            past = np.flatnonzero(at > last)  # (few,) within 8 bytes of the end, or beyond
            over = at[past] - last
            w = words[np.minimum(at, last, out=at)]
        w[past] >>= (8 * np.minimum(over, 7)).astype(np.uint64)
        left = lens if k == nwords - 1 else lens.copy()  # (m,) bytes of this word to keep
        if k == 0 and len(left) and left.min() > 0:  # two shifts keep the low 8 * left bits
            np.minimum(left, 8, out=left)
            np.subtract(8, left, out=left)
            left *= 8
            w <<= left.view(np.uint64)
            w >>= left.view(np.uint64)
        else:
            left -= 8 * k
            w &= _LOW[np.clip(left, 0, 8, out=left)]
        out.append(w)
    return out


_MIX = np.uint64(0x9E3779B97F4A7C15)


def _first_unique(cols: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inv)`` for keys given as rows of uint64 words: each distinct key's first
    position (ascending), and each position's distinct-key number in that order (what
    ``np.unique`` returns as return_index / return_inverse, numbered by first appearance).

    One SIMD sort of ``hash(key) << b | position`` groups equal keys with their positions
    ascending (a stable argsort of uint64 is several times slower); if two distinct keys
    share a hash (a key differs from its group's first), a stable sort of the keys
    themselves decides instead.
    """
    n = len(cols[0])
    ib = np.uint64(max(1, (n - 1).bit_length()))
    h = cols[0] * _MIX
    for c in cols[1:]:
        h ^= c
        h *= _MIX
    h >>= ib
    h <<= ib
    for a in range(0, n, 1 << 16):  # h |= position, without an (n,) temporary
        h[a : a + (1 << 16)] |= np.arange(a, min(n, a + (1 << 16)), dtype=np.uint64)
    h.sort()
    order = (h & ((np.uint64(1) << ib) - np.uint64(1))).view(np.int64)  # (n,) positions
    h >>= ib
    new = np.empty(n, dtype=bool)  # (n,) starts a group of equal hashes
    new[0] = True
    np.not_equal(h[1:], h[:-1], out=new[1:])
    first, inv = _numbered(order, new, out=h.view(np.int64))  # h is not needed any more
    del h
    if not all(_grouped_equal(c, first, inv) for c in cols):  # a hash collision
        order = np.lexsort(cols[::-1])  # stable: equal keys keep positions ascending
        new[1:] = False
        for c in cols:
            sc = c[order]
            new[1:] |= sc[1:] != sc[:-1]
        first, inv = _numbered(order, new)
    return first, inv


def _grouped_equal(c: np.ndarray, first: np.ndarray, inv: np.ndarray,
                   step: int = 1 << 16) -> bool:
    """Every key equals its group's first key: ``c[first][inv] == c``, in blocks."""
    key = c[first]
    return all(np.array_equal(key[inv[a : a + step]], c[a : a + step])
               for a in range(0, len(c), step))


def _numbered(order: np.ndarray, new: np.ndarray, out: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Groups of ``order`` (each starting where ``new``; positions ascending within a
    group) numbered by first position: ``(first, inv)`` as :func:`_first_unique`
    (``inv`` written into ``out`` if given)."""
    first = order[new]  # (k,) each group's first position, in group order
    by_first = np.argsort(first)
    first = first[by_first]
    rank = np.empty(len(first), dtype=np.int64)
    rank[by_first] = np.arange(len(first))
    group = np.cumsum(new)  # (n,) group of each sorted slot, from 1
    group -= 1
    np.take(rank, group, out=group, mode="clip")  # in place: each slot's group number
    inv = np.empty(len(order), dtype=np.int64) if out is None else out
    inv[order] = group
    return first, inv


def scan(data: bytes, where: str) -> Table:
    """Parse TSV bytes into a :class:`Table` (the format is in the module docstring)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if len(data) and np.frombuffer(data, dtype=np.uint8).max() >= 128:  # not ASCII
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(f"{where}:{data.count(NL, 0, err.start) + 1}: not valid UTF-8 "
                             f"(byte {err.start})") from None
    if not data.endswith(b"\n"):
        data += b"\n"
    u8 = np.frombuffer(data, dtype=np.uint8)
    is_sep = np.equal(u8, 10)  # (len(data),) bool, reused for tabs below
    ends = np.flatnonzero(is_sep)  # (L,) newline of each line
    starts = np.empty_like(ends)
    starts[0] = 0
    np.add(ends[:-1], 1, out=starts[1:])
    tab_pos = np.flatnonzero(np.equal(u8, 9, out=is_sep))  # (T,) every tab
    del is_sep
    two_tabs = (len(tab_pos) == 2 * len(ends) and (tab_pos[0::2] > starts).all()
                and (tab_pos[1::2] < ends).all())  # the usual file: two tabs on every line
    kept, header = _body_lines(data, u8, starts, ends)
    ncols = len(header) or 3
    every = len(kept) == len(ends)  # no comment, blank or header line: no gathers

    def rows(a):
        return a if every else a[kept]

    n = i0 = None  # (n,) cells per row and each row's first tab in tab_pos, if needed
    if two_tabs and ncols == 3:  # every row has exactly three cells
        p1, p2 = rows(tab_pos[0::2]), rows(tab_pos[1::2])
    else:
        first_tab = (np.arange(0, len(tab_pos), 2) if two_tabs  # (L,) index in tab_pos
                     else np.searchsorted(tab_pos, starts))  # of each line's first tab
        ntab = np.diff(first_tab, append=len(tab_pos))  # tabs per line (none after the last)
        n = rows(ntab) + 1
        bad = (n < 3) | (n > ncols)
        if bad.any():
            i = int(kept[np.argmax(bad)])
            _fail(data, starts[i], ends[i], i + 1, where, f"expected {_expect(ncols)}, "
                  f"got {int(ntab[i]) + 1} column{'s' if ntab[i] else ''}")
        i0 = rows(first_tab)
        p1, p2 = tab_pos[i0], tab_pos[i0 + 1]
    start = np.empty((len(kept), 3), dtype=np.int64, order="F")  # (n, 3) each name's start
    end = np.empty((len(kept), 3), dtype=np.int64, order="F")  # (n, 3) and the byte after it
    start[:, 0], end[:, 0], end[:, 1], end[:, 2] = rows(starts), p1, p2, rows(ends)
    np.add(end[:, :2], 1, out=start[:, 1:])
    if ncols > 3:  # annotations follow the object: it ends at the third tab
        more = n > 3
        end[more, 2] = tab_pos[i0[more] + 2]
    if any(c in data for c in (b" ", b"\r", b"\v", b"\f")):  # strip spaces around names
        _strip(u8, start, end)
    if (end <= start).any():
        r = int(np.argmax((end <= start).any(1)))
        i = int(kept[r])
        col = ("subject", "relation", "object")[int(np.argmax(end[r] <= start[r]))]
        _fail(data, starts[i], ends[i], i + 1, where, f"empty {col}; expected {_expect(ncols)}")
    annotated = (tab_pos, i0, n, rows(ends)) if ncols > 3 else (None,) * 4  # for cells()
    table = Table(data, start, end, kept + 1, where, header, *annotated)
    _refuse_late_header(table, u8)
    return table


def _body_lines(data: bytes, u8: np.ndarray, starts: np.ndarray, ends: np.ndarray
                ) -> tuple[np.ndarray, tuple[str, ...]]:
    """The lines that hold facts ``(k,)`` (not blank, not a comment, not the header) and
    the header's column names (``()`` without a header)."""
    first = u8[starts]
    odd = _WS[first] | (first == 9) | (first == 35) | (first == 10)  # ws, tab, '#', empty
    keep = np.ones(len(ends), dtype=bool)
    first_line = len(ends)  # the first line that is not blank: maybe a header
    for i in np.flatnonzero(odd).tolist():  # blank, comment and indented lines (few)
        text = data[starts[i] : ends[i]].strip(b" \t\r\v\f")
        if not text or text.startswith(b"#"):
            keep[i] = False
        if text and first_line == len(ends):
            first_line = i
    kept = np.flatnonzero(keep)
    first_line = min(first_line, int(kept[0]) if len(kept) else len(ends))
    header = ()
    if first_line < len(ends):
        head = data[starts[first_line] : ends[first_line]].strip(b" \t\r\v\f")
        if _is_header(head):
            header = tuple(c.strip(b" \r\v\f").decode()
                           for c in head.lstrip(b"#").split(b"\t"))
            kept = kept[kept != first_line]
    return kept, header


def _is_header(text: bytes) -> bool:
    cols = [c.strip(b" \r\v\f") for c in text.lstrip(b"#").split(b"\t")]
    return tuple(cols[:3]) == HEADER


def _expect(ncols: int) -> str:
    if ncols == 3:
        return ("'subject<TAB>relation<TAB>object' (3 columns; more need a header line "
                "naming them)")
    return f"3 to {ncols} tab-separated columns (as the header names)"


def _strip(u8: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
    """Move each range's ends past spaces, in place (a few passes: runs are short)."""
    while True:
        lead = (start < end) & _WS[u8[np.minimum(start, len(u8) - 1)]]
        if not lead.any():
            break
        start += lead
    while True:
        trail = (end > start) & _WS[u8[np.maximum(end - 1, 0)]]
        if not trail.any():
            break
        end -= trail


def _refuse_late_header(table: Table, u8: np.ndarray) -> None:
    """A header-like row in the body (``cat`` of two files with headers) is refused."""
    s, e = table.start[:, 0], table.end[:, 0]
    cand = np.flatnonzero((e - s == 7) & (u8[s] == ord("s")))
    for r in cand.tolist():
        a, b = table.start[r], table.end[r]
        if tuple(table.data[x:y] for x, y in zip(a.tolist(), b.tolist(), strict=True)) == HEADER:
            i = int(table.line[r])
            line_start = table.data.rfind(b"\n", 0, int(a[0])) + 1
            line_end = table.data.find(b"\n", int(a[0]))
            _fail(table.data, line_start, line_end, i, table.where,
                  "a header line (subject, relation, object) is only allowed on the first "
                  "line")


def _fail(data: bytes, a, b, lineno: int, where: str, what: str):
    line = data[int(a) : int(b)].decode("utf-8", errors="replace").rstrip("\r")
    raise InputError(f"{where}:{lineno}: {what}: {_shorten(line)!r}")
