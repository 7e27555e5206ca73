"""Train M models (same shapes, different seeds) in one process, as one stacked model.

A tiny model leaves the hardware idle: a step is a few milliseconds of kernel launches
and Python. :func:`train_ensemble` trains M such models at once with an explicit model
dimension: every weight is stacked as ``(M, ...)`` (:class:`StackedLM`), linear layers
are batched matmuls (``torch.baddbmm``), and attention folds M into the batch of one SDPA
call, so a step costs about as many kernel launches as one model's step while doing M
models' work.

Each member is exactly what :func:`kgtest.train.train` would have made from the same
initial model and the same :class:`~kgtest.train.TrainConfig`, up to floating-point
summation order:

- **Data.** Each member has its own documents, tokenizer and batch order (``docs``,
  ``tokenizer`` and ``batch_seeds`` may be given per member: M seeds' corpora), or all
  share one. Member ``m`` draws its batches as the ordinary loop would with
  ``cfg.seed = batch_seeds[m]`` (its own :func:`~kgtest.batches.epoch_plan`, its own
  epoch length); a step cuts the members' length-sorted batches at common ranks into
  stacked micro-batches with the least padding (:func:`~kgtest.batches.joint_runs`; padding
  rows and positions carry no loss). Members whose
  vocabularies differ in size are padded to the largest, the padding rows masked out of
  every softmax. A member therefore equals ``train(model_m, tokenizer_m, docs_m,
  replace(cfg, seed=batch_seeds[m]))``.
- **Loss.** The sum of the members' losses: members share no weights, so each member's
  gradient is its own loss's gradient.
- **Optimiser.** One fused AdamW over the stacked weights: AdamW is elementwise, so this
  is M independent AdamWs (weight decay on matrices only, as in the ordinary loop).
- **Clipping.** Per member: each member's gradient norm is clipped to ``cfg.grad_clip``
  on its own (as ``clip_grad_norm_`` would on the member alone).
- **Early stopping.** Per member: ``eval_fn`` runs on each still-active member; one that
  meets every ``cfg.stop_at`` target stops updating (its weights are restored after every
  later optimiser step) and the run ends when all have stopped or at ``cfg.steps``.
- **Saving.** Each member is copied back into its own Hugging Face model (the ones passed
  in, trained in place) and saved with :func:`kgtest.model.save_model` as an ordinary
  checkpoint in ``out_dir/member-<m>/``.

GPT-2 and Llama models from :func:`kgtest.model.build_model` are supported, without
dropout. Not supported (the ordinary loop has them): resume from a checkpoint,
``torch.compile``, tensorboard, data parallelism.

Examples
--------
>>> import tempfile
>>> from kgtest.corpus.tokenizer import build_tokenizer
>>> from kgtest.model import ModelConfig, build_model
>>> from kgtest.train import TrainConfig
>>> docs = [{"prompt": "Q a r ? A ", "completion": "b"}, {"prompt": "", "completion": "a r b"}]
>>> tok = build_tokenizer([d["prompt"] + d["completion"] for d in docs])
>>> models = [build_model(ModelConfig(preset="tiny"), tok, seed=s) for s in range(3)]
>>> cfg = TrainConfig(steps=5, batch_size=2, warmup=1, progress=False, device="cpu")
>>> res = train_ensemble(models, tok, docs, cfg, tempfile.mkdtemp())
>>> res.steps, [d.name for d in res.model_dirs]
((5, 5, 5), ['member-0', 'member-1', 'member-2'])

Per-member data: each member its own corpus, tokenizer and batch order.

>>> docs_b = docs + [{"prompt": "", "completion": "c r d"}]
>>> tok_b = build_tokenizer([d["prompt"] + d["completion"] for d in docs_b])
>>> pair = [build_model(ModelConfig(preset="tiny"), t, seed=s)
...         for t, s in ((tok, 0), (tok_b, 1))]
>>> res = train_ensemble(pair, [tok, tok_b], [docs, docs_b], cfg, tempfile.mkdtemp(),
...                      batch_seeds=[7, 8])
>>> res.steps, [m.config.vocab_size for m in pair]  # each keeps its own vocabulary
((5, 5), [10, 12])
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from kgtest.batches import (
    EncodedCorpus,
    encode_corpus,
    epoch_batches,
    epoch_plan,
    joint_runs,
)
from kgtest.checkpoint import LOG
from kgtest.errors import InputError
from kgtest.model import save_model
from kgtest.stacked_lm import StackedLM
from kgtest.train import TrainConfig, make_optimizer, make_scheduler, resolve_device
from kgtest.train_config import pinned_threads, run_threads

__all__ = ["StackedLM", "EnsembleResult", "train_ensemble", "MEMBER_DIR", "Shadow"]

MEMBER_DIR = "member-{}"  # in out_dir: member m's saved Hugging Face checkpoint


def _optimizer(stack: StackedLM, models: Sequence[PreTrainedModel], cfg: TrainConfig,
               device: torch.device) -> torch.optim.AdamW:
    """One AdamW over the stacked weights, decay groups as the ordinary loop makes them."""
    ref = make_optimizer(models[0], cfg, device)  # its grouping rule, applied to member 0
    names = {id(p): n for n, p in models[0].named_parameters()}
    groups = [{**{k: v for k, v in g.items() if k != "params"},
               "params": [stack.weight(names[id(p)]) for p in g["params"]]}
              for g in ref.param_groups]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas),
                             fused=device.type in ("cpu", "cuda"))


def clip_per_member(params: Sequence[torch.Tensor], max_norm: float,
                    layout: tuple[int, Sequence[int]] | None = None) -> torch.Tensor:
    """Clip each member's gradient (slice ``m`` of every ``(M, ...)`` grad) to ``max_norm``.

    The per-member version of ``torch.nn.utils.clip_grad_norm_``: same norm (L2 over all
    of the member's gradients), same factor ``max_norm / (norm + 1e-6)`` capped at 1.
    Returns the ``(M,)`` norms before clipping. ``layout`` ``(n, positions)``: these M
    members sit at ``positions`` of a group of ``n`` split across processes (shadows):
    the sum over the parameters is taken in the whole group's ``(P, n)`` layout, whose
    summation order depends on ``n``, so each member is clipped as in the whole group.

    >>> g = torch.nn.Parameter(torch.zeros(2, 3))
    >>> g.grad = torch.tensor([[3., 4, 0], [0.3, 0.4, 0]])
    >>> clip_per_member([g], 1.0).tolist(), g.grad.norm(dim=1).tolist()  # doctest: +ELLIPSIS
    ([5.0, 0.5...], [0.99999..., 0.5...])
    """
    grads = [p.grad for p in params if p.grad is not None]
    sq = torch.stack([g.float().pow(2).flatten(1).sum(1) for g in grads])  # (P, M)
    if layout is None:
        sq = sq.sum(0)  # (M,)
    else:
        where = torch.tensor(list(layout[1]), device=sq.device)
        group = sq.new_zeros(sq.shape[0], layout[0])  # (P, n): zeros for the shadows
        group[:, where] = sq
        sq = group.sum(0)[where]  # (M,)
    norms = sq.sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.dim() - 1)).to(g.dtype))
    return norms


@dataclass(frozen=True)
class EnsembleResult:
    """What :func:`train_ensemble` returns: one entry per member where it is a tuple."""

    steps: tuple[int, ...]  # optimiser steps each member took (fewer after an early stop)
    final_losses: tuple[float, ...]  # mean loss over each member's last log window
    metrics: tuple[dict[str, float], ...]  # each member's latest eval_fn result
    stopped_early: tuple[bool, ...]  # True where every stop_at target was met early
    tokens: tuple[int, ...]  # real tokens of the batches each member trained on
    seconds: float  # wall time of the loop (no setup, no final save)
    cpu_seconds: float  # CPU time of the process over the loop
    model_dirs: tuple[Path, ...]  # out_dir/member-<m>: ordinary HF checkpoints


@dataclass(frozen=True)
class Shadow:
    """A member of the same stacked group that trains in another process.

    Its batches still set each step's padding here, and its vocabulary the stacked
    embedding's size, so the members trained here get the arithmetic of the whole group's
    run (``kgtest run --seeds M --jobs N`` splits a group across processes and
    writes the weights one process writes; batched matmuls do not depend on how many
    members they stack, padding does).
    """

    tokenizer: object  # PreTrainedTokenizerFast
    docs: list  # its training documents
    batch_seed: int | None  # its batch order's seed
    vocab: int  # its model's vocabulary rows
    position: int  # its place in the whole group (the members trained here fill the rest)


def _per_member(value, n: int, name: str, single) -> list:
    """``value`` as a list of n: one per member if it is a sequence of n, else n times."""
    if isinstance(value, (list, tuple)) and value and single(value[0]):
        return [value] * n  # a sequence of documents shared by all
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise InputError(f"ensemble: {len(value)} {name} for {n} models (give one, or "
                             f"one per model)")
        return list(value)
    return [value] * n


def _member_inputs(models, tokenizer, docs, eval_fn, batch_seeds, cfg: TrainConfig,
                   shadows: Sequence[Shadow] = ()):
    """Per-member tokenizers, eval functions, batch seeds and encoded corpora (checked);
    seeds and corpora go on with the shadows'."""
    M = len(models)
    toks = _per_member(tokenizer, M, "tokenizers", lambda t: False)
    doc_sets = _per_member(docs, M, "document sets", lambda d: isinstance(d, dict))
    fns = _per_member(eval_fn, M, "eval functions", lambda f: False)
    seeds = list(batch_seeds) if batch_seeds is not None else [cfg.seed] * M
    if len(seeds) != M:
        raise InputError(f"ensemble: {len(seeds)} batch seeds for {M} models")
    seeds += [s.batch_seed for s in shadows]
    cache: dict[tuple[int, int], EncodedCorpus] = {}  # one encoding per (tokenizer, docs)
    corpora = []
    for tok, ds in zip(toks + [s.tokenizer for s in shadows],
                       doc_sets + [s.docs for s in shadows], strict=True):
        key = (id(tok), id(ds))
        if key not in cache:
            cache[key] = encode_corpus(tok, ds, cfg.answer_only_loss)
        corpora.append(cache[key])
    max_pos = models[0].config.max_position_embeddings if models else 0
    longest = max((c.tokens.shape[1] for c in corpora), default=0)
    if models and longest > max_pos:
        raise InputError(f"train: the longest document has {longest} tokens but "
                         f"the model takes at most {max_pos} (raise model.max_len)")
    return toks, fns, seeds, corpora


def train_ensemble(models: Sequence[PreTrainedModel],
                   tokenizer: PreTrainedTokenizerFast | Sequence[PreTrainedTokenizerFast],
                   docs: Sequence[dict] | Sequence[Sequence[dict]], cfg: TrainConfig,
                   out_dir: str | os.PathLike, *,
                   eval_fn: Callable[[PreTrainedModel], dict[str, float]]
                   | Sequence[Callable] | None = None,
                   batch_seeds: Sequence[int | None] | None = None,
                   shadows: Sequence[Shadow] = ()) -> EnsembleResult:
    """Train ``models`` together (in place), then save each to ``out_dir/member-<m>``.

    Parameters
    ----------
    models : sequence of PreTrainedModel
        M models of one architecture and shape, vocabulary size aside (e.g.
        ``build_model(cfg, tok_s, seed=s)`` for M seeds), without dropout.
    tokenizer : tokenizer or sequence of M tokenizers
        One shared, or member ``m``'s own (saved with it).
    docs : sequence of dict, or a sequence of M sequences of dict
        The training documents, shared or per member (each member its own corpus).
    cfg : TrainConfig
        As for :func:`kgtest.train.train` (the same batches, schedule and clipping; the
        ``compile``, ``checkpoint_every`` and ``tensorboard`` settings are not used).
    out_dir : path
        Gets ``train_log.jsonl`` (per-member losses and tokens as lists) and
        ``member-<m>/``.
    eval_fn : callable or sequence of M callables, optional
        ``eval_fn(model) -> {"name": value}`` on each active member (an ordinary HF model
        holding its current weights) every ``cfg.eval_every`` steps and at the end; a
        member stops once all its ``cfg.stop_at`` targets are met.
    batch_seeds : sequence of M ints, optional
        Member ``m``'s batch order is the ordinary loop's with ``cfg.seed =
        batch_seeds[m]`` (default: ``cfg.seed`` for all).
    shadows : sequence of Shadow, optional
        The group's members trained in other processes: they pad every step's batches and
        the vocabulary here as if they were stacked too (they are not trained here).

    Returns
    -------
    EnsembleResult

    Examples
    --------
    >>> import tempfile
    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> from kgtest.model import ModelConfig, build_model
    >>> docs = [{"prompt": "Q a r ? A ", "completion": "b"}]
    >>> tok = build_tokenizer(["Q a r ? A b"])
    >>> ms = [build_model(ModelConfig(preset="tiny"), tok, seed=s) for s in (0, 1)]
    >>> cfg = TrainConfig(steps=6, warmup=0, eval_every=2, stop_at={"acc": 0.5},
    ...                   progress=False)
    >>> acc = {id(ms[0]): 1.0, id(ms[1]): 0.0}  # member 0 meets its target at once
    >>> res = train_ensemble(ms, tok, docs, cfg, tempfile.mkdtemp(),
    ...                      eval_fn=lambda m: {"acc": acc[id(m)]})
    >>> res.steps, res.stopped_early
    ((2, 6), (True, False))
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    toks, fns, seeds, corpora = _member_inputs(models, tokenizer, docs, eval_fn, batch_seeds,
                                               cfg, shadows)
    with (pinned_threads(run_threads(cfg.threads, device)),  # as kgtest.train.train
          torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])):
        torch.manual_seed(cfg.seed or 0)
        loop = _Loop(models, corpora, seeds, cfg, out, device, fns,
                     [s.vocab for s in shadows], _layout(len(models), shadows))
        seconds, cpu_seconds = loop.run()
    dirs = []
    for m, model in enumerate(models):
        model.to("cpu")
        loop.stack.write_back(model, m).eval()
        dirs.append(save_model(model, toks[m], out / MEMBER_DIR.format(m)))
    return EnsembleResult(steps=tuple(loop.steps), final_losses=tuple(loop.final_loss),
                          metrics=tuple(loop.metrics), stopped_early=tuple(
                              s and n < cfg.steps for s, n in zip(loop.stopped, loop.steps,
                                                                   strict=True)),
                          tokens=tuple(loop.tokens_seen), seconds=seconds,
                          cpu_seconds=cpu_seconds, model_dirs=tuple(dirs))


def _layout(M: int, shadows: Sequence[Shadow]) -> tuple[int, list[int]] | None:
    """``(n, positions)`` of M members beside their shadows in a group of ``n`` (None: no
    shadows)."""
    if not shadows:
        return None
    n, taken = M + len(shadows), {s.position for s in shadows}
    if len(taken) != len(shadows) or not taken <= set(range(n)):
        raise InputError(f"ensemble: shadow positions {sorted(taken)} do not fit a group of {n}")
    return n, [i for i in range(n) if i not in taken]


class _Data:
    """The members' corpora and batch orders: each step's micro-batches, stacked."""

    def __init__(self, corpora: Sequence[EncodedCorpus], seeds: Sequence[int | None],
                 cfg: TrainConfig, device: torch.device, pad_id: int, n: int):
        """``n``: the members trained here, the first ``n`` of ``corpora`` and ``seeds``
        (the rest: shadows, which only pad)."""
        self.corpora, self.cfg, self.device, self.pad = corpora, cfg, device, pad_id
        self.n = n
        # one shared corpus: (N, L_max) on the device (per-member steps build on the host)
        self.tokens = {id(c): c.tokens.to(device) for c in corpora[:1]}
        self.gens = [torch.Generator().manual_seed(s or 0) for s in seeds]  # as train()'s
        self.n_batches = [math.ceil(c.n_docs / cfg.batch_size) for c in corpora]
        self.plans: list = [None] * len(corpora)
        # one corpus and one batch order for all: plan once, one (B, L) batch for every member
        self.shared = len({id(c) for c in corpora}) == 1 and len(set(seeds)) == 1

    def step(self, step: int):
        """Step ``step``'s micro-batches ``[(x, flat, mask)]``, ``(M,)`` supervised and
        real token counts. The members' length-sorted batches are cut at common ranks
        (:func:`~kgtest.batches.joint_runs`, the group's shadows included): micro-batch
        ``j`` stacks every member's ``j``-th slice (an empty one adds a padding block):
        ``x`` ``(M, b, L)`` padded to the longest, ``flat`` ``(M, S)`` positions in that
        padded layout, ``mask`` ``(M, S)``."""
        M, cfg, device = self.n, self.cfg, self.device
        if self.shared:
            return self._shared_step(step, M)
        batches, n_sup, n_tok = [], [], []
        for m, corpus in enumerate(self.corpora):
            epoch, k = divmod(step, self.n_batches[m])
            if k == 0 or self.plans[m] is None:  # the ordinary loop's batches (host tensors)
                self.plans[m] = epoch_batches(corpus, cfg.batch_size, self.gens[m])
            batch, sup, real = self.plans[m][k]  # ascending length
            batches.append(batch)
            n_sup.append(sup)
            n_tok.append(real)
        lengths = [c.lengths[b] for c, b in zip(self.corpora, batches, strict=True)]
        micro = []
        for run in joint_runs(lengths, cfg.micro_batches):  # shadows included: the layout
            rows = [b[i:j] for b, (i, j) in zip(batches, run, strict=True)]
            L = max(int(x[j - 1]) for x, (i, j) in zip(lengths, run, strict=True) if j > i)
            t = torch.arange(1, L)  # target positions; flat = row * L + t - 1, as epoch_plan
            flats = []
            for c, r in zip(self.corpora, rows, strict=True):
                sup = (t >= c.loss_start[r, None]) & (t < c.lengths[r, None])
                i, j = sup.nonzero(as_tuple=True)
                flats.append(i * L + j)
            b, S = max(map(len, rows)), max(map(len, flats))
            x = torch.full((M, b, L), self.pad, dtype=torch.long)
            flat = torch.zeros((M, S), dtype=torch.long)
            mask = torch.zeros((M, S), dtype=torch.bool)
            for m in range(M):
                part = self.corpora[m].tokens[rows[m], :L]  # its corpus may be narrower
                x[m, :len(rows[m]), :part.shape[1]] = part
                flat[m, :len(flats[m])] = flats[m]
                mask[m, :len(flats[m])] = True
            micro.append(tuple(v.to(device, non_blocking=True) for v in (x, flat, mask)))
        return micro, n_sup[:M], n_tok[:M]

    def _shared_step(self, step: int, M: int):
        """As :meth:`step` when all members share the data: ``x`` ``(b, L)``, ``flat``
        ``(S,)`` and no mask."""
        epoch, k = divmod(step, self.n_batches[0])
        if k == 0 or self.plans[0] is None:
            self.plans[0] = epoch_plan(self.corpora[0], self.cfg.batch_size,
                                       self.cfg.micro_batches, self.gens[0], self.device)
        plan, tokens = self.plans[0], self.tokens[id(self.corpora[0])]
        m_lo, m_hi, sup, real = plan.steps[k]
        micro = [(tokens.index_select(0, plan.idx[i_lo:i_hi])[:, :L], plan.flat[f_lo:f_hi],
                  None) for i_lo, i_hi, f_lo, f_hi, L in plan.micro[m_lo:m_hi]]
        return micro, [sup] * M, [real] * M


class _Loop:
    """The state of one ensemble run and its steps (used by :func:`train_ensemble`)."""

    def __init__(self, models, corpora: Sequence[EncodedCorpus], seeds, cfg: TrainConfig,
                 out: Path, device: torch.device, eval_fns, others_vocab=(), layout=None):
        self.models, self.cfg, self.device, self.layout = models, cfg, device, layout
        self.eval_fns, self.log_path = eval_fns, out / LOG
        self.stack = StackedLM(models, others_vocab).to(device).train()
        self.params = list(self.stack.parameters())
        self.opt = _optimizer(self.stack, models, cfg, device)
        self.sched = make_scheduler(self.opt, cfg)
        self.data = _Data(corpora, seeds, cfg, device, models[0].config.pad_token_id or 0,
                          len(models))
        M = len(models)
        self.steps, self.final_loss = [0] * M, [float("nan")] * M
        self.metrics: list[dict[str, float]] = [{} for _ in range(M)]
        self.stopped = [False] * M
        self.frozen: list[torch.Tensor] | None = None  # weights of stopped members
        self.tokens_seen = [0] * M
        self.log_path.write_text("")

    def log(self, entry: dict) -> None:
        with self.log_path.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def evaluate(self, step: int) -> list[int]:
        """eval_fn on each active member (an HF model with its weights); the newly stopped."""
        newly = []
        for m, model in enumerate(self.models):
            if self.stopped[m] or self.eval_fns[m] is None:
                continue
            was = next(model.parameters()).device
            self.stack.write_back(model.to(self.device), m).eval()
            with torch.no_grad():
                self.metrics[m] = {k: float(v) for k, v in self.eval_fns[m](model).items()}
            model.to(was)
            self.log({"step": step, "member": m,
                      **{f"eval/{k}": v for k, v in self.metrics[m].items()}})
            missing = sorted(set(self.cfg.stop_at) - set(self.metrics[m]))
            if missing:
                raise InputError(f"train: stop_at names {missing} but eval_fn gives "
                                 f"{sorted(self.metrics[m])}")
            stop_at = self.cfg.stop_at
            if stop_at and all(self.metrics[m][k] >= v for k, v in stop_at.items()):
                self.stopped[m] = True
                newly.append(m)
        return newly

    def _update(self, active: torch.Tensor) -> None:
        """One optimizer step (gradients clipped per member); the stopped members (``active``
        ``(M,)`` False) get their frozen weights back."""
        if self.cfg.grad_clip > 0:
            clip_per_member(self.params, self.cfg.grad_clip, self.layout)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        if self.frozen is not None:  # stopped members keep their weights
            with torch.no_grad():
                for p, f in zip(self.params, self.frozen, strict=True):
                    p.copy_(torch.where(active.view(-1, *[1] * (p.dim() - 1)), p, f))

    def run(self) -> tuple[float, float]:
        """Train to cfg.steps or until every member stopped: (wall s, CPU s) of the loop."""
        cfg, device, stack = self.cfg, self.device, self.stack
        M = len(self.models)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
        loss_sum = torch.zeros(M, device=device)  # (M,) summed on the device: no sync a step
        n_sum = [0] * M
        active = torch.ones(M, dtype=torch.bool, device=device)
        bar = tqdm(total=cfg.steps, disable=not cfg.progress, desc=f"train x{M}",
                   dynamic_ncols=True)

        def flush(members) -> None:  # close members' loss windows
            if not members:
                return
            means = (loss_sum / torch.tensor([max(n, 1) for n in n_sum], device=device)).tolist()
            for m in members:
                if n_sum[m]:
                    self.final_loss[m], n_sum[m] = means[m], 0
                    loss_sum[m] = 0.0

        t0, c0 = time.perf_counter(), time.process_time()
        step = 0
        while step < cfg.steps and not all(self.stopped):
            micro, n_sup, n_tokens = self.data.step(step)
            n_sup_t = (n_sup[0] if self.data.shared  # (M,) counts, or one shared count
                       else torch.tensor(n_sup, dtype=torch.float32, device=device))
            loss = torch.zeros(M, device=device)
            for x, flat, mask in micro:
                with autocast:
                    part = stack.losses(x, flat, mask) / n_sup_t  # (M,)
                part.sum().backward()  # members share no weights: each gets its own grad
                loss += part.detach()
            self._update(active)
            loss_sum += loss * active
            step += 1
            live = [m for m in range(M) if not self.stopped[m]]
            for m in live:
                self.steps[m] = step
                n_sum[m] += 1
                self.tokens_seen[m] += n_tokens[m]
            bar.update(1)
            last = step == cfg.steps
            if step % cfg.log_every == 0 or last:
                flush(live)
                bad = [m for m in live if not math.isfinite(self.final_loss[m])]
                if bad:  # checked per log window: no device sync on every step
                    bar.close()
                    raise InputError(f"train: the loss of ensemble member(s) "
                                     f"{', '.join(map(str, bad))} became "
                                     f"{self.final_loss[bad[0]]} by step {step} (lr "
                                     f"{cfg.lr:g}); lower train.lr or set train.grad_clip")
                self.log({"step": step, "loss": [self.final_loss[m] for m in range(M)],
                          "active": len(live), "lr": self.sched.get_last_lr()[0],
                          "tokens": list(self.tokens_seen),
                          "elapsed_s": round(time.perf_counter() - t0, 3)})
                bar.set_postfix({"loss": f"{sum(self.final_loss) / M:.4f}"})
            if any(f is not None for f in self.eval_fns) and (
                    last or (cfg.eval_every and step % cfg.eval_every == 0)):
                newly = self.evaluate(step)
                if newly:
                    flush(newly)
                    active[newly] = False
                    with torch.no_grad():
                        if self.frozen is None:
                            self.frozen = [p.detach().clone() for p in self.params]
                        for p, f in zip(self.params, self.frozen, strict=True):
                            f[newly] = p[newly]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        bar.close()
        flush([m for m in range(M) if n_sum[m]])
        return seconds, cpu_seconds
