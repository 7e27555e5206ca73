"""Questions with several true objects (kgtest.several): filtered rank, ``correct``,
the floor, CoT answers and the in-loop direct accuracy, on a toy world where ``p`` has out
degree 2 for ``a`` (a p b, a p e) and one object elsewhere; the model is a stub whose greedy
answers and candidate scores the test chooses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import kgtest.probes.context as pc
import kgtest.train_eval as te
import kgtest.unlearn.data as ud
from kgtest.corpus.render import render
from kgtest.corpus.splits import SplitConfig, choose_split
from kgtest.probes.context import ProbeContext, ask, direct_items, toy_context
from kgtest.probes.probes import verify_chain
from kgtest.symbolic.rules import parse_rules
from kgtest.unlearn.data import direct_accuracy, direct_docs, majority_floor
from kgtest.worlds.world import World

#: a p b and a p e (two true objects of "a p"); b p c, e p d; so a g c and a g d.
FACTS = [("a", "p", "b"), ("a", "p", "e"), ("b", "p", "c"), ("e", "p", "d")]


@pytest.fixture(scope="module")
def ctx():
    w = World.from_names(FACTS, parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
    c = w.close()
    sp = choose_split(c, w, SplitConfig(1, 0, target_presentation="stated_and_cot"))
    return ProbeContext(render(c, w, sp), sp, w)


def _id(ctx, s, r, o):
    return int(ctx.closure.find(s, r, o))


def _tok(text, **kw):
    return {"input_ids": [0]}


def _stub(monkeypatch, greedy: dict[str, str], scores: dict[str, float]):
    """The model answers ``greedy[prompt's subject]`` and scores candidate ``n`` as
    ``scores.get(n, -9)`` after every prompt."""
    def complete(model, tok, prompts, max_new, **kw):
        return [greedy[p.split()[1]] for p in prompts]

    def logprobs(model, tok, prompts, candidates, **kw):
        return torch.tensor([[scores.get(n, -9.0) for n in candidates]] * len(prompts))

    monkeypatch.setattr(pc, "greedy_complete", complete)
    monkeypatch.setattr(pc, "answer_logprobs", logprobs)


def _asked(ctx, facts, **kw):
    rows = ask(None, _tok, ctx, direct_items(ctx, facts), "direct", **kw)
    return {r["fact"]: r for r in rows}


def test_a_model_that_knows_both_objects_is_right_on_both(ctx, monkeypatch):
    apb, ape, bpc = _id(ctx, "a", "p", "b"), _id(ctx, "a", "p", "e"), _id(ctx, "b", "p", "c")
    _stub(monkeypatch, {"a": "b", "b": "c"}, {"b": -1.0, "e": -2.0, "c": -3.0})
    rows = _asked(ctx, [apb, ape, bpc])
    assert [rows[f]["correct"] for f in (apb, ape)] == [True, True]
    assert rows[ape]["rank"] == 2 and rows[ape]["filtered_rank"] == 1  # b is filtered out
    assert rows[apb]["n_true"] == rows[ape]["n_true"] == 2
    # exact match would have scored a p e wrong: the greedy answer names b
    assert rows[ape]["output"] != rows[ape]["object"]
    # a functional question: exact greedy match (whatever the rank), filtered rank = rank
    b = rows[bpc]
    assert b["correct"] and b["n_true"] == 1 and b["filtered_rank"] == b["rank"] == 3


def test_a_wrong_candidate_above_the_asked_object_is_wrong(ctx, monkeypatch):
    apb, ape = _id(ctx, "a", "p", "b"), _id(ctx, "a", "p", "e")
    _stub(monkeypatch, {"a": "b"}, {"b": -1.0, "c": -1.5, "e": -2.0})  # c is no "a p" object
    rows = _asked(ctx, [apb, ape])
    assert rows[apb]["correct"] and not rows[ape]["correct"]
    assert rows[ape]["filtered_rank"] == 2 and rows[ape]["rank"] == 3


def test_a_greedy_answer_that_is_not_true_is_wrong_even_at_filtered_rank_one(ctx,
                                                                              monkeypatch):
    apb, ape = _id(ctx, "a", "p", "b"), _id(ctx, "a", "p", "e")
    _stub(monkeypatch, {"a": "d"}, {"b": -1.0, "e": -1.5})  # ranks right, says d
    rows = _asked(ctx, [apb, ape])
    assert [rows[f]["filtered_rank"] for f in (apb, ape)] == [1, 1]
    assert not rows[apb]["correct"] and not rows[ape]["correct"]


def test_exact_match_where_the_truth_is_the_prompts(ctx, monkeypatch):
    ape = _id(ctx, "a", "p", "e")
    _stub(monkeypatch, {"a": "b"}, {"b": -1.0, "e": -2.0})
    r = _asked(ctx, [ape], several=False)[ape]
    assert not r["correct"] and r["n_true"] is None and r["filtered_rank"] is None


def test_a_functional_world_keeps_exact_greedy_match(monkeypatch):
    ctx = toy_context()  # a p b, b p c, a g c: one object each
    _stub(monkeypatch, {"a": "c", "b": "c"}, {"b": -2.0, "c": -1.0})
    rows = _asked(ctx, [0, 1, 2])
    assert [rows[f]["correct"] for f in (0, 1, 2)] == [False, True, True]
    assert all(r["n_true"] == 1 and r["filtered_rank"] == r["rank"] for r in rows.values())


def test_the_floor_uses_the_same_rule(ctx):
    ape = _id(ctx, "a", "p", "e")
    F = ctx.corpus.facts
    # other p facts: a p b, b p c, e p d: three tied modes b, c, d; b is a true "a p"
    # object, but c and d (wrong) out-count e (never an object elsewhere)
    assert ctx.floor(ape) == majority_floor(F, [ape])[0] == 0.0
    more = np.vstack([F, [[7, int(F[ape, 1]), int(F[ape, 2])]]])  # one more "? p e"
    # four tied modes b, c, d, e: two are true objects of "a p", and none out-counts e
    assert majority_floor(more, [ape]).tolist() == [1 / 2]
    assert majority_floor(more, [ape], any_true=False).tolist() == [1 / 4]  # e alone
    assert toy_context().floor(0) == majority_floor(toy_context().corpus.facts, [0])[0]


def test_a_cot_answer_may_name_another_true_object_it_derives(ctx):
    agc = _id(ctx, "a", "g", "c")
    other = verify_chain(ctx, agc, "a p e . e p d . A d", several=True)
    assert other["answer_correct"] and other["chain_entails"] and other["verified"]
    assert not verify_chain(ctx, agc, "a p e . e p d . A d")["verified"]  # exact rule
    # the answer must be the one the chain derives, and the chain must not cite it
    assert not verify_chain(ctx, agc, "a p b . b p c . A d", several=True)["verified"]
    assert not verify_chain(ctx, agc, "a g d . A d", several=True)["verified"]


def test_the_in_loop_direct_accuracy_uses_the_same_rule(ctx, monkeypatch):
    apb, ape = _id(ctx, "a", "p", "b"), _id(ctx, "a", "p", "e")
    docs = tuple(d for d in ctx.corpus.eval if d.get("probe") == "direct"
                 and d["facts"][0]["id"] in (apb, ape))
    sf = ctx.corpus.surface
    sets = te.EvalSets(surface=sf, direct=docs, cot=())
    several = te._several(ctx.corpus, sets, np.asarray(ctx.world.entity_type))
    assert set(several) == {apb, ape}
    sets = te.EvalSets(surface=sf, direct=docs, cot=(), several=several)
    names = several[apb][0]
    scores = {"b": -1.0, "e": -2.0}
    monkeypatch.setattr("kgtest.scoring.greedy_complete", lambda m, t, p, n, **k: ["b"] * len(p))
    monkeypatch.setattr("kgtest.scoring.answer_logprobs", lambda m, t, p, c, **k: torch.tensor(
        [[scores.get(n, -9.0) for n in names]] * len(p)))
    assert te.make_eval_fn(None, sets)(None)["direct"] == 1.0
    scores["c"] = -1.5  # a wrong candidate above e
    assert te.make_eval_fn(None, sets)(None)["direct"] == 0.5
    plain = te.EvalSets(surface=sf, direct=docs, cot=())  # without the truth sets: exact
    assert te.make_eval_fn(None, plain)(None)["direct"] == 0.5


def test_tunings_direct_accuracy_uses_the_same_rule(ctx, monkeypatch):
    apb, ape, bpc = _id(ctx, "a", "p", "b"), _id(ctx, "a", "p", "e"), _id(ctx, "b", "p", "c")
    docs = direct_docs(ctx.corpus, [apb, ape, bpc])
    assert sum("several" in d for d in docs) == 2  # not on b p c: exact match
    names = next(d["several"][0] for d in docs if "several" in d)
    scores = {"b": -1.0, "e": -2.0}
    monkeypatch.setattr(ud, "greedy_complete", lambda m, t, p, n, **k: [
        {"a": "b", "b": "c"}[x.split()[1]] for x in p])
    monkeypatch.setattr("kgtest.scoring.answer_logprobs", lambda m, t, p, c, **k: torch.tensor(
        [[scores.get(n, -9.0) for n in names]] * len(p)))
    assert direct_accuracy(None, _tok, docs) == 1.0
    scores["d"] = -1.5  # d is no "a p" object: e drops to filtered rank 2
    assert direct_accuracy(None, _tok, docs) == pytest.approx(2 / 3)
    assert direct_docs(toy_context().corpus, [0, 1]) == tuple(
        d for d in toy_context().corpus.eval if d.get("probe") == "direct"
        and d["facts"][0]["id"] in (0, 1))  # a functional world: the corpus's own documents


def test_the_cot_probe_asks_the_target_above_every_wrong_object_after_the_chain(
        ctx, monkeypatch):
    import kgtest.probes.probes as pp

    agc = _id(ctx, "a", "g", "c")
    scores = {"c": -1.0, "d": -0.5}  # after the chain: d (true, said) > c > the rest
    monkeypatch.setattr(pp, "greedy_complete", lambda m, t, p, n, **k: ["a p e . e p d . A d"])
    monkeypatch.setattr(pp, "answer_logprobs", lambda m, t, p, c, **k: torch.tensor(
        [[scores.get(n, -9.0) for n in c]] * len(p)))
    (row,) = pp.cot(None, _tok, [agc], ctx)
    assert row["n_true"] == 2 and row["filtered_rank"] == 1 and row["rank"] == 2
    assert row["correct"] and row["answer_correct"]
    scores["b"] = -0.8  # a wrong object above c
    (row,) = pp.cot(None, _tok, [agc], ctx)
    assert row["filtered_rank"] == 2 and not row["correct"] and not row["answer_correct"]


def test_the_in_loop_cot_answer_may_be_any_true_object(ctx, monkeypatch):
    agc = _id(ctx, "a", "g", "c")
    docs = tuple(d for d in ctx.corpus.eval if d.get("probe") == "cot"
                 and d["facts"][-1]["id"] == agc)
    assert docs
    sf = ctx.corpus.surface
    several = te._several(ctx.corpus, te.EvalSets(surface=sf, direct=(), cot=docs), None)
    monkeypatch.setattr("kgtest.scoring.greedy_complete",
                        lambda m, t, p, n, **k: ["a p e . e p d . A d"] * len(p))
    tok = lambda text, **kw: {"input_ids": [0] * 8}  # noqa: E731
    sets = te.EvalSets(surface=sf, direct=(), cot=docs, several=several)
    assert te.make_eval_fn(tok, sets)(None)["cot"] == 1.0
    plain = te.EvalSets(surface=sf, direct=(), cot=docs)
    assert te.make_eval_fn(tok, plain)(None)["cot"] == 0.0
