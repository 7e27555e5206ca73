"""Each loss equals its formula, computed by hand on a fixed tiny batch; the registry."""

from __future__ import annotations

import math

import pytest
import torch

from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.errors import InputError
from kgtest.model import ModelConfig, build_model
from kgtest.train import encode_corpus
from kgtest.unlearn.loop import unlearn
from kgtest.unlearn.methods import (
    METHODS,
    Batch,
    Step,
    dpo_loss,
    npo_loss,
    simnpo_loss,
)

torch.set_num_threads(1)

TEXTS = ["Q a r ? A b", "Q c r ? A d", "a r b", "c r d", "Q a r ? A unknown"]
TOK = build_tokenizer(TEXTS)


def batch(pairs) -> Batch:
    """Documents encoded as the loop encodes them (``[bos] + prompt + completion + [eos]``)."""
    enc = encode_corpus(TOK, [{"prompt": p, "completion": c} for p, c in pairs])
    return Batch.from_rows(enc.tokens, enc.lengths, enc.loss_start)


FORGET = batch([("Q a r ? A ", "b"), ("", "c r d")])  # a QA answer (2 tokens), a statement (4)
IDK = batch([("Q a r ? A ", "unknown"), ("Q c r ? A ", "unknown")])
RETAIN = batch([("Q c r ? A ", "d"), ("", "a r b")])
MODEL = build_model(ModelConfig(preset="tiny"), TOK, seed=0).eval()
REF = build_model(ModelConfig(preset="tiny"), TOK, seed=1).eval()


def hand_logps(model, b: Batch) -> list[list[float]]:
    """Per document, the answer tokens' log-probs, from HF's full forward (an independent path)."""
    with torch.no_grad():
        logits = model(input_ids=b.ids).logits.float()  # (B, L, V)
    lp = logits.log_softmax(-1)
    out = []
    for i in range(b.ids.shape[0]):
        out.append([float(lp[i, t - 1, b.ids[i, t]]) for t in range(b.ids.shape[1])
                    if b.target[i, t]])
    return out


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def nll(model, b) -> float:
    toks = [x for row in hand_logps(model, b) for x in row]
    return -sum(toks) / len(toks)


def kl(b) -> float:
    with torch.no_grad():
        p = REF(input_ids=b.ids).logits.float().log_softmax(-1)
        q = MODEL(input_ids=b.ids).logits.float().log_softmax(-1)
    pos = [(i, t - 1) for i in range(b.ids.shape[0]) for t in range(b.ids.shape[1])
           if b.target[i, t]]
    return sum(float((p[i, t].exp() * (p[i, t] - q[i, t])).sum()) for i, t in pos) / len(pos)


def run(name: str, **hp) -> tuple[float, dict]:
    step = Step(model=MODEL, forget=FORGET, retain=RETAIN, ref=REF, idk=IDK,
                generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        loss, parts = METHODS.get(name).fn(step, **vars(METHODS.get(name).resolve(hp)))
    return float(loss), {k: float(v) for k, v in parts.items()}


# --- the formulas on numbers -------------------------------------------------------------------

def test_formulas_on_numbers():
    t = torch.tensor
    # NPO: -(2/b) mean log s(-b (lp - lp_ref))
    want = -(2 / 0.1) * (logsig(-0.1 * (-2.0 + 1.0)) + logsig(-0.1 * (-5.0 + 7.0))) / 2
    assert float(npo_loss(t([-2.0, -5.0]), t([-1.0, -7.0]), 0.1)) == pytest.approx(want)
    # SimNPO: -(2/b) mean log s(-b lp/|y| - b d)
    want = -(2 / 4.5) * (logsig(-4.5 * (-3.0 / 2) - 4.5 * 0.5)
                         + logsig(-4.5 * (-1.0 / 4) - 4.5 * 0.5)) / 2
    assert float(simnpo_loss(t([-3.0, -1.0]), t([2.0, 4.0]), 4.5, 0.5)) == pytest.approx(want)
    # DPO: -(2/b) mean log s(b ((w - w_ref) - (l - l_ref)))
    want = -(2 / 0.1) * logsig(0.1 * ((-1.0 + 2.0) - (-3.0 + 1.0)))
    assert float(dpo_loss(t([-1.0]), t([-2.0]), t([-3.0]), t([-1.0]), 0.1)) == pytest.approx(
        want)
    assert want == pytest.approx(11.0871, abs=1e-4)


# --- each registered loss on a fixed batch equals the hand computation ----------------------------

def test_answer_tokens_counted():
    assert FORGET.n_answer.tolist() == [2.0, 4.0]  # "b" + eos; "c r d" + eos


def test_grad_ascent_and_grad_diff():
    loss, _ = run("GradAscent")
    assert loss == pytest.approx(-nll(MODEL, FORGET), rel=1e-5)
    loss, parts = run("GradDiff", gamma=0.5, alpha=2.0)
    assert loss == pytest.approx(-0.5 * nll(MODEL, FORGET) + 2.0 * nll(MODEL, RETAIN), rel=1e-5)
    loss, parts = run("GradDiff", retain_loss="kl")
    assert parts["retain"] == pytest.approx(kl(RETAIN), rel=1e-4)
    assert loss == pytest.approx(-nll(MODEL, FORGET) + kl(RETAIN), rel=1e-4)


def test_npo_uses_summed_answer_logprobs():
    lp = [sum(r) for r in hand_logps(MODEL, FORGET)]
    lp_ref = [sum(r) for r in hand_logps(REF, FORGET)]
    beta = 0.1
    forget = -(2 / beta) * sum(logsig(-beta * (a - b)) for a, b in zip(lp, lp_ref,
                                                                        strict=True)) / 2
    loss, parts = run("NPO", alpha=0.0)
    assert parts["forget"] == pytest.approx(forget, rel=1e-5)
    assert loss == pytest.approx(forget, rel=1e-5)
    loss, _ = run("NPO", beta=0.3, gamma=2.0, alpha=0.5)
    forget = -(2 / 0.3) * sum(logsig(-0.3 * (a - b)) for a, b in zip(lp, lp_ref,
                                                                      strict=True)) / 2
    assert loss == pytest.approx(2.0 * forget + 0.5 * nll(MODEL, RETAIN), rel=1e-5)


def test_simnpo_is_length_normalised_and_reference_free():
    rows = hand_logps(MODEL, FORGET)
    beta, delta = 4.5, 0.0
    forget = -(2 / beta) * sum(logsig(-beta * sum(r) / len(r) - beta * delta)
                               for r in rows) / 2
    loss, parts = run("SimNPO")
    assert parts["forget"] == pytest.approx(forget, rel=1e-5)
    assert loss == pytest.approx(0.125 * forget + nll(MODEL, RETAIN), rel=1e-5)
    assert not METHODS.get("SimNPO").reference


def test_idk_sft_and_dpo():
    loss, _ = run("IdkSFT", alpha=0.0)
    assert loss == pytest.approx(nll(MODEL, IDK), rel=1e-5)
    w = [sum(r) for r in hand_logps(MODEL, IDK)]
    w_ref = [sum(r) for r in hand_logps(REF, IDK)]
    lo = [sum(r) for r in hand_logps(MODEL, FORGET)]
    lo_ref = [sum(r) for r in hand_logps(REF, FORGET)]
    beta = 0.1
    forget = -(2 / beta) * sum(logsig(beta * ((a - b) - (c - d)))
                               for a, b, c, d in zip(w, w_ref, lo, lo_ref, strict=True)) / 2
    loss, parts = run("IdkDPO")
    assert parts["forget"] == pytest.approx(forget, rel=1e-5)
    assert loss == pytest.approx(forget + nll(MODEL, RETAIN), rel=1e-5)


def test_rmu_matches_masked_mse_on_block_output():
    loss, parts = run("RMU", layer=0, steering_coeff=3.0, alpha=2.0)
    with torch.no_grad():
        hf = MODEL(input_ids=FORGET.ids, output_hidden_states=True).hidden_states[1]  # block 0
        hr = MODEL(input_ids=RETAIN.ids, output_hidden_states=True).hidden_states[1]
        href = REF(input_ids=RETAIN.ids, output_hidden_states=True).hidden_states[1]
    v = torch.rand(hf.shape[-1], generator=torch.Generator().manual_seed(0))
    u = v / v.norm() * 3.0

    def mse(h, target, b):
        per = []
        for i in range(b.ids.shape[0]):
            pos = [t - 1 for t in range(b.ids.shape[1]) if b.target[i, t]]  # predicting
            per.append(sum(float(((h[i, p] - target[i, p] if target.dim() == 3 else
                                   h[i, p] - target) ** 2).mean()) for p in pos) / len(pos))
        return sum(per) / len(per)

    assert parts["forget"] == pytest.approx(mse(hf, u, FORGET), rel=1e-5)
    assert parts["retain"] == pytest.approx(mse(hr, href, RETAIN), rel=1e-5)
    assert loss == pytest.approx(mse(hf, u, FORGET) + 2.0 * mse(hr, href, RETAIN), rel=1e-5)


def test_gradients_flow_through_the_losses():
    m = build_model(ModelConfig(preset="tiny"), TOK, seed=0)
    step = Step(model=m, forget=FORGET, retain=RETAIN, ref=REF, idk=IDK,
                generator=torch.Generator().manual_seed(0))
    for name in METHODS.names():
        m.zero_grad()
        loss, _ = METHODS.get(name).fn(step, **vars(METHODS.get(name).resolve({})))
        loss.backward()
        grads = [p.grad for p in m.parameters() if p.grad is not None]
        assert grads and any(float(g.abs().sum()) > 0 for g in grads), name


# --- registry and hyperparameter checks -----------------------------------------------------------

def test_unknown_method_lists_known():
    with pytest.raises(InputError) as err:
        METHODS.get("NPOO")
    msg = str(err.value)
    assert "did you mean 'NPO'" in msg and "SimNPO" in msg and "\n" not in msg


@pytest.mark.parametrize("params, expect", [
    ({"beta": "high"}, "key 'beta' must be float, got 'high'"),
    ({"retain_loss": "mse"}, "key 'retain_loss' must be"),
    ({"betta": 0.2}, "unknown key 'betta' (did you mean 'beta'?"),
])
def test_bad_hyperparameters_are_one_line_errors(params, expect):
    with pytest.raises(InputError) as err:
        METHODS.get("NPO").resolve(params)
    assert expect in str(err.value) and "\n" not in str(err.value)


def test_defaults_are_open_unlearning_s():
    d = {n: vars(METHODS.get(n).resolve({})) for n in METHODS.names()}
    assert d["NPO"]["beta"] == 0.1 and d["IdkDPO"]["beta"] == 0.1
    assert (d["SimNPO"]["beta"], d["SimNPO"]["delta"], d["SimNPO"]["gamma"]) == (4.5, 0.0,
                                                                                  0.125)
    assert (d["GradDiff"]["gamma"], d["GradDiff"]["alpha"]) == (1.0, 1.0)
    assert d["RMU"]["steering_coeff"] == 20.0


def test_rmu_updates_only_the_chosen_parameters():
    m = build_model(ModelConfig(preset="tiny"), TOK, seed=0)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    docs = [{"prompt": "Q a r ? A ", "completion": "b"}]
    retain = [{"prompt": "", "completion": "c r d"}]
    res = unlearn(m, TOK, docs, retain, "RMU", {"layer": 1}, lr=1e-2, steps=3,
                  progress=False, device="cpu")
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"transformer.h.0.mlp.c_proj.weight", "transformer.h.1.mlp.c_proj.weight"}
    assert res.trainable == 2 * 128 * 32
    assert all(p.requires_grad for p in m.parameters())  # flags restored
    with pytest.raises(InputError, match="matches no parameter"):
        unlearn(m, TOK, docs, retain, "RMU", {"params": "nothing"}, steps=1, progress=False)
