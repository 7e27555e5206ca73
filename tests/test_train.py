"""The training loop: loss masks, schedule, checkpoints, resume-after-kill, end to end."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from kgtest.batches import epoch_plan
from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.errors import InputError
from kgtest.model import ModelConfig, build_model, load_model
from kgtest.scoring import greedy_complete
from kgtest.train import (
    CHECKPOINT,
    LOG,
    TrainConfig,
    encode_corpus,
    make_optimizer,
    make_scheduler,
    split_by_length,
    supervised_loss,
    train,
)

#: asserts a trained model's outcome: `make test-arith` reruns it under other CPU arithmetic
pytestmark = pytest.mark.trained

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def qa_world(n_facts: int = 20, seed: int = 0) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """A hand-made world: ``n_facts`` (s, r, o) facts, each stated and asked as QA."""
    rng = random.Random(seed)
    ents, rels = [f"e{i}" for i in range(12)], ["parent", "friend"]
    facts: dict[tuple[str, str], str] = {}
    while len(facts) < n_facts:
        s, r, o = rng.choice(ents), rng.choice(rels), rng.choice(ents)
        if s != o:
            facts.setdefault((s, r), o)
    triples = sorted((s, r, o) for (s, r), o in facts.items())
    docs = []
    for i, (s, r, o) in enumerate(triples):
        docs.append({"id": 2 * i, "kind": "statement", "prompt": "", "completion": f"{s} {r} {o} .",
                     "text": f"{s} {r} {o} .", "facts": [{"id": i, "role": "target"}]})
        docs.append({"id": 2 * i + 1, "kind": "qa", "prompt": f"Q {s} {r} ? A ", "completion": o,
                     "text": f"Q {s} {r} ? A {o}", "facts": [{"id": i, "role": "target"}]})
    return docs, triples


DOCS, TRIPLES = qa_world()
TOK = build_tokenizer([d["text"] for d in DOCS], extra_words=[f"e{i}" for i in range(12)])


def quiet(**kw) -> TrainConfig:
    return TrainConfig(progress=False, tensorboard=False, device="cpu", **kw)


# --- what the loss sees ----------------------------------------------------------------------

def test_encode_corpus_layout():
    enc = encode_corpus(TOK, DOCS[:2])
    stmt = [TOK.bos_token_id, *TOK.encode(DOCS[0]["text"], add_special_tokens=False),
            TOK.eos_token_id]
    assert enc.tokens[0, :len(stmt)].tolist() == stmt and enc.lengths[0] == len(stmt)
    assert enc.loss_start.tolist() == [1, 1 + len(TOK.encode(DOCS[1]["prompt"],
                                                             add_special_tokens=False))]
    assert (enc.tokens[0, len(stmt):] == TOK.pad_token_id).all()
    with pytest.raises(InputError, match="document 0 lacks"):
        encode_corpus(TOK, [{"text": "a"}])


@pytest.mark.parametrize("answer_only", [True, False])
def test_supervised_positions_are_completion_and_eos(answer_only):
    enc = encode_corpus(TOK, DOCS, answer_only_loss=answer_only)
    plan = epoch_plan(enc, 7, 3, torch.Generator().manual_seed(0), torch.device("cpu"))
    seen: dict[int, list[int]] = {}
    for m_lo, m_hi, n_sup, n_tok in plan.steps:
        assert 1 <= m_hi - m_lo <= 3
        docs_in_step, sup_in_step = [], 0
        for i_lo, i_hi, f_lo, f_hi, L in plan.micro[m_lo:m_hi]:
            idx = plan.idx[i_lo:i_hi]
            docs_in_step += idx.tolist()
            x = enc.tokens[idx, :L]  # (b, L)
            assert L == int(enc.lengths[idx].max())
            targets = x.reshape(-1)[plan.flat[f_lo:f_hi] + 1]
            rows = plan.flat[f_lo:f_hi] // L
            for r, t in zip(rows.tolist(), targets.tolist(), strict=True):
                seen.setdefault(int(idx[r]), []).append(t)
            sup_in_step += f_hi - f_lo
        assert n_sup == sup_in_step and n_tok == int(enc.lengths[docs_in_step].sum())
        assert len(docs_in_step) == 7 or (m_lo, m_hi, n_sup, n_tok) == plan.steps[-1]
    assert sorted(seen) == list(range(len(DOCS)))  # every document once per epoch
    for i, d in enumerate(DOCS):
        sup = d["completion"] if answer_only else d["prompt"] + d["completion"]
        want = TOK.encode(sup, add_special_tokens=False) + [TOK.eos_token_id]
        assert seen[i] == want, d
    assert TOK.pad_token_id not in sum(seen.values(), [])


def test_split_by_length_is_optimal():
    def padded(lengths, ends):
        starts = [0, *ends[:-1]]
        return sum((e - s) * int(lengths[e - 1]) for s, e in zip(starts, ends, strict=True))

    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        lengths = torch.sort(torch.randint(3, 20, (9,), generator=g)).values
        for k in (1, 2, 3):
            ends = split_by_length(lengths, k)
            best = min(padded(lengths, [*cuts, 9]) for n in range(k)
                       for cuts in itertools.combinations(range(1, 9), n))
            assert len(ends) <= k and ends[-1] == 9 and padded(lengths, ends) == best


def test_steps_mix_kinds_without_padding_and_loss_matches_hf_labels():
    enc = encode_corpus(TOK, DOCS)
    plan = epoch_plan(enc, 8, 4, torch.Generator().manual_seed(1), torch.device("cpu"))
    padded = sum(L * (i_hi - i_lo) for i_lo, i_hi, _, _, L in plan.micro)
    assert padded == int(enc.lengths.sum())  # two lengths here (statement, QA): no padding
    m = build_model(ModelConfig(preset="tiny"), TOK, seed=0)
    m_lo, m_hi, n_sup, _ = plan.steps[0]
    assert m_hi - m_lo == 2  # a random batch holds both kinds
    ours = sum(supervised_loss(m, enc.tokens[plan.idx[i_lo:i_hi], :L], plan.flat[f_lo:f_hi],
                               reduction="sum")
               for i_lo, i_hi, f_lo, f_hi, L in plan.micro[m_lo:m_hi]) / n_sup
    # the Trainer way: one padded batch, an attention mask, labels -100 off the answer
    idx = plan.idx[plan.micro[m_lo][0]:plan.micro[m_hi - 1][1]]
    x = enc.tokens[idx]
    labels = torch.where(torch.arange(x.shape[1]) >= enc.loss_start[idx, None], x, -100)
    labels[x == TOK.pad_token_id] = -100
    mask = (x != TOK.pad_token_id).long()
    ref = m(input_ids=x, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(ours, ref)


def test_optimizer_groups_and_schedule():
    m = build_model(ModelConfig(preset="tiny"), TOK, seed=0)
    cfg = quiet(steps=100, warmup=10, lr=1e-2, min_lr_ratio=0.1, weight_decay=0.5)
    opt = make_optimizer(m, cfg, torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.5 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in m.named_parameters()}
    assert all(p.dim() == 2 for p in decay["params"])
    assert {names[id(p)] for p in no_decay["params"]} >= {"transformer.wte.weight",
                                                          "transformer.wpe.weight"}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(m.parameters()))
    f = make_scheduler(opt, cfg).lr_lambdas[0]
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.55) and f(100) == pytest.approx(0.1)


# --- logs, early stop and bad input -----------------------------------------------------------

def test_log_early_stop_and_final_model(tmp_path):
    m = build_model(ModelConfig(preset="tiny"), TOK, seed=0)
    calls = []

    def eval_fn(model):
        calls.append(model.training)
        return {"direct": 0.5 if len(calls) < 3 else 1.0}

    torch.set_num_threads(2)  # the caller's setting; the run itself uses 1 (cfg.threads)
    try:
        res = train(m, TOK, DOCS, quiet(steps=50, batch_size=8, log_every=4, eval_every=5,
                                        threads=1, stop_at={"direct": 0.99}),
                    tmp_path, eval_fn=eval_fn)
        assert torch.get_num_threads() == 2  # cfg.threads holds for the run only
    finally:
        torch.set_num_threads(1)
    assert 0 < res.cpu_seconds and 0 < res.seconds
    assert res.stopped_early and res.steps == 15 and res.metrics == {"direct": 1.0}
    assert calls == [False] * 3  # eval runs in eval mode
    lines = [json.loads(s) for s in (tmp_path / LOG).read_text().splitlines()]
    assert [e["step"] for e in lines if "loss" in e] == [4, 8, 12]
    assert [e["step"] for e in lines if "eval/direct" in e] == [5, 10, 15]
    assert res.tokens == int(encode_corpus(TOK, DOCS).lengths.sum()) * 3  # 15 steps = 3 epochs
    loaded, _ = load_model(res.model_dir)
    assert torch.equal(next(loaded.parameters()), next(m.parameters()))


def test_bad_input_is_input_error(tmp_path):
    m = build_model(ModelConfig(preset="tiny", max_len=6), TOK, seed=0)
    with pytest.raises(InputError, match="raise model.max_len"):
        train(m, TOK, DOCS, quiet(steps=1), tmp_path)
    m = build_model(ModelConfig(preset="tiny"), TOK, seed=0)
    with pytest.raises(InputError, match=r"stop_at names \['cot'\]"):
        train(m, TOK, DOCS, quiet(steps=2, eval_every=1, stop_at={"cot": 0.9}), tmp_path,
              eval_fn=lambda m: {"direct": 1.0})
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            train(m, TOK, DOCS, TrainConfig(device="cuda"), tmp_path)


def test_corrupt_checkpoint_and_changed_config_refuse_resume(tmp_path):
    m = build_model(ModelConfig(preset="tiny"), TOK, seed=0)
    train(m, TOK, DOCS, quiet(steps=4, checkpoint_every=2), tmp_path)
    with pytest.raises(InputError, match="written with train.lr"):
        train(m, TOK, DOCS, quiet(steps=4, checkpoint_every=2, lr=5e-4), tmp_path, resume=True)
    ckpt = tmp_path / CHECKPOINT
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(InputError, match="corrupt training checkpoint") as err:
        train(m, TOK, DOCS, quiet(steps=4, checkpoint_every=2), tmp_path, resume=True)
    assert "\n" not in str(err.value)


# --- resume after a real kill -------------------------------------------------------------------

RESUME_CFG = dict(steps=36, batch_size=6, lr=3e-3, warmup=4, log_every=5, eval_every=1,
                  checkpoint_every=5, seed=3)  # 7 batches an epoch: checkpoints fall mid-epoch
CHILD = textwrap.dedent("""
    import sys, time, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_train import DOCS, TOK, RESUME_CFG, quiet, resume_model
    from kgtest.train import train
    def slow_eval(model):  # slows the loop so the parent can kill it mid-run
        time.sleep(0.1)
        return {{}}
    train(resume_model(), TOK, DOCS, quiet(**RESUME_CFG), {out!r}, eval_fn=slow_eval)
""")


def resume_model():
    return build_model(ModelConfig(preset="tiny", dropout=0.1), TOK, seed=7)  # dropout: RNG


@pytest.mark.slow
def test_resume_after_kill_gives_identical_weights(tmp_path):
    killed = tmp_path / "killed"
    script = CHILD.format(tests=str(Path(__file__).parent), out=str(killed))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (killed / CHECKPOINT).exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    step = torch.load(killed / CHECKPOINT, weights_only=True)["step"]
    assert 0 < step < RESUME_CFG["steps"] and not (killed / "model").exists()

    resumed = resume_model()
    res = train(resumed, TOK, DOCS, quiet(**RESUME_CFG), killed, resume=True,
                eval_fn=lambda m: {})
    straight = resume_model()
    ref = train(straight, TOK, DOCS, quiet(**RESUME_CFG), tmp_path / "straight",
                eval_fn=lambda m: {})
    assert res.steps == ref.steps == RESUME_CFG["steps"] and res.tokens == ref.tokens
    for (name, a), b in zip(resumed.state_dict().items(), straight.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name  # bit-exact
    log = [json.loads(s) for s in (killed / LOG).read_text().splitlines()]
    loss_steps = [e["step"] for e in log if "loss" in e]
    assert loss_steps == sorted(set(loss_steps)) == list(range(5, 36, 5)) + [36]
    assert res.final_loss == ref.final_loss


# --- end to end --------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_tiny_model_learns_20_fact_world(tmp_path, arch):
    """100% direct within 600 steps. Measured (AMD EPYC, model and batch seeds 0-4, one
    thread; seed 0 with two threads): 140-200 steps for GPT-2 and Llama, a 3x margin."""
    prompts = [f"Q {s} {r} ? A " for s, r, _ in TRIPLES]
    gold = [o for _, _, o in TRIPLES]

    def direct(model):
        outs = greedy_complete(model, TOK, prompts, max_new_tokens=3)
        return {"direct": sum(a == b for a, b in zip(outs, gold, strict=True)) / len(gold)}

    m = build_model(ModelConfig(arch=arch, preset="tiny"), TOK, seed=0)
    t0 = time.perf_counter()
    res = train(m, TOK, DOCS, quiet(steps=600, batch_size=16, lr=3e-3, warmup=20,
                                    weight_decay=0.0, eval_every=20,
                                    stop_at={"direct": 1.0}), tmp_path, eval_fn=direct)
    assert res.metrics["direct"] == 1.0 and res.stopped_early
    print(f"{arch}: 100% after {res.steps} steps, {time.perf_counter() - t0:.1f} s")
    loaded, tok = load_model(res.model_dir)
    assert direct(loaded)["direct"] == 1.0


# --- GPU: no host sync per step ------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_loop_has_no_per_step_host_sync(tmp_path):
    import warnings

    def syncs(steps: int) -> int:
        m = build_model(ModelConfig(preset="tiny"), TOK, seed=0)
        cfg = TrainConfig(steps=steps, batch_size=8, log_every=1000, eval_every=0,
                          checkpoint_every=0, device="cuda", progress=False, tensorboard=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                train(m, TOK, DOCS * 10, cfg, tmp_path / str(steps))  # 50 steps an epoch
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    syncs(5)  # warm-up: lazy CUDA initialisation syncs once
    assert syncs(40) == syncs(10)  # a per-step sync would add 30
