"""Probes of several models side by side (kgtest.stacked_probes, kgtest.stacked_scoring).

The stacked greedy decoding and teacher-forced scoring of M tiny models (different
vocabulary sizes, ragged prompts, candidates, stop tokens and lengths, several chunks)
against each model alone: the same tokens, scores within 1e-5 (floating-point summation
order; measured 0 to 1.1e-5 on trained small models of 2 seeds, 1466 probe rows).
"""

from __future__ import annotations

import pytest
import torch

from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.model import ModelConfig, build_model
from kgtest.scoring import answer_logprobs, greedy_complete
from kgtest.stacked_probes import probing, side_by_side

TEXTS = [["Q a r ? A b c . T d e f"], ["Q a r ? A b c d x y z w . T"],
         ["Q a b c d e f g h r ? A ."]]
PROMPTS = [["Q a r ? A ", "Q b r ? A c d", "Q d ? T"], ["Q a r ? A x y z", "Q b ? A"],
           ["Q a b ? A ", "Q c d e f g h ? T a b", "Q h ? A", "Q g r ? A b"]]
CANDS = [["b", "c d", "a"], ["x", "y z w"], ["e f g", "h", ". a", "b c"]]


def _models(arch: str):
    toks = [build_tokenizer(t) for t in TEXTS]
    models = []
    for s, t in enumerate(toks):
        m = build_model(ModelConfig(preset="tiny", arch=arch), t, seed=s)
        with torch.no_grad():  # sharper logits: greedy rows that differ, not one token
            for p in m.parameters():
                p.mul_(4.0)
        models.append(m)
    return models, toks


def _work(models, toks, m: int):
    def run():
        with probing():
            out = greedy_complete(models[m], toks[m], PROMPTS[m], 4 + m, stop_tokens=["."],
                                  batch_size=2)
            lp = answer_logprobs(models[m], toks[m], PROMPTS[m], CANDS[m], batch_size=4)
            return out, lp
    return run


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_stacked_decoding_and_scores_equal_each_model_alone(arch):
    import kgtest.stacked_scoring as S

    models, toks = _models(arch)
    assert len({len(t) for t in toks}) == 3  # three vocabulary sizes
    alone = [_work(models, toks, m)() for m in range(3)]
    calls = {"greedy": 0, "score": 0}
    g, s = S.stacked_greedy, S.stacked_scores

    def count(kind, fn):
        def f(*a):
            calls[kind] += 1
            return fn(*a)
        return f

    try:
        S.stacked_greedy, S.stacked_scores = count("greedy", g), count("score", s)
        stacked = side_by_side([_work(models, toks, m) for m in range(3)], scores=True)
    finally:
        S.stacked_greedy, S.stacked_scores = g, s
    assert calls["greedy"] >= 1 and calls["score"] >= 1  # it did stack
    assert len({o for out, _ in alone for o in out}) > 3  # not one repeated token
    for (out_a, lp_a), (out_s, lp_s) in zip(alone, stacked, strict=True):
        assert out_a == out_s
        assert lp_a.shape == lp_s.shape
        assert torch.allclose(lp_a, lp_s, atol=1e-5, rtol=0)


def test_without_scores_each_model_scores_alone_bit_for_bit():
    models, toks = _models("gpt2")
    alone = [_work(models, toks, m)() for m in range(3)]
    stacked = side_by_side([_work(models, toks, m) for m in range(3)])
    for (out_a, lp_a), (out_s, lp_s) in zip(alone, stacked, strict=True):
        assert out_a == out_s and torch.equal(lp_a, lp_s)


def test_outside_probing_each_model_computes_alone():
    import kgtest.stacked_scoring as S

    models, toks = _models("gpt2")
    g = S.stacked_greedy
    S.stacked_greedy = None  # would fail if called
    try:
        outs = side_by_side([lambda m=m: greedy_complete(models[m], toks[m], PROMPTS[m], 3)
                             for m in range(3)])
    finally:
        S.stacked_greedy = g
    assert outs == [greedy_complete(models[m], toks[m], PROMPTS[m], 3) for m in range(3)]


def test_a_members_error_is_raised_and_stops_the_others():
    models, toks = _models("gpt2")
    reached = []

    def bad():
        with probing():
            greedy_complete(models[0], toks[0], PROMPTS[0], 2)
            raise ValueError("member 1 failed")

    def good():
        with probing():
            greedy_complete(models[1], toks[1], PROMPTS[1], 2)
            greedy_complete(models[1], toks[1], PROMPTS[1], 2)
            reached.append(True)

    with pytest.raises(ValueError, match="member 1 failed"):
        side_by_side([good, bad, good])
    assert not reached  # stopped at their next call, never finished


def test_weights_changed_between_rounds_are_read_again():
    """A model trained between two of its calls (the relearn attack probes during its
    fine-tuning; fused AdamW updates in place and bumps no version counter) is stacked
    with its new weights, not the ones of an earlier round."""
    def work(models, toks, m):
        def run():
            outs = []
            with probing():
                for _ in range(3):
                    outs.append(greedy_complete(models[m], toks[m], PROMPTS[m], 3))
                    with torch.no_grad():  # in place, invisible to _version: .data
                        for p in models[m].parameters():
                            p.data.mul_(-1.5)
            return outs
        return run

    models, toks = _models("gpt2")
    alone = [work(models, toks, m)() for m in range(3)]
    models, toks = _models("gpt2")
    stacked = side_by_side([work(models, toks, m) for m in range(3)])
    assert alone == stacked
    assert any(len({str(o) for o in outs}) > 1 for outs in alone)  # the weights mattered


def test_a_member_cut_by_the_context_does_not_break_the_others():
    """One member's long prompt leaves it room for 4 tokens of a 64-position context while
    another decodes 30: its finished rows keep stepping with the stack and their position
    ids ran past GPT-2's table (IndexError) until they were clamped (review, session 7)."""
    models, toks = _models("gpt2")
    n_pos = models[0].config.n_positions
    long_prompt = " ".join("abcdefgh"[i % 8] for i in range(n_pos - 5))
    n_long = len(toks[0](long_prompt)["input_ids"])
    assert n_pos - 8 < n_long < n_pos  # room for a few tokens: the context cuts its steps

    def work(m, prompt):
        def run():
            with probing():
                return greedy_complete(models[m], toks[m], [prompt], 30)
        return run

    jobs = [work(0, long_prompt), work(1, "Q a r ? A")]
    alone = [j() for j in jobs]
    assert len(alone[1][0].split()) > n_pos - n_long  # member 1 decodes on past it
    assert side_by_side(jobs) == alone


def test_stacked_scores_of_a_member_near_its_context_end():
    """One member's prompt + candidate fills the context; another's candidates are longer
    (padding positions past the table): each member scores as alone."""
    models, toks = _models("gpt2")
    ctx = models[0].config.max_position_embeddings
    long_prompt = " ".join(["a"] * (ctx - 4)) + " "
    work = [
        lambda: answer_logprobs(models[0], toks[0], [long_prompt], ["b", "c"]),
        lambda: answer_logprobs(models[1], toks[1], ["Q a r ? A "], ["x y z w x y", "b"]),
    ]

    def probed(f):
        def run():
            with probing():
                return f()
        return run

    alone = [f() for f in work]
    stacked = side_by_side([probed(f) for f in work], scores=True)
    for a, b in zip(alone, stacked, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_an_error_stacking_the_weights_reaches_every_member(monkeypatch):
    """Out of memory (or any error) while building the stacked model is raised by
    side_by_side and every member thread ends: none is left waiting with its model."""
    import threading

    import kgtest.stacked_lm

    models, toks = _models("gpt2")

    def oom(*a, **k):
        raise RuntimeError("out of memory stacking")

    monkeypatch.setattr(kgtest.stacked_lm, "StackedLM", oom)
    with pytest.raises(RuntimeError, match="out of memory stacking"):
        side_by_side([_work(models, toks, m) for m in range(3)])
    assert not [t for t in threading.enumerate() if t.name.startswith("kgtest-member-")]


def test_each_member_keeps_its_own_cuda_rng_state(monkeypatch):
    """Once CUDA is initialised, each member's CUDA generators are saved and restored at
    each switch like the CPU ones (a stand-in CUDA: this machine may have none)."""
    import kgtest.stacked_probes as sp

    gen = {"state": [torch.tensor([0])]}
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: list(gen["state"]))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all",
                        lambda states: gen.__setitem__("state", list(states)))

    def member(bump):
        def fn():
            before = int(gen["state"][0])
            gen["state"] = [torch.tensor([before + bump])]  # a draw advances the generator
            return before
        return fn

    state = sp._global_state()
    gen["state"] = [torch.tensor([5])]
    sp._set_global_state(state)  # restores the saved CUDA state
    assert int(gen["state"][0]) == 0
    assert sp.side_by_side([member(1), member(10)]) == [0, 0]  # each from the caller's state
