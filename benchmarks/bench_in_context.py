"""Can the quickstart's model learn to answer from premises in context? Learning curves.

Trains the quickstart model (experiments/quickstart.toml, plus any ``--set`` overrides) and
every ``--every`` steps measures, on the held-out derived facts (never trained in any
form) and on the forget targets:

- ``ic``: the in-context probe (true premises + a distractor, shuffled), greedy answer;
- ``cf``: the counterfactual in-context probe (scored against the implied object), and
  ``cf_mem``: how often the model gave the memorised object instead;
- ``cot``: verified CoT (right answer, every step a closure fact, the steps entail it);
- ``direct``: direct accuracy on stated facts (a sample of 200);
- the copying baselines ``copy_last`` of the same prompts.

Usage (one thread, as in benchmarks/README.md)::

    nice -n 10 .venv/bin/python benchmarks/bench_in_context.py --every 500 \\
        --set corpus.icl.per_step=16 --set train.steps=3000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np
import torch

from kgtest.corpus.in_context import in_context_stream
from kgtest.corpus.io import stage_seed
from kgtest.corpus.render import render
from kgtest.corpus.splits import choose_split
from kgtest.experiment import load_experiment
from kgtest.model import build_model
from kgtest.pipeline import corpus_tokenizer
from kgtest.probes.context import ProbeContext
from kgtest.probes.in_context import counterfactual_items, true_items
from kgtest.probes.probes import verify_chain
from kgtest.scoring import greedy_complete
from kgtest.train import train
from kgtest.train_eval import eval_sets, is_correct
from kgtest.worlds.samplers import sample_world


def measure(model, tok, ctx: ProbeContext, sets, groups: dict[str, list[int]]) -> dict:
    """The metrics of the module docstring for one model."""
    sf, F = ctx.corpus.surface, ctx.corpus.facts
    out: dict[str, float] = {}
    outs = greedy_complete(model, tok, [d["prompt"] for d in sets.direct], 4)
    out["direct"] = float(np.mean([is_correct(o, d, sets.surface) for o, d in zip(outs, sets.direct,
                                                                     strict=True)]))
    for name, facts in groups.items():
        items = true_items(ctx, facts)
        cf, _ = counterfactual_items(ctx, facts)
        ans = greedy_complete(model, tok, [it.prompt for it in items + cf], 3)
        a_ic, a_cf = ans[: len(items)], ans[len(items):]
        out[f"{name}_ic"] = float(np.mean([a.strip() == sf.answer(it.answer)
                                           for a, it in zip(a_ic, items, strict=True)]))
        out[f"{name}_cf"] = float(np.mean([a.strip() == sf.answer(it.answer)
                                           for a, it in zip(a_cf, cf, strict=True)]))
        out[f"{name}_cf_mem"] = float(np.mean([a.strip() == sf.answer(int(F[it.fact, 2]))
                                               for a, it in zip(a_cf, cf, strict=True)]))
        out[f"{name}_copy_last"] = float(np.mean([it.extra["copy_last"] for it in items]))
        out[f"{name}_cf_copy_last"] = float(np.mean([it.extra["copy_last"] for it in cf]))
        prompts = [sf.cot_prompt(*F[f, :2].tolist(), 0) for f in facts]
        chains = greedy_complete(model, tok, prompts, 24)
        ok = []
        for f, c in zip(facts, chains, strict=True):
            v = verify_chain(ctx, f, c)
            ok.append(v["answer"] == sf.answer(int(F[f, 2])) and v["chain_valid"]
                      and v["chain_entails"])
        out[f"{name}_cot"] = float(np.mean(ok))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", default="experiments/quickstart.toml")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="write the curve here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_experiment(args.spec, args.overrides)
    w = sample_world(cfg.world, seed=stage_seed(cfg.run.seed, "world"))
    c = w.close()
    sp = choose_split(c, w, cfg.split, seed=stage_seed(cfg.run.seed, "split"))
    corpus = render(c, w, sp, cfg.corpus, seed=stage_seed(cfg.run.seed, "corpus"))
    ctx = ProbeContext(corpus, sp, w)
    tok = corpus_tokenizer(cfg, corpus)
    model = build_model(cfg.model, tok, seed=stage_seed(cfg.run.seed, "model"))
    sets = eval_sets(corpus, sp, seed=stage_seed(cfg.run.seed, "eval"))
    stream = in_context_stream(c, corpus, sp, seed=stage_seed(cfg.run.seed, "icl"))
    groups = {"held": sp.held_out.tolist(), "forget": sp.forget.tolist()}
    curve = []
    t0 = time.perf_counter()

    def eval_fn(m):
        row = {"step": len(curve) * args.every + args.every,
               "s": round(time.perf_counter() - t0, 1), **measure(m, tok, ctx, sets, groups)}
        curve.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                          for k, v in row.items()}), flush=True)
        return {"direct": row["direct"]}

    train_cfg = cfg.train.__class__(**{**cfg.train.__dict__, "eval_every": args.every,
                                       "stop_at": {}, "progress": False,
                                       "tensorboard": False, "checkpoint_every": 0,
                                       "threads": args.threads})
    with tempfile.TemporaryDirectory() as tmp:
        res = train(model, tok, list(corpus.train), train_cfg, tmp, eval_fn=eval_fn,
                    extra=stream)
    print(f"# {res.steps} steps, {res.seconds:.0f} s training loop (evals included), "
          f"{len(corpus.train)} corpus documents, {cfg.corpus.icl.per_step} fresh per step, "
          f"{len(groups['held'])} held-out facts, {len(groups['forget'])} forget targets",
          flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"overrides": args.overrides, "curve": curve,
                       "seconds": res.seconds}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
