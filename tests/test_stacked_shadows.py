"""A stacked group trained in parts (:class:`kgtest.ensemble.Shadow`) gives the whole group's
weights bit for bit: what ``kgtest run --seeds M --jobs N`` relies on to split a group across
worker processes.

Batched matmuls, attention and per-row reductions do not depend on how many members are
stacked (checked here on AMD EPYC, also under ``ATEN_CPU_CAPABILITY=default
MKL_CBWR=COMPATIBLE``), but two things do: the padding of each step's batches (the longest
member sets it) and the sum over parameters of the per-member gradient norms (its
summation order depends on the group's width). Shadows carry both, so the members trained
here see the whole group's arithmetic. Teeth: without the shadows, a part's weights differ.
"""

from __future__ import annotations

import tempfile

import pytest
import torch

from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.ensemble import Shadow, clip_per_member, train_ensemble
from kgtest.errors import InputError
from kgtest.model import ModelConfig, build_model
from kgtest.train import TrainConfig

#: asserts a trained model's outcome: `make test-arith` reruns it under other CPU arithmetic
pytestmark = pytest.mark.trained

N = 5
DOCS = [[{"prompt": f"Q e{i} r{k} ? A ", "completion": f"e{(i * 7 + k) % (13 + k)}"}
         for i in range(13 + k)]
        + [{"prompt": "", "completion": " ".join(f"e{i}" for i in range(j, j + 3 + j * k % 7))}
           for j in range(2, 9)] for k in range(N)]  # lengths and vocabularies differ
TOKS = [build_tokenizer([d["prompt"] + d["completion"] for d in ds]) for ds in DOCS]
SEEDS = [10 + k for k in range(N)]
CFG = TrainConfig(steps=12, batch_size=4, warmup=1, progress=False, device="cpu", threads=1,
                  grad_clip=0.5)  # a small clip: the norms matter at every step


def _models():
    return [build_model(ModelConfig(preset="tiny"), t, seed=k) for k, t in enumerate(TOKS)]


def _train(own: list[int], shadows: bool = True) -> dict[int, dict]:
    ms = _models()
    sh = [Shadow(TOKS[j], DOCS[j], SEEDS[j], ms[j].get_input_embeddings().weight.shape[0], j)
          for j in range(N) if j not in own] if shadows else []
    with torch.random.fork_rng():
        train_ensemble([ms[i] for i in own], [TOKS[i] for i in own], [DOCS[i] for i in own],
                       CFG, tempfile.mkdtemp(), batch_seeds=[SEEDS[i] for i in own],
                       shadows=sh)
    return {i: {n: p.detach().clone() for n, p in ms[i].named_parameters()} for i in own}


@pytest.fixture(scope="module")
def whole():
    return _train(list(range(N)))


@pytest.mark.slow
@pytest.mark.parametrize("parts", [[[0, 1, 2], [3, 4]], [[0], [1, 3], [2, 4]]])
def test_parts_with_shadows_give_the_whole_groups_weights(whole, parts):
    for own in parts:
        got = _train(own)
        for i in own:
            assert all(torch.equal(got[i][n], whole[i][n]) for n in whole[i]), (own, i)


@pytest.mark.slow
def test_without_shadows_a_part_differs(whole):
    got = _train([0, 1, 2], shadows=False)
    assert any(not torch.equal(got[i][n], whole[i][n]) for i in got for n in whole[i])


def test_clip_layout_sums_in_the_groups_order():
    g = torch.Generator().manual_seed(0)
    grads = [torch.rand(10, 40, generator=g) * 10 for _ in range(30)]  # (M=10, ...) each

    def params(cols):
        out = []
        for gr in grads:
            p = torch.nn.Parameter(torch.zeros(len(cols), 40))
            p.grad = gr[cols].clone()
            out.append(p)
        return out

    full = clip_per_member(params(list(range(10))), 1.0)
    cols = [1, 3, 4, 6, 8]  # (P, 5) alone sums in another order than (P, 10) here
    part = clip_per_member(params(cols), 1.0, layout=(10, cols))
    assert torch.equal(part, full[cols])


def test_shadow_positions_must_fit_the_group():
    ms = _models()[:2]
    bad = Shadow(TOKS[2], DOCS[2], 1, 10, position=5)  # a group of 3 has no position 5
    with pytest.raises(InputError, match="shadow positions"):
        train_ensemble(ms, TOKS[:2], DOCS[:2], CFG, tempfile.mkdtemp(), shadows=[bad])
