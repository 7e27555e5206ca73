"""The shared unlearning loop: one plain PyTorch loop that runs any registered method.

``unlearn(model, tokenizer, forget_docs, retain_docs, method, params, lr=, steps=)``
updates ``model`` in place. Each step draws a forget batch (and, when the method has a
retain term, a retain batch) from seeded per-epoch shufflings, builds a
:class:`~kgtest.unlearn.methods.Step` and calls the method's loss; then backward, gradient
clipping and AdamW. The learning rate is constant (no warmup, no decay), so the model after
``k`` steps of a longer run *is* the model a ``k``-step run gives: tuning evaluates every
``steps`` value of its grid on one run per learning rate.

Methods with ``reference=True`` (or a KL retain term) get a frozen copy of the model as it
was on entry. Pair methods (IdkSFT, IdkDPO) get ``idk_docs`` aligned with ``forget_docs``.
bf16 autocast on CUDA only. Same seed, same numbers on the CPU.

Examples
--------
>>> from kgtest.corpus.tokenizer import build_tokenizer
>>> from kgtest.model import ModelConfig, build_model
>>> docs = [{"prompt": "Q a r ? A ", "completion": "b"}, {"prompt": "", "completion": "a r b"}]
>>> tok = build_tokenizer([d["prompt"] + d["completion"] for d in docs])
>>> m = build_model(ModelConfig(preset="tiny"), tok, seed=0)
>>> res = unlearn(m, tok, docs[:1], docs[1:], "NPO", {"beta": 0.5}, lr=1e-3, steps=3,
...               progress=False, device="cpu")
>>> res.steps, sorted(res.history[-1])
(3, ['forget', 'loss', 'retain', 'step'])
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from kgtest.errors import InputError
from kgtest.train import EncodedCorpus, encode_corpus, resolve_device
from kgtest.unlearn.methods import METHODS, Batch, Step

__all__ = ["UnlearnResult", "LoopConfig", "unlearn"]


@dataclass(frozen=True)
class UnlearnResult:
    """What :func:`unlearn` returns."""

    steps: int  # optimiser steps taken
    seconds: float  # wall time of the loop (no setup)
    history: list  # {"step", "loss", "forget", "retain"?} every log_every steps and the last
    evals: list  # {"step", **eval_fn(model)} at each step of eval_at
    hyperparameters: dict  # the method's resolved hyperparameters
    trainable: int  # parameters updated (elements)


class _Sampler:
    """Seeded batches of one encoded document set: a fresh shuffle each epoch."""

    def __init__(self, enc: EncodedCorpus, batch_size: int, gen: torch.Generator,
                 device: torch.device):
        self.enc, self.gen, self.device = enc, gen, device
        self.tokens = enc.tokens.to(device)  # (N, L_max)
        self.lengths, self.start = enc.lengths.to(device), enc.loss_start.to(device)
        self.bs = min(batch_size, enc.n_docs)
        self.order: list[int] = []

    def next_indices(self) -> torch.Tensor:
        if len(self.order) < self.bs:  # a new epoch (the tail of the last one is dropped)
            self.order = torch.randperm(self.enc.n_docs, generator=self.gen).tolist()
        idx, self.order = self.order[:self.bs], self.order[self.bs:]
        return torch.tensor(idx, device=self.device)

    def batch(self, idx: torch.Tensor) -> Batch:
        return Batch.from_rows(self.tokens[idx], self.lengths[idx], self.start[idx])


def _check_fits(model: PreTrainedModel, enc: EncodedCorpus, what: str) -> None:
    max_pos = model.config.max_position_embeddings
    if enc.tokens.shape[1] > max_pos:
        raise InputError(f"unlearn: the longest {what} document has {enc.tokens.shape[1]} "
                         f"tokens but the model takes at most {max_pos}")


@dataclass(frozen=True)
class LoopConfig:
    """How the shared loop runs: everything but the model, the documents and the method."""

    lr: float = 3e-4  # constant learning rate (no warmup, no decay)
    steps: int = 50  # optimiser steps
    batch_size: int = 16  # forget documents per step
    retain_batch_size: int = 16  # retain documents per step (methods with a retain term)
    weight_decay: float = 0.0  # AdamW
    grad_clip: float = 1.0  # max gradient norm (0: none)
    seed: int = 0  # batch order, dropout and any randomness a method keeps (RMU's direction)
    device: str = "auto"  # cpu, cuda, auto
    progress: bool = True  # a progress bar
    log_every: int = 10  # history entries every this many steps (and the last)


def unlearn(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast,
            forget_docs: Sequence[dict], retain_docs: Sequence[dict] = (),
            method: str = "NPO", params: dict | None = None, *,
            idk_docs: Sequence[dict] | None = None, loop: LoopConfig | None = None,
            eval_fn: Callable[[PreTrainedModel], dict] | None = None,
            eval_at: Sequence[int] = (), **settings) -> UnlearnResult:
    """Unlearn ``forget_docs`` from ``model`` in place with a registered method.

    Parameters
    ----------
    model, tokenizer
        A trained causal LM and its tokenizer.
    forget_docs : sequence of dict
        Documents (``prompt``, ``completion``) to forget; the completion (+ eos) is the
        answer whose log-probability the losses use (a statement's prompt is ``""``).
        Pair methods: the question-form documents, aligned with ``idk_docs``.
    retain_docs : sequence of dict
        Documents to keep (needed when the method's ``alpha`` is not 0).
    method : str
        A name in :data:`~kgtest.unlearn.methods.METHODS`.
    params : dict, optional
        The method's hyperparameters (checked; missing ones take their defaults).
    idk_docs : sequence of dict, optional
        Pair methods: ``forget_docs``' prompts with the ``unknown`` answer.
    loop : LoopConfig, optional
        Learning rate, steps, batch sizes, decay, clipping, seed, device (default
        :class:`LoopConfig`); keyword ``settings`` (``lr=1e-3, steps=3``) replace fields.
    eval_fn, eval_at
        ``eval_fn(model) -> dict`` is called (eval mode, no grad) after each step in
        ``eval_at`` (0: before the first step); results go to ``UnlearnResult.evals``.

    Returns
    -------
    UnlearnResult
    """
    cfg = replace(loop or LoopConfig(), **settings)
    spec = METHODS.get(method)
    hp = spec.resolve(params)
    if not forget_docs:
        raise InputError(f"unlearn: {method}: the forget set is empty")
    if spec.pairs and (idk_docs is None or len(idk_docs) != len(forget_docs)):
        raise InputError(f"unlearn: {method} needs an 'unknown' document for every forget "
                         f"question (idk_docs aligned with forget_docs)")
    if spec.needs_retain(hp) and not retain_docs:
        raise InputError(f"unlearn: {method} has a retain term (alpha != 0) but there are "
                         f"no retain documents")
    run = _Loop(model, tokenizer, forget_docs, retain_docs, idk_docs, spec, hp, cfg)
    try:
        return run.run(eval_fn, sorted(set(int(s) for s in eval_at)))
    finally:
        run.restore()


class _Loop:
    """One unlearning run: the batch samplers, the frozen reference, the optimiser."""

    def __init__(self, model, tokenizer, forget_docs, retain_docs, idk_docs, spec, hp,
                 cfg: LoopConfig):
        self.model, self.spec, self.hp, self.cfg = model, spec, hp, cfg
        self.dev = dev = resolve_device(cfg.device)
        self.gen = gen = torch.Generator().manual_seed(cfg.seed)  # batch order, method state
        forget_enc = encode_corpus(tokenizer, forget_docs)
        _check_fits(model, forget_enc, "forget")
        self.forget = _Sampler(forget_enc, cfg.batch_size, gen, dev)
        self.idk = self.retain = None
        if spec.pairs:
            self.idk = _Sampler(encode_corpus(tokenizer, idk_docs), cfg.batch_size, gen, dev)
        if spec.needs_retain(hp):
            retain_enc = encode_corpus(tokenizer, retain_docs)
            _check_fits(model, retain_enc, "retain")
            self.retain = _Sampler(retain_enc, cfg.retain_batch_size, gen, dev)
        model.to(dev)
        self.ref = None
        if spec.needs_reference(hp):
            self.ref = copy.deepcopy(model).eval()
            self.ref.requires_grad_(False)
        names = spec.trainable(model, hp) if spec.trainable else None
        self.params = [p for n, p in model.named_parameters() if names is None or n in names]
        self.frozen = [p for p in model.parameters() if not any(p is q for q in self.params)]
        self.saved_flags = [p.requires_grad for p in self.frozen]
        for p in self.frozen:
            p.requires_grad_(False)
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                     betas=(0.9, 0.999), fused=dev.type in ("cpu", "cuda"))
        self.state: dict = {}  # what a method keeps across steps

    def restore(self) -> None:
        for p, flag in zip(self.frozen, self.saved_flags, strict=True):
            p.requires_grad_(flag)
        self.model.eval()

    def step(self, autocast) -> dict:
        """One optimiser step: the loss and its parts (detached)."""
        fi = self.forget.next_indices()
        batch = Step(model=self.model, forget=self.forget.batch(fi), ref=self.ref,
                     state=self.state, generator=self.gen,
                     idk=self.idk.batch(fi) if self.idk is not None else None,
                     retain=self.retain.batch(self.retain.next_indices())
                     if self.retain else None)
        with autocast:
            loss, parts = self.spec.fn(batch, **vars(self.hp))
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return {"loss": loss.detach(), **parts}

    def run(self, eval_fn, eval_at: list[int]) -> UnlearnResult:
        model, cfg, dev = self.model, self.cfg, self.dev
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
        history, evals = [], []

        def evaluate(step: int) -> None:
            was = model.training
            model.eval()
            with torch.no_grad():
                evals.append({"step": step, **eval_fn(model)})
            model.train(was)

        bar = tqdm(total=cfg.steps, disable=not cfg.progress,
                   desc=f"unlearn {self.spec.name}", dynamic_ncols=True)
        t0 = time.perf_counter()
        try:
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                torch.manual_seed(cfg.seed)
                model.train()
                if eval_fn is not None and 0 in eval_at:
                    evaluate(0)
                sums: dict[str, torch.Tensor] = {}
                n_sum = 0
                for step in range(1, cfg.steps + 1):
                    for k, v in self.step(autocast).items():
                        sums[k] = sums.get(k, 0) + v.float()
                    n_sum += 1
                    bar.update(1)
                    if step % cfg.log_every == 0 or step == cfg.steps:
                        history.append(self._logged(step, sums, n_sum, bar))
                        sums, n_sum = {}, 0
                    if eval_fn is not None and step in eval_at:
                        evaluate(step)
        finally:
            bar.close()
        return UnlearnResult(steps=cfg.steps, seconds=time.perf_counter() - t0,
                             history=history, evals=evals, hyperparameters=dict(vars(self.hp)),
                             trainable=sum(p.numel() for p in self.params))

    def _logged(self, step: int, sums: dict, n_sum: int, bar) -> dict:
        """A history entry (means since the last one); a non-finite loss stops the run."""
        entry = {"step": step, **{k: float(v) / n_sum for k, v in sums.items()}}
        if not all(math.isfinite(v) for v in entry.values()):
            raise InputError(f"unlearn {self.spec.name}: the loss became {entry['loss']} by "
                             f"step {step} (lr {self.cfg.lr:g}); lower the learning rate or "
                             "check the method's parameters")
        bar.set_postfix({k: f"{v:.3f}" for k, v in entry.items() if k != "step"})
        return entry
