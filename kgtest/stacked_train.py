"""Several models' fine-tuning runs as one ensemble: the relearn attacks of ``--seeds M``.

Within :func:`kgtest.stacked_probes.side_by_side` the relearn attack's fine-tuning
(:func:`kgtest.stacked_probes.fine_tune`; plain :func:`kgtest.train.train` anywhere else)
is handed to the session like a greedy decoding. When several members wait on one in the
same round, the runs that can stack (equal :func:`stack_key`: the same
:class:`~kgtest.train.TrainConfig` up to the batch seed, no ``torch.compile``, one device;
and models of one architecture and shape without dropout, :func:`stackable`) train as one
:func:`kgtest.ensemble.train_ensemble` (:func:`stacked_train`): each member its own model
(trained in place), tokenizer, documents, batch order (its ``cfg.seed``) and ``eval_fn``.
A member ends as :func:`~kgtest.train.train` leaves it alone, up to floating-point
summation order:

- the same batches, schedule and clipping (per member), the same number of steps, and its
  ``eval_fn`` called at the same steps (every ``eval_every`` and at the end) on a model
  holding its current weights, in eval mode under ``torch.no_grad``, at the same intra-op
  thread count (``cfg.threads``, pinned by both loops);
- its model trained in place, in eval mode on the run's device, and saved to
  ``out_dir/model``; the result a :class:`~kgtest.train.TrainResult` (``seconds`` and
  ``cpu_seconds`` are the ensemble's; ``out_dir`` gets no ``train_log.jsonl``);
- the global random state: ``train`` forks torch's RNG (seeded with ``cfg.seed``) and
  draws nothing from it without dropout, so inside each member's ``eval_fn`` torch's
  generator is the one ``train`` would give it (its seed, advanced only by its own
  ``eval_fn`` calls; the CPU generator: a CUDA one is shared), and numpy's and
  ``random``'s are the member's own (:class:`TrainRequest` ``rng``), advanced by its
  ``eval_fn`` and handed back (:func:`stacked_train` returns them; the member sets them,
  as if it had drawn them).

The ``eval_fn`` calls run in the caller's thread (the session's coordinator, whose scoring
the session does not route): each model decodes and scores alone there.

Examples
--------
>>> import tempfile
>>> from kgtest.corpus.tokenizer import build_tokenizer
>>> from kgtest.model import ModelConfig, build_model
>>> from kgtest.train import TrainConfig
>>> docs = [{"prompt": "Q a r ? A ", "completion": "b"}, {"prompt": "", "completion": "a r b"}]
>>> tok = build_tokenizer([d["prompt"] + d["completion"] for d in docs])
>>> cfg = TrainConfig(steps=3, batch_size=2, warmup=0, progress=False, device="cpu")
>>> reqs = [TrainRequest(build_model(ModelConfig(preset="tiny"), tok, seed=s), tok, docs,
...                      replace(cfg, seed=s), tempfile.mkdtemp()) for s in (0, 1)]
>>> stack_key(reqs[0]) == stack_key(reqs[1]), stackable([r.model for r in reqs])
(True, True)
>>> [res.steps for res, _ in stacked_train(reqs)]
[3, 3]
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from kgtest.errors import InputError
from kgtest.train_config import TrainConfig, TrainResult, resolve_device

__all__ = ["TrainRequest", "stack_key", "stackable", "stacked_train"]


def _py_rng() -> tuple:
    """This thread's view of numpy's and ``random``'s global states."""
    return np.random.get_state(), random.getstate()


@dataclass
class TrainRequest:
    """One member's ``train(model, tokenizer, docs, cfg, out_dir, eval_fn=eval_fn)``."""

    model: object  # PreTrainedModel, trained in place
    tokenizer: object  # PreTrainedTokenizerFast
    docs: Sequence[dict]  # its training documents
    cfg: TrainConfig  # cfg.seed: its batch order
    out_dir: str | os.PathLike  # gets model/
    eval_fn: Callable | None = None  # eval_fn(model) -> {name: value}
    rng: tuple | None = None  # (numpy, random) global states at the call (default: the caller's)

    def __post_init__(self):
        if self.rng is None:
            self.rng = _py_rng()


def stack_key(req: TrainRequest) -> tuple | None:
    """Requests with equal keys may train as one ensemble (None: this one trains alone).

    The key is the training config but for the batch seed, and the device; runs that
    compile the body (which the ensemble does not), have no documents or whose device
    cannot be had train alone.
    """
    cfg = req.cfg
    if cfg.compile or not len(req.docs):
        return None
    try:
        device = resolve_device(cfg.device)
    except InputError:
        return None
    return repr(replace(cfg, seed=None)), str(device)


def stackable(models: Sequence) -> bool:
    """Whether ``models`` stack (:func:`~kgtest.stacked_lm.stack_of`: one device,
    architecture and shape, GPT-2 or Llama, no dropout); an error building the stack (out
    of memory) means no: each trains alone."""
    from kgtest.stacked_lm import stack_of

    try:
        return stack_of(models) is not None
    except Exception:  # noqa: BLE001
        return False


class _MemberRNG:
    """Member ``m``'s global random state inside its ``eval_fn``, as :func:`train` has it."""

    def __init__(self, req: TrainRequest):
        self.torch = torch.Generator().manual_seed(req.cfg.seed or 0).get_state()
        self.np, self.py = req.rng

    def wrap(self, fn: Callable | None) -> Callable | None:
        """``fn`` run with this member's states set (and kept), the caller's restored."""
        if fn is None:
            return None

        def run(model):
            outer = torch.get_rng_state(), _py_rng()
            torch.set_rng_state(self.torch)
            np.random.set_state(self.np)
            random.setstate(self.py)
            try:
                return fn(model)
            finally:
                self.torch, (self.np, self.py) = torch.get_rng_state(), _py_rng()
                torch.set_rng_state(outer[0])
                np.random.set_state(outer[1][0])
                random.setstate(outer[1][1])

        return run


def stacked_train(reqs: Sequence[TrainRequest]) -> list[tuple[TrainResult, tuple]]:
    """Train the requests (of one :func:`stack_key`, :func:`stackable`) as one ensemble.

    Returns, per request, its :class:`~kgtest.train.TrainResult` and its (numpy,
    ``random``) global states after the call. An error (a loss that became NaN, an
    ``eval_fn`` that failed, out of memory) is raised for the whole call.
    """
    from kgtest.ensemble import train_ensemble

    cfg = reqs[0].cfg
    device = resolve_device(cfg.device)
    rngs = [_MemberRNG(r) for r in reqs]
    with tempfile.TemporaryDirectory(prefix="kgtest-stacked-train-") as tmp:
        res = train_ensemble([r.model for r in reqs], [r.tokenizer for r in reqs],
                             [list(r.docs) for r in reqs], cfg, tmp,
                             eval_fn=[g.wrap(r.eval_fn) for g, r in zip(rngs, reqs, strict=True)],
                             batch_seeds=[r.cfg.seed for r in reqs])
        out = []
        for m, r in enumerate(reqs):
            r.model.to(device).eval()  # where train leaves it
            model_dir = Path(r.out_dir) / "model"
            model_dir.parent.mkdir(parents=True, exist_ok=True)
            if model_dir.exists():
                shutil.rmtree(model_dir)
            shutil.move(str(res.model_dirs[m]), model_dir)
            out.append((TrainResult(
                steps=res.steps[m], final_loss=res.final_losses[m], metrics=res.metrics[m],
                stopped_early=res.stopped_early[m], tokens=res.tokens[m],
                seconds=res.seconds, cpu_seconds=res.cpu_seconds, model_dir=model_dir),
                (rngs[m].np, rngs[m].py)))
    return out
