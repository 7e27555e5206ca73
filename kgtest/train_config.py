"""The ``[train]`` section (:class:`TrainConfig`), what training returns (:class:`TrainResult`)
and where it runs: the device (:func:`resolve_device`) and its intra-op threads
(:func:`default_threads`). :mod:`kgtest.train` has the loop and re-exports these.

One thread count per run: ``train.threads`` (0: :func:`default_threads`) is resolved once
by :func:`run_threads`, and every stage that computes (training, the retrained controls,
unlearning and its tuning grid, every probe and attack) runs inside
:func:`pinned_threads` of that count, the caller's count restored afterwards, so a stage's
results do not depend on torch's default (the machine's core count). The stage pool
(``--jobs``) and sweep workers pin one thread per worker (:func:`kgtest.workers.setup_worker`)
and pass 1 as the run's count. Stage files record the count used (``threads``).

Examples
--------
>>> TrainConfig().steps, TrainConfig(threads=1).threads
(3000, 1)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from kgtest.config import MAX_STEPS, in_range, max_threads, nonneg, positive
from kgtest.errors import InputError

__all__ = ["TrainConfig", "TrainResult", "resolve_device", "default_threads", "run_threads",
           "pinned_threads"]


def _betas(value) -> str | None:
    return None if len(value) == 2 and all(0 <= b < 1 for b in value) else "must be two " \
        "numbers in [0, 1)"


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (the ``[train]`` section of a spec)."""

    steps: int = field(default=3000, metadata={"check": in_range(1, MAX_STEPS)})  # most steps
    batch_size: int = field(default=64, metadata={"check": in_range(1, 10**6)})  # docs/step
    micro_batches: int = field(default=4, metadata={"check": in_range(1, 10**4)})  # runs/step
    lr: float = field(default=1e-3, metadata={"check": positive})  # peak learning rate
    min_lr_ratio: float = field(default=0.1, metadata={"check": in_range(0, 1)})  # cosine floor
    warmup: int = field(default=100, metadata={"check": in_range(0, MAX_STEPS)})  # linear warmup
    weight_decay: float = field(default=0.1, metadata={"check": nonneg})  # AdamW, matrices only
    betas: tuple[float, float] = field(default=(0.9, 0.98), metadata={"check": _betas})  # AdamW
    grad_clip: float = field(default=1.0, metadata={"check": nonneg})  # max grad norm (0: off)
    answer_only_loss: bool = True  # loss on completion + eos only (statements: everything)
    eval_every: int = field(default=250, metadata={"check": nonneg})  # steps per eval (0: end)
    log_every: int = field(default=50, metadata={"check": positive})  # steps per loss readout
    checkpoint_every: int = field(default=500, metadata={"check": nonneg})  # 0: never
    seed: int | None = None  # batch order, dropout (None: derived from run.seed; alone: 0)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available
    compile: bool = False  # torch.compile the body (~5% on CPU for ~40 s of compiling)
    threads: int = field(default=0, metadata={"check": in_range(0, max_threads())})  # every
    # stage's intra-op threads (0: default_threads, half the cores; run_threads)
    stop_at: dict[str, float] = field(default_factory=dict)  # e.g. {direct = 0.99, cot = 0.95}
    progress: bool = True  # tqdm progress bar on stderr
    tensorboard: bool = True  # also log to out_dir/tb when tensorboard is importable


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns."""

    steps: int  # optimiser steps taken in total (including before a resume)
    final_loss: float  # mean loss over the last log window (nan if no step ran)
    metrics: dict[str, float]  # the latest eval_fn result ({} without eval_fn)
    stopped_early: bool  # True when every stop_at target was met before cfg.steps
    tokens: int  # real (non-pad) tokens trained on, over all steps
    seconds: float  # wall time of the loop in this process (no setup, no final save)
    cpu_seconds: float  # CPU time of this process over the same loop (all its threads)
    model_dir: Path  # where the final model and tokenizer were saved


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; ``"cuda"`` without a GPU is an error.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("train: device 'cuda' asked for, but no CUDA device is available "
                         "(use device = \"auto\" or \"cpu\")")
    return torch.device(name)


def default_threads(device) -> int:
    """``train.threads = 0``: on a CPU, half the cores (at least 1, at most torch's own
    default), so a second busy process does not stall training; on a GPU, torch's default.

    On a 2-core machine (benchmarks/bench_threads.py, benchmarks/README.md) 2 threads
    trained the quickstart model more than 10x slower than 1 thread once anything else
    ran beside it: OpenMP threads spin-wait for a descheduled sibling.

    >>> default_threads(torch.device("cuda")) == torch.get_num_threads()
    True
    """
    if torch.device(device).type != "cpu":
        return torch.get_num_threads()
    return max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) // 2))


def run_threads(threads: int, device="cpu") -> int:
    """The intra-op threads every stage of a run uses: 1 in a stage pool's worker
    (``--jobs N``: N workers x T threads would oversubscribe the cores), else ``threads``
    (``train.threads``), or :func:`default_threads` of ``device`` when 0. What a stage
    records as ``threads`` is this, so the record says what ran.

    >>> run_threads(3), run_threads(0) == default_threads("cpu")
    (3, True)
    """
    from kgtest.workers import in_stage_worker

    if in_stage_worker():
        return 1
    return int(threads) if threads else default_threads(device)


@contextmanager
def pinned_threads(n: int) -> Iterator[int]:
    """Run the block with ``n`` intra-op threads (``torch.set_num_threads``), restored after.

    >>> before = torch.get_num_threads()
    >>> with pinned_threads(1) as n:
    ...     n, torch.get_num_threads()
    (1, 1)
    >>> torch.get_num_threads() == before
    True
    """
    before = torch.get_num_threads()
    n = max(1, int(n))
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
