"""M seeds trained together (``kgtest.ensemble.train_ensemble``) vs M ordinary runs in turn.

Both sides train the same M models (``build_model(cfg, tok, seed=s)`` for s = 0..M-1) on
the same synthetic corpus as ``bench_train.py`` (statements, QA, CoT, paragraphs) with the
same :class:`~kgtest.train.TrainConfig`, so each ensemble member sees the batches its
sequential twin sees and should end with the same loss (column ``max |dloss|``: the largest
difference of a member's final loss from its twin's). Sequential runs are timed one after
the other in this process (no checkpoints, no evaluation, no tensorboard).

Printed per side: loop seconds (sum of ``TrainResult.seconds``; the ensemble's
``EnsembleResult.seconds``), total seconds (with model building and saving), CPU seconds,
real tokens per second over all members, the speed-up, and the mean final loss.

    .venv/bin/python benchmarks/bench_ensemble.py --threads 1          # CPU: tiny preset
    .venv/bin/python benchmarks/bench_ensemble.py --device cuda        # GPU: small preset

Runs unchanged on CUDA (bf16 autocast on both sides); the default preset is ``tiny`` on a
CPU and ``small`` on a GPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import synthetic_corpus  # noqa: E402

from kgtest.corpus.tokenizer import build_tokenizer  # noqa: E402
from kgtest.ensemble import train_ensemble  # noqa: E402
from kgtest.model import ModelConfig, build_model  # noqa: E402
from kgtest.train import TrainConfig, encode_corpus, resolve_device, train  # noqa: E402


def run_sequential(mcfg, tok, docs, cfg, seeds, out) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    loop = tokens = 0.0
    final = []
    for s in seeds:
        res = train(build_model(mcfg, tok, seed=s), tok, docs, cfg, out / f"seq{s}")
        loop += res.seconds
        tokens += res.tokens
        final.append(res.final_loss)
    return {"loop": loop, "total": time.perf_counter() - t0, "cpu": time.process_time() - c0,
            "tokens": tokens, "final": final}


def run_ensemble(mcfg, tok, docs, cfg, seeds, out) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    models = [build_model(mcfg, tok, seed=s) for s in seeds]
    res = train_ensemble(models, tok, docs, cfg, out / "ens")
    return {"loop": res.seconds, "total": time.perf_counter() - t0,
            "cpu": time.process_time() - c0, "tokens": sum(res.tokens),
            "final": list(res.final_losses)}


RATIOS: dict[str, float] = {}  # filled by main(): speed-ups, for benchmarks/run_all.py


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=8, help="M: seeds trained together")
    ap.add_argument("--preset", default=None, help="model preset (default: tiny on CPU, "
                    "small on CUDA)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--facts", type=int, default=3000, help="facts in the synthetic corpus")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    ap.add_argument("--order", default="seq-first", choices=["seq-first", "ens-first"])
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    preset = args.preset or ("small" if device.type == "cuda" else "tiny")
    if args.threads:
        torch.set_num_threads(args.threads)
    docs, ents = synthetic_corpus(args.facts, seed=0)
    tok = build_tokenizer([d["prompt"] + d["completion"] for d in docs], extra_words=ents)
    enc = encode_corpus(tok, docs)
    mcfg = ModelConfig(preset=preset, max_len=int(enc.tokens.shape[1]))
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, log_every=50,
                      eval_every=0, checkpoint_every=0, device=device.type, progress=False,
                      tensorboard=False)
    seeds = list(range(args.members))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "-"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs (load average {load:.1f}), "
          f"{torch.get_num_threads()} torch threads, device={device} {gpu}")
    print(f"torch {torch.__version__}; corpus: {len(docs)} docs, vocab {len(tok)}; model: "
          f"{mcfg.arch} {preset} {mcfg.sizes()}; {args.members} seeds, batch "
          f"{args.batch_size}, {args.steps} steps each")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        runs = [("sequential", run_sequential), ("ensemble", run_ensemble)]
        if args.order == "ens-first":
            runs.reverse()
        res = {name: fn(mcfg, tok, docs, cfg, seeds, out) for name, fn in runs}
    seq, ens = res["sequential"], res["ensemble"]
    dloss = max(abs(a - b) for a, b in zip(seq["final"], ens["final"], strict=True))
    print()
    print(f"{'way':<11} {'loop s':>8} {'total s':>8} {'CPU s':>8} {'tokens/s':>9} "
          f"{'speed-up':>8} {'mean final loss':>15}")
    for name, r in (("sequential", seq), ("ensemble", ens)):
        print(f"{name:<11} {r['loop']:8.2f} {r['total']:8.2f} {r['cpu']:8.2f} "
              f"{r['tokens'] / r['loop']:9.0f} {seq['loop'] / r['loop']:7.2f}x "
              f"{sum(r['final']) / len(r['final']):15.4f}")
    print(f"max |dloss| over members (ensemble vs its sequential twin): {dloss:.2e}; "
          f"speed-up in total time {seq['total'] / ens['total']:.2f}x")
    RATIOS["ensemble"] = seq["loop"] / ens["loop"]
    return {"speedup": seq["loop"] / ens["loop"], "dloss": dloss, **res}


if __name__ == "__main__":
    main()
