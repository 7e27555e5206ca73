"""The ensemble trainer: each member == the same seed trained alone; clipping, early stop
and saved checkpoints per member."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from kgtest.batches import encode_corpus, epoch_plan
from kgtest.ensemble import StackedLM, clip_per_member, train_ensemble
from kgtest.errors import InputError
from kgtest.model import ModelConfig, build_model
from kgtest.train import LOG, supervised_loss, train

sys.path.insert(0, str(Path(__file__).parent))
from test_distributed import assert_same_weights  # noqa: E402
from test_train import DOCS, TOK, quiet  # noqa: E402

torch.set_num_threads(1)
SEEDS = (3, 4, 5)
CFG = dict(steps=15, batch_size=8, micro_batches=2, lr=3e-3, warmup=3, log_every=5,
           grad_clip=0.5, seed=2)  # 0.5: clipping is active in the first steps


def members(arch: str = "gpt2", seeds=SEEDS):
    return [build_model(ModelConfig(arch=arch, preset="tiny"), TOK, seed=s) for s in seeds]


def losses(log: Path) -> list:
    return [e["loss"] for e in map(json.loads, log.read_text().splitlines()) if "loss" in e]


def test_stacked_forward_and_gradients_match_each_model():
    models = members()
    stack = StackedLM(models)
    enc = encode_corpus(TOK, DOCS)
    plan = epoch_plan(enc, 8, 1, torch.Generator().manual_seed(0), torch.device("cpu"))
    i_lo, i_hi, f_lo, f_hi, L = plan.micro[0]
    x, flat = enc.tokens[plan.idx[i_lo:i_hi], :L], plan.flat[f_lo:f_hi]  # (b, L), (S,)
    ours = stack.losses(x, flat)  # (M,)
    ours.sum().backward()
    for m, model in enumerate(models):
        ref = supervised_loss(model, x, flat, reduction="sum")
        torch.testing.assert_close(ours[m], ref)
        ref.backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(stack.weight(name).grad[m], p.grad, rtol=1e-4,
                                       atol=1e-6, msg=name)
    # per-member clipping == clip_grad_norm_ on each member alone
    norms = clip_per_member(list(stack.parameters()), 0.1)
    for m, model in enumerate(models):
        ref_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        torch.testing.assert_close(norms[m], ref_norm)
        for name, p in model.named_parameters():
            torch.testing.assert_close(stack.weight(name).grad[m], p.grad, rtol=1e-4,
                                       atol=1e-7, msg=name)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_each_member_equals_its_seed_trained_alone(tmp_path, arch):
    models = members(arch)
    res = train_ensemble(models, TOK, DOCS, quiet(**CFG), tmp_path / "ens")
    assert res.steps == (15,) * 3 and res.stopped_early == (False,) * 3
    ens_losses = torch.tensor(losses(tmp_path / "ens" / LOG))  # (logs, M)
    for m, seed in enumerate(SEEDS):
        alone = build_model(ModelConfig(arch=arch, preset="tiny"), TOK, seed=seed)
        ref = train(alone, TOK, DOCS, quiet(**CFG), tmp_path / f"solo{m}")
        assert res.tokens == ref.tokens  # the same batches
        torch.testing.assert_close(ens_losses[:, m], torch.tensor(losses(ref.model_dir.parent
                                                                          / LOG)), rtol=1e-4,
                                   atol=0)
        assert res.final_losses[m] == pytest.approx(ref.final_loss, rel=1e-4)
        for (name, a), b in zip(models[m].state_dict().items(), alone.state_dict().values(),
                                strict=True):
            assert_same_weights(name, a, b)  # trained in place, GPT-2 key biases aside
    assert len({round(x, 6) for x in res.final_losses}) == 3  # the seeds really differ


def test_per_member_early_stop_matches_a_solo_early_stop(tmp_path):
    models = members()
    target = {id(models[0]): 4, id(models[1]): 8}  # member 2 never meets its target
    calls: dict[int, int] = {}

    def eval_fn(model):  # evals at steps 2, 4, ...: a member meets its target at step target
        calls[id(model)] = calls.get(id(model), 0) + 2
        return {"direct": float(calls[id(model)] >= target.get(id(model), 99))}

    cfg = quiet(**CFG, eval_every=2, stop_at={"direct": 1.0})
    res = train_ensemble(models, TOK, DOCS, cfg, tmp_path / "ens", eval_fn=eval_fn)
    assert res.steps == (4, 8, 15) and res.stopped_early == (True, True, False)
    assert [r["direct"] for r in res.metrics] == [1.0, 1.0, 0.0]
    assert calls == {id(models[0]): 4, id(models[1]): 8, id(models[2]): 16}  # 7 evals + end
    for m, stop in ((0, 4), (1, 8)):  # a stopped member == its seed stopped alone there
        alone = build_model(ModelConfig(preset="tiny"), TOK, seed=SEEDS[m])
        n = [0]

        def solo_eval(model, stop=stop, n=n):
            n[0] += 2
            return {"direct": float(n[0] >= stop)}

        ref = train(alone, TOK, DOCS, cfg, tmp_path / f"solo{m}", eval_fn=solo_eval)
        assert ref.steps == stop and res.final_losses[m] == pytest.approx(ref.final_loss,
                                                                           rel=1e-4)
        for (name, a), b in zip(models[m].state_dict().items(), alone.state_dict().values(),
                                strict=True):
            assert_same_weights(name, a, b)


def test_saved_members_are_plain_hf_checkpoints(tmp_path):
    models = members()
    res = train_ensemble(models, TOK, DOCS, quiet(**{**CFG, "steps": 5}), tmp_path)
    stack = StackedLM(models)  # the trained weights, restacked
    x = encode_corpus(TOK, DOCS[:6]).tokens  # (6, L)
    with torch.no_grad():
        ours = stack.logits(x)  # (M, 6, L, V)
        for m, d in enumerate(res.model_dirs):
            loaded = AutoModelForCausalLM.from_pretrained(d).eval()
            assert type(loaded).__name__ == "GPT2LMHeadModel"
            for (name, a), b in zip(loaded.state_dict().items(),
                                    models[m].state_dict().values(), strict=True):
                assert torch.equal(a, b), name  # bit for bit the member's weights
            torch.testing.assert_close(ours[m], loaded(x).logits, rtol=1e-4, atol=1e-5)


def test_bad_members_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="model 1 differs"):
        StackedLM([build_model(ModelConfig(preset="tiny"), TOK),
                   build_model(ModelConfig(preset="tiny", n_layer=3), TOK)])
    with pytest.raises(InputError, match="dropout"):
        StackedLM([build_model(ModelConfig(preset="tiny", dropout=0.1), TOK)])
