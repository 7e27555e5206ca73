"""Every stage after training runs with the run's thread count, whatever torch's default.

Issue 10: unlearning (its tuning grid included), the probes and the attacks used torch's
default intra-op threads (the machine's cores) while training pinned ``train.threads``.
Each test calls a stage once with torch's default at 2 threads and once at 1, and asserts
that the stage ran pinned (a spy reads ``torch.get_num_threads()`` inside it) and gave
identical results, its recorded ``threads`` included.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import kgtest.probes.probes as probes_mod
import kgtest.unlearn.api as api
from kgtest.variants import ProbeJob

#: asserts a trained model's outcome: `make test-arith` reruns it under other CPU arithmetic
pytestmark = pytest.mark.trained


def _spy(monkeypatch, module, name: str, seen: list) -> None:
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def _at(default: int, fn):
    before = torch.get_num_threads()
    torch.set_num_threads(default)
    try:
        return fn()
    finally:
        assert torch.get_num_threads() == default  # the stage restored the caller's count
        torch.set_num_threads(before)


def test_unlearning_ignores_torch_default_threads(trained, monkeypatch):
    _, ctx = trained
    ctx = replace(ctx, threads=1)  # the run's count (a stage pool passes 1 too)
    cfg = replace(ctx.cfg.unlearn, tune_lrs=(1e-3,), tune_epochs=(2.0,), progress=False)
    seen: list[int] = []
    for name in ("tune", "unlearn"):
        _spy(monkeypatch, api, name, seen)
    out = {}
    for default in (2, 1):
        model, _, record = _at(default, lambda: api.unlearn_model(ctx, cfg, "NPO"))
        out[default] = ({k: v for k, v in record.items() if k not in ("seconds", "tuning")},
                        {k: v.clone() for k, v in model.state_dict().items()})
    assert seen == [1, 1, 1, 1]  # tuning and unlearning, at each default
    assert out[2][0] == out[1][0] and out[1][0]["threads"] == 1
    assert all(torch.equal(out[2][1][k], out[1][1][k]) for k in out[1][1])


def test_probes_and_attacks_ignore_torch_default_threads(trained, monkeypatch):
    run, ctx = trained
    p = ctx.cfg.probes
    cfg = replace(ctx.cfg, probes=replace(
        p, probes=("direct", "latent", "relearn"),
        relearn=replace(p.relearn, steps=(4,), lr=(1e-3,))))
    job = ProbeJob(cfg=cfg, corpus_dir=ctx.corpus_dir, world=ctx.world, run_id="t",
                   seeds={"attack": 0, "probes": 0}, threads=1)
    seen: list[int] = []
    _spy(monkeypatch, probes_mod, "probe_variant", seen)
    rows = {d: _at(d, lambda: job.probe("original", run.model_dir, None, None)[0])
            for d in (2, 1)}
    assert seen == [1, 1]
    assert rows[2] == rows[1] and any(r["probe"] == "relearn" for r in rows[1])
