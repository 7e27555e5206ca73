"""Benchmark: kgtest's vectorised closure against a dict-indexed pure-Python chainer.

Builds random composition worlds in the style of Grokked Transformers (Wang et al. 2024):
``N`` entities, ``R`` base relations, each subject with one object per base relation
(functional; ``--out-degree k`` gives ``k`` objects instead) and composition rules
``r_c(X, Z) :- r_a(X, Y), r_b(Y, Z).`` over named derived relations, several of them
multi-hop (derived relations feed other rules; one rule has three body atoms; one derived
relation has two rules). Each world is closed by :func:`kgtest.symbolic.closure.forward_chain`
and by :func:`baseline_closure` (below), the two results are checked to be the same closure
with the same derivations, and a side-by-side table is printed.

Run from the repository root::

    .venv/bin/python benchmarks/bench_closure.py                 # 10k, 100k, 1M base facts
    .venv/bin/python benchmarks/bench_closure.py --sizes 10000 --baseline-max 10000

``main(argv)`` is importable so a combined benchmark script can call it.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from plain_chainer import chain  # noqa: E402

from kgtest.symbolic.closure import Closure, forward_chain  # noqa: E402
from kgtest.symbolic.facts import Vocab, facts_tsv_bytes  # noqa: E402
from kgtest.symbolic.rules import Rule, parse_rules  # noqa: E402

# Composition rules over base relations b0..b9 and derived relations d0..d10. Depths:
# d0..d5 and d11 are two/three-hop compositions of base relations; d6, d7, d8 use one
# derived relation; d9 and d10 compose derived relations (depth 3); d0 has two rules.
RULES_TEXT = """\
d0(X, Z) :- b0(X, Y), b1(Y, Z).
d1(X, Z) :- b2(X, Y), b3(Y, Z).
d2(X, Z) :- b4(X, Y), b5(Y, Z).
d3(X, Z) :- b1(X, Y), b6(Y, Z).
d4(X, Z) :- b7(X, Y), b0(Y, Z).
d5(X, Z) :- b3(X, Y), b2(Y, Z).
d0(X, Z) :- b8(X, Y), b9(Y, Z).
d6(X, Z) :- d0(X, Y), b2(Y, Z).
d7(X, Z) :- d1(X, Y), d2(Y, Z).
d8(X, Z) :- b8(X, Y), d3(Y, Z).
d9(X, Z) :- d6(X, Y), d4(Y, Z).
d10(X, Z) :- d7(X, Y), b9(Y, Z).
d11(X, W) :- b0(X, Y), b1(Y, Z), b2(Z, W).
"""
N_BASE_RELATIONS = 10
RATIOS: dict[str, float] = {}  # filled by main(): speed-ups, for benchmarks/run_all.py


def make_world(n_facts: int, *, out_degree: int = 1, seed: int = 0):
    """A random composition world with about ``n_facts`` base facts.

    Returns ``(facts, rules, entities, relations)``: ``facts`` is an ``(n, 3)`` int64
    array of distinct triples over ``N = n_facts // (R * out_degree)`` entities ``e0..``
    (with ``out_degree`` > 1, objects are drawn with replacement and repeats dropped).
    """
    rng = np.random.default_rng(seed)
    r = N_BASE_RELATIONS
    n = max(n_facts // (r * out_degree), 2)
    subj = np.repeat(np.arange(n, dtype=np.int64), out_degree)  # (n * k,)
    blocks = [np.stack([subj, np.full_like(subj, rel), rng.integers(0, n, size=len(subj))], 1)
              for rel in range(r)]
    facts = np.concatenate(blocks)
    if out_degree > 1:  # drop repeated draws, keeping the first
        _, first = np.unique(facts, axis=0, return_index=True)
        facts = facts[np.sort(first)]
    entities = Vocab(f"e{i}" for i in range(n))
    relations = Vocab(f"b{i}" for i in range(r))
    rules = parse_rules(RULES_TEXT)
    return facts, rules, entities, relations


# --- the baseline: what one would write in plain Python ------------------------------------


def baseline_closure(facts: np.ndarray, rules: list[Rule], relations: Vocab):
    """Semi-naive forward chaining in pure Python over dict indexes, recording derivations
    (:func:`plain_chainer.chain`, the baseline script's engine) for chain rules
    ``h(X0, Xk) :- r1(X0, X1), ..., rk(Xk-1, Xk).`` (every rule of this benchmark).

    Returns ``(triples, derivations)``: the list of fact tuples and a list of
    ``(head id, rule id, premise ids)``; derivations whose head is one of its own
    premises are dropped, as kgtest does.
    """
    chains = []
    for rule in rules:
        rels = [relations.add(a.relation) for a in rule.atoms]
        chains.append((relations.add(rule.head.relation), rels))
    return chain([tuple(t) for t in facts.tolist()], chains)


# --- whole process: the command line vs the plain-Python script ------------------------------


def whole_process(n_facts: int, *, n_rules: int, seed: int, repeat: int,
                  plain_repeat: int = 1) -> dict:
    """``kgtest world closure`` vs ``benchmarks/plain_chainer.py`` on the same files, each
    a fresh process (start-up, reading, interning, chaining, writing), CPU and wall time
    (medians of ``repeat`` and ``plain_repeat`` runs, interleaved so that both see the
    same load); checks that both wrote the same set of lines."""
    facts, _, entities, relations = make_world(n_facts, seed=seed)
    rules_text = "".join(RULES_TEXT.splitlines(keepends=True)[:n_rules])
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "kb.tsv").write_bytes(facts_tsv_bytes(facts, entities, relations))
        (d / "rules.dl").write_text(rules_text)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        ours = [sys.executable, "-m", "kgtest", "world", "closure", "--facts", d / "kb.tsv",
                "--rules", d / "rules.dl", "--out", d / "ours.tsv"]
        base = [sys.executable, Path(__file__).with_name("plain_chainer.py"), d / "kb.tsv",
                d / "rules.dl", d / "base.tsv"]
        runs, base_runs = [], []
        for i in range(max(repeat, plain_repeat, 1)):
            if i < max(repeat, 1):
                runs.append(_run_process(ours, env))
            if i < max(plain_repeat, 1):
                base_runs.append(_run_process(base, env))
        with open(d / "ours.tsv", "rb") as f:
            ours_lines = sorted(f.read().splitlines())
        with open(d / "base.tsv", "rb") as f:
            same = sorted(f.read().splitlines()) == ours_lines
    return {"base": len(facts), "out": len(ours_lines), "rules": n_rules,
            "ours_wall": float(np.median([w for w, _ in runs])),
            "ours_cpu": float(np.median([c for _, c in runs])),
            "base_wall": float(np.median([w for w, _ in base_runs])),
            "base_cpu": float(np.median([c for _, c in base_runs])),
            "ours_cpus": [c for _, c in runs], "base_cpus": [c for _, c in base_runs],
            "same": same}


def _run_process(cmd, env) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([str(c) for c in cmd], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def format_process(rows: list[dict]) -> str:
    head = (f"{'base facts':>11} {'facts out':>10} {'rules':>5} {'kgtest cpu s':>12} "
            f"{'(wall)':>7} {'plain cpu s':>11} {'(wall)':>7} {'speed-up cpu':>12} "
            f"{'(wall)':>7} {'same':>5}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['base']:>11,} {r['out']:>10,} {r['rules']:>5} {r['ours_cpu']:>12.2f} "
                     f"{r['ours_wall']:>7.2f} {r['base_cpu']:>11.2f} {r['base_wall']:>7.2f} "
                     f"{r['base_cpu'] / r['ours_cpu']:>11.1f}x "
                     f"{r['base_wall'] / r['ours_wall']:>6.1f}x {'yes' if r['same'] else 'NO':>5}")
    for r in rows:
        lines.append(f"cpu s of each run at {r['base']:,}: kgtest "
                     f"{', '.join(f'{c:.2f}' for c in r['ours_cpus'])}; plain "
                     f"{', '.join(f'{c:.2f}' for c in r['base_cpus'])}")
    return "\n".join(lines)


# --- checking and timing ---------------------------------------------------------------------


def same_closure(c: Closure, triples, derivations) -> bool:
    """Same fact set and the same set of derivations (head, rule, premises) as facts."""
    t = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
    if len(t) != len(c) or len(derivations) != c.n_derivations:
        return False
    ids = c.index(t)  # baseline fact id -> kgtest fact id
    if (ids < 0).any() or len(np.unique(ids)) != len(c):
        return False
    k = c.deriv_premises.shape[1]
    rows = np.full((len(derivations), 2 + k), -1, dtype=np.int64)
    for n, (h, ri, p) in enumerate(derivations):
        rows[n, 0], rows[n, 1] = h, ri
        rows[n, 2 : 2 + len(p)] = p
    mapped = rows.copy()
    mapped[:, 0] = ids[rows[:, 0]]
    mapped[:, 2:] = np.where(rows[:, 2:] >= 0, ids[np.maximum(rows[:, 2:], 0)], -1)
    ours = np.column_stack([c.deriv_head, c.deriv_rule, c.deriv_premises]).astype(np.int64)
    return bool(np.array_equal(np.unique(mapped, axis=0), np.unique(ours, axis=0)))


def time_derivable(c: Closure, n_calls: int, seed: int = 0) -> float:
    """Seconds spent in ``n_calls`` derivable() calls, each on a different random derived
    target (so each computes its cone) with a fresh random 90% of the facts kept (mask
    drawing not timed)."""
    rng = np.random.default_rng(seed)
    derived = np.arange(c.n_base, len(c))
    targets = rng.choice(derived, size=min(n_calls, len(derived)), replace=False)
    spent = 0.0
    for t in targets.tolist():
        kept = rng.random(len(c)) < 0.9
        kept[t] = False
        t0 = time.perf_counter()
        c.derivable(t, kept)
        spent += time.perf_counter() - t0
    return spent


def run_size(n_facts: int, *, baseline: bool, out_degree: int, seed: int, repeat: int) -> dict:
    """Close one world with kgtest (median wall-clock of ``repeat`` runs) and, if asked,
    once with the baseline; check that both give the same closure and derivations."""
    facts, rules, entities, relations = make_world(n_facts, out_degree=out_degree, seed=seed)
    times, cpu = [], []
    for _ in range(max(repeat, 1)):
        t0, c0 = time.perf_counter(), time.process_time()
        c = forward_chain(facts, rules, entities, relations)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    t_ours, t_cpu, t_first = float(np.median(times)), float(np.median(cpu)), times[0]
    row = {
        "base": c.n_base, "derived": len(c) - c.n_base, "derivations": c.n_derivations,
        "depth": int(c.depth.max()), "ours": t_ours, "cpu": t_cpu, "first": t_first, "base_s": None,
        "same": None,
    }
    if baseline:
        t0 = time.perf_counter()
        triples, derivs = baseline_closure(facts, rules, relations.copy())
        row["base_s"] = time.perf_counter() - t0
        row["same"] = same_closure(c, triples, derivs)
        del triples, derivs
    return row


def format_table(rows: list[dict]) -> str:
    head = (f"{'base facts':>11} {'derived':>10} {'derivations':>12} {'depth':>5} "
            f"{'kgtest s':>9} {'(cpu s)':>8} {'(1st run)':>9} {'baseline s':>10} "
            f"{'speed-up':>8} {'kgtest s/M derived':>18} {'(cpu)':>6} {'same':>5}")
    lines = [head, "-" * len(head)]
    for r in rows:
        base_s = "n/a" if r["base_s"] is None else f"{r['base_s']:.2f}"
        speed = "n/a" if r["base_s"] is None else f"{r['base_s'] / r['ours']:.1f}x"
        same = "n/a" if r["same"] is None else ("yes" if r["same"] else "NO")
        per_m, cpu_m = (r[k] / max(r["derived"], 1) * 1e6 for k in ("ours", "cpu"))
        lines.append(f"{r['base']:>11,} {r['derived']:>10,} {r['derivations']:>12,} "
                     f"{r['depth']:>5} {r['ours']:>9.3f} {r['cpu']:>8.3f} {r['first']:>9.3f} "
                     f"{base_s:>10} {speed:>8} {per_m:>18.3f} {cpu_m:>6.3f} {same:>5}")
    return "\n".join(lines)


def _hugepage_note() -> str:
    """numpy advises transparent huge pages for big arrays unless NUMPY_MADVISE_HUGEPAGE=0;
    where the kernel compacts memory on such faults (THP defrag 'madvise') that costs
    much system time, so the setting is printed with the results."""
    env = os.environ.get("NUMPY_MADVISE_HUGEPAGE")
    state = "off" if env == "0" else "on"
    try:
        defrag = Path("/sys/kernel/mm/transparent_hugepage/defrag").read_text().split()
        mode = next((w.strip("[]") for w in defrag if w.startswith("[")), "?")
    except OSError:
        mode = "n/a"
    return f"{state} (NUMPY_MADVISE_HUGEPAGE={env or 'unset'}); kernel THP defrag: {mode}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000",
                    help="comma-separated numbers of base facts (default: %(default)s)")
    ap.add_argument("--baseline-max", type=int, default=1_000_000,
                    help="run the pure-Python baseline up to this many base facts "
                         "(default: %(default)s; at 1M it takes minutes and ~2 GB)")
    ap.add_argument("--out-degree", type=int, default=1,
                    help="objects per subject and base relation (default: 1, functional)")
    ap.add_argument("--derivable-calls", type=int, default=2000,
                    help="derivable() calls timed on the smallest world (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="kgtest runs per size; the median is reported (default: %(default)s)")
    ap.add_argument("--process-sizes", default="1000000",
                    help="base facts for the whole-process comparison (kgtest world closure vs "
                         "plain_chainer.py, 10 rules); empty to skip (default: %(default)s)")
    ap.add_argument("--plain-repeat", type=int, default=1,
                    help="plain_chainer.py runs in the whole-process comparison (about 20 CPU "
                         "s each at 1M facts), interleaved with kgtest's; the median is "
                         "reported (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]

    print(f"Closure: {len(parse_rules(RULES_TEXT))} rules, {N_BASE_RELATIONS} base relations, "
          f"out-degree {args.out_degree}, seed {args.seed}; kgtest s = median wall-clock of "
          f"{args.repeat} runs (cpu s: process CPU time); {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"numpy {np.__version__}; numpy hugepage advice: {_hugepage_note()}", flush=True)
    rows = []
    for n in sizes:
        rows.append(run_size(n, baseline=n <= args.baseline_max, out_degree=args.out_degree,
                             seed=args.seed, repeat=args.repeat))
        print(format_table(rows[-1:]).splitlines()[-1] if rows[:-1] else format_table(rows),
              flush=True)
    print(f"\n(load average at the end: {os.getloadavg()[0]:.1f})")
    print(format_table(rows))
    ok = all(r["same"] is not False for r in rows)
    if args.derivable_calls:
        facts, rules, ents, rels = make_world(min(sizes), out_degree=args.out_degree,
                                              seed=args.seed)
        c = forward_chain(facts, rules, ents, rels)
        secs = time_derivable(c, args.derivable_calls, seed=args.seed)
        print(f"\nderivable(): {args.derivable_calls} calls (distinct random derived targets, "
              f"random 90% of facts kept) on the {c.n_base:,}-fact world: {secs:.3f} s")
    procs = []
    for n in [int(x.replace("_", "")) for x in args.process_sizes.split(",") if x.strip()]:
        procs.append(whole_process(n, n_rules=10, seed=args.seed, repeat=args.repeat,
                                   plain_repeat=args.plain_repeat))
    if procs:
        print("\nWhole process: `kgtest world closure` vs benchmarks/plain_chainer.py on the same "
              f"files (TSV in, TSV out; medians of {args.repeat} kgtest and "
              f"{args.plain_repeat} plain runs, interleaved; load average at the end: "
              f"{os.getloadavg()[0]:.1f})")
        print(format_process(procs))
        ok &= all(r["same"] for r in procs)
    with_base = [r for r in rows if r["base_s"]]
    if with_base:  # the largest size with a baseline (the goal is stated at 100k)
        RATIOS["closure"] = with_base[-1]["base_s"] / with_base[-1]["ours"]
    if procs:
        RATIOS["process"] = procs[-1]["base_cpu"] / procs[-1]["ours_cpu"]
    if not ok:
        print("MISMATCH: kgtest and the baseline disagree", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
