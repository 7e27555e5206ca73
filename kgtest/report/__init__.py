"""The report of one or more runs: ``summary.md``, ``summary.json`` and the plots.

:func:`report` re-aggregates any set of run folders and writes ``summary.md``,
``summary.json`` and ``plots/*.png`` into the output folder. ``summary.md`` opens with
warnings when the original model under-trained (its in-loop accuracy below the training
stop targets) or an unlearning method missed its tuning level; every rate is printed with
its interval and ``k/n``, beside the two floors (most frequent object, never trained).

The package, one concept per module:

- :mod:`~kgtest.report.aggregate`: rates, intervals (Wilson, Newcombe, the two-level
  bootstrap), excess over a control, floors;
- :mod:`~kgtest.report.tables`: column ids, their order (from the probe registry), cells;
- :mod:`~kgtest.report.summary`: the main sections of ``summary.md``;
- :mod:`~kgtest.report.cuts`: the same rates cut by proof count, entity frequency,
  neighbourhood and domain;
- :mod:`~kgtest.report.runs`: what the run folders say (warnings, tuning choices,
  deletion sets, stability over the tuning grid);
- :mod:`~kgtest.report.anchors`, :mod:`~kgtest.report.kb_recall`: the sections the
  published anchors and the ``kb_recall`` probe need;
- :mod:`~kgtest.report.plots`: every figure.

Examples
--------
>>> import tempfile
>>> from kgtest.records import new_row, write_records
>>> run = tempfile.mkdtemp()
>>> _ = write_records([new_row(run_id="r", variant=v, probe="direct", fact=f,
...                            correct=v == "original", gated_in=True)
...                    for v in ("original", "filter") for f in range(5)], run)
>>> text = report([run], n_boot=100).read_text()
>>> "| filter (control) | 0.00 [0.00, 0.43] 0/5 |" in text
True
>>> report([run], control="ignorance")
Traceback (most recent call last):
...
kgtest.errors.InputError: report: control 'ignorance' is not among the records' variants ...
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgtest.errors import InputError
from kgtest.interop.runinfo import run_info_markdown
from kgtest.records import read_runs
from kgtest.report.aggregate import aggregate, aggregate_by, bootstrap
from kgtest.report.anchors import anchor_sections
from kgtest.report.cuts import cut_sections, cuts_markdown
from kgtest.report.kb_recall import kb_recall_markdown
from kgtest.report.plots import domain_plot, proof_cost_plot, write_plots
from kgtest.report.runs import tuning_rows, warnings
from kgtest.report.summary import summary_markdown
from kgtest.report.tables import CONTROLS, DISPLAY, columns, label
from kgtest.symbolic.facts import atomic_write_text
from kgtest.unlearn.config import CONTROLS as BUILT_CONTROLS

__all__ = ["bootstrap", "aggregate", "aggregate_by", "report", "check_control", "CONTROLS",
           "summary_markdown", "warnings", "label", "columns", "DISPLAY"]


def check_control(control: str, records: Sequence[dict]) -> None:
    """Refuse a control the excess cannot be taken over: an unknown name, or one the
    records lack while they hold another control (records without any control, such as
    a run with ``unlearn.controls = []``, report no excess rather than fail).

    >>> check_control("filtr", [])
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: report: unknown control 'filtr' (known: filter, ignorance, ...)
    """
    if control not in BUILT_CONTROLS:
        raise InputError(f"report: unknown control {control!r} (known: "
                         f"{', '.join(BUILT_CONTROLS)})")
    present = sorted({r["variant"] for r in records} & set(BUILT_CONTROLS))
    if present and control not in present:
        raise InputError(f"report: control {control!r} is not among the records' variants "
                         f"(controls there: {', '.join(present)})")


def report(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike | None = None,
           *, command: str = "", control: str = "filter", n_boot: int = 2000,
           seed: int = 0, records: Sequence[dict] | None = None) -> Path:
    """Re-aggregate run folders: ``summary.md``, ``summary.json`` and ``plots/*.png``.

    Parameters
    ----------
    run_dirs : sequence of paths
        Run folders, each with ``records.jsonl`` (:data:`kgtest.records.RECORDS`).
    out_dir : path, optional
        Where to write (default: the first run folder).
    command : str
        The command that reproduces the run(s), quoted in the summary.
    control : str
        The control the excess re-derivation subtracts: one of
        :data:`kgtest.unlearn.config.CONTROLS` present in the records.
    records : sequence of dict, optional
        The rows to aggregate, instead of the run folders' ``records.jsonl`` (the pipeline
        reports rows it has not published yet).

    Returns
    -------
    Path
        ``out_dir/summary.md``.

    Raises
    ------
    InputError
        No run folder, no rows, or ``control`` is not a known control (or the records hold
        other controls but not this one).
    kgtest.stages.RunBusy
        ``out_dir`` is a run folder another process is writing (its lock is held while
        this reads the records and writes the summary).
    """
    from kgtest.stages import LOCK, run_lock

    runs = [Path(d) for d in run_dirs]
    if not runs:
        raise InputError("report: no run folders given")
    out = Path(out_dir) if out_dir is not None else runs[0]
    with run_lock(out) if (out / LOCK).is_file() else contextlib.nullcontext():
        return _report(runs, out, command=command, control=control, n_boot=n_boot, seed=seed,
                       records=records)


def _report(runs: list[Path], out: Path, *, command: str, control: str, n_boot: int,
            seed: int, records: Sequence[dict] | None) -> Path:
    if records is None:
        records = read_runs(runs)  # checked: types, no NaN, no run counted twice
    if not records:
        raise InputError(f"report: {runs[0]}: records.jsonl has no rows")
    check_control(control, records)
    agg = aggregate(records, control=control, n_boot=n_boot, seed=seed)
    plots = write_plots(agg, records, runs, out / "plots", n_boot=n_boot, seed=seed,
                        control=control)
    plots += [p for p in [proof_cost_plot(records, runs, out / "plots" / "proof_cost.png",
                                          control=control, n_boot=n_boot, seed=seed)] if p]
    plots += [p for p in [domain_plot(records, out / "plots" / "by_domain.png",
                                      control=control, n_boot=n_boot, seed=seed)] if p]
    extra = anchor_sections(records, runs, agg=agg, plots_dir=out / "plots", n_boot=n_boot,
                            seed=seed)
    plots += [p for p in (out / "plots" / n for n in ("recovery.png", "latent_curve.png"))
              if p.is_file()]
    if not command and (runs[0] / "command.txt").is_file():
        command = (runs[0] / "command.txt").read_text(encoding="utf-8").strip()
    command = command or "kgtest report " + " ".join(str(d) for d in runs)
    text = summary_markdown(agg, records, command=command, tuning=tuning_rows(runs),
                            plots=[str(p.relative_to(out)) for p in plots], control=control,
                            warn=warnings(runs), n_boot=n_boot, seed=seed, cuts=cuts_markdown(
                                records, runs, control=control, n_boot=n_boot, seed=seed)
                            + "\n".join(cut_sections(records, runs, control=control,
                                                      n_boot=n_boot, seed=seed))
                            + "\n".join(["", *extra]))
    text += "\n".join(["", *kb_recall_markdown(agg, records, out / "plots", n_boot=n_boot,
                                                seed=seed)])
    text += run_info_markdown(runs)  # versions, git commit, reproduce command (run.json)
    atomic_write_text(out / "summary.json", json.dumps(
        [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in a.items()}
         for a in agg], indent=1) + "\n")
    atomic_write_text(out / "summary.md", text)
    return out / "summary.md"
