"""draw_world's arrows: matplotlib's FancyArrowPatch geometry, computed for many at once."""

from __future__ import annotations

import numpy as np
import pytest

from kgtest.worlds.arrows import arc_arrows, arc_points


def _axes():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set(xlim=(-1, 3), ylim=(-2, 2))
    return fig, ax


@pytest.mark.parametrize("width, shrink", [(1.4, 15.0), (2.4, 6.0)])
def test_arrows_match_fancy_arrow_patches(width, shrink):
    """Shaft and head of each arrow are those of the FancyArrowPatch networkx would draw
    (to 0.05 pixel), bends left, right and none, long arrows and short ones."""
    from matplotlib.patches import FancyArrowPatch

    rng = np.random.default_rng(0)
    starts, ends = rng.uniform(-1, 3, (12, 2)), rng.uniform(-1, 3, (12, 2))
    starts[:, 1] -= 1
    ends[:, 1] -= 1
    rads = np.tile([0.0, 0.18, -0.3, 0.43], 3)
    fig, ax = _axes()
    mid = arc_arrows(ax, starts, ends, rads, shrink=shrink, head=14, width=width,
                     color="black", style="dashed")
    patches = [ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", shrinkA=shrink,
                                            shrinkB=shrink, mutation_scale=14,
                                            linewidth=width,
                                            connectionstyle=f"arc3,rad={r}"))
               for a, b, r in zip(starts, ends, rads, strict=True)]
    fig.canvas.draw()  # sets the patches' points-to-pixels scale
    px = ax.transData.transform
    shafts, heads = (c.get_paths() for c in ax.collections)
    for i, p in enumerate(patches):
        want = px(p.get_path().vertices)  # shaft (3 vertices), then head (4, closed)
        assert np.abs(px(shafts[i].vertices) - want[:3]).max() < 0.05
        assert np.abs(px(heads[i].vertices[:3]) - want[3:6]).max() < 0.05
    assert mid.shape == (12, 2) and np.isfinite(mid).all()
    assert ax.get_xlim() == (-1, 3) and ax.get_ylim() == (-2, 2)  # limits untouched


def test_arc_points_cover_the_bulge():
    fig, ax = _axes()
    pts = arc_points(ax, np.array([[0.0, 0.0]]), np.array([[2.0, 0.0]]), np.array([0.4]))
    assert pts.shape == (9, 2) and pts[:, 1].min() < -0.1  # bent below A -> B
    assert np.allclose(pts[[0, -1]], [[0, 0], [2, 0]])
