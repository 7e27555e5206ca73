"""A progress bar for the probing stage (the longest one), fed by its log lines.

``with probe_progress(total, fallback) as log:`` gives a ``log(msg)`` callable for
:func:`kgtest.probes.probes.evaluate`, which calls it once as each (variant, probe)
starts: the bar (tqdm, on stderr) counts finished steps and shows the running one. When
stderr is not a terminal (or ``enabled=False``) the messages go to ``fallback`` instead.

Examples
--------
>>> seen = []
>>> with probe_progress(2, seen.append, enabled=False) as log:
...     log("original: direct"); log("NPO: direct")
>>> seen
['original: direct', 'NPO: direct']
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["probe_progress"]


@contextmanager
def probe_progress(total: int, fallback: Callable[[str], None] | None = None, *,
                   enabled: bool | None = None) -> Iterator[Callable[[str], None]]:
    """A ``log`` callable advancing a bar of ``total`` steps (variants × probes)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield fallback or (lambda msg: None)
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="probes", unit="step", dynamic_ncols=True) as bar:
        started = [0]

        def log(msg: str) -> None:
            if started[0]:
                bar.update(1)  # the previous step is finished
            started[0] += 1
            bar.set_postfix_str(msg.strip(), refresh=True)

        yield log
        bar.update(bar.total - bar.n)
