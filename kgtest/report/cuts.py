"""Report cuts: the forget targets' rates by proof count and by entity frequency, the
collateral on the targets' neighbours, and the minimal deletion sets behind deep unlearning.

:func:`cuts_markdown` adds these sections to ``summary.md`` (:func:`kgtest.report.report`),
each only when its data is there:

- **By proof count** (claim 1, ``experiments/interconnectedness.toml``): for every probe
  on the forget targets, the rate ``rate [95% interval] k/n`` per proof count (the
  ``proofs`` column), then the excess over the control per proof count; only when the
  targets differ in proof count.
- **By entity frequency** (claim 2, ``experiments/tail.toml``): the same per bin of
  ``entity_freq`` (training documents mentioning the target's rarer entity), in powers of
  two (``1``, ``2–3``, ``4–7``, ...); only when the targets span a 4x range of
  frequencies or more (two bins at least one bin apart: two neighbouring bins of a world
  without a frequency skew, such as the quickstart's ``16–31`` and ``32–63``, are noise).
- **Collateral on neighbours**: the utility probe's retained facts (``utility_direct``)
  split into *neighbours* (a fact sharing its subject or object with a forget target of
  the same run) and the others, with the excess over the control: below 0, the variant
  lost more of them than exact unlearning (retraining without the targets) did.
- **Minimal deletion sets** (after the proof count): :func:`kgtest.report.runs.deletion_section`.
- **By domain** (claim 3, dual use, :func:`cut_sections`), when the rows name more than one
  world domain: every rate of the main and utility tables recomputed on the facts of each
  domain (:func:`domain_section`), then the utility probes restricted to facts of the
  forget targets' relations (a rule's applications in each domain: what forgetting it in
  one domain leaves, or breaks, in the other). Then the stability over the tuning grid
  (:func:`kgtest.report.runs.stability_section`).

Intervals are the report's (:func:`kgtest.report.aggregate.aggregate`: Wilson or Newcombe for
one run, the two-level bootstrap over runs then facts for several), computed on each
group's rows alone.

Examples
--------
>>> from kgtest.records import new_row
>>> rows = [new_row(run_id="r", variant=v, probe="direct", fact=f, correct=f < 3,
...                 gated_in=True, split="forget", proofs=1 + f // 3, entity_freq=3)
...         for v in ("original", "filter") for f in range(6)]
>>> md = cuts_markdown(rows, [], n_boot=100)
>>> print(md[md.index("| variant"):].split("\\n\\n")[0])
| variant | k = 1 | k = 2 |
|---|---|---|
| original (control) | 1.00 [0.44, 1.00] 3/3 | 0.00 [0.00, 0.56] 0/3 |
| filter (control) | 1.00 [0.44, 1.00] 3/3 | 0.00 [0.00, 0.56] 0/3 |
>>> freq_bin(1), freq_bin(5), freq_bin(16)
('1', '4–7', '16–31')
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from kgtest.report.aggregate import aggregate
from kgtest.report.runs import deletion_section, stability_section
from kgtest.report.tables import (
    PROBE_ORDER,
    cell_text,
    columns,
    fmt,
    head,
    label,
    name,
    order,
    table,
    target_rows,
)

__all__ = ["cuts_markdown", "cut_sections", "freq_bin", "neighbour_facts", "domain_section",
           "by_domain", "grouped",
           "aggregate_groups"]


def freq_bin(n: int | None) -> str:
    """The power-of-two bin of an entity frequency: ``0``, ``1``, ``2–3``, ``4–7``, ...

    >>> [freq_bin(n) for n in (0, 2, 3, 8)]
    ['0', '2–3', '2–3', '8–15']
    """
    if n is None or n <= 0:
        return "0"
    lo = 1 << (int(n).bit_length() - 1)
    return "1" if lo == 1 else f"{lo}–{2 * lo - 1}"


def _bin_key(label: str) -> int:
    return int(label.split("–")[0])


def aggregate_groups(groups: dict[str, list[dict]], *, control: str, n_boot: int, seed: int
                     ) -> tuple[dict, list[str], list[str]]:
    """Each group's rows aggregated alone: ``{(variant, group, column): line}``, and the
    main and utility tables' columns found, in the report's order."""
    by, main, util = {}, [], []
    for g, rows in groups.items():
        agg = aggregate(rows, control=control, n_boot=n_boot, seed=seed)
        by.update({(a["variant"], g, label(a)): a for a in agg})
        main += columns(agg, utility=False)
        util += columns(agg, utility=True)
    return by, list(dict.fromkeys(main)), list(dict.fromkeys(util))


def _grouped_tables(groups: dict[str, list[dict]], what: str, *, utility: bool,
                    control: str, n_boot: int, seed: int) -> list[str]:
    """One rate table and one excess table per probe column: variants x groups."""
    found, main, util = aggregate_groups(groups, control=control, n_boot=n_boot, seed=seed)
    by = {(v, c, g): a for (v, g, c), a in found.items()}
    cols, variants = util if utility else main, order(k[0] for k in found)
    md = []
    for c in dict.fromkeys(cols):
        header = ["variant"] + [f"{what} {g}".strip() for g in groups]
        body = [[name(v)] + [cell_text(by[v, c, g]) if (v, c, g) in by else ""
                              for g in groups] for v in variants]
        md += [f"**{head(c)}**", "", table(header, body), ""]
        body = [[name(v)] + [fmt(by[v, c, g]["excess"], by[v, c, g]["excess_lo"],
                                   by[v, c, g]["excess_hi"], sign=True)
                              if (v, c, g) in by else "" for g in groups]
                for v in variants if v != control]
        if any(x for row in body for x in row[1:] if x not in ("", "–")):
            md += [f"*{head(c)}: excess over the {control} control*", "",
                   table(header, body), ""]
    return md


def grouped(rows: Sequence[dict], key: Callable[[dict], str], sort) -> dict[str, list[dict]]:
    """Rows by ``key(row)``, the groups sorted by ``sort(key)``."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        out[key(r)].append(r)
    return {k: out[k] for k in sorted(out, key=sort)}


def _cut_section(title: str, intro: str, groups: dict[str, list[dict]], what: str, *,
                 utility: bool, control: str, n_boot: int, seed: int) -> list[str]:
    """A ``## title`` section: the intro, then :func:`_grouped_tables` of the groups."""
    return [f"## {title}", "", intro, ""] + _grouped_tables(
        groups, what, utility=utility, control=control, n_boot=n_boot, seed=seed)


def _proof_section(records, control, n_boot, seed) -> list[str]:
    rows = [r for r in target_rows(records) if r["proofs"] is not None]
    if len({r["proofs"] for r in rows}) < 2:
        return []
    return _cut_section(
        "By proof count",
        "Forget targets grouped by proof count k (distinct one-step derivations): per "
        "probe, `rate [95% interval] k/n` among gated-in targets with k proofs, then the "
        f"excess over the {control} control on the same targets. Relearn: the worst "
        "grid point of each group.", grouped(rows, lambda r: str(r["proofs"]), int), "k =",
        utility=False, control=control, n_boot=n_boot, seed=seed)


def _frequency_section(records, control, n_boot, seed) -> list[str]:
    rows = target_rows(records)
    lows = {max(_bin_key(freq_bin(r["entity_freq"])), 1) for r in rows}
    if not lows or max(lows) < 4 * min(lows):
        return []
    return _cut_section(
        "By entity frequency",
        "Forget targets grouped by `entity_freq` (training documents mentioning the "
        "target's rarer entity), in powers of two: per probe, `rate [95% interval] k/n`, "
        f"then the excess over the {control} control.",
        grouped(rows, lambda r: freq_bin(r["entity_freq"]), _bin_key), "freq",
        utility=False, control=control, n_boot=n_boot, seed=seed)


def neighbour_facts(records: Sequence[dict]) -> dict[str, set[int]]:
    """Per run, the facts that share an entity with one of that run's forget targets.

    Read from the rows themselves: a target's entities are the ``subject`` and ``object``
    of its rows, a fact's those of its own rows. The targets are excluded.

    >>> from kgtest.records import new_row
    >>> rows = [new_row(run_id="r", fact=0, subject="a", object="b", split="forget"),
    ...         new_row(run_id="r", fact=1, subject="b", object="c", split="retain"),
    ...         new_row(run_id="r", fact=2, subject="c", object="d", split="retain")]
    >>> neighbour_facts(rows)
    {'r': {1}}
    """
    ents: dict[str, set[str]] = defaultdict(set)
    targets: dict[str, set[int]] = defaultdict(set)
    for r in records:
        if r["split"] == "forget":
            ents[r["run_id"]] |= {r["subject"], r["object"]}
            targets[r["run_id"]].add(r["fact"])
    out: dict[str, set[int]] = {run: set() for run in ents}
    for r in records:
        run = r["run_id"]
        if run in ents and r["fact"] not in targets[run] and (
                r["subject"] in ents[run] or r["object"] in ents[run]):
            out[run].add(r["fact"])
    return out


def _collateral_section(records, control, n_boot, seed) -> list[str]:
    rows = [r for r in records if r["probe"] == "utility_direct"]
    near = neighbour_facts(records)
    if not rows or not any(near.values()):
        return []
    groups = grouped(rows, lambda r: "neighbours" if r["fact"] in near.get(r["run_id"], ())
                     else "others", lambda g: g != "neighbours")
    return _cut_section(
        "Collateral on neighbours",
        "Retained facts the utility probe asks (`utility_direct`), split into "
        "*neighbours* (sharing a subject or object with a forget target of the same run) "
        f"and the others. Excess below 0: the variant lost more of them than the {control} "
        "control (retrained without the targets) did.", groups, "", utility=True,
        control=control, n_boot=n_boot, seed=seed)


def by_domain(records: Sequence[dict], domains: list[str], *, control: str, n_boot: int,
              seed: int) -> tuple[dict, list[str]]:
    """``(variant, domain, column) -> aggregate line``, and the columns in table order."""
    groups = {d: [r for r in records if r["domain"] == d] for d in domains}
    by, main, util = aggregate_groups(groups, control=control, n_boot=n_boot, seed=seed)
    # the main table's columns, then the utility table's, in the report's order
    cols = sorted(set(main + util),
                  key=lambda c: (c in util, PROBE_ORDER.get(c.split("[")[0], 99), c))
    return by, cols


def _domain_table(records: Sequence[dict], domains: list[str], cols: list[str] | None,
                  *, control: str, n_boot: int, seed: int) -> list[str]:
    """Rows (variant, domain), one column per probe, ``rate [lo, hi] k/n`` cells."""
    by, found = by_domain(records, domains, control=control, n_boot=n_boot, seed=seed)
    cols = found if cols is None else cols
    cols = [c for c in cols if any(k[2] == c for k in by)]
    body = [[v, d] + [cell_text(by[v, d, c]) if (v, d, c) in by else "" for c in cols]
            for v in order(k[0] for k in by) for d in domains
            if any((v, d, c) in by for c in cols)]
    return [table(["variant", "domain"] + cols, body)] if body else []


def domain_section(records: Sequence[dict], *, control: str = "filter", n_boot: int = 2000,
                   seed: int = 0) -> list[str]:
    """``summary.md`` lines: every rate cut by the facts' world domain (claim 3).

    Empty when the rows name fewer than two domains.

    Parameters
    ----------
    records : sequence of dict
        Tidy rows (:mod:`kgtest.records`), with their ``domain`` column.
    control, n_boot, seed
        As in :func:`kgtest.report.aggregate.aggregate`.

    Returns
    -------
    list of str
        Markdown lines: a table of (variant, domain) x probe, then the utility probes on
        facts of the forget targets' relations only (the targeted rule's applications).
    """
    domains = sorted({r["domain"] for r in records if r["domain"]})
    if len(domains) < 2:
        return []
    md = ["## By domain", "",
          "Every rate above recomputed on the facts of each world domain (a derived fact's "
          "domain is its premises'): on the forget targets, what is left in the targeted "
          "domain; on the utility probes, the collateral in each domain. "
          "`rate [95% interval] k/n`, intervals as in the main table.", ""]
    md += _domain_table(records, domains, None, control=control, n_boot=n_boot, seed=seed)
    rels = sorted({r["relation"] for r in records if r["split"] == "forget"})
    same = [r for r in records if r["probe"].startswith("utility_") and r["relation"] in rels]
    table = _domain_table(same, domains, ["utility_direct", "utility_cot", "utility_rule"],
                          control=control, n_boot=n_boot, seed=seed)
    if table:
        md += ["", "### Utility on the forget targets' relations, by domain", "",
               f"Retained facts of the targets' relations ({', '.join(rels)}) only: the "
               "same rule applied to other facts, in the targeted domain and in the other "
               "(for a derived relation, `utility_cot` asks its chain; `utility_direct` the "
               "stated fact).", ""] + table
    return md + [""]


def cuts_markdown(records: Sequence[dict], runs: Sequence[str | Path] = (), *,
                  control: str = "filter", n_boot: int = 2000, seed: int = 0) -> str:
    """The cut sections of ``summary.md`` ('' when no cut applies; module docstring).

    Parameters
    ----------
    records : sequence of dict
        Tidy rows (:mod:`kgtest.records`) of one or more runs.
    runs : sequence of paths
        The run folders, for the deletion sets in their ``unlearn.json``/``control.json``.
    control, n_boot, seed
        As for :func:`kgtest.report.aggregate.aggregate`.
    """
    md = (_proof_section(records, control, n_boot, seed)
          + deletion_section(records, [Path(r) for r in runs])
          + _frequency_section(records, control, n_boot, seed)
          + _collateral_section(records, control, n_boot, seed))
    return "\n".join(md) + ("\n" if md else "")


def cut_sections(records: Sequence[dict], run_dirs: Sequence[str | Path], *,
                 control: str = "filter", n_boot: int = 2000, seed: int = 0) -> list[str]:
    """Every section of this module that has data, as ``summary.md`` lines."""
    return (domain_section(records, control=control, n_boot=n_boot, seed=seed)
            + stability_section(run_dirs))
