"""One unlearning method applied to M seeds' originals as one stacked model.

``kgtest run SPEC --seeds M`` trains the M originals as one stacked model
(:mod:`kgtest.ensemble`); this module unlearns them the same way. For each method (and
deep or not), :func:`unlearn_members` takes the M seeds' trained runs and

- **tunes** them together: each learning rate of the grid is one run of the stacked model
  (:class:`~kgtest.stacked_lm.StackedLM` built from the M originals), every member on its
  own validation forget set, retain documents, frozen reference (NPO, SimNPO's retain KL,
  IdkDPO) and batch order (its own seed), evaluated on its own validation targets and
  retain sample at its own grid steps (epochs of *its* forget set); each member then
  chooses its own grid point (:func:`~kgtest.unlearn.tune.choose`);
- **unlearns** the reported targets: members that chose the same learning rate run as one
  stacked model to the largest chosen number of steps, each member's weights taken at its
  own step count (the learning rate is constant, so the model after ``k`` steps of a longer
  run is the ``k``-step model, the same fact tuning relies on);
- **writes** each member's ordinary ``unlearn-<method>[-deep]-<key>`` stage (same key,
  same files, the same ``unlearn.json`` fields plus ``"stacked": {"seeds", "member"}``),
  so the probes, the report and the cache see what a separate run writes.

A step is the separate loop's step for every member at once: one forward of the stacked
model per batch kind (forget, retain, idk; model and reference), each member's loss
computed by the registered method on its own slice (a member view answers
:func:`~kgtest.unlearn.methods.mean_nll` and friends), the sum backpropagated (members
share no weights), each member's gradient clipped on its own
(:func:`~kgtest.ensemble.clip_per_member`), one fused AdamW (elementwise: M independent
AdamWs). Members equal separate runs up to floating-point summation order
(tests/unlearn/test_stacked.py).

Not stacked (the ordinary per-seed path, with the reason logged): RMU (its loss reads one
block's activations and updates a subset of the weights); models :class:`StackedLM`
refuses (dropout, another architecture); seeds whose ``[unlearn]`` settings differ (they
form separate groups); a group where any member's loss becomes non-finite (the ordinary
path then raises for that seed alone, as a separate run would).

Examples
--------
>>> stackable("NPO"), stackable("RMU") is not None
(None, True)
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kgtest.ensemble import clip_per_member
from kgtest.errors import InputError
from kgtest.stacked_lm import StackedLM
from kgtest.train import encode_corpus, resolve_device
from kgtest.unlearn.loop import LoopConfig, _check_fits, _Sampler
from kgtest.unlearn.methods import METHODS, Batch, Step

__all__ = ["stackable", "StackedResult", "stacked_unlearn"]


def stackable(method: str) -> str | None:
    """Why ``method`` cannot be unlearned stacked (None: it can)."""
    spec = METHODS.get(method)
    if spec.trainable is not None or method == "RMU":
        return (f"{method} reads one block's activations and updates a subset of the "
                "weights, which the stacked model does not expose")
    return None


# --- the stacked loop -------------------------------------------------------------------------


class _View:
    """Member ``m`` of a stacked model (or of its frozen reference), as a method sees it:
    the answer logits of the member's own batches (see ``methods._answer_logits``)."""

    def __init__(self, loop: _StackedLoop, which: str, m: int):
        self.loop, self.which, self.m = loop, which, m

    def answer_logits(self, batch: Batch) -> torch.Tensor:
        return self.loop.answer_logits(self.which, self.m, batch)


class _StackedLoop:
    """One stacked unlearning run: M members' samplers, the stacked model and reference."""

    def __init__(self, models, toks, forget, retain, idk, spec, hp, cfg: LoopConfig,
                 seeds: Sequence[int]):
        self.spec, self.hp, self.cfg = spec, hp, cfg
        self.dev = dev = resolve_device(cfg.device)
        self.M = M = len(models)
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]  # as each loop's
        self.forget, self.idk, self.retain = [], [None] * M, [None] * M
        for m in range(M):  # the samplers in the separate loop's order (one generator each)
            enc = encode_corpus(toks[m], forget[m])
            _check_fits(models[m], enc, "forget")
            self.forget.append(_Sampler(enc, cfg.batch_size, self.gens[m], dev))
            if spec.pairs:
                self.idk[m] = _Sampler(encode_corpus(toks[m], idk[m]), cfg.batch_size,
                                       self.gens[m], dev)
            if spec.needs_retain(hp):
                enc = encode_corpus(toks[m], retain[m])
                _check_fits(models[m], enc, "retain")
                self.retain[m] = _Sampler(enc, cfg.retain_batch_size, self.gens[m], dev)
        self.stack = StackedLM(models).to(dev).train()
        self.ref = None
        if spec.needs_reference(hp):
            self.ref = StackedLM(models).to(dev).eval().requires_grad_(False)
        self.params = list(self.stack.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                     betas=(0.9, 0.999), fused=dev.type in ("cpu", "cuda"))
        self.states: list[dict] = [{} for _ in range(M)]
        self.trainable = [sum(p.numel() for p in x.parameters()) for x in models]  # (M,)
        self._roles: dict[int, tuple[str, int]] = {}  # id(batch) -> (kind, member)
        self._batches: dict[str, list[Batch]] = {}
        self._hidden: dict[tuple[str, str], torch.Tensor] = {}

    def answer_logits(self, which: str, m: int, batch: Batch) -> torch.Tensor:
        """Member ``m``'s ``(S, V_m)`` float logits at its batch's answer positions: one
        stacked forward per (model or reference, batch kind), shared by the members."""
        kind, owner = self._roles[id(batch)]
        assert owner == m, "a member view was given another member's batch"
        key = (which, kind)
        if key not in self._hidden:
            parts = self._batches[kind]
            B = max(b.ids.shape[0] for b in parts)
            L = max(b.ids.shape[1] for b in parts)
            x = torch.zeros(self.M, B, L, dtype=torch.long, device=self.dev)  # (M, B, L)
            for i, b in enumerate(parts):  # right and bottom padding: causal, rows apart
                x[i, :b.ids.shape[0], :b.ids.shape[1]] = b.ids
            stack = self.stack if which == "model" else self.ref
            self._hidden[key] = stack.hidden(x).reshape(self.M, B, L, -1)  # (M, B, L, D)
        h = self._hidden[key][m, :batch.ids.shape[0], :batch.ids.shape[1]]  # (B_m, L_m, D)
        stack = self.stack if which == "model" else self.ref
        head = stack._head()[m, :stack.vocab[m]]  # (V_m, D): the member's own rows
        return F.linear(h[batch.predict], head).float()  # (S, V_m)

    def step(self, active: Sequence[int], autocast) -> dict[int, dict]:
        """One optimiser step of every member (losses of ``active`` members only)."""
        self._roles, self._batches, self._hidden = {}, {}, {}
        steps = []
        for m in range(self.M):
            fi = self.forget[m].next_indices()
            b = {"forget": self.forget[m].batch(fi),
                 "idk": self.idk[m].batch(fi) if self.idk[m] is not None else None,
                 "retain": self.retain[m].batch(self.retain[m].next_indices())
                 if self.retain[m] is not None else None}
            for kind, batch in b.items():
                if batch is not None:
                    self._roles[id(batch)] = (kind, m)
                    self._batches.setdefault(kind, []).append(batch)
            steps.append(Step(model=_View(self, "model", m), forget=b["forget"],
                              ref=_View(self, "ref", m) if self.ref is not None else None,
                              state=self.states[m], generator=self.gens[m], idk=b["idk"],
                              retain=b["retain"]))
        out, total = {}, None
        with autocast:
            for m in active:
                loss, parts = self.spec.fn(steps[m], **vars(self.hp))
                total = loss if total is None else total + loss
                out[m] = {"loss": loss.detach(), **parts}
        if total is not None:
            total.backward()
            if self.cfg.grad_clip > 0:
                clip_per_member(self.params, self.cfg.grad_clip)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        self._roles, self._batches, self._hidden = {}, {}, {}
        return out


@dataclass(frozen=True)
class StackedResult:
    """What :func:`stacked_unlearn` returns: per member where a list."""

    steps: list  # each member's steps
    history: list  # each member's history, as :class:`~kgtest.unlearn.loop.UnlearnResult`'s
    evals: list  # each member's evals
    seconds: float  # wall time of the loop
    hyperparameters: dict
    trainable: list  # parameters updated (elements), per member


def stacked_unlearn(models, toks, forget, retain=None, method: str = "NPO", params=None, *,
                    idk=None, loop: LoopConfig | None = None, seeds: Sequence[int],
                    steps: Sequence[int], eval_fns=None, eval_at=None,
                    take: Sequence | None = None) -> StackedResult:
    """Unlearn M models as one stacked model: member ``m`` as :func:`~kgtest.unlearn.
    loop.unlearn` would with ``loop.seed = seeds[m]`` and ``loop.steps = steps[m]``.

    The ``models`` are left unchanged unless ``take`` gives, per member, a model to
    receive its weights after its ``steps[m]`` steps. ``eval_fns[m](model)`` runs on a
    copy holding member ``m``'s weights after each step in ``eval_at[m]``. ``forget``,
    ``retain`` and ``idk`` are per-member document lists.

    Examples
    --------
    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> from kgtest.model import ModelConfig, build_model
    >>> docs = [{"prompt": "Q a r ? A ", "completion": "b"}, {"prompt": "", "completion": "a r b"}]
    >>> tok = build_tokenizer([d["prompt"] + d["completion"] for d in docs])
    >>> ms = [build_model(ModelConfig(preset="tiny"), tok, seed=s) for s in (0, 1)]
    >>> res = stacked_unlearn(ms, [tok, tok], [docs[:1]] * 2, [docs[1:]] * 2, "NPO",
    ...                       loop=LoopConfig(lr=1e-3, progress=False, device="cpu"),
    ...                       seeds=[0, 1], steps=[3, 2])
    >>> [h[-1]["step"] for h in res.history], sorted(res.history[0][-1])
    ([3, 2], ['forget', 'loss', 'retain', 'step'])
    """
    cfg = loop or LoopConfig()
    spec = METHODS.get(method)
    hp = spec.resolve(params)
    M = len(models)
    retain = retain or [()] * M
    why = stackable(method)
    if why:
        raise InputError(f"stacked unlearning: {why}")
    if spec.pairs and idk is None:
        raise InputError(f"unlearn: {method} needs an 'unknown' document for every forget "
                         "question (idk_docs aligned with forget_docs)")
    for m in range(M):
        if not forget[m]:
            raise InputError(f"unlearn: {method}: the forget set is empty")
        if spec.pairs and len(idk[m]) != len(forget[m]):
            raise InputError(f"unlearn: {method} needs an 'unknown' document for every "
                             "forget question (idk_docs aligned with forget_docs)")
        if spec.needs_retain(hp) and not retain[m]:
            raise InputError(f"unlearn: {method} has a retain term (alpha != 0) but there "
                             "are no retain documents")
    run = _StackedLoop(models, toks, forget, retain, idk, spec, hp, cfg, seeds)
    eval_at = [set(e) for e in eval_at] if eval_at else [set()] * M
    work = [copy.deepcopy(models[m]).to(run.dev) if eval_at[m] else None for m in range(M)]
    history, evals = [[] for _ in range(M)], [[] for _ in range(M)]
    sums: list[dict] = [{} for _ in range(M)]
    n_sum = [0] * M
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=run.dev.type == "cuda")
    total = max(steps)
    bar = tqdm(total=total, disable=not cfg.progress, desc=f"unlearn {method} x{M}",
               dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[run.dev] if run.dev.type == "cuda" else []):
            torch.manual_seed(seeds[0])
            for step in range(1, total + 1):
                active = [m for m in range(M) if step <= steps[m]]
                for m, parts in run.step(active, autocast).items():
                    for k, v in parts.items():
                        sums[m][k] = sums[m].get(k, 0) + v.float()
                    n_sum[m] += 1
                    if step % cfg.log_every == 0 or step == steps[m]:
                        history[m].append(_logged(spec.name, cfg.lr, step, sums[m], n_sum[m]))
                        sums[m], n_sum[m] = {}, 0
                    if step in eval_at[m]:
                        run.stack.write_back(work[m], m).eval()
                        with torch.no_grad():
                            evals[m].append({"step": step, **eval_fns[m](work[m])})
                    if take is not None and step == steps[m]:
                        run.stack.write_back(take[m].to(run.dev), m).eval()
                bar.update(1)
    finally:
        bar.close()
    return StackedResult(steps=list(steps), history=history, evals=evals,
                         seconds=time.perf_counter() - t0,
                         hyperparameters=dict(vars(hp)), trainable=run.trainable)


def _logged(name: str, lr: float, step: int, sums: dict, n_sum: int) -> dict:
    """A history entry (means since the last one); non-finite: the separate loop's error."""
    entry = {"step": step, **{k: float(v) / n_sum for k, v in sums.items()}}
    if not all(np.isfinite(v) for v in entry.values()):
        raise InputError(f"unlearn {name}: the loss became {entry['loss']} by step {step} "
                         f"(lr {lr:g}); lower the learning rate or check the method's "
                         "parameters")
    return entry
