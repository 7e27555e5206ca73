"""Round-to-nearest weight quantization, and the ``quantize`` probe.

Zhang et al. (2024) found that 4-bit quantization brings back much of what
utility-constrained unlearning removed: small weight updates fall below a quantization
step and round back to the original grid point. The probe here quantizes a copy of the
model and asks the direct question.

Quantization is symmetric, per output channel, round-to-nearest, in plain torch (runs on
the CPU), applied to the weights of every ``nn.Linear`` and GPT-2 ``Conv1D`` except the
output head (GPT-2 ties it to the input embedding, which stays in full precision, as in
the usual weight-only schemes):

    scale_c = max_i |W[c, i]| / (2**(bits - 1) - 1)
    W_q[c, i] = round(W[c, i] / scale_c) * scale_c        # |W_q - W| <= scale_c / 2

``nn.Linear`` stores ``(out, in)`` (channels are rows); ``Conv1D`` stores ``(in, out)``
(channels are columns). Weights are stored dequantized (fake quantization): the numbers
the model computes with are exactly those an int kernel would use.

Examples
--------
>>> import torch
>>> w = torch.tensor([[0.5, -1.0, 0.26], [2.0, 0.1, -0.3]])
>>> wq, scale = rtn_quantize(w, bits=4, dim=1)
>>> scale.squeeze(1).tolist()  # max |w| per row / 7
[0.1428571492433548, 0.2857142984867096]
>>> bool(((wq - w).abs() <= scale / 2 + 1e-7).all())
True
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from kgtest.probes.context import ProbeContext, _direct_items, ask
from kgtest.probes.probes import PROBES

__all__ = ["rtn_quantize", "quantize_model", "quantize"]


def rtn_quantize(w: torch.Tensor, bits: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric round-to-nearest of ``w`` with one scale per channel.

    Parameters
    ----------
    w : torch.Tensor
        A 2-D weight.
    bits : int
        2 to 16; integers in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``.
    dim : int
        The dimension reduced to get each channel's scale (1: one scale per row).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        The dequantized weight (same shape and dtype) and the scales (``w.shape`` with
        ``dim`` of size 1).
    """
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be in [2, 16], got {bits}")
    qmax = 2 ** (bits - 1) - 1
    w32 = w.float()
    scale = w32.abs().amax(dim=dim, keepdim=True) / qmax  # (C, 1) or (1, C)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero channel
    q = torch.round(w32 / scale).clamp(-qmax, qmax)
    return (q * scale).to(w.dtype), scale


@torch.no_grad()
def quantize_model(model: nn.Module, bits: int, *, include_head: bool = False) -> nn.Module:
    """A copy of ``model`` with every Linear/Conv1D weight RTN-quantized to ``bits``.

    Returns
    -------
    nn.Module
        The copy (the input model is untouched); ``copy.quantized`` lists the modules.

    Examples
    --------
    >>> import torch
    >>> m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> q = quantize_model(m, 8)
    >>> q.quantized, bool(torch.equal(m[0].weight, q[0].weight))
    (['0', '2'], False)
    """
    out = copy.deepcopy(model)
    head = out.get_output_embeddings() if hasattr(out, "get_output_embeddings") else None
    done = []
    for name, mod in out.named_modules():
        if mod is head and not include_head:
            continue
        if isinstance(mod, nn.Linear):
            mod.weight.copy_(rtn_quantize(mod.weight, bits, dim=1)[0])  # (out, in)
        elif isinstance(mod, Conv1D):
            mod.weight.copy_(rtn_quantize(mod.weight, bits, dim=0)[0])  # (in, out)
        else:
            continue
        done.append(name)
    out.quantized = done
    return out.eval()


@PROBES.register("quantize")
def quantize(model, tokenizer, facts, ctx: ProbeContext) -> list[dict]:
    """The direct probe on int8 and int4 round-to-nearest copies of the model."""
    rows = []
    for bits in ctx.quantize_bits:
        qm = quantize_model(model, bits)
        rows += ask(qm, tokenizer, ctx, _direct_items(ctx, facts), "quantize",
                    setting=f"int{bits}", bits=bits)
        del qm
    return rows
