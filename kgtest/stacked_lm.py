"""M causal LMs of one architecture as one module with stacked ``(M, ...)`` weights.

The model half of :mod:`kgtest.ensemble`: linear layers are batched matmuls
(``torch.baddbmm``), attention folds M into the batch of one SDPA call, and each member
reads its own batch (or all share one). Members may have vocabularies of different sizes:
the embedding is padded to the largest and the padding rows are masked out of every
softmax.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN

from kgtest.errors import InputError

# HF's "gelu_new" is the tanh approximation written as five tensor operations; torch's fused
# kernel computes the same formula (float32: within 1 ulp, the summation-order class; bf16
# autocast: rounded once, not per step) in one pass and its
# backward in one more, about half the time on the stacked (M, N, d_ff) activations.
_FUSED = {"gelu_new": lambda h: F.gelu(h, approximate="tanh"),
          "gelu_pytorch_tanh": lambda h: F.gelu(h, approximate="tanh")}


def _activation(name: str):
    """The activation ``name`` (a transformers ``ACT2FN`` key), fused where torch has it.

    >>> h = torch.linspace(-3, 3, 7)
    >>> bool(torch.allclose(_activation("gelu_new")(h), ACT2FN["gelu_new"](h), atol=1e-6))
    True
    """
    return _FUSED.get(name) or ACT2FN[name]

__all__ = ["StackedLM", "stack_of"]


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys cannot hold dots


class StackedLM(nn.Module):
    """M causal LMs of one architecture and shape as one module with ``(M, ...)`` weights.

    Parameters are the members' state-dict entries stacked along a new first dimension
    (a tied LM head is stored once, as the embedding). :meth:`write_back` copies member
    ``m``'s slice into an ordinary Hugging Face model, bit for bit.

    Examples
    --------
    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> from kgtest.model import ModelConfig, build_model
    >>> tok = build_tokenizer(["a b c"])
    >>> models = [build_model(ModelConfig(preset="tiny"), tok, seed=s) for s in (0, 1)]
    >>> stack = StackedLM(models)
    >>> tuple(stack.weight("transformer.h.0.attn.c_attn.weight").shape)  # (M, D, 3D)
    (2, 32, 96)
    >>> x = torch.tensor([[1, 4, 5, 2]])
    >>> ref = models[1](x).logits  # (B, L, V)
    >>> bool(torch.allclose(stack.logits(x)[1], ref, atol=1e-5))  # (M, B, L, V)
    True
    """

    def __init__(self, models: Sequence[PreTrainedModel], others_vocab: Sequence[int] = ()):
        """``others_vocab``: the vocabulary sizes of the members of the same group stacked
        in another process (:class:`kgtest.ensemble.Shadow`): the embedding is padded to
        the largest of all, as the whole group's would be."""
        super().__init__()
        if not models:
            raise InputError("ensemble: no models given")
        first = models[0]
        self.arch = first.config.model_type
        if self.arch not in ("gpt2", "llama"):
            raise InputError(f"ensemble: architecture {self.arch!r} is not supported "
                             f"(known: gpt2, llama)")
        drop = [getattr(first.config, k, 0.0) or 0.0 for k in
                ("resid_pdrop", "embd_pdrop", "attn_pdrop", "attention_dropout")]
        if any(drop):
            raise InputError("ensemble: models with dropout are not supported (model.dropout "
                             "must be 0)")
        self.config = first.config
        self.n = len(models)
        names = [n for n, _ in first.named_parameters()]  # a tied head appears once
        self.vocab = [m.get_input_embeddings().weight.shape[0] for m in models]  # (M,)
        V = max(self.vocab + list(others_vocab))
        self.vocab_params = {n for n, p in first.named_parameters()
                             if p.shape[0] == self.vocab[0]
                             and ("wte" in n or "embed_tokens" in n or "lm_head" in n)}

        def shapes(model, v):  # parameter shapes with the vocabulary dimension set to v
            return {n: (v, *p.shape[1:]) if n in self.vocab_params else tuple(p.shape)
                    for n, p in model.named_parameters()}

        for i, m in enumerate(models[1:], 1):
            if type(m) is not type(first) or shapes(m, V) != shapes(first, V):
                raise InputError(f"ensemble: model {i} differs from model 0 in architecture "
                                 f"or shape; members must be built from one ModelConfig")
        self.names = names

        named = [dict(m.named_parameters()) for m in models]

        def stacked(n):  # (M, ...): vocabulary rows zero-padded to V
            parts = [p[n].detach() for p in named]
            if n in self.vocab_params:
                parts = [F.pad(p, (0, 0, 0, V - p.shape[0])) for p in parts]
            return torch.stack(parts)

        self.params = nn.ParameterDict({_key(n): nn.Parameter(stacked(n)) for n in names})
        # (M, V): 0 on a member's own vocabulary, -inf on its padding rows (None: no padding)
        mask = torch.zeros(self.n, V)
        for m, v in enumerate(self.vocab):
            mask[m, v:] = -torch.inf
        self.register_buffer("vocab_mask",
                             mask if min(self.vocab + list(others_vocab)) < V else None,
                             persistent=False)
        if self.arch == "llama":
            self._rotary = [first.model.rotary_emb]  # parameter-free: cos/sin for positions

    def weight(self, name: str) -> torch.Tensor:
        """The stacked ``(M, ...)`` parameter of the members' parameter ``name``."""
        return self.params[_key(name)]

    @torch.no_grad()
    def write_back(self, model: PreTrainedModel, m: int) -> PreTrainedModel:
        """Copy member ``m``'s weights into ``model`` (same architecture); returns it."""
        for name, p in model.named_parameters():
            p.copy_(self.weight(name)[m, :p.shape[0]])  # a padded vocabulary: its own rows
        return model

    # --- the forward pass: (M, ...) weights, one (B, L) batch or one per member ----------

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Final hidden states ``(M, B * L, D)`` on a ``(B, L)`` batch shared by every
        member or an ``(M, B, L)`` batch (member ``m`` reads ``x[m]``)."""
        return self._gpt2(x) if self.arch == "gpt2" else self._llama(x)

    def _embed(self, table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(M, B, L, D)`` embeddings of ``x`` (``(B, L)`` shared or ``(M, B, L)``)."""
        if x.dim() == 2:
            return table[:, x]
        return table[torch.arange(self.n, device=x.device)[:, None, None], x]

    def _attend(self, q, k, v, B: int, L: int) -> torch.Tensor:
        """Causal SDPA on ``(M, B*L, D)`` q, k, v with M folded into the batch."""
        M, _, D = q.shape
        H = self.config.num_attention_heads
        q, k, v = (t.reshape(M * B, L, H, D // H).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (M*B, H, L, hd)
        return y.transpose(1, 2).reshape(M, B * L, D)

    def _gpt2(self, x: torch.Tensor, pos: torch.Tensor | None = None,
              attend=None) -> torch.Tensor:
        """``pos`` ``(M, B, L)`` position ids and ``attend(layer, q, k, v)`` (cached
        attention, :meth:`step`), else positions ``0..L-1`` and causal attention."""
        W, c = self.weight, self.config
        B, L = x.shape[-2:]
        eps, act = c.layer_norm_epsilon, _activation(c.activation_function)
        D = c.n_embd

        def ln(h, name):  # per-member LayerNorm: (M, N, D)
            return F.layer_norm(h, (D,), eps=eps) * W(f"{name}.weight")[:, None] \
                + W(f"{name}.bias")[:, None]

        def lin(h, name):  # Conv1D: h @ W + b with W (M, in, out)
            return torch.baddbmm(W(f"{name}.bias")[:, None], h, W(f"{name}.weight"))

        if pos is None:
            pe = W("transformer.wpe.weight")[:, :L][:, None]  # (M, 1, L, D)
        else:  # (M, B, L, D): each row its own positions
            pe = W("transformer.wpe.weight")[torch.arange(self.n)[:, None, None], pos]
        h = self._embed(W("transformer.wte.weight"), x) + pe  # (M, B, L, D)
        h = h.reshape(self.n, B * L, D)
        for i in range(c.n_layer):
            p = f"transformer.h.{i}"
            q, k, v = lin(ln(h, f"{p}.ln_1"), f"{p}.attn.c_attn").split(D, dim=-1)
            if attend is None:
                y = self._attend(q, k, v, B, L)
            else:  # (M*B, H, L, hd) heads in and out
                H = c.num_attention_heads
                q, k, v = (t.reshape(self.n * B, L, H, D // H).transpose(1, 2)
                           for t in (q, k, v))
                y = attend(i, q, k, v).transpose(1, 2).reshape(self.n, B * L, D)
            h = h + lin(y, f"{p}.attn.c_proj")
            h = h + lin(act(lin(ln(h, f"{p}.ln_2"), f"{p}.mlp.c_fc")), f"{p}.mlp.c_proj")
        return ln(h, "transformer.ln_f")  # (M, B*L, D)

    def _llama(self, x: torch.Tensor, pos: torch.Tensor | None = None,
               attend=None) -> torch.Tensor:
        """``pos`` and ``attend`` as in :meth:`_gpt2`."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        W, c = self.weight, self.config
        B, L = x.shape[-2:]
        D, H, eps = c.hidden_size, c.num_attention_heads, c.rms_norm_eps
        if c.num_key_value_heads != H:
            raise InputError("ensemble: grouped-query attention is not supported")
        act = _activation(c.hidden_act)

        def rms(h, name):  # LlamaRMSNorm, per member: statistics in float32
            hf = h.float()
            hf = hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + eps)
            return W(f"{name}.weight")[:, None] * hf.to(h.dtype)

        def lin(h, name):  # nn.Linear without bias: h @ W.T with W (M, out, in)
            return torch.bmm(h, W(f"{name}.weight").transpose(1, 2))

        h = self._embed(W("model.embed_tokens.weight"), x).reshape(self.n, B * L, D)
        positions = (torch.arange(L, device=x.device)[None] if pos is None
                     else pos.reshape(self.n * B, L))  # (1 or M*B, L)
        cos, sin = self._rotary[0](h, positions)  # (1 or M*B, L, hd) each
        for i in range(c.num_hidden_layers):
            p = f"model.layers.{i}"
            a = rms(h, f"{p}.input_layernorm")
            q, k, v = (lin(a, f"{p}.self_attn.{n}_proj").reshape(self.n * B, L, H, D // H)
                       .transpose(1, 2) for n in "qkv")  # (M*B, H, L, hd)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            y = (F.scaled_dot_product_attention(q, k, v, is_causal=True) if attend is None
                 else attend(i, q, k, v))  # (M*B, H, L, hd)
            h = h + lin(y.transpose(1, 2).reshape(self.n, B * L, D), f"{p}.self_attn.o_proj")
            a = rms(h, f"{p}.post_attention_layernorm")
            gate = act(lin(a, f"{p}.mlp.gate_proj")) * lin(a, f"{p}.mlp.up_proj")
            h = h + lin(gate, f"{p}.mlp.down_proj")
        return rms(h, "model.norm")  # (M, B*L, D)

    @torch.no_grad()
    def step(self, x: torch.Tensor, pos: torch.Tensor, keys: torch.Tensor,
             cache: list | None = None, allowed: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, list]:
        """One cached inference forward: final hidden states ``(M, B, L, D)`` and the cache.

        ``x`` ``(M, B, L)``: each member its own rows (left-padded prompts, or the next
        tokens); ``pos`` ``(M, B, L)`` their position ids; ``keys`` ``(M, B, P + L)``: which
        of the ``P`` cached and ``L`` new positions are real tokens (padding is never
        attended to; a padding row attends to itself only, so nothing is NaN). ``cache``:
        the per-layer ``(k, v)`` of an earlier call (``(M*B, H, P, hd)`` each), or None.
        ``allowed`` ``(M*B, 1, L, P + L)``: which keys each new position sees, instead of
        the causal mask of ``keys``.
        """
        M, B, L = x.shape
        new: list = []
        if allowed is None:
            Tk = keys.shape[-1]
            q_at = torch.arange(Tk - L, Tk, device=x.device)[:, None]  # (L, 1)
            k_at = torch.arange(Tk, device=x.device)[None]  # (1, Tk)
            allowed = (keys.reshape(M * B, 1, 1, Tk) & (k_at <= q_at)) | (k_at == q_at)

        def attend(i, q, k, v):  # (M*B, H, L, hd), the cache's keys and values before
            if cache is not None:
                k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
            new.append((k, v))
            return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)

        h = (self._gpt2 if self.arch == "gpt2" else self._llama)(x, pos, attend)
        return h.reshape(M, B, L, -1), new

    def head_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Each member's logits ``(M, N, V)`` of hidden states ``(M, N, D)`` (a member's
        padding vocabulary rows score ``-inf``)."""
        out = torch.bmm(h, self._head().transpose(1, 2))
        return out if self.vocab_mask is None else out + self.vocab_mask[:, None]

    def _head(self) -> torch.Tensor:
        """The stacked LM head ``(M, V, D)`` (the embedding when tied)."""
        name = "lm_head.weight"
        if _key(name) not in self.params:
            name = "transformer.wte.weight" if self.arch == "gpt2" else "model.embed_tokens.weight"
        return self.weight(name)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's logits ``(M, B, L, V)`` on a ``(B, L)`` or ``(M, B, L)`` batch
        (for checks; a member's padding vocabulary rows score ``-inf``)."""
        B, L = x.shape[-2:]
        h = self.hidden(x)  # (M, B*L, D)
        out = torch.bmm(h, self._head().transpose(1, 2))  # (M, B*L, V)
        if self.vocab_mask is not None:
            out = out + self.vocab_mask[:, None]
        return out.reshape(self.n, B, L, -1)

    def losses(self, x: torch.Tensor, flat: torch.Tensor,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        """Each member's summed next-token loss ``(M,)`` at flat positions.

        As :func:`kgtest.train.supervised_loss` with ``reduction="sum"``, per member: the
        head runs at the supervised positions only. Either ``x`` is ``(B, L)`` and ``flat``
        ``(S,)``, shared by all members, or ``x`` is ``(M, B, L)`` and ``flat`` ``(M, S)``
        with ``mask`` ``(M, S)`` saying which of member ``m``'s positions count (members
        have different numbers of supervised positions; the rest is padding).
        """
        h = self.hidden(x)  # (M, B*L, D)
        if x.dim() == 2:
            h = h.index_select(1, flat)  # (M, S, D)
            target = x.reshape(-1).index_select(0, flat + 1).expand(self.n, -1)  # (M, S)
        else:
            h = torch.gather(h, 1, flat[..., None].expand(-1, -1, h.shape[-1]))  # (M, S, D)
            target = torch.gather(x.reshape(self.n, -1), 1, flat + 1)  # (M, S)
        logits = torch.bmm(h, self._head().transpose(1, 2)).float()  # (M, S, V)
        if self.vocab_mask is not None:
            logits = logits + self.vocab_mask[:, None]
        ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")  # (M, S)
        if mask is not None:
            ce = torch.where(mask, ce, 0.0)
        return ce.sum(1)


def stack_of(models: Sequence[PreTrainedModel]) -> StackedLM | None:
    """A :class:`StackedLM` of ``models``' current weights, or None where they cannot stack
    (on several devices; another architecture or shape, dropout: :class:`StackedLM`
    refuses them); other errors (out of memory) propagate.

    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> from kgtest.model import ModelConfig, build_model
    >>> tok = build_tokenizer(["a b"])
    >>> pair = [build_model(ModelConfig(preset="tiny"), tok, seed=s) for s in (0, 1)]
    >>> stack_of(pair).n, stack_of([pair[0], build_model(ModelConfig(preset="small"), tok)])
    (2, None)
    """
    if len({next(m.parameters()).device for m in models}) > 1:
        return None
    try:
        return StackedLM(models)
    except InputError:
        return None
