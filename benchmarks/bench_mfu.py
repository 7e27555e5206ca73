"""Model-FLOPs utilisation of a training step: achieved FLOP/s over the card's peak.

Trains a freshly built kgtest model (default: the largest preset, ``base``) for a few
steps on random token batches of its full context with the loop's own recipe (bf16
autocast on CUDA, fused AdamW, gradient clipping) and reports tokens/s, achieved TFLOP/s
and MFU. Model FLOPs per token follow the PaLM paper's appendix B: ``6 N + 12 L d T``
(``N`` parameters, counting the tied embedding once as the LM head's matmul; ``L``
layers, ``d`` model width, ``T`` context); activation recomputation is not counted.
The peak is the card's dense bf16 figure from a small table (by device name; set
``KGTEST_PEAK_TFLOPS`` for another card); on a CPU MFU is not reported.

    .venv/bin/python benchmarks/bench_mfu.py --device cuda            # base preset
    .venv/bin/python benchmarks/bench_mfu.py --device cpu --preset tiny --steps 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kgtest.corpus.tokenizer import build_tokenizer  # noqa: E402
from kgtest.model import PRESETS, ModelConfig, build_model  # noqa: E402

# dense bf16 tensor-core peak, TFLOP/s (vendor data sheets; no sparsity)
PEAK_BF16 = {"H200": 989, "H100 SXM": 989, "H100 80GB HBM3": 989, "H100 PCIe": 756,
             "H100": 756, "A100": 312, "L40S": 362, "L40": 181, "L4": 121, "A10G": 70,
             "A10": 125, "RTX 4090": 165, "RTX 3090": 71, "A6000": 155}
RATIOS: dict[str, float] = {}  # filled by main(): {"mfu": fraction}, for other scripts


def peak_tflops(name: str) -> float | None:
    """The card's dense bf16 peak from PEAK_BF16 (longest matching key), or the env var."""
    if os.environ.get("KGTEST_PEAK_TFLOPS"):
        return float(os.environ["KGTEST_PEAK_TFLOPS"])
    hits = [k for k in PEAK_BF16 if k in name]
    return float(PEAK_BF16[max(hits, key=len)]) if hits else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    largest = max(PRESETS, key=lambda p: PRESETS[p]["d_model"] * PRESETS[p]["n_layer"])
    ap.add_argument("--preset", default=largest, help=f"model preset (default: {largest})")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30, help="timed steps (after 5 warm-up)")
    ap.add_argument("--vocab", type=int, default=2000, help="words in the tokenizer")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    tok = build_tokenizer([" ".join(f"w{i}" for i in range(args.vocab))])
    model = build_model(ModelConfig(preset=args.preset), tok, seed=0).to(dev)
    cfg = model.config
    T, L, d = cfg.max_position_embeddings, cfg.num_hidden_layers, cfg.hidden_size
    # parameters() lists the tied embedding once: it counts as the LM head's matmul;
    # learned position embeddings are a lookup, not a matmul
    n_params = sum(p.numel() for n, p in model.named_parameters() if "wpe" not in n)
    flops_tok = 6 * n_params + 12 * L * d * T
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev.type == "cuda")
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(4, len(tok), (args.batch_size, T), generator=gen).to(dev)
    auto = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")

    def step():
        with auto:
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    model.train()
    for _ in range(min(5, args.steps)):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    tokens = args.steps * args.batch_size * T
    achieved = tokens * flops_tok / secs / 1e12
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    peak = peak_tflops(name) if dev.type == "cuda" else None
    print(f"device: {name}; model: {args.preset} ({n_params / 1e6:.1f}M params, {L} layers, "
          f"d {d}, context {T}); batch {args.batch_size} x {T}, {args.steps} steps, "
          f"{'bf16 autocast' if dev.type == 'cuda' else 'fp32'}")
    print(f"tokens/s {tokens / secs:,.0f}; model FLOPs/token {flops_tok / 1e6:.1f}M; "
          f"achieved {achieved:.2f} TFLOP/s; peak "
          + (f"{peak:g} TFLOP/s; MFU {achieved / peak:.1%}" if peak else "unknown; MFU n/a"))
    if peak:
        RATIOS["mfu"] = achieved / peak
    RATIOS["tflops"] = achieved
    return 0


if __name__ == "__main__":
    sys.exit(main())
