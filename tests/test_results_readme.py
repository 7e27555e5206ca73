"""The README numbers are what `kgtest report` computes from the committed records.

Every table row in ``README.md`` or ``experiments/README.md`` that links a packed results
folder (``experiments/results/<name>``, written by ``kgtest pack``), and every row of a
table whose introducing paragraph links one (no heading between), is checked: each
``k/n`` count in its "ours"/"kgtest" column (or, in a table without one, anywhere in the
row) must appear in the ``summary.md`` files that ``kgtest report`` regenerates from that
folder. A number typed by hand, or left behind after a rerun, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
READMES = [ROOT / "README.md", ROOT / "experiments" / "README.md"]
LINK = re.compile(r"results/([A-Za-z0-9_.-]+)")
COUNT = re.compile(r"(?<![\w./])(\d+/\d+)(?![\w/])")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _claims() -> list[tuple[str, int, str, list[str], bool]]:
    """(readme name, line number, results folder, k/n counts, the row itself links) for
    each row linked to a results folder."""
    out = []
    for readme in READMES:
        header: list[str] | None = None
        intro: set[str] = set()  # results linked since the last heading, outside tables
        for i, line in enumerate(readme.read_text(encoding="utf-8").splitlines(), 1):
            if not line.startswith("|"):
                header = None
                if line.startswith("#"):
                    intro = set()
                intro |= {m for m in LINK.findall(line) if (RESULTS / m).is_dir()}
                continue
            cells = _cells(line)
            if header is None:
                header = [c.lower() for c in cells]
                continue
            if set("".join(cells)) <= set("-: "):
                continue
            own = {m for m in LINK.findall(line) if (RESULTS / m).is_dir()}
            names = own or intro
            if not names:
                continue
            col = next((j for j, h in enumerate(header)
                        if h.startswith(("ours", "kgtest"))), None)
            text = cells[col] if col is not None and col < len(cells) else line
            for name in sorted(names):
                out.append((readme.name, i, name, COUNT.findall(text), bool(own)))
    return out


def _report_text(name: str, tmp: Path) -> str:
    from kgtest.records import records_path
    from kgtest.report import report
    from kgtest.sweep import sweep_report

    folder = RESULTS / name
    if (folder / "sweep.json").exists():
        sweep_report(folder, tmp)
    else:
        runs = sorted(p for p in folder.iterdir() if p.is_dir() and records_path(p))
        report(runs, tmp)
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(tmp.rglob("summary.md")))


def test_linked_rows_quote_counts():
    """A linked row with no k/n in it cannot be checked: every result row quotes counts."""
    claims = _claims()
    for readme, line, name, counts, own in claims:
        assert counts or not own, f"{readme}:{line}: row linking results/{name} quotes no k/n"
    for name in {c[2] for c in claims}:  # a linked table quotes counts somewhere
        assert any(c[3] for c in claims if c[2] == name), f"results/{name}: no k/n quoted"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted({c[2] for c in _claims()}) or ["(none)"])
def test_readme_counts_equal_the_regenerated_report(name, tmp_path):
    if name == "(none)":
        pytest.skip("no README row links a results folder yet")
    text = _report_text(name, tmp_path)
    for readme, line, linked, counts, _ in _claims():
        if linked != name:
            continue
        missing = [c for c in counts if c not in text]
        assert not missing, (f"{readme}:{line}: {missing} not in the report regenerated "
                             f"from experiments/results/{name}")
