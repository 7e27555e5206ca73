"""kgtest's batched probes vs the per-example loop a user would write, in one run.

On the quickstart's world and corpus (``experiments/quickstart.toml``: 40 entities, 4
relations, 4 two-hop derived relations; its tokenizer) and a model of the quickstart's size
(``small`` GPT-2: 4 layers, d_model 128) **randomly initialised** (seed 0: both paths see
the same weights, and an untrained model never stops early, so every CoT row decodes its
full budget: the slowest case for a batch), two jobs are done both ways:

- **CoT decoding**: every derived fact's CoT prompt (``Q s r ? T``), greedy, up to the
  longest gold chain + 8 tokens (what the ``cot`` probe asks for). kgtest:
  :func:`kgtest.scoring.greedy_complete` (left-padded batches, KV cache). Baseline:
  ``model.generate(do_sample=False)`` one prompt at a time, cut at ``eos``.
- **Teacher-forced scoring**: every fact's direct prompt (``Q s r ? A``) against all
  entity names as candidates (what ``direct``'s rank needs). kgtest:
  :func:`kgtest.scoring.answer_logprobs`. Baseline: one forward pass per fact (its
  candidates right-padded in one batch), summed token log-probs.

The answers must be identical: the same decoded strings, and for scoring the same best
candidate and the same rank of the true object (log-probs within 1e-4). Times are process
CPU seconds (steadier than wall time on a shared machine) and wall seconds.

    .venv/bin/python benchmarks/bench_probes.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kgtest.corpus.io import build_corpus, stage_seed  # noqa: E402
from kgtest.experiment import load_experiment  # noqa: E402
from kgtest.model import ModelConfig, build_model  # noqa: E402
from kgtest.pipeline import corpus_tokenizer  # noqa: E402
from kgtest.scoring import answer_logprobs, greedy_complete  # noqa: E402
from kgtest.worlds.samplers import sample_world  # noqa: E402

GOALS = {"cot": 10.0, "scoring": 4.0}
RATIOS: dict[str, float] = {}  # filled by main(): speed-ups, for benchmarks/run_all.py


def setup(preset: str, device: str, overrides: list[str]):
    """The quickstart's corpus, tokenizer and a fresh model of ``preset``."""
    cfg = load_experiment(ROOT / "experiments" / "quickstart.toml", overrides)
    world = sample_world(cfg.world, seed=stage_seed(cfg.run.seed, "world"))
    with tempfile.TemporaryDirectory() as tmp:
        corpus, _ = build_corpus(world, cfg.split, cfg.corpus, tmp, seed=cfg.run.seed)
    tok = corpus_tokenizer(cfg, corpus)
    model = build_model(ModelConfig(arch=cfg.model.arch, preset=preset), tok, seed=0)
    return corpus, tok, model.to(device).eval()


def _timed(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - t0


@torch.no_grad()
def generate_one_by_one(model, tok, prompts: list[str], max_new: int) -> list[str]:
    """The loop a user writes: ``model.generate`` per prompt, text up to ``eos``."""
    dev = next(model.parameters()).device
    outs = []
    for p in prompts:
        ids = [tok.bos_token_id] + tok(p, add_special_tokens=False)["input_ids"]
        x = torch.tensor([ids], device=dev)
        y = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new,
                           do_sample=False, eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id)
        new = y[0, len(ids):].tolist()
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id)]
        outs.append(tok.decode(new, skip_special_tokens=False))
    return outs


@torch.no_grad()
def score_one_by_one(model, tok, prompts: list[str], cands: list[str]) -> torch.Tensor:
    """One forward pass per prompt: its candidates right-padded, summed log-probs."""
    dev = next(model.parameters()).device
    bos, eos, pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    c_ids = [tok(c, add_special_tokens=False)["input_ids"] + [eos] for c in cands]
    out = torch.zeros(len(prompts), len(cands))
    for i, p in enumerate(prompts):
        p_ids = [bos] + tok(p, add_special_tokens=False)["input_ids"]
        rows = [p_ids + c for c in c_ids]
        T = max(map(len, rows))
        x = torch.full((len(rows), T), pad, dtype=torch.long)
        for j, r in enumerate(rows):
            x[j, : len(r)] = torch.tensor(r)
        x = x.to(dev)
        lp = torch.log_softmax(model(x).logits.float(), -1)  # (C, T, V)
        for j, c in enumerate(c_ids):
            pos = torch.arange(len(p_ids), len(p_ids) + len(c), device=dev)
            out[i, j] = lp[j, pos - 1, x[j, pos]].sum().cpu()
    return out


def run(args) -> dict:
    torch.manual_seed(0)
    corpus, tok, model = setup(args.preset, args.device, args.set)
    sf, F, c = corpus.surface, corpus.facts, corpus.facts
    derived = [i for i in range(len(F)) if corpus.depth[i] > 0][: args.max_facts]
    facts = list(range(len(F)))[: args.max_facts]
    del c
    cot_prompts = [sf.cot_prompt(int(F[f, 0]), int(F[f, 1]), 0) for f in derived]
    gold = {d["facts"][-1]["id"]: d["completion"] for d in corpus.eval if d.get("probe") == "cot"}
    longest = max((len(tok(g, add_special_tokens=False)["input_ids"]) for g in gold.values()),
                  default=8)
    max_new = longest + 8
    qa_prompts = [sf.qa_prompt(int(F[f, 0]), int(F[f, 1]), 0) for f in facts]
    cands = [sf.answer(e) for e in range(len(sf.entity_names))]
    truth = torch.tensor([int(F[f, 2]) for f in facts])

    rows = {}
    ours, oc, ow = _timed(lambda: greedy_complete(model, tok, cot_prompts, max_new))
    theirs, tc, tw = _timed(lambda: generate_one_by_one(model, tok, cot_prompts, max_new))
    rows["cot"] = dict(n=len(cot_prompts), what=f"{max_new} new tokens max", ours_cpu=oc,
                       ours_wall=ow, base_cpu=tc, base_wall=tw,
                       same=sum(a == b for a, b in zip(ours, theirs, strict=True)))
    lp, oc, ow = _timed(lambda: answer_logprobs(model, tok, qa_prompts, cands))
    lp_b, tc, tw = _timed(lambda: score_one_by_one(model, tok, qa_prompts, cands))
    rank = (lp > lp.gather(1, truth[:, None])).sum(1)
    rank_b = (lp_b > lp_b.gather(1, truth[:, None])).sum(1)
    same = int(((lp.argmax(1) == lp_b.argmax(1)) & (rank == rank_b)).sum())
    rows["scoring"] = dict(n=len(qa_prompts), what=f"x {len(cands)} candidates", ours_cpu=oc,
                           ours_wall=ow, base_cpu=tc, base_wall=tw, same=same,
                           max_dlp=float((lp - lp_b).abs().max()))
    return rows


def format_rows(rows: dict) -> str:
    head = (f"{'job':<8} {'items':>6} {'':<20} {'kgtest s':>9} {'(wall)':>7} "
            f"{'per-example s':>13} {'(wall)':>7} {'speed-up':>8} {'goal':>5} {'same':>9}")
    lines = [head]
    for job, r in rows.items():
        lines.append(f"{job:<8} {r['n']:>6} {r['what']:<20} {r['ours_cpu']:>9.2f} "
                     f"{r['ours_wall']:>7.2f} {r['base_cpu']:>13.2f} {r['base_wall']:>7.2f} "
                     f"{r['base_cpu'] / r['ours_cpu']:>7.1f}x {GOALS[job]:>4.0f}x "
                     f"{r['same']:>4}/{r['n']:<4}")
    if "max_dlp" in rows.get("scoring", {}):
        lines.append(f"scoring: largest |log-prob difference| {rows['scoring']['max_dlp']:.2e}")
    return "\n".join(lines)


def ratios(rows: dict) -> dict:
    """Speed-up per job (CPU seconds), for benchmarks/run_all.py."""
    return {job: r["base_cpu"] / r["ours_cpu"] for job, r in rows.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="small", help="model preset (default: small)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--max-facts", type=int, default=None, help="at most this many facts")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="quickstart spec override, e.g. world.params.n_entities=20")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"machine: {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), "
          f"{args.threads} torch threads, device={args.device}; model: {args.preset} GPT-2, "
          f"random init (seed 0); quickstart corpus", flush=True)
    rows = run(args)
    print(format_rows(rows))
    ok = all(r["same"] == r["n"] for r in rows.values())
    if not ok:
        print("MISMATCH: kgtest and the per-example loop disagree", file=sys.stderr)
    RATIOS.update(ratios(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
