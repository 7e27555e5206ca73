"""Probes on a tiny trained model with known answers, and on hand-made chains."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.pytorch_utils import Conv1D

from kgtest.errors import InputError
from kgtest.probes.context import _toy_context
from kgtest.probes.probes import (
    PROBES,
    PromptLeak,
    check_prompt,
    evaluate,
    verify_chain,
)
from kgtest.probes.quantize import quantize_model, rtn_quantize
from kgtest.probes.relearn import RelearnConfig, audit, split_targets
from kgtest.records import COLUMNS

slow = pytest.mark.slow  # these use the session's trained model (~30 s once)


def _run(name, model, tok, facts, ctx):
    return PROBES.get(name).fn(model, tok, [int(f) for f in facts], ctx)


def _acc(rows):
    return float(np.mean([r["correct"] for r in rows]))


def _base_stated(ctx, n=40):
    c = ctx.closure
    return [f for f in range(len(c)) if c.is_base[f]][:n]


@slow
def test_direct_memorised_facts_score_one(trained):
    model, tok, ctx, _ = trained
    rows = _run("direct", model, tok, _base_stated(ctx), ctx)
    assert len(rows) == 40 and set(rows[0]) == set(COLUMNS)
    assert _acc(rows) == 1.0
    assert all(r["rank"] == 1 and r["score"] > np.log(0.5) for r in rows)
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
                  "answer": gold["completion"].split()[-1]}
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


def test_prompt_leak_is_refused():
    ctx = _toy_context()  # facts: 0 = a p b, 1 = b p c, 2 = a g c
    with pytest.raises(PromptLeak):
        check_prompt(ctx, 2, "a g c . Q a g ? A ", answer=2, premises_allowed=True)
    with pytest.raises(PromptLeak):
        check_prompt(ctx, 2, "c ~g a . Q a g ? T ", answer=2)
    with pytest.raises(PromptLeak):
        check_prompt(ctx, 0, "b . Q a p ? A ", answer=1)  # names the answer
    check_prompt(ctx, 2, "a p b . b p c . Q a g ? A ", answer=2, premises_allowed=True)


@slow
def test_latent_asks_implied_and_unlearned_facts(trained):
    model, tok, ctx, _ = trained
    rows = _run("latent", model, tok, ctx.split.forget, ctx)
    implied = {r["fact"] for r in rows if r["setting"] == "implied"}
    assert implied == set(ctx.split.held_out.tolist())
    assert all(r["presentation"] == "implied" for r in rows if r["setting"] == "implied")
    assert {r["fact"] for r in rows if r["setting"] == "unlearned"} == set(
        ctx.split.forget.tolist())


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
    ctx = _toy_context()  # a p b, b p c => a g c
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
def test_relearn_rows_carry_the_audit(trained):
    model, tok, ctx, _ = trained
    ctx = ctx.for_variant("ignorance")
    import dataclasses

    ctx = dataclasses.replace(ctx, relearn=RelearnConfig(steps=(5,), lr=(1e-3,), batch_size=8))
    T, V = split_targets(ctx.split.forget.tolist(), 0.5, seed=0)
    rows = _run("relearn", model, tok, ctx.split.forget, ctx)
    assert sorted(r["fact"] for r in rows) == V and not set(T) & set(V)
    kept = np.asarray(ctx.corpus.presentation) != "implied"
    kept[ctx.split.forget] = False
    taught = {x["id"] for d in ctx.corpus.train for x in d["facts"]
              if {y["id"] for y in d["facts"]} & set(T) and not {y["id"] for y in d["facts"]}
              & set(V)}
    kept[sorted(taught)] = True
    for r in rows:
        assert r["audit_derivable"] == ctx.closure.derivable(r["fact"], kept)
        assert (r["attack"], r["attack_steps"], r["setting"]) == ("targets", 5, "steps=5,lr=0.001")
    prem = _run("relearn_premises", model, tok, ctx.split.forget, ctx)
    assert {r["attack"] for r in prem} == {"premises"} and len(prem) == len(V)


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
