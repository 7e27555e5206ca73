"""The "other arithmetic" of ``make test-arith`` really changes the numbers.

Trained-model outcomes differ between CPUs because their kernels round differently (issue
10: the suite written on an Intel Xeon failed 4 tests on an AMD EPYC). With no second CPU
at hand, ``make test-arith`` reruns the tests marked ``trained`` (those asserting a
trained model's outcome) under :data:`OTHER`:

- ``ATEN_CPU_CAPABILITY=default``: ATen's non-vectorised kernels instead of AVX2/AVX-512
  (softmax, layer norm, the normal sampler that initialises weights);
- ``MKL_CBWR=COMPATIBLE``: MKL's conditional-numerical-reproducibility path, which runs
  SGEMM (every ``nn.Linear``) with another blocking and instruction set.

A check that changes nothing is worthless, so this test (run by ``make test`` and first by
``make test-arith``) computes bit-level fingerprints in two fresh processes, one with the
machine's default arithmetic and one with :data:`OTHER`, and asserts that they differ:
GEMM, softmax and layer norm on fixed inputs, and a tiny GPT-2's weights after 30 AdamW
steps from the same fixed initialisation. Measured here (2-core AMD EPYC, AVX2, torch
2.13.0+cpu, MKL 2024.2): each knob alone changes its kernels bitwise; a 300-step tiny
training's logged losses differ in the 7th digit from step 100 and its weights by up
to 1.6e-3. Two other knobs changed nothing for kgtest's models and are not used:
``MKL_ENABLE_INSTRUCTIONS=SSE4_2``/``AVX`` (MKL ignores it on this AMD CPU: SGEMM
bitwise equal) and ``torch.backends.mkldnn.enabled = False`` (oneDNN ran no primitive in
a GPT-2 or Llama training: ``ONEDNN_VERBOSE=1`` printed no exec line).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

#: the environment ``make test-arith`` adds (kept equal to the Makefile's ARITH)
OTHER = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}

FINGERPRINT = r"""
import hashlib, json
import numpy as np, torch
from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.model import ModelConfig, build_model

torch.set_num_threads(1)
tok = build_tokenizer([f"e{i} r{i % 3} e{(i * 7) % 20} ." for i in range(20)])


def h(t):
    return hashlib.sha1(t.detach().contiguous().numpy().tobytes()).hexdigest()


def fingerprint():
    r = np.random.default_rng(0)  # inputs from numpy: the same bits under either arithmetic
    a = torch.from_numpy(r.standard_normal((64, 128), dtype=np.float32))
    b = torch.from_numpy(r.standard_normal((128, 256), dtype=np.float32))
    out = {"gemm": h(a @ b), "softmax": h(torch.softmax(a, -1)),
           "layer_norm": h(torch.nn.functional.layer_norm(a, (128,)))}
    model = build_model(ModelConfig(preset="tiny"), tok, seed=0)
    with torch.no_grad():  # a fixed initialisation: ATen's normal sampler differs as well
        for p in model.parameters():
            p.copy_(torch.from_numpy(r.standard_normal(p.shape, dtype=np.float32)) * 0.02)
    ids = torch.from_numpy(r.integers(0, len(tok), (8, 12)))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(30):
        model(ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    out["trained"] = h(torch.cat([p.detach().flatten() for p in model.parameters()]))
    out["capability"] = torch.backends.cpu.get_cpu_capability()
    return out


first = fingerprint()
assert fingerprint() == first, "the fingerprint is not deterministic"
print(json.dumps(first))
"""


def _fingerprints(settings: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Each setting's fingerprint, computed in its own fresh process (all at once)."""
    base = {k: v for k, v in os.environ.items() if k not in OTHER}
    procs = {name: subprocess.Popen([sys.executable, "-c", FINGERPRINT], env=base | extra,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, extra in settings.items()}
    out = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=600)
            assert proc.returncode == 0, f"{name}: {stderr[-2000:]}"
            out[name] = json.loads(stdout.strip().splitlines()[-1])
    finally:  # a timeout or a failed child leaves no other child running
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out


def _knobs() -> dict[str, str]:
    """The knobs of OTHER that can act on this machine: MKL_CBWR only where torch uses MKL
    (not on OpenBLAS builds: aarch64, macOS), ATEN_CPU_CAPABILITY only where ATen has a
    vectorised path to leave."""
    knobs = dict(OTHER)
    if not torch.backends.mkl.is_available():
        knobs.pop("MKL_CBWR")
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        knobs.pop("ATEN_CPU_CAPABILITY")
    return knobs


def test_the_other_arithmetic_changes_kernels_and_a_training():
    """Under OTHER, GEMM (MKL), softmax and layer norm (ATen) and a 30-step training all
    differ bitwise from the default arithmetic, which reproduces itself (so a difference
    is not noise); each knob alone changes the training (neither is a passenger). A knob
    that cannot act on this machine (no MKL; no vectorised ATen) is not asserted on, and
    with neither there is no other arithmetic to test: skipped."""
    knobs = _knobs()
    if not knobs:
        pytest.skip("neither MKL nor a vectorised ATen path here: make test-arith has no effect")
    fp = _fingerprints({"default": {}, "other": OTHER} | {k: {k: v} for k, v in knobs.items()})
    default, other = fp["default"], fp["other"]
    assert other["trained"] != default["trained"]
    for knob in knobs:
        assert fp[knob]["trained"] != default["trained"], f"{knob} alone changed nothing"
    if "MKL_CBWR" in knobs:
        assert other["gemm"] != default["gemm"], "MKL_CBWR=COMPATIBLE left SGEMM unchanged"
    if "ATEN_CPU_CAPABILITY" in knobs:
        assert other["softmax"] != default["softmax"]
        assert other["layer_norm"] != default["layer_norm"]
