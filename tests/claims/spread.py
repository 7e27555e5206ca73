"""The spread behind the model-level claims' margins: their worlds retrained over seeds.

``tests/claims/test_model_claims.py`` asserts, on each world it draws, a precondition
(the original re-derived at least 5 forget targets by verified CoT) and an interval
(the filter control's CoT rate above chance). Training trajectories differ between CPUs
(BLAS rounding), so the margins must come from a spread: this script trains the same
worlds with run seeds 0..4 (each seed changes the split, initialisation, batch order and
unlearning seed; seed 0 is what the test runs) and prints, per world and seed, the
numbers the tests read. One line of JSON per run goes to ``--out``.

Run (about 60 s of CPU per world and seed on one thread; hold the compute lock)::

    python tests/claims/spread.py --seeds 0 1 2 3 4 --jobs 2 --out spread.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

#: The three worlds test_model_claims.py draws (hypothesis 6.170.17, @seed(20240601)):
#: ``composition_world(*args, edge_seed=...)``.
TEST_WORLDS = (((22, 3, [(1, 1), (0, 2)]), 31352908),
               ((17, 4, [(2, 2), (0, 2), (3, 0)]), 274154368),
               ((30, 2, [(0, 0), (1, 0)]), 5675))


def one(job: tuple) -> dict:
    """Train, unlearn and probe one (world, seed); the rates the claims read."""
    import torch

    from kgtest.claims_model import composition_world, difference, model_records, rate

    torch.set_num_threads(1)
    index, seed, n_forget, n_validation, steps, workdir = job
    args, edge_seed = TEST_WORLDS[index]
    world = composition_world(*args, edge_seed=edge_seed)
    t0 = time.perf_counter()
    rows = model_records(world, seed=seed, n_forget=n_forget, n_validation=n_validation,
                         steps=steps, workdir=Path(workdir) / f"seed{seed}", cache=False)
    out = {"world": index, "seed": seed, "n_forget": n_forget,
           "seconds": round(time.perf_counter() - t0, 1)}
    for v in ("original", "filter", "NPO"):
        for p in ("direct", "cot"):
            r = rate(rows, variant=v, probe=p)
            out[f"{v}/{p}"] = [round(r.estimate, 3), round(r.lo, 3), round(r.hi, 3), r.n,
                               round(r.chance, 3)]
    k = sum(1 for r in rows if r["variant"] == "original" and r["probe"] == "cot"
            and r["correct"])
    out["original/cot ungated"] = [k, n_forget]
    d = difference(rows, ("NPO", "cot"), ("NPO", "direct"))
    out["NPO cot-direct"] = [round(d.estimate, 3), round(d.lo, 3), round(d.hi, 3), d.n]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--worlds", type=int, nargs="+", default=list(range(len(TEST_WORLDS))))
    ap.add_argument("--n-forget", type=int, default=16)
    ap.add_argument("--n-validation", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="fewer steps: a smoke test")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--workdir", default="runs/claims-spread")
    ap.add_argument("--out", default="claims-spread.jsonl")
    a = ap.parse_args(argv)
    jobs = [(w, s, a.n_forget, a.n_validation, a.steps, str(Path(a.workdir) / f"world{w}"))
            for s in a.seeds for w in a.worlds]  # seed-major: early seeds finish first
    rows = []
    with ProcessPoolExecutor(a.jobs) as pool, open(a.out, "a") as fh:
        for r in pool.map(one, jobs):
            fh.write(json.dumps(r) + "\n")
            fh.flush()
            rows.append(r)
            fc, d = r["filter/cot"], r["NPO cot-direct"]
            print(f"world {r['world']} seed {r['seed']}: original CoT "
                  f"{r['original/cot ungated'][0]}/{r['n_forget']}; filter CoT {fc[0]:.3f} "
                  f"[{fc[1]:.3f}, {fc[2]:.3f}] over {fc[3]} (chance {fc[4]:.3f}); NPO direct "
                  f"{r['NPO/direct'][0]:.3f} CoT {r['NPO/cot'][0]:.3f} CoT-direct {d[0]:.3f} "
                  f"[{d[1]:.3f}, {d[2]:.3f}] over {d[3]} ({r['seconds']} s)", flush=True)
    fc = [r["filter/cot"] for r in rows]
    print(f"min gated-in n {min(f[3] for f in fc)}; min lo {min(f[1] for f in fc):.3f}; "
          f"max chance {max(f[4] for f in fc):.3f}")


if __name__ == "__main__":
    main()
