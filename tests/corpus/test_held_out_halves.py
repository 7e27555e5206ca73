"""Early stopping never asks the held-out facts the probes score (issue 11, item 3).

The held-out facts are cut once (``Split.held_out_stop`` / ``held_out_scored``,
:func:`kgtest.corpus.splits.halve_held_out`): the in-loop evaluation asks only the stop
half, every probe that asks held-out facts only the scored half.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kgtest.probes.probes as probes_mod
from kgtest.corpus.io import read_corpus
from kgtest.corpus.splits import Split, halve_held_out
from kgtest.experiment import load_experiment
from kgtest.pipeline import corpus_stage, world_of
from kgtest.probes.context import ProbeContext
from kgtest.train_config import TrainConfig
from kgtest.train_eval import eval_sets, measurable_stop, run_eval_sets

SPEC = Path(__file__).resolve().parents[1] / "data" / "tiny.toml"


@settings(max_examples=60, deadline=None)
@given(held=st.lists(st.integers(0, 500), unique=True, max_size=40),
       n_ood=st.integers(0, 40), seed=st.integers(0, 2**63 - 1))
def test_halves_are_disjoint_cover_and_stratified(held, n_ood, seed):
    held = np.asarray(sorted(held), dtype=np.int64)
    ood = held[:n_ood]
    stop, scored = halve_held_out(held, ood, seed)
    assert not set(stop.tolist()) & set(scored.tolist())
    assert sorted(stop.tolist() + scored.tolist()) == held.tolist()
    for part in (np.isin(held, ood), ~np.isin(held, ood)):  # per stratum: scored gets the odd
        k = int(part.sum())
        assert int(np.isin(stop, held[part]).sum()) == k // 2
    again = halve_held_out(held, ood, seed)
    assert np.array_equal(again[0], stop) and np.array_equal(again[1], scored)


def _asked_by_probes(monkeypatch, ctx: ProbeContext) -> set[int]:
    """Every fact the probes that ask held-out facts would ask (no model: a spy)."""
    asked: set[int] = set()
    real = probes_mod.direct_items

    def direct_items(c, facts):
        asked.update(int(f) for f in facts)
        return real(c, facts)

    def cot(model, tokenizer, facts, c, probe):
        asked.update(int(f) for f in facts)
        return []

    monkeypatch.setattr(probes_mod, "direct_items", direct_items)
    monkeypatch.setattr(probes_mod, "ask", lambda *a, **k: [])
    monkeypatch.setattr(probes_mod, "_cot", cot)
    monkeypatch.setattr(probes_mod, "answer_logprobs",
                        lambda m, t, prompts, answers: np.zeros((len(prompts), 1)))
    ctx = ctx.for_variant("original")
    targets = ctx.split.forget.tolist()
    probes_mod.latent(None, lambda text, **k: {"input_ids": [0]}, targets, ctx)
    probes_mod.utility(None, lambda text, **k: {"input_ids": [0]}, targets, ctx)
    asked.update(probes_mod.asked(ctx, "held_out"))
    return asked


def _eval_facts(sets) -> set[int]:
    return {f["id"] for name in ("cot", "latent_id", "latent_ood")
            for d in getattr(sets, name) for f in d["facts"] if f["role"] == "answer"}


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_in_loop_eval_and_probes_ask_disjoint_halves(seed, tmp_path, monkeypatch):
    cfg = load_experiment(SPEC, [f"run.seed={seed}", "split.ood_fraction=0.15"])
    world = world_of(cfg)
    corpus_dir = corpus_stage(cfg, tmp_path, world)
    corpus, split = read_corpus(corpus_dir), Split.load(corpus_dir / "split.json")
    held = set(split.held_out.tolist())
    assert held, "a world with held-out facts"
    stop, scored = set(split.held_out_stop.tolist()), set(split.held_out_scored.tolist())
    assert stop | scored == held and not stop & scored
    in_loop = _eval_facts(run_eval_sets(cfg, corpus, split)) & held
    assert in_loop and in_loop <= stop
    ctx = ProbeContext.from_run(corpus_dir, world, seeds={"probes": cfg.seeds()["probes"]})
    probed = _asked_by_probes(monkeypatch, ctx) & held
    assert probed == scored  # implied asks every scored fact, and nothing else held out
    assert not in_loop & probed


def test_one_held_out_fact_is_scored_and_cot_leaves_stop_at(tmp_path):
    cfg = load_experiment(SPEC)
    corpus_dir = corpus_stage(cfg, tmp_path)
    corpus, split = read_corpus(corpus_dir), Split.load(corpus_dir / "split.json")
    one = dataclasses.replace(split, held_out=split.held_out[:1])
    assert one.held_out_scored.tolist() == split.held_out[:1].tolist()
    assert one.held_out_stop.tolist() == []
    sets = eval_sets(corpus, one)
    assert sets.cot == ()
    train = measurable_stop(TrainConfig(stop_at={"direct": 0.9, "cot": 0.9}), sets)
    assert train.stop_at == {"direct": 0.9}
    full = eval_sets(corpus, split)
    assert full.cot and measurable_stop(TrainConfig(stop_at={"cot": 0.9}), full).stop_at
