"""The training loop: plain PyTorch, built for speed on tiny models.

``train(model, tokenizer, docs, cfg, out_dir)`` trains a causal LM on rendered documents
(``{"prompt", "completion", ...}``, each ``[bos] + prompt + completion + [eos]``) and saves
it with :func:`kgtest.model.save_model`. Where the time goes on a tiny model, and what this
loop does about it:

- **Almost no padding.** The whole tokenised corpus lives on the device as one right-padded
  ``(N, L_max)`` tensor. Batches are drawn at random (as a shuffling sampler would), and
  each is sorted by length and cut into at most ``micro_batches`` runs of (nearly) equal
  length with the least padding; the runs are forwarded one by one with gradient
  accumulation, so a step's gradient is the padded batch's, without the padding work,
  and every step still mixes document kinds (batches of one length would not: on a
  symbolic corpus, length is kind). Right padding needs no attention mask (causal
  attention never looks right), so SDPA runs its plain causal kernel.
- **No per-example Python in the step.** An epoch's plan (document indices and the flat
  positions of supervised tokens, per micro-batch) is built with tensor ops once per epoch and
  moved to the device in one copy; a step is a few slices and ``index_select`` calls.
- **The LM head only where there is a loss.** The body gives final hidden states
  ``(B, T, D)``; only the supervised positions ``(S, D)`` go through the head, so the
  ``(B, T, V)`` logits of every prompt and pad position are never built. With answer-only
  loss (the default for QA/CoT; a statement's empty prompt makes it fully supervised)
  ``S`` is a small fraction of ``B * T``.
- **No host sync per step.** The loss is summed on the device and read every
  ``log_every`` steps; token counts are known on the host from the plan.
- AdamW, fused on the CPU too (4x faster than the per-tensor loop there), with weight
  decay on matrices only (not biases, norms or embeddings); linear warmup then cosine;
  gradient clipping; bf16 autocast on CUDA only (bf16 on a CPU without AMX is ~200x
  slower); optional ``torch.compile``.

Checkpoints (model, optimiser, scheduler, RNG states, the batch-order generator, step) are
written atomically to ``out_dir/checkpoint.pt`` (:mod:`kgtest.checkpoint`); ``resume=True``
continues from it, and on the CPU with the same seed ends with bit-identical weights to an
uninterrupted run. The corpus tensors and the epoch plan live in :mod:`kgtest.batches`.

**Data parallel.** Under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) the loop
joins the process group (:mod:`kgtest.distributed`; NCCL on GPUs, gloo on CPUs) and wraps
the loss in ``DistributedDataParallel``. Every rank draws the same global batches of
``batch_size`` documents and takes its shard of each; each rank's summed token loss is
divided by the *global* batch's supervised-token count, so the averaged gradient is the
global batch's, exactly as one process would compute it: the results do not depend on the
number of processes, up to floating-point summation order. Rank 0 evaluates, logs, writes
checkpoints and saves the final model; the other ranks get its eval metrics, so all stop
together.

Examples
--------
>>> import tempfile
>>> from kgtest.corpus.tokenizer import build_tokenizer
>>> from kgtest.model import ModelConfig, build_model
>>> docs = [{"prompt": "Q a r ? A ", "completion": "b"}, {"prompt": "", "completion": "a r b"}]
>>> tok = build_tokenizer([d["prompt"] + d["completion"] for d in docs])
>>> model = build_model(ModelConfig(preset="tiny"), tok, seed=0)
>>> cfg = TrainConfig(steps=5, batch_size=2, warmup=1, progress=False, device="cpu")
>>> res = train(model, tok, docs, cfg, tempfile.mkdtemp())
>>> res.steps, res.model_dir.name
(5, 'model')
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from kgtest import distributed
from kgtest.batches import EncodedCorpus, EpochPlan, encode_corpus, epoch_plan, split_by_length
from kgtest.checkpoint import (
    CHECKPOINT,
    LOG,
    MUST_MATCH,
    atomic_torch_save,
    corpus_signature,
    load_checkpoint,
    read_log,
)
from kgtest.config import to_dict
from kgtest.errors import InputError
from kgtest.model import base_model, head_logits, save_model
from kgtest.train_config import (
    TrainConfig,
    TrainResult,
    default_threads,
    pinned_threads,
    resolve_device,
    run_threads,
)

__all__ = ["TrainConfig", "TrainResult", "EncodedCorpus", "encode_corpus", "train",
           "supervised_loss", "split_by_length", "default_threads",
           "resolve_device", "make_optimizer", "make_scheduler", "CHECKPOINT", "LOG"]


def _check_loss(loss: float, step: int, cfg: TrainConfig, bar) -> None:
    """Stop with one line when the loss is NaN or infinite (no point training on)."""
    if not math.isfinite(loss):
        bar.close()
        raise InputError(f"train: the loss became {loss} by step {step} (lr {cfg.lr:g}); "
                         "lower train.lr or set train.grad_clip")


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device
                   ) -> torch.optim.AdamW:
    """Fused AdamW with weight decay on weight matrices only (not biases, norms, embeddings).

    >>> opt = make_optimizer(nn.Linear(2, 2), TrainConfig(), torch.device("cpu"))
    >>> [len(g["params"]) for g in opt.param_groups]
    [1, 1]
    """
    embeds = {id(p) for m in model.modules() if isinstance(m, nn.Embedding)
              for p in m.parameters()}
    decay, no_decay = [], []
    for _, p in model.named_parameters():  # named_parameters yields a tied weight once
        if p.requires_grad:
            (decay if p.dim() >= 2 and id(p) not in embeds else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas),
                             fused=device.type in ("cpu", "cuda"))


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``cfg.warmup`` steps, then cosine to ``lr * min_lr_ratio``.

    >>> opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> sch = make_scheduler(opt, TrainConfig(steps=10, warmup=2, min_lr_ratio=0.0))
    >>> [round(sch.lr_lambdas[0](s), 2) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    warmup, total, floor = cfg.warmup, cfg.steps, cfg.min_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def supervised_loss(model: PreTrainedModel, x: torch.Tensor, flat: torch.Tensor, *,
                    body: Callable | None = None, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy over chosen positions of a right-padded batch.

    Parameters
    ----------
    model : PreTrainedModel
    x : torch.Tensor
        ``(B, L)`` token ids, right-padded (so no attention mask is needed).
    flat : torch.Tensor
        ``(S,)`` positions ``b * L + t - 1`` in the flattened batch: the hidden state at
        ``(b, t - 1)`` predicts the supervised token ``x[b, t]``.
    body : callable, optional
        The transformer body to call (default ``base_model(model)``; a compiled one in
        :func:`train`).
    reduction : {"mean", "sum"}
        Over the ``S`` positions (``"sum"`` for micro-batches of one step).

    Examples
    --------
    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> from kgtest.model import ModelConfig, build_model
    >>> tok = build_tokenizer(["a b c"])
    >>> m = build_model(ModelConfig(preset="tiny"), tok)
    >>> x = torch.tensor([[1, 4, 5, 2]])
    >>> ref = m(x, labels=torch.tensor([[-100, -100, 5, 2]])).loss
    >>> bool(torch.allclose(supervised_loss(m, x, torch.tensor([1, 2])), ref))
    True
    """
    body = base_model(model) if body is None else body
    # inputs_embeds rather than input_ids: skips HF's check for pad ids, a host sync
    embeds = model.get_input_embeddings()(x)  # (B, L, D)
    h = body(inputs_embeds=embeds, use_cache=False).last_hidden_state  # (B, L, D)
    h = h.reshape(-1, h.shape[-1]).index_select(0, flat)  # (S, D)
    logits = head_logits(model, h)  # (S, V): the head at supervised positions only
    target = x.reshape(-1).index_select(0, flat + 1)  # (S,)
    return F.cross_entropy(logits.float(), target, reduction=reduction)


# --- the loop ------------------------------------------------------------------------------

class _SummedLoss(nn.Module):
    """``forward(x, flat)`` -> summed supervised loss: the module DDP wraps."""

    def __init__(self, model: PreTrainedModel, body: Callable):
        super().__init__()
        self.model = model
        self._body = [body]  # a list: a compiled body must not register its parameters twice

    def forward(self, x: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        return supervised_loss(self.model, x, flat, body=self._body[0], reduction="sum")


class _Run:
    """The state of one training run and the steps that act on it (used by :func:`train`)."""

    def __init__(self, model, corpus: EncodedCorpus, cfg: TrainConfig, out: Path,
                 device: torch.device, eval_fn, resume: bool,
                 dist_info: distributed.DistInfo | None = None, extra=None):
        self.model, self.cfg, self.corpus, self.device = model, cfg, corpus, device
        self.extra = extra  # (step -> documents, tokenizer) or None
        self.eval_fn = eval_fn
        self.dist = dist_info or distributed.DistInfo()
        self.main = self.dist.is_main  # only rank 0 writes logs and checkpoints
        self.ckpt_path, self.log_path = out / CHECKPOINT, out / LOG
        model.to(device).train()
        self.opt = make_optimizer(model, cfg, device)
        self.sched = make_scheduler(self.opt, cfg)
        self.gen = torch.Generator().manual_seed(cfg.seed or 0)  # batch order, on the CPU
        self.epoch_gen_state = self.gen.get_state()  # generator state before plan_epoch
        self.plan_epoch, self.plan = -1, None
        self.n_batches = math.ceil(corpus.n_docs / cfg.batch_size)
        self.step, self.tokens_seen, self.metrics = 0, 0, {}
        self.finished = self.stopped = False
        self.rng = None  # (cpu, cuda) RNG states to restore after a resume
        log_lines: list[str] = []
        if resume and self.ckpt_path.exists():
            log_lines = self._restore()
        if self.main:
            self.log_path.write_text("".join(f"{line}\n" for line in log_lines))
        self.tb = None
        if cfg.tensorboard and self.main:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(out / "tb"), purge_step=self.step or None)
            except ImportError:
                pass

    def _restore(self) -> list[str]:
        ck = load_checkpoint(self.ckpt_path)
        old, now = ck.get("config", {}), to_dict(self.cfg)
        for key in MUST_MATCH:
            if json.dumps(old.get(key)) != json.dumps(now[key]):
                raise InputError(f"{self.ckpt_path}: written with train.{key}={old.get(key)!r}, "
                                 f"now {now[key]!r}; resume needs the same setting")
        if ck["corpus"] != corpus_signature(self.corpus):
            raise InputError(f"{self.ckpt_path}: written for a different corpus; cannot resume")
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.rng = (ck["torch_rng"], ck["cuda_rng"])
        self.epoch_gen_state, self.plan_epoch = ck["epoch_gen_state"], int(ck["epoch"])
        self.gen.set_state(self.epoch_gen_state)
        if self.plan_epoch >= 0:  # replay the checkpoint epoch's plan; gen advances past it
            self.plan = self._new_plan()
        self.step, self.tokens_seen = int(ck["step"]), int(ck["tokens"])
        self.metrics, self.finished = dict(ck["metrics"]), bool(ck["finished"])
        self.stopped = bool(ck["stopped"])
        if not self.main:
            return []
        return read_log(self.log_path, self.step)  # a killed run may have logged further

    def log(self, entry: dict) -> None:
        if not self.main:
            return
        with self.log_path.open("a") as f:
            f.write(json.dumps(entry) + "\n")
        if self.tb is not None:
            for k, v in entry.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, entry["step"])

    def checkpoint(self) -> None:
        if not self.main:
            return
        cuda = self.device.type == "cuda"
        atomic_torch_save({
            "step": self.step, "tokens": self.tokens_seen, "metrics": self.metrics,
            "finished": self.finished, "stopped": self.stopped, "epoch": self.plan_epoch,
            "config": to_dict(self.cfg), "corpus": corpus_signature(self.corpus),
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if cuda else None,
            "epoch_gen_state": self.epoch_gen_state,
        }, self.ckpt_path)

    def evaluate(self) -> bool:
        """Run eval_fn and log it; True when every stop_at target is met.

        Under data parallelism rank 0 evaluates and every rank gets its metrics, so all
        ranks stop at the same step.
        """
        metrics: dict[str, float] | str = {}
        if self.main:
            self.model.eval()
            try:
                with torch.no_grad():
                    metrics = {k: float(v) for k, v in self.eval_fn(self.model).items()}
            except Exception as err:
                distributed.broadcast_object(f"{type(err).__name__}: {err}")  # free the others
                raise
            finally:
                self.model.train()
        metrics = distributed.broadcast_object(metrics)
        if isinstance(metrics, str):
            raise RuntimeError(f"train: eval_fn failed on rank 0 ({metrics})")
        self.metrics = metrics
        self.log({"step": self.step, **{f"eval/{k}": v for k, v in self.metrics.items()}})
        missing = sorted(set(self.cfg.stop_at) - set(self.metrics))
        if missing:
            raise InputError(f"train: stop_at names {missing} but eval_fn gives "
                             f"{sorted(self.metrics)}")
        stop_at = self.cfg.stop_at
        return bool(stop_at) and all(self.metrics[k] >= v for k, v in stop_at.items())

    def _new_plan(self) -> EpochPlan:
        cfg, d = self.cfg, self.dist
        return epoch_plan(self.corpus, cfg.batch_size, cfg.micro_batches, self.gen, self.device,
                          rank=d.rank, world_size=d.world_size)

    def batch(self) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int, int]:
        """This step's micro-batches ``[((b, L) ids, (s,) positions)]``, supervised and
        real token counts."""
        epoch, k = divmod(self.step, self.n_batches)
        if epoch != self.plan_epoch:
            self.epoch_gen_state = self.gen.get_state()  # a resume replays this epoch
            self.plan, self.plan_epoch = self._new_plan(), epoch
        m_lo, m_hi, n_sup, n_tokens = self.plan.steps[k]
        parts = []
        for i_lo, i_hi, f_lo, f_hi, L in self.plan.micro[m_lo:m_hi]:
            x = self.tokens.index_select(0, self.plan.idx[i_lo:i_hi])[:, :L]  # (b, L)
            parts.append((x, self.plan.flat[f_lo:f_hi]))
        if self.extra is not None:
            part, sup, real = self._extra_part()
            n_sup, n_tokens = n_sup + sup, n_tokens + real
            if part is not None:
                parts.append(part)
        return parts, n_sup, n_tokens

    def _extra_part(self) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, int, int]:
        """This step's fresh documents as one more micro-batch (this rank's share)."""
        make, tokenizer = self.extra
        docs = make(self.step)
        if not docs:
            return None, 0, 0
        enc = encode_corpus(tokenizer, docs, self.cfg.answer_only_loss)
        if enc.tokens.shape[1] > self.model.config.max_position_embeddings:
            raise InputError(f"train: a fresh document of step {self.step} has "
                             f"{enc.tokens.shape[1]} tokens, more than the model takes")
        n_sup = int((enc.lengths - enc.loss_start).clamp(min=0).sum())
        rows = torch.arange(enc.n_docs)[self.dist.rank::self.dist.world_size]
        if not len(rows):
            return None, n_sup, int(enc.lengths.sum())
        L = int(enc.lengths[rows].max())
        t = torch.arange(1, L)  # (L-1,) target positions
        sup = (t >= enc.loss_start[rows, None]) & (t < enc.lengths[rows, None])  # (b, L-1)
        r, c = sup.nonzero(as_tuple=True)
        x = enc.tokens[rows, :L].to(self.device)  # (b, L)
        return (x, (r * L + c).to(self.device)), n_sup, int(enc.lengths.sum())

    def _ddp(self, forward: Callable) -> DistributedDataParallel | None:
        """Under torchrun: DDP over a module whose forward is the summed loss; it
        all-reduces (averages) the gradients in the backward of each step's last
        micro-batch. No buffer broadcast: ranks may run different numbers of micro-batches."""
        if not self.dist.enabled:
            return None
        device = self.device
        return DistributedDataParallel(
            _SummedLoss(self.model, forward),
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False)

    def _step(self, forward: Callable, ddp, autocast, params: list) -> torch.Tensor:
        """One optimiser step on this step's batch: its mean loss (on the device)."""
        world = self.dist.world_size
        parts, n_sup, n_tokens = self.batch()
        loss = torch.zeros((), device=self.device)
        for i, (x, flat) in enumerate(parts):  # gradient accumulation over length runs
            sync = ddp is None or i == len(parts) - 1
            with contextlib.nullcontext() if sync else ddp.no_sync():
                with autocast:
                    if ddp is None:
                        part = supervised_loss(self.model, x, flat, body=forward,
                                               reduction="sum")
                    else:
                        part = ddp(x, flat)
                # the step's loss is the mean over all its targets (all ranks' targets:
                # n_sup is the global batch's count); DDP divides the gradient sum by
                # the world size, which the factor `world` undoes
                part = part / n_sup
                (part * world if world > 1 else part).backward()
            loss += part.detach()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip, foreach=True)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.tokens_seen += n_tokens
        self.step += 1
        return loss

    def run(self) -> tuple[float, float, float]:
        """Train to cfg.steps (or an early stop): (last mean loss, wall s, CPU s) of the loop."""
        cfg, model, device = self.cfg, self.model, self.device
        self.tokens = self.corpus.tokens.to(device)  # (N, L_max): the whole corpus on device
        body = base_model(model)
        forward = torch.compile(body, dynamic=True) if cfg.compile else body
        params = [p for p in model.parameters() if p.requires_grad]
        ddp = self._ddp(forward)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
        loss_sum = torch.zeros((), device=device)  # summed on the device: no per-step sync
        n_sum, final_loss = 0, float("nan")
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (cfg.progress and self.main),
                   desc="train", dynamic_ncols=True)

        def show() -> None:
            bar.set_postfix({"loss": f"{final_loss:.4f}",
                             **{k: f"{v:.3f}" for k, v in self.metrics.items()}})

        t0, c0 = time.perf_counter(), time.process_time()
        while not self.finished and self.step < cfg.steps:
            loss_sum += self._step(forward, ddp, autocast, params).detach()
            n_sum += 1
            bar.update(1)
            last = self.step == cfg.steps
            if self.step % cfg.log_every == 0 or last:
                distributed.all_reduce_sum(loss_sum)  # each rank holds its shard's share
                final_loss = (loss_sum / n_sum).item()  # the only sync, every log_every steps
                _check_loss(final_loss, self.step, cfg, bar)
                loss_sum.zero_()
                n_sum = 0
                self.log({"step": self.step, "loss": final_loss,
                          "lr": self.sched.get_last_lr()[0], "tokens": self.tokens_seen,
                          "elapsed_s": round(time.perf_counter() - t0, 3)})
                show()
            if self.eval_fn is not None and (last or (cfg.eval_every
                                                      and self.step % cfg.eval_every == 0)):
                self.stopped = self.evaluate()
                show()
            if self.stopped:
                break
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and not last:
                self.checkpoint()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the queued kernels belong to the loop's time
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        bar.close()
        if n_sum:  # the tail after the last log line (early stop)
            distributed.all_reduce_sum(loss_sum)
            final_loss = (loss_sum / n_sum).item()
            _check_loss(final_loss, self.step, cfg, bar)
        return final_loss, seconds, cpu_seconds

    def close(self) -> None:
        """After :meth:`run`: the final checkpoint (a resume of a finished run does nothing),
        and the tensorboard writer closed."""
        if self.cfg.checkpoint_every and not self.finished:
            self.finished = True
            self.checkpoint()
        if self.tb is not None:
            self.tb.close()


def _seeded_run(run: _Run, cfg: TrainConfig, device: torch.device) -> tuple[float, float, float]:
    """:meth:`_Run.run` with ``cfg.threads`` intra-op threads and the global RNG seeded.

    Dropout draws from the global RNG: it is seeded from ``cfg.seed`` (or a resumed run's
    state) inside a fork, so a run is a function of its seed and the caller's RNG and
    thread count are left as they were.
    """
    with (pinned_threads(run_threads(cfg.threads, device)),  # 1 in a stage worker
          torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])):
        torch.manual_seed(cfg.seed or 0)
        if run.rng is not None:
            torch.set_rng_state(run.rng[0])
            if run.rng[1] is not None and device.type == "cuda":
                torch.cuda.set_rng_state(run.rng[1], device)
        out = run.run()
        run.close()
        return out


def train(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, docs: Sequence[dict],
          cfg: TrainConfig, out_dir: str | os.PathLike, *,
          eval_fn: Callable[[PreTrainedModel], dict[str, float]] | None = None,
          resume: bool = False,
          extra: Callable[[int], Sequence[dict]] | None = None) -> TrainResult:
    """Train ``model`` on ``docs`` in place, then save it to ``out_dir/model``.

    Parameters
    ----------
    model : PreTrainedModel
        A causal LM from :func:`kgtest.model.build_model` (or any GPT-2/Llama HF model).
    tokenizer : PreTrainedTokenizerFast
        Its tokenizer (saved with the model).
    docs : sequence of dict
        Documents with ``"prompt"`` and ``"completion"`` (other keys are ignored).
    cfg : TrainConfig
    out_dir : path
        Gets ``checkpoint.pt``, ``train_log.jsonl``, ``tb/`` (optional) and ``model/``.
    eval_fn : callable, optional
        ``eval_fn(model) -> {"name": value}``, called every ``cfg.eval_every`` steps and at
        the end, in eval mode under ``torch.no_grad``. Training stops early once every
        ``cfg.stop_at`` target is met (``metrics[k] >= v``).
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` if it exists (same config and corpus).
    extra : callable, optional
        ``extra(step) -> documents`` added to that step's batch, tokenised on the fly and
        supervised like the corpus's (fresh documents per step, such as
        :class:`kgtest.corpus.in_context.InContextStream`; a function of the step, so a
        resumed run sees the same ones).

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> import tempfile
    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> from kgtest.model import ModelConfig, build_model
    >>> docs = [{"prompt": "Q a r ? A ", "completion": "b"}]
    >>> tok = build_tokenizer(["Q a r ? A b"])
    >>> m = build_model(ModelConfig(preset="tiny"), tok)
    >>> cfg = TrainConfig(steps=3, warmup=0, eval_every=1, stop_at={"acc": 0.5}, progress=False)
    >>> train(m, tok, docs, cfg, tempfile.mkdtemp(), eval_fn=lambda m: {"acc": 1.0},
    ...       ).stopped_early
    True
    """
    info = distributed.init_distributed()  # under torchrun: join its process group
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank % torch.cuda.device_count())
    corpus = encode_corpus(tokenizer, docs, cfg.answer_only_loss)
    max_pos = model.config.max_position_embeddings
    if corpus.tokens.shape[1] > max_pos:
        raise InputError(f"train: the longest document has {corpus.tokens.shape[1]} tokens but "
                         f"the model takes at most {max_pos} (raise model.max_len)")
    run = _Run(model, corpus, cfg, out, device, eval_fn, resume, info,
               extra=None if extra is None else (extra, tokenizer))
    final_loss, seconds, cpu_seconds = _seeded_run(run, cfg, device)
    model.eval()
    model_dir = out / "model"
    if info.is_main:
        save_model(model, tokenizer, model_dir)
    distributed.barrier()  # every rank returns once the model is on disk
    return TrainResult(steps=run.step, final_loss=final_loss, metrics=run.metrics,
                       stopped_early=run.stopped and run.step < cfg.steps,
                       tokens=run.tokens_seen, seconds=seconds, cpu_seconds=cpu_seconds,
                       model_dir=model_dir)
