"""How the report's tables name and order things: column ids, headers, cells, variants.

Columns follow the probe registry (:mod:`kgtest.probes.registry`); variants put the
original and the controls (:data:`CONTROLS`) first.

Examples
--------
>>> a = {"probe": "relearn", "setting": "worst", "metric": "rate", "rate": 0.5, "lo": 0.1,
...      "hi": 0.9, "k": 1, "n_in": 2}
>>> label(a), cell_text(a)
('relearn[worst]', '0.50 [0.10, 0.90] 1/2')
>>> order(["NPO", "filter", "original"])
['original', 'filter', 'NPO']
"""

from __future__ import annotations

import numpy as np

from kgtest.probes.registry import column_order, columns_of, grid_columns
from kgtest.unlearn.config import CONTROLS as _BUILT

__all__ = ["CONTROLS", "ATTACKS", "UTILITY", "DISPLAY", "PROBE_ORDER", "label", "head",
           "fmt", "cell_text", "table", "order", "columns", "name"]

#: The reference variants, in table order: the original, then the controls a run builds
#: (:data:`kgtest.unlearn.config.CONTROLS`).
CONTROLS = ("original", *_BUILT)
#: Attack probes whose settings are a grid: the tables show the worst case (registry).
ATTACKS = grid_columns()
#: The utility columns (the probes of kind ``utility`` in the registry).
UTILITY = columns_of("utility")

#: Column id -> what a table header says (the definitions of docs/science.md, "Probes").
DISPLAY = {
    "cot": "cot (verified chain)", "cot_answer": "cot (answer only)",
    "latent": "latent (targets never stated)", "implied": "implied (held-out facts)",
}

#: Column (a row's ``probe`` value) -> its place in the tables: the probe registry's order
#: (:func:`kgtest.probes.registry.column_order`); columns no probe declares go last.
PROBE_ORDER = {p: i for i, p in enumerate(column_order())}


def label(a: dict) -> str:
    """A line's column id: ``probe`` or ``probe[setting]``."""
    return a["probe"] if not a["setting"] else f"{a['probe']}[{a['setting']}]"


def head(col: str) -> str:
    """A column id as a table header says it (:data:`DISPLAY`)."""
    probe, _, rest = col.partition("[")
    return DISPLAY.get(probe, probe) + (f" [{rest}" if rest else "")


def fmt(x, lo, hi, sign: bool = False) -> str:
    """``x [lo, hi]`` with two decimals (``–`` for a missing value)."""
    if x is None or np.isnan(x):
        return "–"
    f = "{:+.2f}" if sign else "{:.2f}"
    return f"{f.format(x)} [{f.format(lo)}, {f.format(hi)}]"


def cell_text(a: dict) -> str:
    """``rate [lo, hi] k/n`` (or ``score [lo, hi]`` for score lines)."""
    text = fmt(a["rate"], a["lo"], a["hi"])
    if a["metric"] == "rate" and a["n_in"]:
        text += f" {a['k']}/{a['n_in']}"
    return text


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def order(variants) -> list[str]:
    """Distinct variants, controls first (in :data:`CONTROLS` order), then by name."""
    rank = {v: i for i, v in enumerate(CONTROLS)}
    return sorted(set(variants), key=lambda v: (rank.get(v, len(rank)), v))


def columns(agg: list[dict], utility: bool) -> list[str]:
    """Column ids of the main (or utility) table; attacks only as their worst case."""
    cols = [label(a) for a in agg if (a["probe"] in UTILITY) == utility
            and not (a["probe"] in ATTACKS and a["setting"] != "worst")]
    return list(dict.fromkeys(sorted(cols, key=lambda c: (PROBE_ORDER.get(c.split("[")[0], 99),
                                                          c))))


def name(v: str) -> str:
    """A variant as the tables name it: controls marked ``(control)``."""
    return f"{v} (control)" if v in CONTROLS else v


def target_rows(records) -> list[dict]:
    """Rows about forget targets (not the utility probe's or held-out facts')."""
    return [r for r in records if r["split"] == "forget" and r["probe"] not in UTILITY
            and r["probe"] != "implied"]
