"""Data-parallel scaling: the same global batch trained by 1, 2, ... processes (torchrun).

For each N in ``--procs`` the script launches ``torchrun --standalone --nproc_per_node N``
on itself (``--child``), which trains one model with :func:`kgtest.train.train` on the
``bench_train.py`` corpus; every N trains the same global batches (same seed and
``batch_size``), so the loss curves agree up to floating-point noise (column
``max |dloss|``: largest difference of a logged loss from the 1-process run's). Printed:
loop seconds (rank 0's ``TrainResult.seconds``), real tokens per second, speed-up over
one process, final loss. On a CPU every process gets ``--threads`` threads (gloo);
on GPUs each process gets one GPU (NCCL).

    .venv/bin/python benchmarks/bench_ddp.py --procs 1 2 --threads 1
    .venv/bin/python benchmarks/bench_ddp.py --procs 1 2 4 8 --device cuda --preset base
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
ROOT = Path(__file__).resolve().parents[1]


def child(args) -> None:
    from bench_train import synthetic_corpus

    from kgtest.corpus.tokenizer import build_tokenizer
    from kgtest.distributed import dist_info
    from kgtest.model import ModelConfig, build_model
    from kgtest.train import LOG, TrainConfig, encode_corpus, train

    if args.threads:
        torch.set_num_threads(args.threads)
    docs, ents = synthetic_corpus(args.facts, seed=0)
    tok = build_tokenizer([d["prompt"] + d["completion"] for d in docs], extra_words=ents)
    mcfg = ModelConfig(preset=args.preset,
                       max_len=int(encode_corpus(tok, docs).tokens.shape[1]))
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, log_every=10,
                      eval_every=0, checkpoint_every=0, device=args.device, progress=False,
                      tensorboard=False)
    out = Path(args.out)
    res = train(build_model(mcfg, tok, seed=0), tok, docs, cfg, out)
    if dist_info().is_main:
        losses = [e["loss"] for e in map(json.loads, (out / LOG).read_text().splitlines())]
        (out / "bench.json").write_text(json.dumps(
            {"seconds": res.seconds, "tokens": res.tokens, "losses": losses,
             "final": res.final_loss, "sizes": mcfg.sizes(), "docs": len(docs)}))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=64, help="global batch (documents)")
    ap.add_argument("--facts", type=int, default=3000)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return {}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs (load average {load:.1f}); "
          f"torch {torch.__version__}; device={args.device}, {args.threads} threads/process")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.procs:
            out = Path(tmp) / f"n{n}"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", str(n), __file__, "--child", "--out", str(out),
                   "--preset", args.preset, "--steps", str(args.steps), "--batch-size",
                   str(args.batch_size), "--facts", str(args.facts), "--device", args.device,
                   "--threads", str(args.threads)]
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            results[n] = json.loads((out / "bench.json").read_text())
    base = results[args.procs[0]]
    print(f"model: gpt2 {args.preset} {base['sizes']}; corpus {base['docs']} docs; global "
          f"batch {args.batch_size}, {args.steps} steps\n")
    print(f"{'procs':>5} {'loop s':>8} {'tokens/s':>9} {'speed-up':>8} {'final loss':>10} "
          f"{'max |dloss|':>11}")
    for n, r in results.items():
        d = max(abs(a - b) for a, b in zip(r["losses"], base["losses"], strict=True))
        print(f"{n:5d} {r['seconds']:8.2f} {r['tokens'] / r['seconds']:9.0f} "
              f"{base['seconds'] / r['seconds']:7.2f}x {r['final']:10.4f} {d:11.2e}")
    return results


if __name__ == "__main__":
    main()
