"""Training checkpoints and logs: atomic saves, guarded loads, logs cut back on resume.

A checkpoint (``out_dir/checkpoint.pt``) holds the model, optimiser, scheduler, RNG
states, the batch-order generator and the step; :func:`kgtest.train.train` writes it
atomically and, with ``resume=True``, refuses one written with a different setting
(:data:`MUST_MATCH`) or for a different corpus.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> p = Path(tempfile.mkdtemp()) / CHECKPOINT
>>> atomic_torch_save({"step": 3}, p)
>>> load_checkpoint(p)["step"]
3
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from kgtest.batches import EncodedCorpus
from kgtest.errors import InputError

__all__ = ["CHECKPOINT", "LOG", "MUST_MATCH", "atomic_torch_save", "load_checkpoint", "read_log",
           "corpus_signature"]

CHECKPOINT = "checkpoint.pt"  # in out_dir: the resumable training state
LOG = "train_log.jsonl"  # in out_dir: one JSON object per log/eval event

#: TrainConfig fields a resumed run must share with the checkpoint's run.
MUST_MATCH = ("steps", "batch_size", "lr", "min_lr_ratio", "warmup", "weight_decay", "betas",
              "grad_clip", "answer_only_loss", "seed")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a hidden temporary name, then a rename: never a half-written file
    (a kill leaves ``.checkpoint.pt.tmp-PID``, which the next build of the stage removes)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        msg = " ".join(str(err).split())[:160]
        raise InputError(f"{path}: corrupt training checkpoint ({type(err).__name__}: {msg}); "
                         f"delete it to start afresh") from None


def read_log(path: Path, upto_step: int) -> list[str]:
    """Lines of an earlier log up to a checkpoint's step (a killed run may have logged more)."""
    if not path.exists():
        return []
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= upto_step:
                keep.append(line)
        except json.JSONDecodeError:
            break  # a line cut by the kill
    return keep


def corpus_signature(corpus: EncodedCorpus) -> list[int]:
    return [corpus.n_docs, int(corpus.tokens.shape[1]), int(corpus.tokens.sum()),
            int(corpus.loss_start.sum())]
