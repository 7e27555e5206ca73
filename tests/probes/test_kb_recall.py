"""The kb_recall probe (Wu et al. 2024 at model level): U', recall, accuracy, gating, report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kgtest.corpus.render import render
from kgtest.corpus.splits import SplitConfig, choose_split
from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.errors import InputError
from kgtest.model import ModelConfig, build_model
from kgtest.probes import kb_recall as kbr
from kgtest.probes.context import ProbeContext
from kgtest.probes.probes import PROBES, evaluate
from kgtest.records import read_records, write_records
from kgtest.report import report
from kgtest.symbolic.rules import parse_rules
from kgtest.worlds.world import World

#: a g c has two derivations (via b and via e); c p d makes b g d and e g d.
FACTS = [("a", "p", "b"), ("b", "p", "c"), ("a", "p", "e"), ("e", "p", "c"), ("c", "p", "d")]


@pytest.fixture(scope="module")
def ctx():
    w = World.from_names(FACTS, parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."),
                         fixed=[("a", "sex", "f")])
    c = w.close()
    sp = choose_split(c, w, SplitConfig(1, 0, target_presentation="stated_and_cot"))
    return ProbeContext(render(c, w, sp), sp, w, seeds={"probes": 0})


def _ids(ctx, *triples):
    return [int(ctx.closure.find(*t)) for t in triples]


def _known(ctx, lost):
    kb = np.zeros(len(ctx.closure), dtype=bool)
    kb[kbr.kb_facts(ctx)] = True
    known = kb.copy()
    known[lost] = False
    return kb, known


def test_kb_is_every_trained_fact_but_the_fixed(ctx):
    ids = kbr.kb_facts(ctx)
    named = {ctx.closure.named(int(f)) for f in ids}
    assert ("a", "sex", "f") not in named and ("a", "g", "c") in named
    assert len(ids) == len(ctx.closure) - 1  # nothing held out in this corpus


def test_recall_accuracy_and_deep_bit_follow_u_prime(ctx):
    agc, apb, ape, cpd = _ids(ctx, ("a", "g", "c"), ("a", "p", "b"), ("a", "p", "e"),
                              ("c", "p", "d"))
    n_kb = len(kbr.kb_facts(ctx))
    kb, known = _known(ctx, [agc])
    r = kbr._recall_rows(ctx, [agc], kb, known)[0]
    # every minimal set is {a g c, one premise of each derivation}: size 3
    assert (r["min_set_size"], r["kb_recall"], r["kb_accuracy"]) == (3, pytest.approx(1 / 3), 1.0)
    assert r["correct"] is False and r["kb_unlearned"] == 1 and r["kb_size"] == n_kb
    _, known = _known(ctx, [agc, apb, ape])  # a whole minimal set: deep-unlearned
    r = kbr._recall_rows(ctx, [agc], kb, known)[0]
    assert (r["kb_recall"], r["kb_accuracy"], r["correct"]) == (1.0, 1.0, True)
    _, known = _known(ctx, [agc, apb, cpd])  # two of a set, and one fact outside every set
    r = kbr._recall_rows(ctx, [agc], kb, known)[0]
    assert r["kb_recall"] == pytest.approx(2 / 3) and r["correct"] is False
    assert r["kb_accuracy"] == pytest.approx(1 - 1 / (n_kb - 3))


def test_other_targets_are_not_counted_in_u_prime(ctx):
    agc, bgd = _ids(ctx, ("a", "g", "c"), ("b", "g", "d"))
    kb, known = _known(ctx, [agc, bgd])
    rows = {r["fact"]: r for r in kbr._recall_rows(ctx, [agc, bgd], kb, known)}
    assert rows[agc]["kb_unlearned"] == 1 and rows[agc]["kb_accuracy"] == 1.0
    alone = kbr._recall_rows(ctx, [agc], kb, known)[0]  # bgd not a target: a wrong deletion
    assert alone["kb_unlearned"] == 2 and alone["kb_accuracy"] < 1.0


def test_target_the_original_did_not_know_is_not_applicable(ctx):
    (agc,) = _ids(ctx, ("a", "g", "c"))
    kb, known = _known(ctx, [agc])
    kb[agc] = False
    r = kbr._recall_rows(ctx, [agc], kb, known)[0]
    assert r["applicable"] is False and r["kb_recall"] is None


def test_asked_recall_is_the_symbolic_recall_of_the_forget_set(ctx):
    (agc,) = _ids(ctx, ("a", "g", "c"))
    kb, known = _known(ctx, [])
    npo = ctx.for_variant("NPO")  # removed: the split's forget targets by default
    r = kbr._recall_rows(npo, [agc], kb, known)[0]
    if int(ctx.split.forget[0]) == agc:
        assert r["sym_recall"] == pytest.approx(1 / 3)
    assert kbr._recall_rows(ctx, [agc], kb, known)[0]["sym_recall"] == 0.0  # original


def test_filtered_rank_ignores_other_true_objects(ctx, monkeypatch):
    apb, ape, cpd = _ids(ctx, ("a", "p", "b"), ("a", "p", "e"), ("c", "p", "d"))
    names, _ = ctx.candidates(int(ctx.corpus.facts[apb, 2]))
    order = {n: i for i, n in enumerate(names)}

    def fake(model, tok, prompts, candidates, **kw):  # (P, C): e > b > d > everything else
        lp = torch.full((len(prompts), len(candidates)), -9.0)
        lp[:, order["e"]], lp[:, order["b"]], lp[:, order["d"]] = -1.0, -2.0, -3.0
        return lp

    monkeypatch.setattr(kbr, "answer_logprobs", fake)
    rank, score = kbr.kb_known(None, None, ctx, [apb, ape, cpd])
    # a p b: only e (also a true object of "a p") is above: filtered rank 1
    # c p d: e and b are above and neither is a true object of "c p": rank 3
    assert rank.tolist() == [1, 1, 3] and score.tolist() == [-2.0, -1.0, -3.0]


def _tiny(ctx, seed):
    texts = [d["text"] for part in ("train", "eval", "unknown", "in_context")
             for d in ctx.corpus.part(part)]
    tok = build_tokenizer(texts, kind="word")
    torch.manual_seed(seed)
    return build_model(ModelConfig(preset="tiny"), tok, seed=seed).eval(), tok


def test_evaluate_gates_targets_by_the_originals_kb_rows(ctx, tmp_path, monkeypatch):
    variants = {"original": _tiny(ctx, 0), "NPO": _tiny(ctx, 1)}
    real = kbr.kb_known
    (cpd,) = _ids(ctx, ("c", "p", "d"))  # a base fact, never a target

    def known(model, tok, c, facts):  # the original knows all but c p d; NPO knows nothing
        rank, score = real(model, tok, c, facts)
        orig = model is variants["original"][0]
        rank = np.where(orig & (np.asarray(facts) != cpd), 1, 2)
        return rank, score

    monkeypatch.setattr(kbr, "kb_known", known)
    rows = evaluate(variants, ctx, probes=["kb_recall"])
    kb = {(r["variant"], r["fact"]): r for r in rows if r["probe"] == "kb"}
    rec = [r for r in rows if r["probe"] == "kb_recall"]
    assert len(kb) == 2 * len(kbr.kb_facts(ctx)) and len(rec) == 2 * len(ctx.split.forget)
    for r in rec:  # the original knew the target: gated in (its kb row decides)
        assert r["gate"] == "kb" and r["gated_in"] and r["applicable"]
        if r["variant"] == "NPO":  # lost the whole KB: deep-unlearned
            assert r["kb_recall"] == 1.0 and r["correct"] is True
        else:
            assert r["kb_recall"] == 0.0 and r["kb_unlearned"] == 0
    assert not kb["original", cpd]["gated_in"] and not kb["NPO", cpd]["gated_in"]
    assert all(r["gated_in"] == kb["original", r["fact"]]["correct"]
               for r in rows if r["probe"] == "kb")
    write_records(rows, tmp_path)
    text = report([tmp_path], n_boot=50).read_text()
    assert "## Deep unlearning at model level (Wu et al. 2024)" in text
    assert "Symbolic, target only" in text and (tmp_path / "plots/deep_unlearning.png").is_file()
    assert {r["probe"] for r in read_records(tmp_path)} == {"kb", "kb_recall"}


def test_probe_refuses_a_variant_before_the_original(ctx):
    fresh = ProbeContext(ctx.corpus, ctx.split, ctx.world, variant="NPO")
    model, tok = _tiny(ctx, 0)
    with pytest.raises(InputError, match="original model must be probed first"):
        PROBES.get("kb_recall").fn(model, tok, ctx.split.forget.tolist(), fresh)


def test_report_without_kb_rows_has_no_section(tmp_path):
    from kgtest.report.kb_recall import kb_recall_markdown

    assert kb_recall_markdown([], []) == []
