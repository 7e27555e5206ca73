"""The in-context probes: baselines, counterfactuals, gating, prompt hygiene."""

from __future__ import annotations

import numpy as np
import pytest

from kgtest.corpus.in_context import InContextConfig
from kgtest.corpus.render import CorpusConfig, render
from kgtest.corpus.splits import choose_split
from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.experiment import load_experiment
from kgtest.model import ModelConfig, build_model
from kgtest.probes.context import ProbeContext, check_prompt
from kgtest.probes.in_context import counterfactual_items, true_items
from kgtest.probes.probes import PROBES, evaluate
from kgtest.worlds.samplers import sample_world


def _ctx(**icl) -> ProbeContext:
    cfg = load_experiment("experiments/quickstart.toml")
    w = sample_world(cfg.world, seed=3)
    c = w.close()
    sp = choose_split(c, w, cfg.split, seed=0)
    corpus = render(c, w, sp, CorpusConfig(derived="both", icl=InContextConfig(**icl)), seed=0)
    return ProbeContext(corpus, sp, w)


@pytest.fixture(scope="module")
def ctx() -> ProbeContext:
    return _ctx()


def _asked(ctx: ProbeContext) -> list[int]:
    return ctx.split.forget.tolist() + ctx.split.validation.tolist() + ctx.split.held_out.tolist()


def copy_last(prompt: str) -> str:
    """A stub model: the object of the last statement before the question."""
    return prompt.split(" Q ")[0].removesuffix(" .").split()[-1]


def _entity_positions(ctx, prompt: str, entity: str) -> set[str]:
    """Where a name occurs in a symbolic prompt: ``subject``/``object``/``question``."""
    body, question = prompt.split(" Q ")
    out = {"question"} if entity in question.split() else set()
    for st in body.removesuffix(" .").split(" . "):
        s, _, o = st.split()
        out |= ({"subject"} if s == entity else set()) | ({"object"} if o == entity else set())
    return out


@pytest.mark.parametrize("setting", ["true", "counterfactual"])
def test_copying_the_last_premise_scores_the_copy_baseline(ctx, setting):
    facts = _asked(ctx)
    items = (true_items(ctx, facts) if setting == "true"
             else counterfactual_items(ctx, facts)[0])
    assert len(items) == len(facts)
    sf = ctx.corpus.surface
    hits = [copy_last(it.prompt) == sf.answer(it.answer) for it in items]
    baseline = [it.extra["copy_last"] for it in items]
    assert hits == baseline
    # shuffled with a distractor: copying is right about a third of the time, not always
    assert 0.15 < np.mean(hits) < 0.55, np.mean(hits)
    for it in items:  # copying a random statement: right as often as the answer is an object
        objs = [st.split()[2] for st in it.prompt.split(" Q ")[0].removesuffix(" .").split(" . ")]
        assert len(objs) == 3 or len(objs) == 2  # 2 premises + 1 distractor (a loop: 1 + 1)
        assert it.extra["copy_rate"] == pytest.approx(np.mean(
            [o == ctx.corpus.surface.answer(it.answer) for o in objs]))


def test_unshuffled_prompts_would_give_copying_everything():
    ctx = _ctx(shuffle=False, distractors=0)
    items = true_items(ctx, _asked(ctx))
    assert all(copy_last(it.prompt) == ctx.corpus.surface.answer(it.answer) for it in items)


def test_prompts_name_the_answer_only_as_a_premise_object(ctx):
    F = ctx.corpus.facts
    cf, _ = counterfactual_items(ctx, _asked(ctx))
    for it in true_items(ctx, _asked(ctx)) + cf:
        check_prompt(ctx, it.fact, it.prompt, answer=it.answer, premises_allowed=True)
        name = ctx.corpus.surface.entity_display[it.answer]
        where = _entity_positions(ctx, it.prompt, name)
        s, _, o = F[it.fact].tolist()
        loop = s == o or any(  # the world's own cycle: a r1 c . c r0 c
            st.split()[0] == st.split()[2] == name
            for st in it.prompt.split(" Q ")[0].removesuffix(" .").split(" . "))
        if it.answer != o:  # counterfactual: strictly the object of a premise
            assert where == {"object"}, it.prompt
        elif not loop:
            assert "object" in where and "question" not in where, it.prompt


def test_probe_rows_baselines_counterfactual_and_gate(ctx):
    texts = [d["text"] for p in ("train", "eval", "unknown", "in_context")
             for d in ctx.corpus.part(p)]
    tok = build_tokenizer(texts)
    model = build_model(ModelConfig(preset="tiny"), tok, seed=0).eval()
    facts = ctx.split.forget.tolist()[:4] + [0]  # a base fact: no premises, not applicable
    rows = evaluate({"original": (model, tok)}, ctx, ["in_context", "in_context_cot"], facts)
    assert PROBES.get("in_context").gate == "in_context"
    by = {(r["probe"], r["setting"], r["fact"]): r for r in rows}
    for f in facts[:4]:
        true, cf = by["in_context", "", f], by["in_context", "counterfactual", f]
        cot = by["in_context_cot", "", f]
        assert true["gate"] == "in_context" and cf["gate"] == "in_context[counterfactual]"
        assert cot["gate"] == "in_context_cot"
        for r in (true, cf, cot):
            assert r["applicable"] and r["copy_last"] is not None
            assert 0 <= r["majority_floor"] <= 1 and r["copy_rate"] > 0
            assert r["gated_in"] == bool(r["correct"])  # gated by the original's own answer
        assert cf["memorised"] is not None
        assert cf["memorised"] == (cf["output"].strip() == true["object"])
    assert not by["in_context", "", 0]["applicable"]
    assert not by["in_context", "counterfactual", 0]["applicable"]
