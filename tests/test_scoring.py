"""Batched greedy decoding and teacher-forced scoring against unbatched references."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.errors import InputError
from kgtest.model import ModelConfig, build_model, save_model
from kgtest.scoring import answer_logprobs, greedy_complete, rank_of_true

torch.set_num_threads(1)
WORDS = "Q A T ? . ann bob cy dee eve fay gus parent friend grandparent"
TOK = build_tokenizer([WORDS])
PROMPTS = ["Q ann parent ? A ", "Q", "bob friend cy . cy friend dee . Q bob grandparent ? T ",
           "eve", "Q gus friend ? A "]


def _model(arch: str, seed: int = 0):
    """A tiny model with large random weights, so greedy outputs vary (not 'A A A ...')."""
    m = build_model(ModelConfig(arch=arch, preset="tiny"), TOK, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return m.eval()


def _unbatched_greedy(m, prompt: str, max_new: int) -> str:
    """The obvious reference: one prompt, no padding, no cache, argmax each step."""
    ids = [TOK.bos_token_id] + TOK.encode(prompt, add_special_tokens=False)
    new = []
    with torch.no_grad():
        for _ in range(max_new):
            nxt = int(m(torch.tensor([ids])).logits[0, -1].argmax())
            if nxt == TOK.eos_token_id:
                break
            new.append(nxt)
            ids.append(nxt)
    return TOK.decode(new)  # a generated <pad> or <bos> stays visible, as in greedy_complete


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_greedy_batched_equals_unbatched_loop(arch):
    outs_by_seed = []
    for seed in range(3):
        m = _model(arch, seed)
        ref = [_unbatched_greedy(m, p, 8) for p in PROMPTS]
        assert greedy_complete(m, TOK, PROMPTS, 8) == ref
        assert greedy_complete(m, TOK, PROMPTS, 8, batch_size=2) == ref
        outs_by_seed.append(ref)
    assert len({w for outs in outs_by_seed for o in outs for w in o.split()}) > 3  # not trivial


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_greedy_equals_hf_generate_after_auto_reload(tmp_path, arch):
    m = _model(arch, 1)
    ours = greedy_complete(m, TOK, PROMPTS, 8)
    path = save_model(m, TOK, tmp_path / "model")
    hf = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    gen = hf.generate(**enc, do_sample=False, max_new_tokens=8)
    theirs = []
    for row in gen[:, enc["input_ids"].shape[1]:].tolist():
        cut = row.index(tok.eos_token_id) if tok.eos_token_id in row else len(row)
        theirs.append(tok.decode(row[:cut]))
    assert ours == theirs
    assert greedy_complete(hf, tok, PROMPTS, 8) == ours


def test_stop_token_ends_row_and_is_kept():
    m = _model("gpt2", 0)
    full = greedy_complete(m, TOK, PROMPTS, 8)
    for stop in ["ann", "bob", "."]:
        cut = greedy_complete(m, TOK, PROMPTS, 8, stop_tokens=[stop])
        for f, c in zip(full, cut, strict=True):
            words = f.split()
            want = words[:words.index(stop) + 1] if stop in words else words
            assert c.split() == want


def _reference_logprob(m, prompt: str, cand: str, with_eos: bool) -> float:
    p = TOK.encode(prompt, add_special_tokens=False)
    c = TOK.encode(cand, add_special_tokens=False) + ([TOK.eos_token_id] if with_eos else [])
    ids = torch.tensor([[TOK.bos_token_id] + p + c])
    with torch.no_grad():
        lp = torch.log_softmax(m(ids).logits[0], -1)  # (T, V)
    return sum(float(lp[len(p) + i, t]) for i, t in enumerate(c))


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("with_eos", [True, False])
def test_answer_logprobs_match_full_forward(arch, with_eos):
    m = _model(arch, 2)
    cands = ["bob", "cy . A dee", "eve fay", "ann"]
    got = answer_logprobs(m, TOK, PROMPTS, cands, with_eos=with_eos, batch_size=3)
    assert got.shape == (len(PROMPTS), len(cands))
    want = torch.tensor([[_reference_logprob(m, p, c, with_eos) for c in cands]
                         for p in PROMPTS])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    per_prompt = [cands[i:] + cands[:i] for i in range(len(PROMPTS))]  # a list per prompt
    got2 = answer_logprobs(m, TOK, PROMPTS, [c[:4] for c in per_prompt], with_eos=with_eos)
    for i, row in enumerate(per_prompt):
        for j, c in enumerate(row[:4]):
            assert abs(float(got2[i, j]) - float(want[i, cands.index(c)])) < 1e-4


def test_rank_of_true():
    m = _model("gpt2", 3)
    cands = ["ann", "bob", "cy", "dee", "eve"]
    lp = answer_logprobs(m, TOK, PROMPTS, cands)
    answers = ["bob", "ann", "eve", "cy", "dee"]
    ranks = rank_of_true(m, TOK, PROMPTS, cands, answers)
    for i, a in enumerate(answers):
        assert int(ranks[i]) == 1 + int((lp[i] > lp[i, cands.index(a)]).sum())
    best = [cands[int(i)] for i in lp.argmax(1)]
    assert rank_of_true(m, TOK, PROMPTS, cands, best).tolist() == [1] * len(PROMPTS)
    with pytest.raises(InputError, match="not a candidate"):
        rank_of_true(m, TOK, PROMPTS[:1], cands, ["zed"])


def test_prompt_longer_than_context_is_input_error():
    m = _model("gpt2", 0)  # tiny: 64 positions
    long = " ".join(["ann"] * 70)
    with pytest.raises(InputError, match="no room to generate"):
        greedy_complete(m, TOK, [long], 3)
    with pytest.raises(InputError, match="context is 64"):
        answer_logprobs(m, TOK, [long], ["bob"])
