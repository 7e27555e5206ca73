"""Stacked unlearning (``kgtest run --seeds M``) against separate runs.

Loop level: three tiny models on three different corpora and tokenizers, every stackable
method, stacked vs the ordinary loop member by member: the per-step losses of the first
steps and the weights after one step agree up to float32 summation order (measured on an
Intel Xeon, 1 thread: losses within 1.6e-7 relative, weights after 5 steps within 2.6e-6;
the tolerances below are 2**7 float32 epsilons for the losses and, for the weights after
one AdamW step, a small fraction of the learning rate, since the first Adam step is
``lr * g / (|g| + eps)`` and a gradient element near 0 may take either sign).

Stage level (slow): two seeds of the tiny quickstart, tuned and unlearned stacked vs one
at a time: the same stage keys, the same ``unlearn.json`` fields (plus ``stacked``), the
same validation grid and chosen point per member, and the first logged loss within 1e-4.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
from dataclasses import replace

import pytest
import torch

from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.errors import InputError
from kgtest.model import ModelConfig, build_model
from kgtest.unlearn.loop import LoopConfig, unlearn
from kgtest.unlearn.methods import METHODS
from kgtest.unlearn.stacked import stackable, stacked_unlearn

#: asserts a trained model's outcome: `make test-arith` reruns it under other CPU arithmetic
pytestmark = pytest.mark.trained

LOSS_RTOL = torch.finfo(torch.float32).eps * 2**7  # ~1.5e-5
STACKABLE = [m for m in METHODS.names() if stackable(m) is None]


def _corpus(seed: int, n: int):
    rnd = random.Random(seed)
    ents = [f"e{i}" for i in range(12 + seed)]
    facts = [(rnd.choice(ents), f"r{rnd.randrange(3)}", rnd.choice(ents)) for _ in range(n)]
    forget = [{"prompt": f"Q {s} {r} ? A ", "completion": o} for s, r, o in facts[:6 + seed]]
    idk = [{"prompt": d["prompt"], "completion": "unknown"} for d in forget]
    retain = [{"prompt": "", "completion": f"{s} {r} {o}"} for s, r, o in facts[6:]]
    tok = build_tokenizer([d["prompt"] + d["completion"] for d in forget + retain + idk])
    return tok, forget, retain, idk


@pytest.fixture(scope="module")
def members():
    torch.set_num_threads(1)
    data = [_corpus(s, 30 + 5 * s) for s in range(3)]  # sizes and vocabularies differ
    models = [build_model(ModelConfig(preset="tiny"), d[0], seed=s)
              for s, d in enumerate(data)]
    return data, models


def _both(members, method, steps, params=None):
    data, models = members
    loop = LoopConfig(lr=1e-3, batch_size=4, retain_batch_size=5, progress=False,
                      device="cpu", log_every=1)
    seeds = [10, 11, 12]
    taken = [copy.deepcopy(m) for m in models]
    res = stacked_unlearn(models, [d[0] for d in data], [d[1] for d in data],
                          [d[2] for d in data], method, params, idk=[d[3] for d in data],
                          loop=loop, seeds=seeds, steps=steps, take=taken)
    alone = []
    for m, d in enumerate(data):
        model = copy.deepcopy(models[m])
        r = unlearn(model, d[0], d[1], d[2], method, params, idk_docs=d[3],
                    loop=replace(loop, seed=seeds[m], steps=steps[m]))
        alone.append((model, r))
    return res, taken, alone


@pytest.mark.parametrize("method", STACKABLE)
def test_each_member_takes_the_separate_loops_first_steps(members, method):
    params = {"retain_loss": "kl"} if method == "GradDiff" else None  # the KL retain term
    res, _, alone = _both(members, method, [3, 2, 3], params)
    for m, (_, r) in enumerate(alone):
        assert [h["step"] for h in res.history[m]] == [h["step"] for h in r.history]
        for ours, theirs in zip(res.history[m], r.history, strict=True):
            assert ours.keys() == theirs.keys()
            for k in ours:
                assert ours[k] == pytest.approx(theirs[k], rel=LOSS_RTOL, abs=LOSS_RTOL)
        assert res.trainable[m] == r.trainable and res.hyperparameters == r.hyperparameters
    # teeth: members are different models, not one model three times
    assert any(a["loss"] != pytest.approx(b["loss"], rel=10 * LOSS_RTOL)
               for a, b in zip(res.history[0], res.history[1], strict=False))


def test_one_step_leaves_each_member_where_its_separate_step_does(members):
    res, taken, alone = _both(members, "NPO", [1, 1, 1])
    lr = 1e-3
    for (model, _), ours, orig in zip(alone, taken, members[1], strict=True):
        diff = torch.cat([(p - q).detach().abs().flatten()
                          for p, q in zip(model.parameters(), ours.parameters(), strict=True)])
        moved = torch.cat([(p - q).detach().abs().flatten()
                           for p, q in zip(model.parameters(), orig.parameters(), strict=True)])
        assert float(moved.max()) > 0.5 * lr  # the step did move the weights
        assert float((diff > 1e-3 * lr).float().mean()) < 1e-3  # all but a sign-ambiguous few
        assert float(diff.max()) <= 2 * lr + 1e-7


def test_rmu_is_named_and_refused_not_silently_slow(members):
    data, models = members
    assert "RMU" in stackable("RMU")
    with pytest.raises(InputError, match="RMU"):
        stacked_unlearn(models, [d[0] for d in data], [d[1] for d in data],
                        [d[2] for d in data], "RMU", seeds=[0, 1, 2], steps=[1, 1, 1])


# --- stage level -------------------------------------------------------------------------------

METHODS_TRIED = ("NPO", "IdkDPO")
GRID = dict(tune_lrs=(1e-3, 3e-3), tune_epochs=(1.0, 2.0, 4.0), progress=False)


def _contexts(tiny_run, root, name):
    from kgtest.unlearn.api import load_run

    out = []
    for seed in (0, 1):
        _, run = tiny_run("split.n_forget=6", "split.n_validation=4", f"run.seed={seed}")
        src = run.stage_dir.parent
        dst = root / name / src.name
        shutil.copytree(src, dst)
        ctx = load_run(dst / run.stage_dir.name)
        ctx.cfg = replace(ctx.cfg, unlearn=replace(ctx.cfg.unlearn, methods=METHODS_TRIED,
                                                   deep=(False, True), **GRID))
        out.append(ctx)
    return out


@pytest.mark.slow
def test_stacked_stages_are_the_separate_runs_stages(tiny_run, tmp_path):
    from kgtest.unlearn.api import unlearn_variant
    from kgtest.unlearn.stacked_run import unlearn_members

    stacked = _contexts(tiny_run, tmp_path, "stacked")
    separate = _contexts(tiny_run, tmp_path, "separate")
    lines = []
    unlearn_members(stacked, log=lines.append)
    assert sum("unlearned as one stacked model" in x for x in lines) == 4, lines
    for ours, theirs in zip(stacked, separate, strict=True):
        for method in METHODS_TRIED:
            for deep in (False, True):
                stage = unlearn_variant(theirs, theirs.cfg.unlearn, method, deep=deep).stage_dir
                mine = ours.run_dir / stage.name  # the same key
                assert (mine / ".done").exists() and (mine / "model").is_dir()
                a = json.loads((mine / "unlearn.json").read_text())
                b = json.loads((stage / "unlearn.json").read_text())
                assert a.pop("stacked") == {"seeds": [0, 1], "member": ours.seed}
                assert a.keys() == b.keys()
                assert a["history"][0]["loss"] == pytest.approx(b["history"][0]["loss"],
                                                                rel=1e-4)
                assert _exact(a) == _exact(b), (method, deep)  # grid, choice, sets...
                losses = [(p["loss"], q["loss"]) for p, q in
                          zip(a["tuning"]["grid"], b["tuning"]["grid"], strict=True)
                          if p["loss"] is not None or q["loss"] is not None]
                assert losses and losses[0][0] == pytest.approx(losses[0][1], rel=1e-4)


def _exact(record: dict) -> dict:
    """An unlearn.json without what summation order may move: seconds, logged losses, the
    accuracies after the final run (compared by the probes' tolerances elsewhere)."""
    out = {k: v for k, v in record.items() if k not in ("history", "seconds", "after")}
    tuning = dict(out["tuning"])
    tuning["grid"] = [{k: v for k, v in p.items() if k != "loss"} for p in tuning["grid"]]
    tuning["choice"] = {k: v for k, v in tuning["choice"].items() if k != "loss"}
    out["tuning"] = tuning
    return out
