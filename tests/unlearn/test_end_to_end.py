"""On a tiny trained model every method lowers forget direct accuracy and keeps retain
accuracy above a stated floor; deep forget sets deep-unlearn symbolically; tuning; outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kgtest.errors import InputError
from kgtest.model import load_model
from kgtest.symbolic.deletion import deep_unlearns, is_minimal
from kgtest.unlearn import UnlearnConfig, forget_set, retain_docs, tune, unlearn
from kgtest.unlearn.api import control_run, method_params, unlearn_run
from kgtest.unlearn.data import OWN_ROLES, direct_accuracy, direct_docs, majority_floor
from kgtest.unlearn.tune import epochs_to_steps

#: asserts a trained model's outcome: `make test-arith` reruns it under other CPU arithmetic
pytestmark = pytest.mark.trained

torch.set_num_threads(1)

#: method -> (hyperparameters, lr, steps, forget accuracy at most, retain accuracy at least).
#: Before: 1.0 / 1.0. The thresholds hold over training trajectories, not one machine's:
#: measured forget / retain after unlearning (10 targets, 104 retain facts) over 6
#: trajectories: Intel, seed 0; AMD EPYC, one thread, seeds 0-4 (this test's body
#: on the fixture trained with ``train.seed=S``, unlearning with ``seed=S``):
#:   GradAscent  0.0-0.4 / 0.14-0.46   (gradient ascent collapses the model: retain is
#:                                      only held above chance, 0.05)
#:   GradDiff    0.1-0.4 / 0.36-0.59   (AMD CI: forget 0.40)
#:   NPO         0.0     / 0.40-0.68
#:   SimNPO      0.0-0.3 / 0.91-1.00   (forget weight gamma = 1)
#:   IdkSFT      0.0     / 0.90-0.97
#:   IdkDPO      0.0     / 0.74-0.88
#:   RMU         0.1-0.6 / 0.52-0.84   (alpha = 10)
#: Margins: two targets (0.2) above the highest forget rate seen, >= 0.1 below the lowest
#: retain rate. A method that does nothing keeps forget at 1.0; one that wrecks the model
#: drops retain to chance: both still fail.
SETTINGS = {
    "GradAscent": ({}, 3e-4, 30, 0.6, 0.08),
    "GradDiff": ({}, 1e-3, 20, 0.6, 0.25),
    "NPO": ({}, 1e-3, 50, 0.2, 0.3),
    "SimNPO": ({"gamma": 1.0}, 1e-3, 60, 0.5, 0.8),
    "IdkSFT": ({}, 1e-3, 40, 0.2, 0.8),
    "IdkDPO": ({}, 1e-3, 40, 0.2, 0.6),
    "RMU": ({"alpha": 10.0}, 3e-3, 40, 0.8, 0.4),
}


@pytest.fixture(scope="module")
def sets(trained):
    run, ctx = trained
    fs = forget_set(ctx.corpus, ctx.split.forget)
    avoid = set(fs.facts.tolist()) | set(ctx.split.validation.tolist())
    # every retained fact stated in training (the test's own yardstick; the tuner's sample
    # also leaves out the utility probe's facts, which in this 20-entity world is nearly all)
    labels = ctx.split.labels
    stated = {x["id"] for d in ctx.corpus.train if d["kind"] in ("statement", "qa")
              for x in d["facts"] if x["role"] in OWN_ROLES}
    pool = sorted(f for f in stated if labels[f] == "retain" and f not in avoid)
    return fs, retain_docs(ctx.corpus, avoid), direct_docs(ctx.corpus, pool)


@pytest.mark.slow
@pytest.mark.parametrize("method", list(SETTINGS))
def test_every_method_forgets_and_retains(trained, sets, method):
    _, ctx = trained
    fs, retain, retain_eval = sets
    params, lr, steps, forget_max, retain_min = SETTINGS[method]
    model, tok = load_model(ctx.model_dir)
    forget_eval = direct_docs(ctx.corpus, fs.targets)
    assert len(forget_eval) == 10 and len(retain_eval) >= 100
    assert direct_accuracy(model, tok, forget_eval) == 1.0
    assert direct_accuracy(model, tok, retain_eval) == 1.0
    pairs = method in ("IdkSFT", "IdkDPO")
    unlearn(model, tok, fs.pair_docs if pairs else fs.docs, retain, method, params,
            idk_docs=fs.idk_docs if pairs else None, lr=lr, steps=steps, progress=False,
            device="cpu")
    forget_acc = direct_accuracy(model, tok, forget_eval)
    retain_acc = direct_accuracy(model, tok, retain_eval)
    print(f"{method}: forget {forget_acc:.2f} retain {retain_acc:.2f}")
    assert forget_acc <= forget_max
    assert retain_acc >= retain_min


def test_forget_docs_are_every_rendered_form(trained):
    _, ctx = trained
    fs = forget_set(ctx.corpus, ctx.split.forget)
    kinds = {(t, d["kind"]) for d in fs.docs for x in d["facts"] for t in fs.targets
             if x["id"] == t}
    for t in fs.targets.tolist():  # target_presentation = stated: statement and QA only
        assert {(t, "statement"), (t, "qa")} <= kinds and (t, "cot") not in kinds
    with_premise = forget_set(ctx.corpus, ctx.split.forget, include_cot_premise_docs=True)
    assert len(with_premise.docs) >= len(fs.docs)
    # one unit per forgotten fact a document renders, in both forms, for every method
    assert [(d["source"], d["fact"]) for d in fs.pair_docs] == [
        (d["source"], d["fact"]) for d in fs.docs]
    assert all(p["completion"] in d["completion"] for p, d in zip(fs.pair_docs, fs.docs,
                                                                  strict=True))
    assert {d["completion"] for d in fs.idk_docs} == {"unknown"}


def test_deep_forget_set_deep_unlearns_every_target(trained):
    _, ctx = trained
    targets = ctx.split.forget
    fs = forget_set(ctx.corpus, targets, deep=True, closure=ctx.closure, kb=ctx.kb,
                    fixed=ctx.fixed, seed=0)
    plain = forget_set(ctx.corpus, targets)
    assert fs.extra == len(fs.facts) - len(targets) > 0
    assert len(fs.docs) > len(plain.docs)
    for t in targets.tolist():
        # the kept facts no longer derive the target, and the set used is inclusion-minimal
        assert not deep_unlearns(ctx.closure, t, plain.facts, kb=ctx.kb, fixed=ctx.fixed)
        assert deep_unlearns(ctx.closure, t, fs.facts, kb=ctx.kb, fixed=ctx.fixed)
        assert is_minimal(ctx.closure, t, fs.deletion_sets[t], kb=ctx.kb, fixed=ctx.fixed)


@pytest.mark.slow
def test_tuning_chooses_on_validation_and_reports_failure(trained, sets):
    _, ctx = trained
    _, retain, retain_eval = sets
    model, tok = load_model(ctx.model_dir)
    val = forget_set(ctx.corpus, ctx.split.validation)
    assert set(val.targets.tolist()).isdisjoint(ctx.split.forget.tolist())
    floor = float(np.mean(majority_floor(ctx.corpus.facts, val.targets)))
    kw = dict(forget_eval=direct_docs(ctx.corpus, val.targets), retain_eval=retain_eval,
              floor=floor, progress=False, device="cpu")
    res = tune(model, tok, val, retain, "IdkSFT", {}, lrs=(3e-4, 1e-3), epochs=(3, 12), **kw)
    assert [(p["lr"], p["epochs"]) for p in res.grid] == [(3e-4, 3), (3e-4, 12), (1e-3, 3),
                                                          (1e-3, 12)]
    n = len(val.docs)
    assert [p["steps"] for p in res.grid[:2]] == [epochs_to_steps(e, n, 16) for e in (3, 12)]
    assert res.level == pytest.approx(floor + 0.05)
    assert res.retain_min == pytest.approx(0.9 * res.original["retain_acc"])
    ok = [p for p in res.grid if p["reached"] and p["kept"]]
    assert res.admissible == bool(ok)
    if ok:  # the admissible point with the best retain accuracy
        assert res.choice["retain_acc"] == max(p["retain_acc"] for p in ok)
        assert not res.warnings
    assert res.original == {"forget_acc": 1.0, "retain_acc": 1.0}
    weak = tune(model, tok, val, retain, "GradAscent", {}, lrs=(1e-6,), epochs=(0.1,), **kw)
    assert not weak.reached and weak.choice["forget_acc"] == 1.0  # reported, with its point
    assert weak.warnings and "forgetting level" in weak.warnings[0]


@pytest.mark.slow
def test_unlearn_run_writes_checkpoint_and_record(trained):
    run, ctx = trained
    cfg = UnlearnConfig(tune_lrs=(1e-3,), tune_epochs=(5, 10), progress=False)
    out = unlearn_run(run, cfg, "NPO", deep=True, overrides=["beta=0.2"])
    rec = json.loads((out / "unlearn.json").read_text())
    assert out.name.startswith("unlearn-npo-deep-")
    assert rec["method"] == "NPO" and rec["deep"] and rec["hyperparameters"]["beta"] == 0.2
    assert len(rec["tuning"]["grid"]) == 2 and rec["epochs"] in (5, 10)
    n = rec["forget_set"]["n_units"]
    assert rec["steps"] == epochs_to_steps(rec["epochs"], n, cfg.batch_size)
    assert rec["forget_set"]["targets"] == ctx.split.forget.tolist()
    assert rec["forget_set"]["extra_facts"] > 0
    assert rec["validation_set"]["targets"] == ctx.split.validation.tolist()
    assert rec["before"]["forget_acc"] == 1.0 and rec["after"]["forget_acc"] < 1.0
    assert rec["seconds"]["total"] > 0
    model, tok = load_model(out / "model")  # a full HF checkpoint
    assert model.config.n_layer == 2
    mtime = (out / "unlearn.json").stat().st_mtime
    assert unlearn_run(run.stage_dir.parent, cfg, "NPO", deep=True,
                       overrides=["beta=0.2"]) == out  # reused (a run folder works too)
    assert (out / "unlearn.json").stat().st_mtime == mtime


@pytest.mark.slow
def test_controls(trained):
    run, ctx = trained
    cfg = UnlearnConfig(control_steps=20, progress=False)
    out = control_run(run, "ignorance", cfg)
    rec = json.loads((out / "control.json").read_text())
    assert rec["steps"] == 20 and rec["extra_facts"] > 0 and rec["docs_removed"] > 0
    assert rec["hygiene_checked"] == rec["docs_kept"]
    assert set(ctx.split.forget.tolist()) <= set(rec["dropped_facts"])
    load_model(out / "model")
    never = control_run(run, "never_trained", cfg)
    m, _ = load_model(never / "model")
    trained_model, _ = load_model(ctx.model_dir)
    assert not torch.equal(m.lm_head.weight, trained_model.lm_head.weight)


@pytest.mark.parametrize("call, expect", [
    (lambda ctx, run: unlearn_run(run, None, "NPOO"), "unknown unlearning method 'NPOO'"),
    (lambda ctx, run: unlearn_run(run, None, "NPO", overrides=["beta=abc"]),
     "key 'beta' must be float, got 'abc'"),
    (lambda ctx, run: unlearn_run(run, None, "NPO", overrides=["bogus=1"]),
     "not an [unlearn] key nor a hyperparameter of NPO"),
    (lambda ctx, run: forget_set(ctx.corpus, [10 ** 6]), "are not facts of this world"),
    (lambda ctx, run: forget_set(ctx.corpus, []), "the forget set is empty"),
    (lambda ctx, run: control_run(run, "filtre"), "unknown control 'filtre'"),
    (lambda ctx, run: unlearn_run("/nonexistent/run", None, "NPO"), "no such run folder"),
])
def test_bad_input_is_one_line(trained, call, expect):
    run, ctx = trained
    with pytest.raises(InputError) as err:
        call(ctx, run)
    assert expect in str(err.value) and "\n" not in str(err.value)
    assert method_params(UnlearnConfig(retain_loss="kl"), "NPO").retain_loss == "kl"
