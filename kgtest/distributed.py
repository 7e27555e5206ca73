"""Data-parallel runs under ``torchrun``: join the process group, agree, build stages once.

``torchrun --nproc_per_node N -m kgtest train SPEC.toml`` starts N copies of kgtest with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and a rendezvous address) in their
environment. :func:`init_distributed` turns that environment into a process group (NCCL
for CUDA tensors, gloo for CPU tensors) once per process; without those variables, or
with ``WORLD_SIZE=1``, it does nothing and everything runs as one process.
:func:`kgtest.train.train` calls it itself, so the loop is data-parallel whenever it runs
under ``torchrun``. Everything else a rank does must not race the other ranks on shared
files: :func:`run_stage_ranked` builds a pipeline stage on rank 0 while the others wait
(or, for training, on every rank with rank 0 alone finishing the folder).

Examples
--------
A single process (no ``torchrun`` variables) is rank 0 of a world of one:

>>> info = init_distributed()
>>> info.rank, info.world_size, info.is_main, info.enabled
(0, 1, True, False)
>>> broadcast_object({"acc": 1.0})  # a no-op without a process group
{'acc': 1.0}
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from kgtest.errors import InputError

__all__ = ["DistInfo", "dist_info", "init_distributed", "teardown", "barrier",
           "broadcast_object", "all_reduce_sum", "run_stage_ranked"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a data-parallel run."""

    rank: int = 0  # global rank (0: the one that writes logs, checkpoints, models)
    world_size: int = 1  # processes in the run
    local_rank: int = 0  # rank on this machine: picks the GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when gradients must be averaged across processes."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"environment: {name}={value!r} is not an integer (torchrun sets "
                         f"RANK, WORLD_SIZE and LOCAL_RANK)") from None


def dist_info() -> DistInfo:
    """This process's rank and world: the live process group's, else torchrun's environment."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        _env_int("LOCAL_RANK", dist.get_rank()))
    return DistInfo(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


def init_distributed() -> DistInfo:
    """Join the process group torchrun describes (once; later calls return the same info).

    The group gets gloo for CPU tensors and, when CUDA is available, NCCL for CUDA tensors
    (``"cpu:gloo,cuda:nccl"``), so a run on GPUs reduces gradients with NCCL and a run with
    ``device = "cpu"`` still works on a GPU machine. Each rank's default CUDA device is
    ``cuda:LOCAL_RANK``. The group is destroyed at interpreter exit (or by :func:`teardown`).
    """
    info = dist_info()
    if not info.enabled or dist.is_initialized():
        return info
    if not dist.is_available():
        raise InputError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend)  # MASTER_ADDR/PORT (or a rendezvous) from torchrun
    atexit.register(teardown)
    return info


def teardown() -> None:
    """Leave the process group (safe to call twice, or without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled; for small things like metrics)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks, in place (no-op in a single process); returns ``t``."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def run_stage_ranked(run_dir: str | os.PathLike, stage: str, key: str,
                     build: Callable[[Path], object], *, collective: bool = False) -> Path:
    """:func:`kgtest.stages.run_stage` that N ranks may call together.

    One process: exactly ``run_stage``. Under ``torchrun``: every rank looks for the
    finished stage *before* a barrier (no rank writes the stage until all have passed it,
    so all see the same answer), then

    - ``collective=False`` (world, corpus: plain single-process work): rank 0 builds and
      finishes the stage while the others wait at a barrier;
    - ``collective=True`` (training: ``build`` calls :func:`kgtest.train.train`, which is
      itself data-parallel): every rank calls ``build`` on the same ``.partial`` folder,
      where only rank 0 writes; then rank 0 marks the stage done and renames it.

    Rank 0 holds the run folder's lock (:func:`kgtest.stages.run_lock`) while it writes.

    Every rank returns the finished folder.

    Examples
    --------
    >>> import tempfile
    >>> d = run_stage_ranked(tempfile.mkdtemp(), "world", "k1",
    ...                      lambda tmp: (tmp / "a.txt").write_text("x"))
    >>> d.name, (d / "a.txt").read_text()
    ('world-k1', 'x')
    """
    from kgtest.stages import (
        DONE,
        finish_stage,
        partial_path,
        prepare_partial,
        run_lock,
        run_stage,
        stage_path,
    )

    info = init_distributed()  # the stages before training need the group already
    if not info.enabled:
        return run_stage(run_dir, stage, key, build)
    final = stage_path(run_dir, stage, key)
    done = (final / DONE).exists()
    barrier()
    if done:
        return final
    if not collective:
        if info.is_main:
            run_stage(run_dir, stage, key, build)
        barrier()
        return final
    # rank 0 holds the run folder's lock while every rank builds in the .partial folder
    with run_lock(run_dir) if info.is_main else contextlib.nullcontext():
        if info.is_main:  # empty a dead build's leftovers, keep a checkpoint to resume
            prepare_partial(run_dir, stage, key)
        barrier()
        build(partial_path(run_dir, stage, key))
        barrier()
        if info.is_main:
            finish_stage(run_dir, stage, key)
    barrier()
    return final

