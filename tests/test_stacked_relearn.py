"""The relearn attack's fine-tuning stacked across side-by-side members
(kgtest.stacked_probes.fine_tune, kgtest.stacked_train).

Each member's rows side by side equal its rows alone: the same answers, scores within
``SCORE_TOL``. The ensemble sums in another order than one model's loop (batched
matmuls, padding to the other members' batches), so the fine-tuned weights differ in the
last bits (tests/test_ensemble.py: losses <= 2e-7 relative, updates <= 2e-5 norm-wise over
a few steps) and a log-probability by as little. Measured on the 2-vCPU AMD EPYC VM, one
thread: at most 4.8e-7 over the 48 rows of the first test (seeds 0-2), and at most 1.9e-6
over 288 rows of four set-ups (seeds 0-2 and 3-5, this grid and lr (1e-3, 3e-3) x steps
(5, 10)); 1e-4 leaves 50x room and is still 100x below the gap between two grid points
(checked in the test). A greedy answer could flip on an exact tie that the rounding breaks
differently: none did (0 of 288), and FLIP_TOL (tests/test_multiseed.py's convention)
allows 2%.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from kgtest.corpus.io import build_corpus
from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.experiment import load_experiment
from kgtest.model import ModelConfig, build_model
from kgtest.pipeline import corpus_tokenizer, world_of
from kgtest.probes.context import ProbeContext
from kgtest.probes.registry import PROBES
from kgtest.probes.relearn import RelearnConfig
from kgtest.scoring import answer_logprobs, greedy_complete
from kgtest.stacked_probes import fine_tune, probing, side_by_side
from kgtest.train import TrainConfig

sys.path.insert(0, str(Path(__file__).parent))
from test_distributed import assert_same_update  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCORE_TOL = 1e-4
FLIP_TOL = 0.02
#: asserts two trainings equal within a tolerance: `make test-arith` reruns it under other
#: CPU arithmetic
pytestmark = pytest.mark.trained
GRID = RelearnConfig(steps=(3, 6), lr=(3e-3,), folds=2, batch_size=8)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _on_the_cpu(monkeypatch):
    """The attack's ``device = "auto"`` on the CPU: on a GPU both sides would train under
    bf16 autocast, far outside these float32 tolerances."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _seed_inputs(seed: int, relearn: RelearnConfig = GRID):
    """A tiny quickstart seed's untrained model, tokenizer and the ignorance control's
    probe context (8 forget targets: two folds of answers; the corpus files go to a
    temporary folder, removed at once: the context holds the corpus in memory)."""
    cfg = load_experiment(ROOT / "experiments" / "quickstart.toml",
                          ["model.preset=tiny", "world.params.n_entities=20",
                           f"run.seed={seed}", "split.n_forget=8", "split.n_validation=2"])
    world = world_of(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        corpus, split = build_corpus(world, cfg.split, cfg.corpus, tmp, seed=seed)
    tok = corpus_tokenizer(cfg, corpus)
    ctx = ProbeContext(corpus, split, world, variant="ignorance", seeds={"attack": seed},
                       relearn=relearn)
    return build_model(cfg.model, tok, seed=seed), tok, ctx


def _relearn(model, tok, ctx):
    def run():
        with probing():
            return PROBES.get("relearn").fn(model, tok, ctx.split.forget.tolist(), ctx)
    return run


def _compare(alone: list[list[dict]], stacked: list[list[dict]]) -> None:
    n = flips = 0
    for a, b in zip(alone, stacked, strict=True):
        assert len(a) == len(b) > 0
        for x, y in zip(a, b, strict=True):
            assert (x["fact"], x["setting"], x["fold"]) == (y["fact"], y["setting"], y["fold"])
            assert abs(x["score"] - y["score"]) <= SCORE_TOL, (x["score"], y["score"])
            flips += (x["output"], x["correct"], x["rank"]) != (y["output"], y["correct"],
                                                               y["rank"])
            n += 1
    assert flips <= FLIP_TOL * n, flips


def _count_ensembles(monkeypatch) -> list[int]:
    import kgtest.stacked_train as T

    sizes: list[int] = []
    real = T.stacked_train
    monkeypatch.setattr(T, "stacked_train", lambda reqs: sizes.append(len(reqs)) or real(reqs))
    return sizes


def test_relearn_side_by_side_equals_each_seed_alone(monkeypatch):
    inputs = [_seed_inputs(s) for s in range(3)]
    alone = [_relearn(m, t, c)() for m, t, c in inputs]
    sizes = _count_ensembles(monkeypatch)
    stacked = side_by_side([_relearn(m, t, c) for m, t, c in inputs])
    assert sizes == [3, 3]  # one ensemble per fold (x one lr), all three seeds in each
    _compare(alone, stacked)
    assert len({r["output"] for rows in alone for r in rows}) > 3  # not one repeated answer
    grid = {r["setting"] for r in alone[0]}
    assert grid == {"steps=3,lr=0.003", "steps=6,lr=0.003"}
    by = {g: [r["score"] for r in alone[0] if r["setting"] == g] for g in grid}
    assert max(abs(a - b) for a, b in zip(*by.values(), strict=True)) > 100 * SCORE_TOL


def test_misaligned_members_each_get_their_own_rows(monkeypatch):
    """Seed 1 has no attack documents (it probes its model as it is: greedy calls where
    the others train) and seed 2 attacks at another learning rate (no stack with seed 0):
    the rounds no longer line up, and every seed still gets the rows it gets alone."""
    inputs = [_seed_inputs(0), _seed_inputs(1),
              _seed_inputs(2, dataclasses.replace(GRID, lr=(1e-3,)))]
    m1, t1, c1 = inputs[1]
    inputs[1] = m1, t1, dataclasses.replace(c1, corpus=dataclasses.replace(c1.corpus, train=()))
    alone = [_relearn(m, t, c)() for m, t, c in inputs]
    assert {r["n_attack_facts"] for r in alone[1]} == {0}  # nothing to train on
    sizes = _count_ensembles(monkeypatch)
    stacked = side_by_side([_relearn(m, t, c) for m, t, c in inputs])
    assert sizes == []  # nothing stacked: each trained in its own thread
    _compare(alone, stacked)


def test_an_error_in_the_ensemble_reaches_every_member(monkeypatch):
    """An error in the stacked run (out of memory, a NaN loss) is raised by side_by_side;
    no member thread is left waiting."""
    import kgtest.ensemble

    def fail(*a, **k):
        raise RuntimeError("ensemble failed")

    monkeypatch.setattr(kgtest.ensemble, "train_ensemble", fail)
    inputs = [_seed_inputs(s) for s in range(2)]
    got = {}

    def recording(i, fn):  # what member i's own call raised
        def run():
            try:
                return fn()
            except RuntimeError as e:
                got[i] = str(e)
                raise
        return run

    with pytest.raises(RuntimeError, match="ensemble failed"):
        side_by_side([recording(i, _relearn(m, t, c)) for i, (m, t, c) in enumerate(inputs)])
    assert got == {0: "ensemble failed", 1: "ensemble failed"}  # each member, not just one
    assert not [t for t in threading.enumerate() if t.name.startswith("kgtest-member-")]


def test_outside_side_by_side_relearn_calls_plain_train(monkeypatch):
    import kgtest.train

    calls = []
    real = kgtest.train.train

    def spy(*a, **k):
        calls.append((a, k))
        return real(*a, **k)

    monkeypatch.setattr(kgtest.train, "train", spy)
    model, tok, ctx = _seed_inputs(0)
    rows = _relearn(model, tok, ctx)()  # probing(), but no side_by_side
    assert len(calls) == 2 and rows  # one run per fold
    (m, t, docs, cfg, out), kw = calls[0]
    assert m is not model and t is tok and docs and set(kw) == {"eval_fn"}
    assert (cfg.steps, cfg.lr, cfg.eval_every, cfg.seed) == (6, 3e-3, 3, 0)


# --- the hook itself: TrainResult, weights and the global random state ---------------------

TEXTS = [["Q a r ? A b", "a r b", "Q c r ? A d"], ["Q a r ? A x y", "x r y z", "Q y r ? A z"],
         ["Q e r ? A f", "e r f g h", "Q g r ? A h", "h r e"]]


def _fine_tune_member(m: int, out: str):
    """Member m: fine-tune its own model on its own documents; its eval_fn decodes,
    scores and draws from every global RNG; after the call it draws again."""
    docs = [{"prompt": t.split("A ")[0] + "A " if " A " in t else "",
             "completion": t.split(" A ")[1] if " A " in t else t} for t in TEXTS[m]]
    tok = build_tokenizer(TEXTS[m])
    model = build_model(ModelConfig(preset="tiny"), tok, seed=m)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(steps=4, batch_size=2, warmup=0, lr=3e-3, eval_every=2, seed=20 + m,
                      progress=False, tensorboard=False, device="cpu", threads=1)
    seen = []

    def eval_fn(mod):
        seen.append((greedy_complete(mod, tok, ["Q a r ? A"], 3),
                     answer_logprobs(mod, tok, ["Q a r ? A "], ["b"]).tolist(),
                     torch.rand(2).tolist(), np.random.rand(), random.random()))
        return {"x": float(len(seen))}

    def run():
        with probing():
            res = fine_tune(model, tok, docs, cfg, out, eval_fn=eval_fn)
        after = (torch.rand(1).item(), np.random.rand(), random.random())
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        return res, seen, after, weights, model.training, init
    return run


def test_fine_tune_side_by_side_is_each_members_train(monkeypatch, tmp_path):
    """Each member's TrainResult, final weights, eval_fn calls (their decoding and their
    draws from torch's, numpy's and random's global generators) and its random state after
    the call equal the member alone (the weights' updates within the norm-wise tolerance of
    tests/test_distributed.py, which also holds under other CPU arithmetic: an absolute
    1e-5 on each weight failed under `make test-arith`, on GPT-2's key biases, whose
    gradient is rounding noise that AdamW turns into steps of up to lr)."""
    def seeded(fn):
        torch.manual_seed(5)
        np.random.seed(5)
        random.seed(5)
        return fn()

    alone = [seeded(_fine_tune_member(m, str(tmp_path / f"a{m}"))) for m in range(3)]
    sizes = _count_ensembles(monkeypatch)
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    stacked = side_by_side([_fine_tune_member(m, str(tmp_path / f"s{m}")) for m in range(3)])
    assert sizes == [3]
    for a, s in zip(alone, stacked, strict=True):
        (ra, seen_a, after_a, w_a, tr_a, init), (rs, seen_s, after_s, w_s, tr_s, _) = a, s
        assert (ra.steps, ra.tokens, ra.metrics) == (rs.steps, rs.tokens, rs.metrics)
        assert abs(ra.final_loss - rs.final_loss) <= 1e-5
        assert rs.model_dir.is_dir() and (rs.model_dir / "config.json").exists()
        assert len(seen_a) == len(seen_s) == 2  # steps 2 and 4
        for (g_a, lp_a, *draws_a), (g_s, lp_s, *draws_s) in zip(seen_a, seen_s, strict=True):
            assert g_a == g_s and draws_a == draws_s
            assert np.allclose(lp_a, lp_s, atol=SCORE_TOL, rtol=0)
        assert after_a == after_s and tr_a == tr_s is False
        for k in w_a:
            assert_same_update(k, w_s[k], w_a[k], init[k])
    assert alone[0][2] != alone[1][2] or alone[0][1] != alone[1][1]  # the members differ
