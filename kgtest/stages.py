"""Stage folders keyed by config hash: finished work is reused, unfinished never seen.

Each pipeline stage writes into ``RUN/<stage>-<hash>/`` where ``hash`` covers the config
of that stage *and of every stage before it*, so changing a setting recomputes exactly
what depends on it. A stage is built in a temporary sibling folder and renamed into place
when complete, so an interrupted run leaves no half-written stage: re-running resumes
from the last finished one. A stage may keep its own resumable state (e.g. training
checkpoints) in a stable ``.partial`` folder that survives interruption.

Examples
--------
>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> calls = []
>>> def build(tmp):
...     calls.append(1)
...     (tmp / "x.txt").write_text("hi")
>>> a = run_stage(root, "world", "abc123", build)
>>> b = run_stage(root, "world", "abc123", build)  # reused, not rebuilt
>>> a == b, a.name, len(calls)
(True, 'world-abc123', 1)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

__all__ = ["run_stage", "stage_path", "partial_path"]

DONE = ".done"


def stage_path(run_dir: str | os.PathLike, stage: str, key: str) -> Path:
    """Where a finished stage lives."""
    return Path(run_dir) / f"{stage}-{key}"


def partial_path(run_dir: str | os.PathLike, stage: str, key: str) -> Path:
    """A stage's in-progress folder (kept across interruptions, for resumable stages)."""
    return Path(run_dir) / f".{stage}-{key}.partial"


def run_stage(
    run_dir: str | os.PathLike,
    stage: str,
    key: str,
    build: Callable[[Path], object],
    *,
    force: bool = False,
) -> Path:
    """Return ``RUN/<stage>-<key>``, calling ``build(tmp_dir)`` first if it is not finished.

    ``build`` writes everything into ``tmp_dir`` (the ``.partial`` folder, which it may
    find non-empty when resuming an interrupted build). On success the folder is marked
    done and renamed into place atomically; on failure it stays, for resumption.
    """
    final = stage_path(run_dir, stage, key)
    if (final / DONE).exists() and not force:
        return final
    tmp = partial_path(run_dir, stage, key)
    tmp.mkdir(parents=True, exist_ok=True)
    build(tmp)
    (tmp / DONE).write_text(f"{stage} {key}\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final
