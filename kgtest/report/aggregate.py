"""Rates with intervals, the excess over a control, and the floors beside them.

:func:`aggregate` turns tidy rows (:mod:`kgtest.records`) into one line per
(variant, probe, setting):

- ``rate``: the fraction of **gated-in** facts answered correctly (docs/science.md: only
  targets the original knew count), ``k`` of ``n`` (``k/n`` is printed in every cell),
  with a 95% interval ``lo``, ``hi``;
- ``excess``: ``rate(variant) - rate(control)`` (``filter`` by default) on the same facts,
  with a paired interval: the headline **excess re-derivation**;
- the floors (docs/science.md, "Floors"): ``floor`` is the mean per-target most-frequent-object
  rate (the ``floor`` column of the rows), ``floor_never`` the never-trained model's rate
  on the same probe and setting (same treatment, attack included), with its ``k/n``;
- ``n_in``, ``n_out``, ``n_na``: facts gated in, gated out, and not applicable;
  ``rate_all``: the rate over every applicable fact, gated or not; ``chance``;
  ``mean_score`` (for ``utility_loss``, where ``correct`` is None, the interval is on it);
  ``n_broken``: CoT answers that are right but whose chain does not verify.

Intervals (docs/science.md, "Intervals"):

- one run: the **Wilson** score interval of ``k/n`` (:func:`wilson`), never zero width at
  ``0/n`` or ``n/n``; the excess: **Newcombe's** paired-difference interval built from
  Wilson intervals (:func:`newcombe_paired`);
- several runs (seeds): the **two-level bootstrap** (:func:`bootstrap`: seeds, then facts
  within each drawn seed; paired for the excess). Where every value is equal the bootstrap
  has zero width; the interval then falls back to Wilson/Newcombe on the pooled counts.

CoT rows yield two lines: ``cot`` counts an answer only if its chain verifies
(:func:`kgtest.probes.probes.verify_chain`), ``cot_answer`` (the row's ``answer_correct``)
counts the answer alone. For the attack-grid probes (:data:`ATTACKS`: relearn), a
``setting = "worst"`` line per variant repeats the grid point with the highest recovery
(docs/science.md: report the worst case over the attack grid).

Examples
--------
>>> from kgtest.records import new_row
>>> rows = [new_row(run_id="r", variant=v, probe="direct", fact=f, correct=c, gated_in=True)
...         for v, cs in (("filter", [1, 0, 0, 0]), ("NPO", [1, 1, 1, 0]))
...         for f, c in enumerate(cs)]
>>> t = {r["variant"]: r for r in aggregate(rows, n_boot=200)}
>>> t["NPO"]["rate"], t["NPO"]["k"], t["NPO"]["n_in"], t["NPO"]["excess"]
(0.75, 3, 4, 0.5)
>>> round(t["filter"]["lo"], 3), round(t["filter"]["hi"], 3)  # Wilson 95% of 1/4
(0.046, 0.699)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from kgtest.report.tables import ATTACKS, CONTROLS, UTILITY

__all__ = ["wilson", "newcombe_paired", "bootstrap", "aggregate", "aggregate_by", "rate",
           "difference", "Rate", "CONTROLS",
           "ATTACKS", "UTILITY", "COT_PROBES"]

#: Probe -> the answer-only line derived from its rows.
COT_PROBES = {"cot": "cot_answer"}


def _z(level: float) -> float:
    return NormalDist().inv_cdf(1 - (1 - level) / 2)


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k / n``.

    Unlike the percentile bootstrap or the Wald interval, it has positive width at
    ``0 / n`` and ``n / n`` (for ``n >= 1``) and stays inside ``[0, 1]``.

    Parameters
    ----------
    k, n : int
        Successes and trials (``0 <= k <= n``); ``n = 0`` gives ``(nan, nan)``.
    level : float
        Coverage.

    Examples
    --------
    >>> [round(x, 3) for x in wilson(0, 10)]
    [0.0, 0.278]
    >>> [round(x, 3) for x in wilson(10, 10)]
    [0.722, 1.0]
    """
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= k <= n:
        raise ValueError(f"wilson: need 0 <= k <= n, got k={k}, n={n}")
    z = _z(level)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 (k = n) the bound is exactly 0 (1); keep it so despite rounding
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def newcombe_paired(pairs: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Difference of two paired proportions with Newcombe's interval (1998, method 10).

    Parameters
    ----------
    pairs : array, shape (n, 2)
        Per fact, the 0/1 outcome of the variant (column 0) and of the control (column 1).

    Returns
    -------
    (estimate, lo, hi)
        ``mean(col 0) - mean(col 1)``; the interval combines the two Wilson intervals with
        the phi correlation of the pairs, so it has positive width even when both columns
        are all 0 or all 1. NaNs for no pairs.

    Examples
    --------
    >>> est, lo, hi = newcombe_paired(np.zeros((10, 2)))
    >>> est, round(lo, 3), round(hi, 3)
    (0.0, -0.278, 0.278)
    >>> est, lo, hi = newcombe_paired(np.array([[1, 0]] * 8 + [[1, 1]] * 2))
    >>> est, bool(0 < lo < est < hi <= 1)
    (0.8, True)
    """
    p = np.asarray(pairs, dtype=float).reshape(-1, 2)
    n = len(p)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    x, y = p[:, 0] > 0.5, p[:, 1] > 0.5
    a, b = int((x & y).sum()), int((x & ~y).sum())
    c, d = int((~x & y).sum()), int((~x & ~y).sum())
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, level)
    l2, u2 = wilson(a + c, n, level)
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    # phi with Newcombe's continuity correction (without it, perfectly concordant pairs
    # at p = 0.5 would give a zero-width interval)
    ad_bc = a * d - b * c
    corrected = max(ad_bc - n / 2, 0) if ad_bc > 0 else min(ad_bc + n / 2, 0)
    phi = 0.0 if denom == 0 else corrected / math.sqrt(denom)
    dl = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0))
    du = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0))
    est = p1 - p2
    return est, max(-1.0, est - dl), min(1.0, est + du)


def bootstrap(groups: Sequence[np.ndarray], *, n_boot: int = 2000, seed: int = 0,
              level: float = 0.95) -> tuple[float, float, float]:
    """Mean over groups of group means, with a two-level percentile bootstrap interval.

    Parameters
    ----------
    groups : sequence of arrays
        One array per seed (run): ``(n_g,)`` values, or ``(n_g, 2)`` paired values whose
        difference (column 0 minus column 1) is the statistic. Empty groups are dropped.
    n_boot, seed, level
        Replicates, their seed, and the interval's coverage.

    Returns
    -------
    (estimate, lo, hi)
        NaNs when no group has a value. Each replicate draws runs with replacement, then
        facts within each drawn run, so seed-to-seed and fact-to-fact variance both count.

    Examples
    --------
    >>> est, lo, hi = bootstrap([np.array([1, 0, 1, 1, 0, 1, 1, 1])], n_boot=500)
    >>> est, bool(lo < est < hi)
    (0.75, True)
    """
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return float("nan"), float("nan"), float("nan")
    paired = groups[0].ndim == 2

    def stat(g):  # (..., n) or (..., n, 2) -> (...)
        m = g.mean(-2) if paired else g.mean(-1)
        return m[..., 0] - m[..., 1] if paired else m

    est = float(np.mean([stat(g) for g in groups]))
    rng = np.random.default_rng(seed)
    G = len(groups)
    pick = rng.integers(0, G, size=(n_boot, G))  # (B, G): runs drawn per replicate
    reps = np.zeros((n_boot, G))
    for g, vals in enumerate(groups):
        slots = pick == g  # (B, G): where run g was drawn
        k = int(slots.sum())
        if k:
            idx = rng.integers(0, len(vals), size=(k, len(vals)))  # (k, n_g): facts drawn
            reps[slots] = stat(vals[idx])
    boot = reps.mean(1)  # (B,)
    a = (1 - level) / 2
    lo, hi = np.quantile(boot, [a, 1 - a])
    return est, float(lo), float(hi)


def _value(r: dict) -> float | None:
    if not r["applicable"]:
        return None
    if r["correct"] is not None:
        return float(r["correct"])
    return r["score"]


def _rate_interval(gated: list[dict], metric: str, n_boot: int, seed: int, level: float
                   ) -> tuple[float, float, float, str]:
    """(estimate, lo, hi, method) for one cell: Wilson (one run) or the bootstrap."""
    values = [np.array(list(g.values())) for g in gated]
    k = int(sum(v.sum() for v in values)) if metric == "rate" else 0
    n = sum(len(v) for v in values)
    live = [v for v in values if len(v)]
    if metric == "rate" and len(live) == 1:
        return (k / n, *wilson(k, n, level), "wilson")
    est, lo, hi = bootstrap(values, n_boot=n_boot, seed=seed, level=level)
    if metric == "rate" and n and lo == hi:  # no spread in the sample: the pooled Wilson
        return (est, *wilson(k, n, level), "wilson (pooled)")
    return est, lo, hi, "bootstrap"


def _excess_interval(pairs: list[np.ndarray], metric: str, n_boot: int, seed: int,
                     level: float) -> tuple[float, float, float]:
    live = [p for p in pairs if len(p)]
    if metric == "rate" and len(live) == 1:
        return newcombe_paired(live[0], level)
    est, lo, hi = bootstrap(pairs, n_boot=n_boot, seed=seed, level=level)
    if metric == "rate" and live and lo == hi:
        _, lo, hi = newcombe_paired(np.concatenate(live), level)
    return est, lo, hi


def _with_answer_lines(records: Sequence[dict]) -> list[dict]:
    """The records plus one answer-only row per CoT row (probe ``cot_answer``)."""
    extra = [{**r, "probe": COT_PROBES[r["probe"]], "correct": r["answer_correct"]}
             for r in records if r["probe"] in COT_PROBES and r.get("answer_correct") is not None]
    return list(records) + extra


def aggregate(records: Sequence[dict], *, control: str = "filter", n_boot: int = 2000,
              seed: int = 0, level: float = 0.95) -> list[dict]:
    """Rates per (variant, probe, setting) with intervals, floors and the excess over ``control``.

    Returns
    -------
    list of dict
        Keys: ``variant probe setting metric rate lo hi interval k n_in excess excess_lo
        excess_hi n_out n_na rate_all chance floor floor_never floor_never_k floor_never_n
        n_broken mean_score n_runs worst_of`` (``metric`` is ``rate``, or ``score`` for
        probes without a correctness bit; ``interval`` names the method).
    """
    cells: dict[tuple, dict] = defaultdict(lambda: defaultdict(dict))  # key -> run -> fact
    for r in _with_answer_lines(records):
        cells[(r["variant"], r["probe"], r["setting"] or "")][r["run_id"]][r["fact"]] = r
    out = []
    for (variant, probe, setting), runs in cells.items():
        rows = [r for run in runs.values() for r in run.values()]
        vals = [_value(r) for r in rows]
        metric = "rate" if any(r["correct"] is not None for r in rows) else "score"
        gated = [{f: _value(r) for f, r in run.items() if r["gated_in"] and _value(r) is not None}
                 for run in runs.values()]
        est, lo, hi, how = _rate_interval(gated, metric, n_boot, seed, level)
        ex = (float("nan"),) * 3
        ctrl = cells.get((control, probe, setting))
        if ctrl is not None and variant != control:
            pairs = []
            for run_id, run in runs.items():
                c = ctrl.get(run_id, {})
                both = [(_value(run[f]), _value(c[f])) for f in run if f in c
                        and run[f]["gated_in"] and c[f]["gated_in"]
                        and _value(run[f]) is not None and _value(c[f]) is not None]
                pairs.append(np.array(both).reshape(-1, 2))
            ex = _excess_interval(pairs, metric, n_boot, seed, level)
        counted = [r for run in runs.values() for r in run.values()
                   if r["gated_in"] and _value(r) is not None]
        scores = [r["score"] for r in rows if r["score"] is not None and r["applicable"]]
        chances = [r["chance"] for r in rows if r["chance"] is not None]
        floors = [r["floor"] for r in counted if r.get("floor") is not None]
        applicable = [v for v in vals if v is not None]
        out.append({
            "variant": variant, "probe": probe, "setting": setting, "metric": metric,
            "rate": est, "lo": lo, "hi": hi, "interval": how,
            "k": int(sum(v for g in gated for v in g.values())) if metric == "rate" else None,
            "excess": ex[0], "excess_lo": ex[1], "excess_hi": ex[2],
            "n_in": sum(len(g) for g in gated),
            "n_out": sum(1 for r in rows if r["applicable"] and not r["gated_in"]),
            "n_na": sum(1 for r in rows if not r["applicable"]),
            "rate_all": float(np.mean(applicable)) if applicable else float("nan"),
            "chance": float(np.mean(chances)) if chances else float("nan"),
            "floor": float(np.mean(floors)) if floors else float("nan"),
            "n_broken": sum(1 for r in counted if r.get("answer_correct") and not r["correct"]
                            ) if probe in COT_PROBES else None,
            "mean_score": float(np.mean(scores)) if scores else float("nan"),
            "n_runs": len(runs), "worst_of": "",
        })
    _add_worst(out)
    _add_never_floor(out)
    order = {v: i for i, v in enumerate(CONTROLS)}
    out.sort(key=lambda a: (order.get(a["variant"], len(order)), a["variant"], a["probe"],
                            a["setting"]))
    return out


def _add_worst(out: list[dict]) -> None:
    """A ``worst`` line per (variant, attack probe): the grid point with the highest rate."""
    for variant, probe in {(a["variant"], a["probe"]) for a in out if a["probe"] in ATTACKS}:
        grid = [a for a in out if a["variant"] == variant and a["probe"] == probe]
        best = max(grid, key=lambda a: -1.0 if np.isnan(a["rate"]) else a["rate"])
        out.append({**best, "setting": "worst", "worst_of": best["setting"]})


def _add_never_floor(out: list[dict]) -> None:
    """Beside every line, the never-trained model's rate on the same probe and setting."""
    never = {(a["probe"], a["setting"]): a for a in out if a["variant"] == "never_trained"}
    for a in out:
        nt = never.get((a["probe"], a["setting"]))
        a["floor_never"] = nt["rate"] if nt else float("nan")
        a["floor_never_k"] = nt["k"] if nt else None
        a["floor_never_n"] = nt["n_in"] if nt else None


def aggregate_by(records: Sequence[dict], by: str | Sequence[str] = "trained", *,
                 variant: str = "original", n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> list[dict]:
    """One variant's rate over **every** applicable fact (gated or not), per probe,
    setting and value of the column ``by`` (several columns: ``value`` is a tuple).

    The gate is what :func:`aggregate` counts by; this cut ignores it, so it answers what
    the original model itself knows: QA on subjects whose QA was never trained
    (``by="trained"``: ``statement`` vs ``statement+qa``), inverse questions on facts
    stated only forward, two-hop questions on held-out facts. Intervals as in
    :func:`aggregate` (Wilson for one run, else the two-level bootstrap).

    Returns
    -------
    list of dict
        Keys ``probe setting value rate lo hi interval k n chance floor n_runs``, sorted.

    Examples
    --------
    >>> from kgtest.records import new_row
    >>> rows = [new_row(run_id="r", variant="original", probe="direct", fact=f, correct=f < 3,
    ...                 trained="statement+qa" if f < 4 else "statement", chance=0.1)
    ...         for f in range(8)]
    >>> [(a["value"], a["k"], a["n"]) for a in aggregate_by(rows, n_boot=100)]
    [('statement', 0, 4), ('statement+qa', 3, 4)]
    >>> aggregate_by(rows, ("trained", "tags"), n_boot=100)[0]["value"]
    ('statement', '')
    """
    cells: dict[tuple, dict] = defaultdict(lambda: defaultdict(dict))  # key -> run -> fact
    for r in _with_answer_lines(records):
        if r["variant"] == variant and _value(r) is not None and r["correct"] is not None:
            value = (str(r.get(by)) if isinstance(by, str)
                     else tuple(str(r.get(b)) for b in by))
            key = (r["probe"], r["setting"] or "", value)
            cells[key][r["run_id"]][r["fact"]] = r
    out = []
    for (probe, setting, value), runs in sorted(cells.items()):
        groups = [{f: _value(r) for f, r in run.items()} for run in runs.values()]
        est, lo, hi, how = _rate_interval(groups, "rate", n_boot, seed, level)
        rows = [r for run in runs.values() for r in run.values()]
        chances = [r["chance"] for r in rows if r["chance"] is not None]
        floors = [r["floor"] for r in rows if r.get("floor") is not None]
        out.append({"probe": probe, "setting": setting, "value": value, "rate": est,
                    "lo": lo, "hi": hi, "interval": how,
                    "k": int(sum(v for g in groups for v in g.values())),
                    "n": sum(len(g) for g in groups),
                    "chance": float(np.mean(chances)) if chances else float("nan"),
                    "floor": float(np.mean(floors)) if floors else float("nan"),
                    "n_runs": len(runs)})
    return out


# --- one cell of the records, for model-level claims (kgtest.claims_model) ---------------------


class Rate(NamedTuple):
    """A rate (or a difference of rates) over facts, with its bootstrap interval.

    ``n`` counts the facts it is over (gated in, applicable); ``chance`` is the mean
    ``1 / n_candidates`` of those facts (NaN for a difference). ``estimate`` is NaN when
    ``n`` is 0.
    """

    estimate: float
    lo: float
    hi: float
    n: int
    chance: float

    def __str__(self) -> str:
        return (f"{self.estimate:.3f} [{self.lo:.3f}, {self.hi:.3f}] over {self.n} facts "
                f"(chance {self.chance:.3f})")


def _select(records, variant: str, probe: str, setting: str, facts) -> list[dict]:
    keep = None if facts is None else {int(f) for f in facts}
    return [r for r in records if r["variant"] == variant and r["probe"] == probe
            and (r["setting"] or "") == setting and (keep is None or r["fact"] in keep)]


def rate(records: Sequence[dict], *, variant: str, probe: str, setting: str = "",
         gated: bool = True, facts=None, n_boot: int = 2000, seed: int = 0,
         level: float = 0.95) -> Rate:
    """The fraction of facts ``variant`` answers correctly under ``probe``, with an interval.

    The number :func:`aggregate` reports (its ``rate``, ``lo``, ``hi``,
    ``n_in``): over gated-in applicable facts (the original knew them), pooled over runs
    by the two-level bootstrap. ``gated=False`` counts every applicable fact instead.

    Parameters
    ----------
    records : sequence of dict
        Tidy rows (:func:`kgtest.claims_model.model_records`, :func:`kgtest.records.read_records`).
    variant, probe, setting : str
        Which cell (``setting`` ``""`` for the plain probes).
    gated : bool
        Only facts the original knew (the docs/science.md rule), or all.
    facts : iterable of int, optional
        Restrict to these fact ids.
    n_boot, seed, level
        Bootstrap replicates, seed and coverage.

    Examples
    --------
    >>> from kgtest.records import new_row
    >>> rows = [new_row(run_id="r", variant="filter", probe="cot", fact=f, correct=c,
    ...                 gated_in=g, chance=0.1) for f, (c, g) in
    ...         enumerate([(1, 1), (1, 1), (1, 1), (0, 1), (1, 0)])]
    >>> r = rate(rows, variant="filter", probe="cot", n_boot=500)
    >>> r.estimate, r.n, r.chance, bool(r.lo > r.chance)
    (0.75, 4, 0.1, True)
    >>> rate(rows, variant="filter", probe="cot", gated=False).estimate
    0.8
    """
    rows = _select(records, variant, probe, setting, facts)
    if not gated:
        rows = [dict(r, gated_in=True) for r in rows]
    counted = [r for r in rows if r["gated_in"] and r["applicable"]
               and r["correct"] is not None]
    chance = [r["chance"] for r in counted if r["chance"] is not None]
    agg = aggregate(rows, n_boot=n_boot, seed=seed, level=level) if rows else []
    cell = next((a for a in agg if a["setting"] == setting), None)
    if cell is None or cell["n_in"] == 0:
        nan = float("nan")
        return Rate(nan, nan, nan, 0, float(np.mean(chance)) if chance else nan)
    return Rate(cell["rate"], cell["lo"], cell["hi"], int(cell["n_in"]),
                float(np.mean(chance)) if chance else float("nan"))


def difference(records: Sequence[dict], a: tuple[str, str], b: tuple[str, str], *,
               setting: str = "", facts=None, n_boot: int = 2000, seed: int = 0,
               level: float = 0.95) -> Rate:
    """Paired ``rate(a) - rate(b)`` over the facts gated in for both, with an interval.

    ``a`` and ``b`` are ``(variant, probe)`` cells; the difference is per fact, over the
    facts both ask (applicable and gated in, in the same run), so it compares the same
    targets, as :func:`aggregate`'s excess does; the interval is the paired
    two-level bootstrap of :func:`bootstrap`.

    Examples
    --------
    >>> from kgtest.records import new_row
    >>> rows = [new_row(run_id="r", variant="NPO", probe=p, fact=f, correct=c, gated_in=True)
    ...         for p, cs in (("cot", [1, 1, 0, 1]), ("direct", [0, 0, 0, 1]))
    ...         for f, c in enumerate(cs)]
    >>> d = difference(rows, ("NPO", "cot"), ("NPO", "direct"), n_boot=500)
    >>> d.estimate, d.n
    (0.5, 4)
    """
    def cell(v, p):
        out: dict[str, dict[int, float]] = {}
        for r in _select(records, v, p, setting, facts):
            if r["gated_in"] and r["applicable"] and r["correct"] is not None:
                out.setdefault(r["run_id"], {})[r["fact"]] = float(r["correct"])
        return out

    ca, cb = cell(*a), cell(*b)
    groups = []
    for run_id, fa in ca.items():
        fb = cb.get(run_id, {})
        both = sorted(set(fa) & set(fb))
        groups.append(np.array([(fa[f], fb[f]) for f in both]).reshape(-1, 2))
    n = sum(len(g) for g in groups)
    est, lo, hi = bootstrap(groups, n_boot=n_boot, seed=seed, level=level)
    return Rate(est, lo, hi, n, float("nan"))
