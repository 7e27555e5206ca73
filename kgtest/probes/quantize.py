"""Round-to-nearest weight quantization, and the ``quantize`` probe.

Zhang et al. (2024) found that 4-bit quantization brings back much of what
utility-constrained unlearning removed: small weight updates fall below a quantization
step and round back to the original grid point. The probe here quantizes a copy of the
model, asks the direct question, and records how many quantized weights the unlearning
actually changed (the quantity the effect depends on).

Quantization is symmetric round-to-nearest in plain torch (runs on the CPU), one scale per
output channel or per group of ``group_size`` consecutive input weights of a channel (the
group-wise RTN of the weight-only schemes Zhang et al. test: 32, 64, 128), applied to the
weights of every ``nn.Linear`` and GPT-2 ``Conv1D``; with ``embeddings=True`` also to every
``nn.Embedding`` (where one-token entities live) and the output head (GPT-2 ties it to the
token embedding: the shared weight is quantized once):

    scale_g = max_{i in g} |W[c, i]| / (2**(bits - 1) - 1)
    W_q[c, i] = round(W[c, i] / scale_g) * scale_g        # |W_q - W| <= scale_g / 2

``nn.Linear`` and ``nn.Embedding`` store ``(out, in)`` (channels are rows); ``Conv1D``
stores ``(in, out)`` (channels are columns). Weights are stored dequantized (fake
quantization): the numbers the model computes with are exactly those an int kernel would
use. The integer codes are kept (``model.quant_codes``) so two models can be compared.

Examples
--------
>>> import torch
>>> w = torch.tensor([[0.5, -1.0, 0.26], [2.0, 0.1, -0.3]])
>>> wq, scale = rtn_quantize(w, bits=4, dim=1)
>>> scale.squeeze(1).tolist()  # max |w| per row / 7
[0.1428571492433548, 0.2857142984867096]
>>> bool(((wq - w).abs() <= scale / 2 + 1e-7).all())
True
>>> wq, scale = rtn_quantize(w, bits=4, dim=1, group_size=2)  # groups [0:2], [2:3]
>>> scale.shape
torch.Size([2, 2])
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from kgtest.probes.context import ProbeContext, ask, direct_items
from kgtest.probes.registry import PROBES

__all__ = ["rtn_quantize", "quantize_model", "code_difference", "quantize"]


def rtn_quantize(w: torch.Tensor, bits: int, dim: int, group_size: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric round-to-nearest of ``w``, one scale per channel or per group.

    Parameters
    ----------
    w : torch.Tensor
        A 2-D weight.
    bits : int
        2 to 16; integers in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``.
    dim : int
        The dimension the scale is taken over (the input dimension; 1: one scale per row).
    group_size : int
        0: one scale per channel. Otherwise one scale per ``group_size`` consecutive
        weights along ``dim`` (the last group may be shorter).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        The dequantized weight (same shape and dtype) and the scales: ``w.shape`` with
        ``dim`` of size 1 (per channel), or ``(channels, groups)`` (group-wise).
    """
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be in [2, 16], got {bits}")
    if group_size < 0:
        raise ValueError(f"group_size must be >= 0 (0: per channel), got {group_size}")
    qmax = 2 ** (bits - 1) - 1
    w32 = w.float()
    if not group_size:
        scale = w32.abs().amax(dim=dim, keepdim=True) / qmax  # (C, 1) or (1, C)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero channel
        q = torch.round(w32 / scale).clamp(-qmax, qmax)
        return (q * scale).to(w.dtype), scale
    rows = w32 if dim == 1 else w32.t()  # (C, I): channels x inputs
    C, n_in = rows.shape
    n_groups = -(-n_in // group_size)
    padded = torch.zeros(C, n_groups * group_size)
    padded[:, :n_in] = rows
    groups = padded.view(C, n_groups, group_size)  # (C, G, g)
    scale = groups.abs().amax(-1, keepdim=True) / qmax  # (C, G, 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(groups / scale).clamp(-qmax, qmax)
    deq = (q * scale).view(C, -1)[:, :n_in]
    return (deq if dim == 1 else deq.t()).contiguous().to(w.dtype), scale.squeeze(-1)


def _targets(model: nn.Module, embeddings: bool):
    """(name, module, dim) of every weight to quantize, each parameter once."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    seen = set()
    for name, mod in model.named_modules():
        if isinstance(mod, Conv1D):
            dim = 0  # (in, out)
        elif isinstance(mod, (nn.Linear, nn.Embedding)):
            dim = 1  # (out, in) / (vocab, d)
            if (mod is head or isinstance(mod, nn.Embedding)) and not embeddings:
                continue
        else:
            continue
        if id(mod.weight) in seen:  # a tied head shares the token embedding's weight
            continue
        seen.add(id(mod.weight))
        yield name, mod, dim


@torch.no_grad()
def quantize_model(model: nn.Module, bits: int, *, group_size: int = 0,
                   embeddings: bool = False) -> nn.Module:
    """A copy of ``model`` with its weights RTN-quantized to ``bits``.

    Parameters
    ----------
    model : nn.Module
    bits : int
    group_size : int
        0: one scale per output channel; else weights per scale (32, 64, 128...).
    embeddings : bool
        Also quantize every ``nn.Embedding`` and the output head (by default both stay in
        full precision, as in the usual weight-only schemes).

    Returns
    -------
    nn.Module
        The copy (the input model is untouched); ``copy.quantized`` lists the modules,
        ``copy.quant_codes`` maps each to its integer codes (a tensor like its weight).

    Examples
    --------
    >>> m = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 2))
    >>> quantize_model(m, 8).quantized, quantize_model(m, 8, embeddings=True).quantized
    (['1'], ['0', '1'])
    """
    out = copy.deepcopy(model)
    done, codes = [], {}
    for name, mod, dim in _targets(out, embeddings):
        wq, scale = rtn_quantize(mod.weight, bits, dim=dim, group_size=group_size)
        mod.weight.copy_(wq)
        codes[name] = _codes(wq, scale, dim, group_size)
        done.append(name)
    out.quantized = done
    out.quant_codes = codes
    return out.eval()


def _codes(wq: torch.Tensor, scale: torch.Tensor, dim: int, group_size: int) -> torch.Tensor:
    """The integer codes of a dequantized weight (same shape as the weight)."""
    if group_size:
        s = scale.repeat_interleave(group_size, dim=1)  # (C, G * g)
        n_in = wq.shape[dim]
        s = s[:, :n_in] if dim == 1 else s[:, :n_in].t()
    else:
        s = scale
    return torch.round(wq.float() / s).to(torch.int16)


def code_difference(a: dict, b: dict) -> float:
    """Fraction of weights whose tensors in ``a`` and ``b`` (name -> tensor) differ.

    >>> code_difference({"w": torch.tensor([1, 2, 3, 4])}, {"w": torch.tensor([1, 2, 0, 4])})
    0.25
    """
    diff = total = 0
    for name, x in a.items():
        y = b[name]
        diff += int((x != y).sum())
        total += x.numel()
    return diff / total if total else float("nan")


@PROBES.register("quantize", kind="attack")
def quantize(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """The direct probe on int8 and int4 round-to-nearest copies of the model.

    Rows carry ``weight_diff`` (fraction of the quantized layers' full-precision weights
    that differ from the original model's) and ``quant_diff`` (fraction of their integer
    codes that differ at this width): unlearning that survives quantization must move
    weights across a rounding boundary. The original is probed first by
    :func:`~kgtest.probes.probes.evaluate`, which leaves its codes in the shared cache.
    """
    group, emb = ctx.quantize_group_size, ctx.quantize_embeddings
    rows = []
    for bits in ctx.quantize_bits:
        qm = quantize_model(model, bits, group_size=group, embeddings=emb)
        key = f"quantize:original:{bits}:{group}:{emb}"
        fp = {n: dict(model.named_modules())[n].weight.detach().clone() for n in qm.quantized}
        if ctx.variant == "original":
            ctx._cache[key] = (fp, qm.quant_codes)
        ref = ctx._cache.get(key)
        wdiff = code_difference(fp, ref[0]) if ref else None
        qdiff = code_difference(qm.quant_codes, ref[1]) if ref else None
        setting = f"int{bits}" + (f"/g{group}" if group else "")
        rows += ask(qm, tokenizer, ctx, direct_items(ctx, facts), "quantize",
                    setting=setting, bits=bits, group_size=group, weight_diff=wdiff,
                    quant_diff=qdiff)
        del qm
    return rows
