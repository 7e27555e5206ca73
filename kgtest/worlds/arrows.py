"""Many curved arrows at once: the arrows of :func:`kgtest.worlds.export.draw_world`.

matplotlib draws a graph's arrows (as networkx does) with one ``FancyArrowPatch`` per
edge, and recomputes each arrow's geometry, clipped to the node circles by bisection on
its Bezier curve, every time the patch is asked for its path (for the data limits, for
the label's position, for drawing). Here the same geometry (an ``arc3`` connection,
shrunk at both ends, capped by a filled ``-|>`` head) is computed for all edges at once
with numpy and drawn as two collections, once the axes are laid out.

Examples
--------
>>> import matplotlib
>>> from matplotlib.figure import Figure
>>> ax = Figure().add_subplot()
>>> ax.set(xlim=(0, 2), ylim=(-1, 1))
[(0.0, 2.0), (-1.0, 1.0)]
>>> mid = arc_arrows(ax, np.array([[0.0, 0.0]]), np.array([[2.0, 0.0]]), np.array([0.2]),
...                  shrink=15, head=14, width=1.4, color="black", style="solid")
>>> len(ax.collections), mid.shape, bool(mid[0, 1] < 0)  # bent to the right of A -> B
(2, (1, 2), True)
"""

from __future__ import annotations

import numpy as np

__all__ = ["arc_arrows", "arc_points"]


def _control(a: np.ndarray, b: np.ndarray, rad: np.ndarray) -> np.ndarray:
    """``(E, 2)`` control points of matplotlib's ``arc3,rad=r`` from ``a`` to ``b`` (pixels)."""
    d = b - a
    return (a + b) / 2 + rad[:, None] * np.stack([d[:, 1], -d[:, 0]], axis=1)


def _bezier(a, c, b, t: np.ndarray) -> np.ndarray:
    """``(E, 2)`` points of the quadratic Beziers ``(a, c, b)`` at ``t`` ``(E,)``."""
    t = t[:, None]
    return (1 - t) ** 2 * a + 2 * t * (1 - t) * c + t**2 * b


def _bisect(f, lo: np.ndarray, hi: np.ndarray, steps: int = 40) -> np.ndarray:
    """``(E,)`` roots of ``f`` (vectorised) with ``f(lo) <= 0 < f(hi)``."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        below = f(mid) <= 0
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2


def _shrunk(a, b, rad, r: float):
    """The part of each arc outside the circles of radius ``r`` (pixels) around its ends,
    as Beziers ``(p0, p1, p2)`` (each ``(E, 2)``), as matplotlib's ``shrinkA``/``shrinkB``
    cut it (an end whose circle holds the whole arc is left uncut)."""
    c = _control(a, b, rad)
    n = len(a)
    cut_a = np.hypot(*(b - a).T) > r
    t0 = np.where(cut_a, _bisect(lambda t: np.hypot(*(_bezier(a, c, b, t) - a).T) - r,
                                 np.zeros(n), np.ones(n)), 0.0)
    cut_b = np.hypot(*(_bezier(a, c, b, t0) - b).T) > r
    t1 = np.where(cut_b, _bisect(lambda t: r - np.hypot(*(_bezier(a, c, b, t) - b).T),
                                 t0, np.ones(n)), 1.0)
    u0, u1 = t0[:, None], t1[:, None]
    p1 = (1 - u0) * (1 - u1) * a + ((1 - u0) * u1 + u0 * (1 - u1)) * c + u0 * u1 * b
    return _bezier(a, c, b, t0), p1, _bezier(a, c, b, t1)


def arc_points(ax, starts: np.ndarray, ends: np.ndarray, rad: np.ndarray,
               n: int = 9) -> np.ndarray:
    """``(E * n, 2)`` points along the (unshrunk) arcs, in data coordinates: what the
    arrows add to the data limits, so that a bent arrow is not cut off at the axes."""
    tr = ax.transData
    a, b = tr.transform(starts), tr.transform(ends)
    c = _control(a, b, rad)
    pts = [_bezier(a, c, b, np.full(len(a), t)) for t in np.linspace(0, 1, n)]
    return tr.inverted().transform(np.concatenate(pts)) if len(a) else np.zeros((0, 2))


def arc_arrows(ax, starts: np.ndarray, ends: np.ndarray, rad: np.ndarray, *, shrink: float,
               head: float, width: float, color, style: str, zorder: float = 1
               ) -> np.ndarray:
    """Draw arrows ``starts[i] -> ends[i]`` (data coordinates, ``(E, 2)``) on ``ax``.

    Each is matplotlib's ``FancyArrowPatch(start, end, arrowstyle="-|>",
    connectionstyle=f"arc3,rad={rad[i]}", shrinkA=shrink, shrinkB=shrink,
    mutation_scale=head, linewidth=width, linestyle=style, color=color)``, in the same
    geometry (sizes in points). The axes must be laid out (position and limits final):
    the arcs bend in pixels, as matplotlib's do. The collections do not change the data
    limits (:func:`arc_points` gives the points that should).

    Returns
    -------
    numpy.ndarray
        ``(E, 2)`` midpoints of the drawn arcs in data coordinates (where networkx puts
        an edge's label).
    """
    from matplotlib.collections import PathCollection
    from matplotlib.path import Path

    px = ax.figure.dpi / 72  # pixels per point
    tr = ax.transData
    p0, p1, p2 = _shrunk(tr.transform(starts), tr.transform(ends), rad, shrink * px)
    # the -|> head (matplotlib's ArrowStyle._Curve): tip at the end, pulled back by half
    # the line's projection so the stroke does not overshoot, sides along the tangent
    head_len, head_w, lw = 0.4 * head * px, 0.2 * head * px, width * px
    dist = np.hypot(head_len, head_w)
    cos_t, sin_t = head_len / dist, head_w / dist
    back = p1 - p2
    norm = np.hypot(*back.T)[:, None]
    back = back / np.where(norm == 0, 1.0, norm)
    tip = p2 + back * (0.5 * lw / sin_t)
    dx, dy = (back * dist).T
    side1 = tip + np.stack([cos_t * dx + sin_t * dy, -sin_t * dx + cos_t * dy], axis=1)
    side2 = tip + np.stack([cos_t * dx - sin_t * dy, sin_t * dx + cos_t * dy], axis=1)
    inv = tr.inverted()
    to_data = [inv.transform(p) if len(p) else p for p in (p0, p1, tip, side1, side2)]
    d0, d1, dtip, ds1, ds2 = to_data
    shafts = [Path([s, m, e], [Path.MOVETO, Path.CURVE3, Path.CURVE3])
              for s, m, e in zip(d0, d1, dtip, strict=True)]
    heads = [Path([s1, t, s2, t], [Path.MOVETO, Path.LINETO, Path.LINETO, Path.CLOSEPOLY])
             for s1, t, s2 in zip(ds1, dtip, ds2, strict=True)]
    common = dict(edgecolors=color, linewidths=width, linestyles=style, zorder=zorder,
                  capstyle="butt", joinstyle="miter", transform=tr)
    ax.add_collection(PathCollection(shafts, facecolors="none", **common), autolim=False)
    ax.add_collection(PathCollection(heads, facecolors=color, **common), autolim=False)
    mid = 0.25 * p0 + 0.5 * p1 + 0.25 * p2
    return inv.transform(mid) if len(mid) else np.zeros((0, 2))
