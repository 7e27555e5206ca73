"""Probes on a tiny trained model with known answers, and on hand-made chains."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.pytorch_utils import Conv1D

from kgtest.errors import InputError
from kgtest.probes.context import toy_context
from kgtest.probes.probes import (
    PROBES,
    PromptLeak,
    check_prompt,
    equivalent,
    evaluate,
    verify_chain,
)
from kgtest.probes.quantize import quantize_model, rtn_quantize
from kgtest.probes.relearn import RelearnConfig, answer_folds, audit
from kgtest.records import COLUMNS

#: asserts a trained model's outcome: `make test-arith` reruns it under other CPU arithmetic
pytestmark = pytest.mark.trained

slow = pytest.mark.slow  # these use the session's trained model (~30 s once)


def _run(name, model, tok, facts, ctx):
    return PROBES.get(name).fn(model, tok, [int(f) for f in facts], ctx)


def _acc(rows):
    return float(np.mean([r["correct"] for r in rows]))


def _base_stated(ctx, n=40):
    c = ctx.closure
    return [f for f in range(len(c)) if c.is_base[f]][:n]


#: Spread of the trained-model thresholds below over 5 trajectories (Intel seed 0; AMD EPYC,
#: one thread, train seeds 0, 1, 3, 4): direct, statement and int8/int4 on 40 stated base
#: facts, and CoT on the 10 forget targets, were 1.0 every time; the limits leave 2 facts
#: of 40 (1 of 10 for CoT). Never trained: the initialisation is seeded, no training.


@slow
def test_direct_memorised_facts_score_one(trained):
    model, tok, ctx, _ = trained
    rows = _run("direct", model, tok, _base_stated(ctx), ctx)
    assert len(rows) == 40 and set(rows[0]) == set(COLUMNS)
    assert _acc(rows) >= 0.95  # 1.0 on every trajectory measured
    right = [r for r in rows if r["correct"]]
    assert all(r["rank"] == 1 and r["score"] > np.log(0.5) for r in right)
    assert all(r["n_candidates"] == 20 and r["chance"] == pytest.approx(0.05) for r in rows)
    assert all(r["presentation"] == "stated" and not r["derived"] for r in rows)


@slow
def test_never_trained_model_scores_at_chance(trained, untrained):
    _, tok, ctx, _ = trained
    rows = _run("direct", untrained, tok, range(len(ctx.closure)), ctx)  # 160 facts
    assert _acc(rows) <= 0.05 + 0.07  # chance 1/20, with room for a few lucky guesses
    rel = np.mean([(r["rank"] - 1) / (r["n_candidates"] - 1) for r in rows])
    assert 0.35 <= rel <= 0.65  # the true object sits mid-pack: no knowledge


@slow
def test_statement_probe(trained):
    model, tok, ctx, _ = trained
    rows = _run("statement", model, tok, _base_stated(ctx), ctx)
    assert _acc(rows) >= 0.95
    assert all(r["probe"] == "statement" for r in rows)


@slow
def test_paraphrase_is_not_applicable_on_symbolic_without_inverse(trained):
    model, tok, ctx, _ = trained
    rows = _run("paraphrase", model, tok, ctx.split.forget, ctx)
    assert len(rows) == len(ctx.split.forget)
    assert all(not r["applicable"] and r["correct"] is None for r in rows)


@slow
def test_cot_on_demonstrated_targets(trained):
    model, tok, ctx, _ = trained
    rows = _run("cot", model, tok, ctx.split.forget, ctx)
    assert _acc(rows) >= 0.9  # forget targets were trained as chains of thought
    right = [r for r in rows if r["correct"]]
    assert all(r["chain_valid"] and r["chain_entails"] and r["n_steps"] >= 2 for r in right)
    assert all(r["rank"] == 1 for r in right)
    base = _run("cot", model, tok, _base_stated(ctx, 3), ctx)
    assert all(not r["applicable"] for r in base)  # a base fact has no chain


@slow
def test_chain_verification_catches_an_invented_chain(trained):
    _, _, ctx, _ = trained
    c, sf = ctx.closure, ctx.corpus.surface
    gold = next(d for d in ctx.corpus.eval if d.get("probe") == "cot"
                and d["facts"][-1]["id"] == int(ctx.split.forget[0]))
    target = int(ctx.split.forget[0])
    ok = verify_chain(ctx, target, gold["completion"])
    assert ok == {"n_steps": 2, "n_true_steps": 2, "chain_valid": True, "chain_entails": True,
                  "chain_cites_target": False, "answer": gold["completion"].split()[-1],
                  "answer_correct": True, "verified": True}
    # Replace the bridge entity by one that makes both steps false; keep the right answer.
    (s, r1, b), (_, r2, o) = [x.split() for x in gold["completion"].split(" A ")[0]
                              .rstrip(" .").split(" . ")]
    fake = next(e for e in sf.entity_display
                if c.find(s, r1, e) < 0 and c.find(e, r2, o) < 0)
    invented = f"{s} {r1} {fake} . {fake} {r2} {o} . A {o}"
    v = verify_chain(ctx, target, invented)
    assert v["answer"] == o and not v["chain_valid"] and not v["chain_entails"]
    assert v["n_true_steps"] == 0
    half = verify_chain(ctx, target, f"{s} {r1} {b} . garbage words . A {o}")
    assert (half["n_steps"], half["n_true_steps"], half["chain_valid"]) == (2, 1, False)
    assert verify_chain(ctx, target, "no answer here")["answer"] == ""


@slow
def test_in_context_prompts_hold_premises_not_the_target(trained):
    model, tok, ctx, _ = trained
    facts = ctx.split.forget.tolist() + _base_stated(ctx, 2)
    rows = _run("in_context", model, tok, facts, ctx)
    by = {r["fact"]: r for r in rows if r["setting"] == ""}
    assert all(not by[f]["applicable"] for f in _base_stated(ctx, 2))
    docs = {d["facts"][-1]["id"]: d for d in ctx.corpus.in_context}
    for f in ctx.split.forget.tolist():
        assert by[f]["applicable"] and by[f]["rank"] >= 1
        check_prompt(ctx, f, docs[f]["prompt"], answer=int(ctx.corpus.facts[f, 2]),
                     premises_allowed=True)  # would raise on a leak
        assert " ".join(ctx.corpus.named(f)) not in docs[f]["prompt"]


def _toy_for(variant, removed=None):
    ctx = toy_context()  # facts: 0 = a p b, 1 = b p c, 2 = a g c (the forget target)
    return dataclasses.replace(ctx, variant=variant, removed=removed or {})


@pytest.mark.parametrize("variant", ["original", "filter", "NPO"])
def test_cot_counts_only_verified_chains(variant):
    ctx = _toy_for(variant)
    assert verify_chain(ctx, 2, "a p b . b p c . A c")["verified"]
    cites = verify_chain(ctx, 2, "a g c . A c")  # the target as its own step
    assert cites["answer_correct"] and cites["chain_cites_target"] and not cites["verified"]
    with_target = verify_chain(ctx, 2, "a p b . b p c . a g c . A c")
    assert with_target["chain_cites_target"] and not with_target["verified"]
    false_step = verify_chain(ctx, 2, "a p b . b p a . A c")  # b p a is no fact
    assert false_step["answer_correct"] and not false_step["chain_valid"]
    assert not false_step["verified"]
    no_chain = verify_chain(ctx, 2, "A c")
    assert no_chain["answer_correct"] and no_chain["n_steps"] == 0 and not no_chain["verified"]
    assert not verify_chain(ctx, 2, "a p b . b p c . A b")["verified"]  # wrong answer


def test_chain_validity_is_against_what_the_variant_was_trained_on():
    # the ignorance control never saw a p b: a chain through it is not valid for it
    ign = _toy_for("ignorance", {"ignorance": [0, 2]})
    v = verify_chain(ign, 2, "a p b . b p c . A c")
    assert v["answer_correct"] and not v["chain_valid"] and not v["verified"]
    assert v["n_true_steps"] == 1
    never = _toy_for("never_trained")
    assert not verify_chain(never, 2, "a p b . b p c . A c")["verified"]
    # an unlearning method is checked against the original's training facts
    assert verify_chain(_toy_for("NPO", {"NPO": [0, 2]}), 2, "a p b . b p c . A c")["verified"]


def test_equivalent_facts_are_symmetric_or_inverse_restatements():
    from kgtest.symbolic.rules import parse_rules
    from kgtest.worlds.world import World

    w = World.from_names([("a", "p", "b"), ("b", "p", "c"), ("a", "m", "d")],
                         parse_rules("g(X, Z) :- p(X, Y), p(Y, Z).\n"
                                     "m(X, Y) :- m(Y, X).\n"
                                     "h(Z, X) :- g(X, Z).\ng(X, Z) :- h(Z, X)."))
    c = w.close()
    ctx = types.SimpleNamespace(closure=c)
    amd, dma = c.find("a", "m", "d"), c.find("d", "m", "a")
    agc, hca = c.find("a", "g", "c"), c.find("c", "h", "a")
    assert equivalent(ctx, amd, dma) and equivalent(ctx, dma, amd)  # symmetric
    assert equivalent(ctx, agc, hca)  # inverse, defined both ways
    assert not equivalent(ctx, c.find("a", "p", "b"), agc)  # a premise is not the fact
    assert not equivalent(ctx, amd, agc)


def test_prompt_leak_is_refused():
    ctx = toy_context()  # facts: 0 = a p b, 1 = b p c, 2 = a g c
    with pytest.raises(PromptLeak):
        check_prompt(ctx, 2, "a g c . Q a g ? A ", answer=2, premises_allowed=True)
    with pytest.raises(PromptLeak):
        check_prompt(ctx, 2, "c ~g a . Q a g ? T ", answer=2)
    with pytest.raises(PromptLeak):
        check_prompt(ctx, 0, "b . Q a p ? A ", answer=1)  # names the answer
    check_prompt(ctx, 2, "a p b . b p c . Q a g ? A ", answer=2, premises_allowed=True)


@slow
def test_latent_asks_targets_never_stated_and_implied_asks_held_out_facts(trained):
    model, tok, ctx, _ = trained
    forget = set(ctx.split.forget.tolist())
    for variant, asked in (("original", set()), ("filter", forget), ("never_trained", forget)):
        rows = _run("latent", model, tok, sorted(forget), ctx.for_variant(variant))
        lat = [r for r in rows if r["probe"] == "latent"]
        assert {r["fact"] for r in lat} == forget and all(r["setting"] == "" for r in rows)
        assert {r["fact"] for r in lat if r["applicable"]} == asked, variant
        implied = [r for r in rows if r["probe"] == "implied"]
        # the scored half only: early stopping asked the other (Split.held_out_stop)
        assert {r["fact"] for r in implied} == set(ctx.split.held_out_scored.tolist())
        assert all(r["presentation"] == "implied" for r in implied)


def test_rtn_quantize_round_trip_error():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 48, generator=g)
    for bits in (8, 4):
        wq, scale = rtn_quantize(w, bits, dim=1)
        assert scale.shape == (64, 1)
        assert bool(((wq - w).abs() <= scale / 2 + 1e-6).all())
        levels = torch.round(wq / scale)  # integers on the grid
        assert bool((levels.abs() <= 2 ** (bits - 1) - 1).all())
        assert torch.allclose(levels, wq / scale, atol=1e-4)
    e8 = (rtn_quantize(w, 8, dim=1)[0] - w).abs().mean()
    e4 = (rtn_quantize(w, 4, dim=1)[0] - w).abs().mean()
    assert e4 > 10 * e8


@slow
def test_quantized_model_keeps_memorised_facts(trained):
    model, tok, ctx, _ = trained
    before = {n: p.clone() for n, p in model.named_parameters()}
    q8 = quantize_model(model, 8)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # untouched
    for name, mod in q8.named_modules():
        if isinstance(mod, Conv1D):  # (in, out): one scale per output column
            w = dict(model.named_modules())[name].weight
            scale = w.abs().amax(0, keepdim=True) / 127
            assert bool(((mod.weight - w).abs() <= scale / 2 + 1e-7).all())
    assert len(q8.quantized) == 8  # 4 Conv1D per block x 2 blocks; the tied head is skipped
    rows = _run("quantize", model, tok, _base_stated(ctx), ctx)
    acc = {s: _acc([r for r in rows if r["setting"] == s]) for s in ("int8", "int4")}
    assert acc["int8"] >= 0.95  # original: 1.0
    assert {r["bits"] for r in rows} == {8, 4}


def test_relearn_audit_agrees_with_the_closure():
    ctx = toy_context()  # a p b, b p c => a g c
    c = ctx.closure
    rng = np.random.default_rng(0)
    for _ in range(20):
        removed = rng.choice(3, size=rng.integers(0, 4), replace=False).tolist()
        attack = rng.choice(3, size=rng.integers(0, 3), replace=False).tolist()
        got = audit(ctx, [0, 1, 2], attack_facts=attack, removed=removed)
        kept = np.ones(3, dtype=bool)
        kept[removed] = False
        kept[attack] = True
        assert got == c.closure_mask(kept).tolist()


@slow
def test_relearn_rotates_folds_with_disjoint_answers_and_carries_the_audit(trained):
    model, tok, ctx, _ = trained
    ctx = dataclasses.replace(ctx.for_variant("ignorance"), relearn=RelearnConfig(
        steps=(2, 4), lr=(1e-3, 3e-3), folds=2, batch_size=8))
    forget = ctx.split.forget.tolist()
    rows = _run("relearn", model, tok, forget, ctx)
    grid = {"steps=2,lr=0.001", "steps=4,lr=0.001", "steps=2,lr=0.003", "steps=4,lr=0.003"}
    assert {r["setting"] for r in rows} == grid
    F = ctx.corpus.facts
    for setting in grid:  # every target is evaluated once per grid point
        here = [r for r in rows if r["setting"] == setting]
        assert sorted(r["fact"] for r in here) == sorted(forget)
    folds = {}
    for r in rows:
        folds.setdefault(r["fold"], set()).add(r["fact"])
    assert len(folds) == 2
    answers = [{int(F[f, 2]) for f in fold} for fold in folds.values()]
    assert not answers[0] & answers[1]  # attack and evaluation answers are disjoint
    trained_mask = ctx.trained_facts("ignorance")
    for r in rows:
        V = folds[r["fold"]]
        T = set(forget) - V
        taught = {x["id"] for d in ctx.corpus.train for x in d["facts"]
                  if {y["id"] for y in d["facts"]} & T and not {y["id"] for y in d["facts"]} & V}
        kept = trained_mask.copy()
        kept[ctx.removed_by("ignorance")] = False
        kept[sorted(taught)] = True
        assert r["audit_derivable"] == ctx.closure.derivable(r["fact"], kept)
        assert r["attack"] == "targets" and r["n_attack_facts"] == len(taught)
    prem = _run("relearn_premises", model, tok, forget, ctx)
    assert {r["attack"] for r in prem} == {"premises"} and len(prem) == 4 * len(forget)


def test_answer_folds_keep_answers_disjoint():
    rng = np.random.default_rng(0)
    for trial in range(50):
        n = int(rng.integers(2, 30))
        facts = rng.permutation(100)[:n].tolist()
        objects = rng.integers(0, int(rng.integers(1, 8)), size=n).tolist()
        k = int(rng.integers(2, 5))
        folds = answer_folds(facts, objects, k, seed=trial)
        obj = dict(zip(facts, objects, strict=True))
        assert sorted(f for fold in folds for f in fold) == sorted(facts)
        assert len(folds) == min(k, len(set(objects)))
        answer_sets = [{obj[f] for f in fold} for fold in folds]
        for i in range(len(folds)):
            for j in range(i + 1, len(folds)):
                assert not answer_sets[i] & answer_sets[j]


def test_relearn_config_is_checked():
    with pytest.raises(InputError, match="facts"):
        RelearnConfig(facts="everything")
    with pytest.raises(InputError, match="folds"):
        RelearnConfig(folds=1)
    cfg = RelearnConfig()
    assert len(cfg.lr) >= 3 and len(cfg.steps) >= 2  # Deeb & Roger: a grid, worst case


@slow
def test_evaluate_gates_every_variant_by_the_original(trained, untrained):
    model, tok, ctx, _ = trained
    rows = evaluate({"original": (model, tok), "never_trained": (untrained, tok)}, ctx,
                    probes=["direct", "cot", "utility"])
    orig = {(r["probe"], r["fact"]): r for r in rows if r["variant"] == "original"}
    direct_known = {f for (p, f), r in orig.items() if p == "direct" and r["correct"]}
    cot_known = {f for (p, f), r in orig.items() if p == "cot" and r["correct"]}
    for r in rows:
        if r["probe"] == "direct":
            assert r["gated_in"] == (r["fact"] in direct_known)
        if r["probe"] == "cot":
            assert r["gated_in"] == (r["fact"] in cot_known)
        if r["probe"] == "utility_loss":
            assert r["gated_in"] and r["score"] < 0
    util = [r for r in rows if r["probe"] == "utility_direct"]
    assert _acc([r for r in util if r["variant"] == "original"]) == 1.0
    assert _acc([r for r in util if r["variant"] == "never_trained"]) <= 0.15
    with pytest.raises(InputError, match="original"):
        evaluate({"NPO": (model, tok)}, ctx, probes=["direct"])


@pytest.mark.parametrize("group_size", [16, 32, 64])
def test_groupwise_rtn_bounds_each_group_by_its_own_scale(group_size):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(24, 80, generator=g)  # 80 inputs: the last group is shorter
    w[:, :8] *= 50  # an outlier block: per-channel scales are dominated by it
    for bits in (8, 4):
        wq, scale = rtn_quantize(w, bits, dim=1, group_size=group_size)
        n_groups = -(-80 // group_size)
        assert scale.shape == (24, n_groups) and wq.shape == w.shape
        per_weight = scale.repeat_interleave(group_size, dim=1)[:, :80]
        assert bool(((wq - w).abs() <= per_weight / 2 + 1e-5).all())
        levels = wq / per_weight
        assert torch.allclose(levels, torch.round(levels), atol=1e-3)
        assert bool((levels.round().abs() <= 2 ** (bits - 1) - 1).all())
    # smaller groups isolate the outliers: less error than one scale per channel
    e_group = (rtn_quantize(w, 4, dim=1, group_size=group_size)[0] - w).abs().mean()
    e_chan = (rtn_quantize(w, 4, dim=1)[0] - w).abs().mean()
    assert e_group < e_chan
    # Conv1D layout (in, out): groups run along dim 0
    wq_t, scale_t = rtn_quantize(w.t().contiguous(), 4, dim=0, group_size=group_size)
    assert torch.equal(wq_t, rtn_quantize(w, 4, dim=1, group_size=group_size)[0].t())
    assert torch.equal(scale_t, rtn_quantize(w, 4, dim=1, group_size=group_size)[1])


def test_group_as_wide_as_the_input_is_per_channel():
    w = torch.randn(5, 32, generator=torch.Generator().manual_seed(2))
    assert torch.equal(rtn_quantize(w, 4, dim=1, group_size=32)[0], rtn_quantize(w, 4, dim=1)[0])
    with pytest.raises(ValueError, match="group_size"):
        rtn_quantize(w, 4, dim=1, group_size=-1)


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2,
                                      n_head=2)).eval()


def test_quantize_embeddings_and_the_tied_head_once():
    m = _tiny_gpt2()
    plain = quantize_model(m, 4)
    assert "transformer.wte" not in plain.quantized and "lm_head" not in plain.quantized
    assert torch.equal(plain.transformer.wte.weight, m.transformer.wte.weight)
    full = quantize_model(m, 4, group_size=16, embeddings=True)
    assert {"transformer.wte", "transformer.wpe"} <= set(full.quantized)
    assert "lm_head" not in full.quantized  # tied to wte: quantized once, through wte
    assert full.lm_head.weight.data_ptr() == full.transformer.wte.weight.data_ptr()
    assert not torch.equal(full.transformer.wte.weight, m.transformer.wte.weight)
    assert set(full.quant_codes) == set(full.quantized)
    assert all(c.shape == dict(full.named_modules())[n].weight.shape
               for n, c in full.quant_codes.items())


def test_small_weight_changes_vanish_under_quantization():
    """Zhang et al.'s mechanism, measured: a tiny update changes every full-precision
    weight but almost no int4 code; a large one changes many."""
    from kgtest.probes.quantize import code_difference

    m = _tiny_gpt2()
    q0 = quantize_model(m, 4, group_size=32)
    for eps, most in ((1e-6, 0.01), (1e-1, None)):
        moved = _tiny_gpt2()
        with torch.no_grad():
            for p in moved.parameters():
                p.add_(eps * torch.randn_like(p))
        q1 = quantize_model(moved, 4, group_size=32)
        diff = code_difference(q1.quant_codes, q0.quant_codes)
        if most is not None:
            assert diff <= most
        else:
            assert diff >= 0.3


def test_relearn_base_option_asks_the_targets_base_premises():
    from kgtest.probes.relearn import _asked

    ctx = toy_context()  # a p b (0), b p c (1) => a g c (2), the forget target
    assert _asked(ctx, [2], RelearnConfig()) == [2]
    assert _asked(ctx, [2], RelearnConfig(facts="base")) == [0, 1]


def test_asked_facts_by_probes_facts_and_a_bad_value_is_one_line(tmp_path):
    from kgtest.experiment import load_experiment
    from kgtest.probes.probes import asked

    ctx = toy_context()  # a p b, b p c; g(X, Z) :- p(X, Y), p(Y, Z)
    assert asked(ctx) == ctx.split.forget.tolist() == [2]
    assert asked(ctx, "base") == [0, 1] and asked(ctx, "held_out") == []
    with pytest.raises(InputError, match="probes.facts"):
        asked(ctx, "all")
    with pytest.raises(InputError, match="key 'probes.facts'"):
        load_experiment(Path(__file__).parents[2] / "experiments" / "quickstart.toml",
                        ["probes.facts=every"])
    assert "trained" in COLUMNS and ctx.categories[0]["trained"] == "statement+qa"
