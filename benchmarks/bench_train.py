"""kgtest's training loop vs a plain Hugging Face ``Trainer``, side by side, in one run.

Both train the same model (same preset, same initial weights) on the same synthetic
corpus (statements, QA, CoT and multi-statement paragraphs: mixed lengths) with the same
batch size, the same fused AdamW, warmup + cosine schedule and gradient clipping (one
optimiser/scheduler factory for both), the same answer-only loss (the ``Trainer``'s
labels are -100 where kgtest masks) and the same number of steps. The ``Trainer`` gets
the padding collator a user would reach for (``DataCollatorForSeq2Seq``: pads inputs,
pads labels with -100) and its default random sampler.

Printed: real (non-pad) tokens per second for each (wall clock, and per CPU-second of
the process: steadier on a shared machine), the ratios, the last logged training
loss (mean of the final ``log_every`` steps) and the loss of each trained model over the
whole corpus (same function for both). Runs unchanged on CPU and CUDA (bf16 autocast
there, for both).

    .venv/bin/python benchmarks/bench_train.py                 # small preset, 300 steps
    .venv/bin/python benchmarks/bench_train.py --steps 50 --preset tiny   # a quick look

The ``Trainer`` needs ``accelerate`` (``pip install accelerate``).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import tempfile
import time

import torch

from kgtest.batches import epoch_plan
from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.model import ModelConfig, build_model
from kgtest.train import (
    TrainConfig,
    encode_corpus,
    make_optimizer,
    make_scheduler,
    resolve_device,
    supervised_loss,
    train,
)


def synthetic_corpus(n_facts: int, seed: int) -> tuple[list[dict], list[str]]:
    """Statements, QA, 2-hop CoT and 3-8 statement paragraphs over a random graph."""
    rng = random.Random(seed)
    ents = [f"e{i}" for i in range(max(50, n_facts // 6))]
    rels = [f"r{i}" for i in range(16)]
    facts: dict[tuple[str, str], str] = {}
    while len(facts) < n_facts:
        facts.setdefault((rng.choice(ents), rng.choice(rels)), rng.choice(ents))
    triples = [(s, r, o) for (s, r), o in facts.items()]
    docs = []
    for s, r, o in triples:
        docs.append({"kind": "statement", "prompt": "", "completion": f"{s} {r} {o} ."})
        docs.append({"kind": "qa", "prompt": f"Q {s} {r} ? A ", "completion": o})
    for s, r, o in rng.sample(triples, n_facts // 6):  # 2-hop chains with a worked answer
        nxt = [(r2, facts[(o, r2)]) for r2 in rels if (o, r2) in facts][:1]
        if nxt:
            r2, o2 = nxt[0]
            docs.append({"kind": "cot", "prompt": f"Q {s} {r}.{r2} ? T ",
                         "completion": f"{s} {r} {o} . {o} {r2} {o2} . A {o2}"})
    for _ in range(n_facts // 10):  # paragraphs: several statements, fully supervised
        k = rng.randint(3, 8)
        docs.append({"kind": "statement", "prompt": "",
                     "completion": " ".join(f"{s} {r} {o} ."
                                            for s, r, o in rng.sample(triples, k))})
    rng.shuffle(docs)
    return docs, ents


def hf_features(tok, docs: list[dict]) -> list[dict]:
    """Trainer rows: input_ids/attention_mask/labels, labels -100 where kgtest masks."""
    enc = encode_corpus(tok, docs, answer_only_loss=True)
    rows = []
    for ids, n, start in zip(enc.tokens.tolist(), enc.lengths.tolist(),
                             enc.loss_start.tolist(), strict=True):
        ids = ids[:n]
        rows.append({"input_ids": ids, "attention_mask": [1] * n,
                     "labels": [-100] * start + ids[start:]})
    return rows


@torch.no_grad()
def corpus_loss(model, tok, docs, device, batch_size: int = 256) -> float:
    """Mean answer-only loss over every supervised token of the corpus (one function for both)."""
    model.eval()
    enc = encode_corpus(tok, docs)
    plan = epoch_plan(enc, batch_size, 8, torch.Generator().manual_seed(0), device)
    tokens = enc.tokens.to(device)
    total, count = 0.0, 0
    for i_lo, i_hi, f_lo, f_hi, L in plan.micro:
        x = tokens.index_select(0, plan.idx[i_lo:i_hi])[:, :L]
        n = f_hi - f_lo
        total += float(supervised_loss(model, x, plan.flat[f_lo:f_hi])) * n
        count += n
    return total / count


def run_kgtest(model, tok, docs, cfg: TrainConfig) -> dict:
    res = train(model, tok, docs, cfg, tempfile.mkdtemp(prefix="bench-kgtest-"))
    return {"tokens": res.tokens, "seconds": res.seconds, "cpu_seconds": res.cpu_seconds,
            "last_loss": res.final_loss}


def run_trainer(model, tok, docs, cfg: TrainConfig, device: torch.device) -> dict:
    from transformers import (
        DataCollatorForSeq2Seq,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    collate = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    seen = {"tokens": 0}

    def counting_collator(features):
        batch = collate(features)
        seen["tokens"] += int(batch["attention_mask"].sum())  # real tokens only
        return batch

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            if device.type == "cuda":
                torch.cuda.synchronize()
            seen["t0"], seen["c0"] = time.perf_counter(), time.process_time()

        def on_train_end(self, args, state, control, **kw):
            if device.type == "cuda":
                torch.cuda.synchronize()
            seen["t1"], seen["c1"] = time.perf_counter(), time.process_time()

    model.to(device)
    opt = make_optimizer(model, cfg, device)  # the same fused AdamW and schedule as kgtest
    sched = make_scheduler(opt, cfg)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench-trainer-"),
        per_device_train_batch_size=cfg.batch_size, max_steps=cfg.steps,
        max_grad_norm=cfg.grad_clip, logging_steps=cfg.log_every, save_strategy="no",
        report_to="none", disable_tqdm=True, seed=cfg.seed, dataloader_num_workers=0,
        bf16=device.type == "cuda", use_cpu=device.type == "cpu")
    trainer = Trainer(model=model, args=args, train_dataset=hf_features(tok, docs),
                      data_collator=counting_collator, optimizers=(opt, sched),
                      callbacks=[Clock()])
    trainer.remove_callback(PrinterCallback)  # its log lines would clutter the table
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"tokens": seen["tokens"], "seconds": seen["t1"] - seen["t0"],
            "cpu_seconds": seen["c1"] - seen["c0"],
            "last_loss": losses[-1] if losses else math.nan}


RATIOS: dict[str, float] = {}  # filled by main(): speed-ups, for benchmarks/run_all.py


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", help="model preset (default: small)")
    ap.add_argument("--arch", default="gpt2", choices=["gpt2", "llama"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--facts", type=int, default=3000, help="facts in the synthetic world")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--micro-batches", type=int, default=TrainConfig.micro_batches,
                    help="kgtest: most length runs a batch is split into")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (default: torch's own choice)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="run both loops this many times, interleaved; report medians")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    docs, ents = synthetic_corpus(args.facts, args.seed)
    tok = build_tokenizer([d["prompt"] + d["completion"] for d in docs], extra_words=ents)
    enc = encode_corpus(tok, docs)
    mcfg = ModelConfig(arch=args.arch, preset=args.preset, max_len=int(enc.lengths.max()) + 8)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=1e-3,
                      warmup=min(100, args.steps // 10), log_every=50, eval_every=0,
                      checkpoint_every=0, seed=args.seed, device=str(device.type),
                      micro_batches=args.micro_batches,
                      progress=False, tensorboard=False)
    lengths = enc.lengths.float()
    sup = (enc.lengths - enc.loss_start).float()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs (load average {load:.1f}), "
          f"{torch.get_num_threads()} torch threads, device={device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"torch {torch.__version__}; corpus: {len(docs)} docs, length "
          f"{int(lengths.min())}-{int(lengths.max())} (mean {lengths.mean():.1f}) tokens, "
          f"{sup.sum() / lengths.sum():.0%} supervised; vocab {len(tok)}")
    print(f"model: {args.arch} {args.preset} {mcfg.sizes()}; batch {args.batch_size}, "
          f"{args.steps} steps, fused AdamW lr {cfg.lr} wd {cfg.weight_decay}, "
          f"clip {cfg.grad_clip}; kgtest micro_batches {cfg.micro_batches}\n")

    runs: dict[str, list[dict]] = {"kgtest": [], "hf_trainer": []}
    print(f"{'loop':<12}{'real tokens':>12}{'seconds':>9}{'tokens/s':>10}{'CPU s':>8}"
          f"{'tokens/CPU-s':>14}{'last loss':>11}{'corpus loss':>13}")
    for _ in range(args.repeats):  # interleaved, so a busy spell on the machine hits both
        for name in runs:
            model = build_model(mcfg, tok, seed=args.seed)  # identical initial weights
            if name == "kgtest":
                r = run_kgtest(model, tok, docs, cfg)
            else:
                r = run_trainer(model, tok, docs, cfg, device)
            r["corpus_loss"] = corpus_loss(model, tok, docs, device)
            r["tps"] = r["tokens"] / r["seconds"]
            r["tpc"] = r["tokens"] / r["cpu_seconds"]
            runs[name].append(r)
            print(f"{name:<12}{r['tokens']:>12}{r['seconds']:>9.2f}{r['tps']:>10.0f}"
                  f"{r['cpu_seconds']:>8.2f}{r['tpc']:>14.0f}{r['last_loss']:>11.4f}"
                  f"{r['corpus_loss']:>13.4f}", flush=True)
    what = "median " if args.repeats > 1 else ""
    for key, unit in (("tps", "tokens/s (wall)"), ("tpc", "tokens per CPU-second")):
        k, h = (statistics.median(r[key] for r in runs[n]) for n in ("kgtest", "hf_trainer"))
        print(f"{what}{unit}: kgtest {k:.0f}, Trainer {h:.0f}; "
              f"speed-up (kgtest / Trainer): {k / h:.2f}x")
        RATIOS["train" if key == "tps" else "train_cpu"] = k / h


if __name__ == "__main__":
    main()
