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
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from kgtest.errors import InputError
from kgtest.train import EncodedCorpus, encode_corpus, resolve_device
from kgtest.unlearn.methods import METHODS, Batch, Step

__all__ = ["UnlearnResult", "unlearn"]


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


def unlearn(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast,
            forget_docs: Sequence[dict], retain_docs: Sequence[dict] = (),
            method: str = "NPO", params: dict | None = None, *,
            idk_docs: Sequence[dict] | None = None, lr: float = 3e-4, steps: int = 50,
            batch_size: int = 16, retain_batch_size: int = 16, weight_decay: float = 0.0,
            grad_clip: float = 1.0, seed: int = 0, device: str = "auto",
            progress: bool = True, log_every: int = 10,
            eval_fn: Callable[[PreTrainedModel], dict] | None = None,
            eval_at: Sequence[int] = ()) -> UnlearnResult:
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
    lr, steps, batch_size, retain_batch_size, weight_decay, grad_clip
        Constant learning rate, optimiser steps, documents per batch, AdamW decay, clip.
    seed : int
        Batch order, dropout and any randomness a method keeps (RMU's direction).
    eval_fn, eval_at
        ``eval_fn(model) -> dict`` is called (eval mode, no grad) after each step in
        ``eval_at`` (0: before the first step); results go to ``UnlearnResult.evals``.

    Returns
    -------
    UnlearnResult
    """
    spec = METHODS.get(method)
    hp = spec.resolve(params)
    if not forget_docs:
        raise InputError(f"unlearn: {method}: the forget set is empty")
    if spec.pairs and (idk_docs is None or len(idk_docs) != len(forget_docs)):
        raise InputError(f"unlearn: {method} needs an 'unknown' document for every forget "
                         f"question (idk_docs aligned with forget_docs)")
    needs_retain = spec.needs_retain(hp)
    if needs_retain and not retain_docs:
        raise InputError(f"unlearn: {method} has a retain term (alpha != 0) but there are "
                         f"no retain documents")
    dev = resolve_device(device)
    gen = torch.Generator().manual_seed(seed)  # batch order and method state, on the CPU
    forget_enc = encode_corpus(tokenizer, forget_docs)
    _check_fits(model, forget_enc, "forget")
    forget = _Sampler(forget_enc, batch_size, gen, dev)
    idk = None
    if spec.pairs:
        idk = _Sampler(encode_corpus(tokenizer, idk_docs), batch_size, gen, dev)
    retain = None
    if needs_retain:
        retain_enc = encode_corpus(tokenizer, retain_docs)
        _check_fits(model, retain_enc, "retain")
        retain = _Sampler(retain_enc, retain_batch_size, gen, dev)

    model.to(dev)
    ref = None
    if spec.needs_reference(hp):
        ref = copy.deepcopy(model).eval()
        ref.requires_grad_(False)
    names = spec.trainable(model, hp) if spec.trainable else None
    params_ = [p for n, p in model.named_parameters() if names is None or n in names]
    frozen = [p for p in model.parameters() if not any(p is q for q in params_)]
    saved_flags = [p.requires_grad for p in frozen]
    for p in frozen:
        p.requires_grad_(False)
    opt = torch.optim.AdamW(params_, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999),
                            fused=dev.type in ("cpu", "cuda"))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
    state: dict = {}
    history, evals = [], []
    eval_at = sorted(set(int(s) for s in eval_at))

    def evaluate(step: int) -> None:
        was = model.training
        model.eval()
        with torch.no_grad():
            evals.append({"step": step, **eval_fn(model)})
        model.train(was)

    bar = tqdm(total=steps, disable=not progress, desc=f"unlearn {method}", dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            model.train()
            if eval_fn is not None and 0 in eval_at:
                evaluate(0)
            sums: dict[str, torch.Tensor] = {}
            n_sum = 0
            for step in range(1, steps + 1):
                fi = forget.next_indices()
                batch = Step(model=model, forget=forget.batch(fi), ref=ref, state=state,
                             generator=gen,
                             idk=idk.batch(fi) if idk is not None else None,
                             retain=retain.batch(retain.next_indices()) if retain else None)
                with autocast:
                    loss, parts = spec.fn(batch, **vars(hp))
                loss.backward()
                if grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params_, grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
                for k, v in {"loss": loss.detach(), **parts}.items():
                    sums[k] = sums.get(k, 0) + v.float()
                n_sum += 1
                bar.update(1)
                if step % log_every == 0 or step == steps:
                    entry = {"step": step, **{k: float(v) / n_sum for k, v in sums.items()}}
                    history.append(entry)
                    if not all(math.isfinite(v) for v in entry.values()):
                        raise InputError(f"unlearn {method}: the loss became {entry['loss']} "
                                         f"by step {step} (lr {lr:g}); lower the learning "
                                         "rate or check the method's parameters")
                    sums, n_sum = {}, 0
                    bar.set_postfix({k: f"{v:.3f}" for k, v in entry.items() if k != "step"})
                if eval_fn is not None and step in eval_at:
                    evaluate(step)
    finally:
        bar.close()
        for p, flag in zip(frozen, saved_flags, strict=True):
            p.requires_grad_(flag)
        model.eval()
    return UnlearnResult(steps=steps, seconds=time.perf_counter() - t0, history=history,
                         evals=evals, hyperparameters=dict(vars(hp)),
                         trainable=sum(p.numel() for p in params_))
