"""The ensemble trainer: each member == the same seed trained alone; clipping, early stop
and saved checkpoints per member.

Members and solo runs sum in another order (batched vs plain matmuls), so they are
compared with float32-derived tolerances (``LOSS_RTOL``, ``UPDATE_RTOL`` and their
measured spread: see tests/test_distributed.py): per-step losses, and each weight tensor's
update norm-wise, over a few steps, where rounding has no room to compound. Another seed
is > 1e-2 away on both, and each test checks that its tolerance tells members apart.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from kgtest.batches import encode_corpus, epoch_plan
from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.ensemble import StackedLM, clip_per_member, train_ensemble
from kgtest.errors import InputError
from kgtest.model import ModelConfig, build_model
from kgtest.train import LOG, supervised_loss, train

sys.path.insert(0, str(Path(__file__).parent))
from test_distributed import LOSS_RTOL, UPDATE_RTOL, assert_same_update, update_error  # noqa: E402,E501
from test_train import DOCS, TOK, qa_world, quiet  # noqa: E402

#: asserts a trained model's outcome: `make test-arith` reruns it under other CPU arithmetic
pytestmark = pytest.mark.trained

torch.set_num_threads(1)
SEEDS = (3, 4, 5)
CFG = dict(steps=15, batch_size=8, micro_batches=2, lr=3e-3, warmup=3, log_every=5,
           grad_clip=0.5, seed=2)  # 0.5: clipping is active in the first steps
#: 3 steps, a loss logged at each: step 1 checks the forward pass, steps 2-3 the first two
#: AdamW updates (Adam is scale-invariant on step 1 alone: a wrongly scaled or clipped
#: gradient shows from step 2 on)
SHORT = {**CFG, "steps": 3, "log_every": 1}
GRAD_RTOL = 2 ** 8 * 1.1920929e-07  # 3e-5 norm-wise per tensor; measured <= 3e-7


def members(arch: str = "gpt2", seeds=SEEDS):
    return [build_model(ModelConfig(arch=arch, preset="tiny"), TOK, seed=s) for s in seeds]


def initial(arch: str = "gpt2", seeds=SEEDS) -> list[dict]:
    return [m.state_dict() for m in members(arch, seeds)]


def losses(log: Path) -> list:
    return [e["loss"] for e in map(json.loads, log.read_text().splitlines()) if "loss" in e]


def grad_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||``: norm-wise, as entries that cancel carry relative noise."""
    return float((a - b).norm() / b.norm()) if b.norm() > 0 else float((a - b).abs().max())


def test_stacked_forward_and_gradients_match_each_model():
    models = members()
    stack = StackedLM(models)
    enc = encode_corpus(TOK, DOCS)
    plan = epoch_plan(enc, 8, 1, torch.Generator().manual_seed(0), torch.device("cpu"))
    i_lo, i_hi, f_lo, f_hi, L = plan.micro[0]
    x, flat = enc.tokens[plan.idx[i_lo:i_hi], :L], plan.flat[f_lo:f_hi]  # (b, L), (S,)
    ours = stack.losses(x, flat)  # (M,)
    ours.sum().backward()
    refs = []
    for m, model in enumerate(models):
        ref = supervised_loss(model, x, flat, reduction="sum")
        torch.testing.assert_close(ours[m], ref, rtol=LOSS_RTOL, atol=0)
        ref.backward()
        refs.append({n: p.grad.clone() for n, p in model.named_parameters()})
        for name, p in model.named_parameters():
            err = grad_error(stack.weight(name).grad[m], p.grad)
            assert err <= GRAD_RTOL, (name, m, err)
    # the tolerance has teeth: member 1's gradient is nowhere near member 0's
    assert max(grad_error(refs[1][n], refs[0][n]) for n in refs[0]) > 100 * GRAD_RTOL
    # per-member clipping == clip_grad_norm_ on each member alone
    norms = clip_per_member(list(stack.parameters()), 0.1)
    for m, model in enumerate(models):
        ref_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        torch.testing.assert_close(norms[m], ref_norm, rtol=LOSS_RTOL, atol=0)
        for name, p in model.named_parameters():
            assert grad_error(stack.weight(name).grad[m], p.grad) <= GRAD_RTOL, (name, m)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_each_member_equals_its_seed_trained_alone(tmp_path, arch):
    """Per-step losses and each tensor's update over 3 steps, to float32 tolerances.

    Measured (member vs solo, AMD EPYC, 1 and 2 threads): losses <= 1.6e-7 relative,
    updates <= 1.2e-5 (UPDATE_RTOL 3.5e-4). Against another seed's solo run both are
    > 1e-2, which the last assertion checks.
    """
    models, init = members(arch), initial(arch)
    res = train_ensemble(models, TOK, DOCS, quiet(**SHORT), tmp_path / "ens")
    assert res.steps == (3,) * 3 and res.stopped_early == (False,) * 3
    ens_losses = torch.tensor(losses(tmp_path / "ens" / LOG))  # (steps, M)
    assert ens_losses.shape == (3, 3)
    solos = []
    for m, seed in enumerate(SEEDS):
        alone = build_model(ModelConfig(arch=arch, preset="tiny"), TOK, seed=seed)
        ref = train(alone, TOK, DOCS, quiet(**SHORT), tmp_path / f"solo{m}")
        assert res.tokens[m] == ref.tokens  # the same batches
        solo_losses = torch.tensor(losses(ref.model_dir.parent / LOG))  # (steps,)
        torch.testing.assert_close(ens_losses[:, m], solo_losses, rtol=LOSS_RTOL, atol=0)
        assert res.final_losses[m] == pytest.approx(ref.final_loss, rel=LOSS_RTOL)
        for (name, a), b, i in zip(models[m].state_dict().items(),
                                   alone.state_dict().values(), init[m].values(), strict=True):
            assert_same_update(name, a, b, i)  # trained in place, GPT-2 key biases aside
        solos.append((alone.state_dict(), solo_losses))
    # teeth: member 0 is far from seed 4's solo run, on losses and on updates
    assert ((ens_losses[1:, 0] - solos[1][1][1:]).abs() / solos[1][1][1:]).max() > 100 * LOSS_RTOL
    assert max(update_error(n, a, solos[1][0][n], init[0][n])
               for n, a in models[0].state_dict().items()) > 100 * UPDATE_RTOL
    assert len({round(x, 6) for x in res.final_losses}) == 3  # the seeds really differ


def test_per_member_early_stop_matches_a_solo_early_stop(tmp_path):
    models, init = members(), initial()
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
                                                                           rel=LOSS_RTOL)
        for (name, a), b, i in zip(models[m].state_dict().items(),
                                   alone.state_dict().values(), init[m].values(), strict=True):
            assert_same_update(name, a, b, i)  # frozen at its stop, not trained on to 15


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


def test_a_member_whose_loss_becomes_nan_stops_the_run_with_one_line(tmp_path, monkeypatch):
    """As the ordinary loop: a non-finite loss is an InputError naming the member, not a
    NaN checkpoint saved with exit status 0."""
    real = StackedLM.losses

    def poisoned(self, x, flat, mask=None):
        out = real(self, x, flat, mask)
        return out * torch.tensor([1.0, float("nan")])  # member 1 only

    monkeypatch.setattr(StackedLM, "losses", poisoned)
    with pytest.raises(InputError, match=r"member\(s\) 1 became nan by step 2"):
        train_ensemble(members(seeds=(0, 1)), TOK, DOCS,
                       quiet(**{**CFG, "steps": 5, "log_every": 2}),
                       tmp_path)
    assert not list(tmp_path.glob("member-*"))  # nothing saved


def test_members_with_their_own_corpora_equal_their_solo_runs(tmp_path):
    """M seeds' data: each member its own documents, tokenizer (vocabulary sizes differ)
    and batch order; member m equals ``train`` on its own data, per-step losses and
    updates within the float32 tolerances above (measured on AMD EPYC, 1 thread: losses
    <= 2e-7 relative, updates <= 2e-5). The corpora differ in size, so the epochs end at
    different steps and the last batch of an epoch is smaller for one member only."""
    docs_b, _ = qa_world(n_facts=14, seed=1)  # 28 docs vs 40: other epoch lengths
    docs_b = docs_b + [{"prompt": "", "completion": "e1 mentor e2 ."},
                       {"prompt": "Q e1 mentor ? A ", "completion": "e2"}]
    tok_b = build_tokenizer([d["prompt"] + d["completion"] for d in docs_b],
                            extra_words=[f"e{i}" for i in range(12)])
    toks, doc_sets, seeds = [TOK, tok_b, TOK], [DOCS, docs_b, DOCS[:30]], [11, 12, 13]
    assert len(tok_b) != len(TOK)  # the vocabularies differ in size
    cfg = quiet(**{**CFG, "steps": 6, "log_every": 1, "batch_size": 12})
    models = [build_model(ModelConfig(preset="tiny"), t, seed=s)
              for t, s in zip(toks, SEEDS, strict=True)]
    init = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    res = train_ensemble(models, toks, doc_sets, cfg, tmp_path / "ens", batch_seeds=seeds)
    ens_losses = torch.tensor(losses(tmp_path / "ens" / LOG))  # (steps, M)
    solos = []
    for m in range(3):
        alone = build_model(ModelConfig(preset="tiny"), toks[m], seed=SEEDS[m])
        ref = train(alone, toks[m], doc_sets[m], replace(cfg, seed=seeds[m]),
                    tmp_path / f"solo{m}")
        assert res.tokens[m] == ref.tokens  # its own batches
        solo_losses = torch.tensor(losses(ref.model_dir.parent / LOG))
        torch.testing.assert_close(ens_losses[:, m], solo_losses, rtol=LOSS_RTOL, atol=0)
        assert models[m].config.vocab_size == len(toks[m])
        for (name, a), b, i in zip(models[m].state_dict().items(),
                                   alone.state_dict().values(), init[m].values(), strict=True):
            assert_same_update(name, a, b, i)
        solos.append(solo_losses)
    assert res.tokens[0] != res.tokens[1]  # the members really saw different data
    # teeth: member 0 against member 2's solo (same tokenizer, other data and seed)
    assert ((ens_losses[1:, 0] - solos[2][1:]).abs() / solos[2][1:]).max() > 100 * LOSS_RTOL
    loaded = AutoModelForCausalLM.from_pretrained(res.model_dirs[1])
    assert loaded.config.vocab_size == len(tok_b)  # saved with its own vocabulary


def _corpus(lengths, first: int = 1):
    """An encoded corpus of documents with these token lengths (all but the first two tokens
    supervised), every (document, position) its own token id from ``first`` on."""
    from kgtest.batches import EncodedCorpus

    n, width = len(lengths), max(lengths)
    lengths = torch.tensor(lengths)
    ids = first + torch.arange(n * width).view(n, width)
    tokens = torch.where(torch.arange(width) < lengths[:, None], ids, 0)
    return EncodedCorpus(tokens, lengths, torch.full((n,), 2))


def _pairs_alone(corpus, cfg, seed, step):
    """(input, target) token pairs a member trains on at ``step`` alone (its epoch_plan)."""
    gen = torch.Generator().manual_seed(seed)
    n_batches = -(-corpus.n_docs // cfg.batch_size)
    for _ in range(step // n_batches + 1):
        plan = epoch_plan(corpus, cfg.batch_size, cfg.micro_batches, gen, torch.device("cpu"))
    m_lo, m_hi, _, _ = plan.steps[step % n_batches]
    pairs = []
    for i_lo, i_hi, f_lo, f_hi, L in plan.micro[m_lo:m_hi]:
        x = corpus.tokens[plan.idx[i_lo:i_hi], :L].reshape(-1)
        pairs += [(int(x[f]), int(x[f + 1])) for f in plan.flat[f_lo:f_hi]]
    return sorted(pairs)


def test_a_step_stacks_members_at_common_ranks_with_little_padding():
    """Two members whose batches have opposite length profiles: the stacked step holds
    exactly each member's (input, target) pairs of training alone, and pads to the
    rank-aligned cut, not to each member's j-th length run stacked with the other's (that
    layout, before: 784 cells instead of 688 here)."""
    from kgtest.batches import joint_runs
    from kgtest.ensemble import _Data
    from kgtest.train import TrainConfig

    a = _corpus([4] * 14 + [24] * 2)  # mostly short
    b = _corpus([4] * 2 + [24] * 14, first=10_000)  # mostly long
    cfg = TrainConfig(batch_size=16, micro_batches=4)
    data = _Data([a, b], [0, 1], cfg, torch.device("cpu"), 0, 2)
    micro, n_sup, n_tok = data.step(0)
    cells = sum(x.numel() for x, _, _ in micro)
    assert cells == 2 * (2 * 4 + 14 * 24)  # ranks 0-1 short in both, 2-15 long in one
    old = 2 * (14 * 4 + 14 * 24)  # j-th runs: (14 short | 2 long) with (2 short | 14 long)
    assert cells < old
    assert joint_runs([a.lengths], 4) == [[(0, 14)], [(14, 16)]]  # alone: its own runs


@pytest.mark.parametrize("shadow", [False, True])
def test_stacked_steps_hold_each_members_own_pairs(shadow):
    """Over several epochs (a shorter last batch each), corpora of different widths and a
    member trained elsewhere (a shadow): every member's stacked micro-batches hold exactly
    the (input, target) token pairs it trains on alone, and a part of the group lays them
    out as the whole group does."""
    from kgtest.ensemble import _Data
    from kgtest.train import TrainConfig

    g = torch.Generator().manual_seed(0)
    corpora = [_corpus(torch.randint(3, hi, (n,), generator=g).tolist(), first=100_000 * m)
               for m, (n, hi) in enumerate([(11, 9), (7, 20), (13, 14)])]
    seeds = [5, 6, 7]
    cfg = TrainConfig(batch_size=4, micro_batches=3)
    whole = _Data(corpora, seeds, cfg, torch.device("cpu"), 0, 3)
    part = _Data(corpora, seeds, cfg, torch.device("cpu"), 0, 2) if shadow else None
    for step in range(9):
        micro, n_sup, _ = whole.step(step)
        for m, c in enumerate(corpora):
            got = sorted((int(x[m].reshape(-1)[f]), int(x[m].reshape(-1)[f + 1]))
                         for x, flat, mask in micro for f in flat[m][mask[m]])
            assert got == _pairs_alone(c, cfg, seeds[m], step)
            assert len(got) == n_sup[m]
        if part is not None:  # members 0-1 here, member 2 a shadow: the same layout
            mine, _, _ = part.step(step)
            assert [tuple(t.shape[1:]) for t, _, _ in mine] == \
                [tuple(t.shape[1:]) for t, _, _ in micro]
            for (x, f, k), (y, g_, j) in zip(mine, micro, strict=True):
                assert torch.equal(x, y[:2]) and torch.equal(f, g_[:2])
                assert torch.equal(k, j[:2])
