"""Scoring and greedy decoding of M models at once, on a :class:`~kgtest.stacked_lm.StackedLM`.

The stacked counterparts of :mod:`kgtest.scoring`'s inner loops: each member brings its
own batch (its own prompts, candidates, stop tokens and number of steps, in its own
vocabulary), the batches are padded to one ``(M, B, T)`` with attention masks, and every
forward pass runs for all members together (:meth:`StackedLM.step`, a KV cache). A
member's result is the one :mod:`kgtest.scoring` gives for it alone, up to
floating-point summation order: the same tokens, log-probabilities within ~1e-5.

Examples
--------
>>> import torch
>>> from kgtest.corpus.tokenizer import build_tokenizer
>>> from kgtest.model import ModelConfig, build_model
>>> from kgtest.stacked_lm import StackedLM
>>> toks = [build_tokenizer(["Q a r ? A b"]), build_tokenizer(["Q a r ? A b c d"])]
>>> models = [build_model(ModelConfig(preset="tiny"), t, seed=0) for t in toks]
>>> stack = StackedLM(models)
>>> reqs = [ScoreRequest([[1, 5, 6]], [[7, 2], [5, 2]], 2, 0),
...         ScoreRequest([[1, 5], [1, 6, 7]], [[8, 2], [9, 2]], 1, 0)]
>>> [tuple(s.shape) for s in stacked_scores(stack, reqs)]
[(2,), (2,)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from kgtest.stacked_lm import StackedLM

__all__ = ["GreedyRequest", "ScoreRequest", "stacked_greedy", "stacked_scores"]


@dataclass
class GreedyRequest:
    """One member's greedy decoding: as :func:`kgtest.scoring._greedy_tokens`'s arguments."""

    ids: torch.Tensor  # (B, T) left-padded prompts
    mask: torch.Tensor  # (B, T) 1 on real tokens
    steps: int  # tokens to generate
    stop: torch.Tensor  # (K,) token ids that end a row
    pad: int


@dataclass
class ScoreRequest:
    """One member's teacher-forced scoring of one chunk (:func:`kgtest.scoring.answer_logprobs`)."""

    prompts: list  # B prompts' token ids, bos first
    rows: list  # B * C candidate token ids (eos last), row r of prompt r // C
    C: int  # candidates per prompt
    pad: int


def _left_pad(seqs: Sequence[Sequence[list[int]]], pads: Sequence[int], device
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(M, B, T)`` ids, key mask and position ids of each member's left-padded rows
    (members with fewer rows get padding rows, all keys masked)."""
    B = max(len(s) for s in seqs)
    T = max(len(x) for s in seqs for x in s)
    ids = torch.tensor([[[p] * (T - len(x)) + x for x in s] + [[p] * T] * (B - len(s))
                        for s, p in zip(seqs, pads, strict=True)], dtype=torch.long)
    keys = torch.tensor([[[False] * (T - len(x)) + [True] * len(x) for x in s]
                         + [[False] * T] * (B - len(s)) for s in seqs], dtype=torch.bool)
    pos = (keys.long().cumsum(-1) - 1).clamp(min=0)  # real tokens count from 0
    return ids.to(device), keys.to(device), pos.to(device)


def _max_position(stack: StackedLM) -> int:
    """Positions the stacked architecture can embed (GPT-2's ``n_positions``)."""
    c = stack.config
    return int(getattr(c, "n_positions", None) or c.max_position_embeddings)


def _device(stack: StackedLM) -> torch.device:
    return next(stack.parameters()).device


@torch.no_grad()
def stacked_greedy(stack: StackedLM, reqs: Sequence[GreedyRequest]) -> list[torch.Tensor]:
    """Member ``m``'s ``(B_m, steps_m)`` greedy tokens after its prompts ``reqs[m]``, all
    members decoded together; a row is ``pad`` after its stop token, as alone."""
    device = _device(stack)
    seqs = [[row[msk.bool()].tolist() for row, msk in zip(r.ids, r.mask, strict=True)]
            for r in reqs]
    pads = [r.pad for r in reqs]
    ids, keys, pos = _left_pad(seqs, pads, device)  # (M, B, T)
    M, B, _ = ids.shape
    S = max(r.steps for r in reqs)
    pad = torch.tensor(pads, device=device)[:, None].expand(M, B)  # (M, B)
    K = max(len(r.stop) for r in reqs)
    stop = torch.full((M, K), -1, dtype=torch.long, device=device)
    for m, r in enumerate(reqs):
        stop[m, :len(r.stop)] = r.stop.to(device)
    limit = torch.tensor([r.steps for r in reqs], device=device)  # (M,)
    done = torch.arange(B, device=device)[None] >= torch.tensor([len(s) for s in seqs],
                                                                device=device)[:, None]
    done |= (limit <= 0)[:, None]
    gen = pad[..., None].repeat(1, 1, max(S, 0))  # (M, B, S)
    h, cache = stack.step(ids, pos, keys)
    next_pos = pos[..., -1:] + 1  # (M, B, 1)
    # A live row's prompt + steps fit the context (the caller cuts steps as for one model
    # alone); rows already done keep stepping while another member decodes on, and their
    # positions would run past GPT-2's table: clamp them (their outputs are never read).
    last = _max_position(stack) - 1
    for t in range(S):
        nxt = stack.head_logits(h[:, :, -1]).argmax(-1)  # (M, B)
        nxt = torch.where(done, pad, nxt)
        gen[:, :, t] = nxt
        done |= (nxt[..., None] == stop[:, None]).any(-1) | (t + 1 >= limit)[:, None]
        if t == S - 1 or bool(done.all()):
            break
        keys = torch.cat([keys, keys.new_ones(M, B, 1)], dim=-1)
        h, cache = stack.step(nxt[..., None], next_pos, keys, cache)
        next_pos = (next_pos + 1).clamp(max=last)
    return [gen[m, :len(seqs[m]), :max(r.steps, 0)].cpu() for m, r in enumerate(reqs)]


@torch.no_grad()
def stacked_scores(stack: StackedLM, reqs: Sequence[ScoreRequest]) -> list[torch.Tensor]:
    """Member ``m``'s ``(B_m * C_m,)`` summed log-probabilities of its candidate rows after
    its prompts (:func:`kgtest.scoring._score_with_shared_prompts` on one chunk), all
    members together.

    Each prompt runs once; then its ``C`` candidates run as ``C`` blocks of new positions
    appended to its own row (each block sees the prompt and itself only), so the prompt's
    cache is never copied ``C`` times over.
    """
    device = _device(stack)
    ids, keys, pos = _left_pad([r.prompts for r in reqs], [r.pad for r in reqs], device)
    M, B, T = ids.shape
    h, cache = stack.step(ids, pos, keys)
    lp0 = torch.log_softmax(stack.head_logits(h[:, :, -1]).float(), -1)  # (M, B, V)
    C = max(r.C for r in reqs)
    L = max(len(x) for r in reqs for x in r.rows)
    full = torch.zeros((M, B, C, L), dtype=torch.long)  # (M, B, C, L) candidate tokens
    lens = torch.zeros((M, B, C), dtype=torch.long)
    for m, r in enumerate(reqs):
        full[m] = r.pad
        b = len(r.prompts)  # its rows are (b, C) row-major
        full[m, :b, :r.C] = torch.tensor([x + [r.pad] * (L - len(x)) for x in r.rows],
                                         dtype=torch.long).view(b, r.C, L)
        lens[m, :b, :r.C] = torch.tensor([len(x) for x in r.rows]).view(b, r.C)
    full, lens = full.to(device), lens.to(device)
    first = lp0[..., None, :].expand(-1, -1, C, -1).gather(-1, full[..., :1])[..., 0]
    scores = torch.where(lens > 0, first, 0.0)  # (M, B, C): first token, from the prompt
    if L > 1:  # the rest of each candidate: a block of L - 1 positions per candidate
        n = C * (L - 1)
        j = torch.arange(L - 1, device=device).repeat(C)  # (n,) position in its candidate
        c = torch.arange(C, device=device).repeat_interleave(L - 1)  # (n,) its candidate
        block = (c[:, None] == c[None]) & (j[None] <= j[:, None])  # (n, n)
        allowed = torch.cat([keys[:, :, None].expand(M, B, n, T),
                             block.expand(M, B, n, n)], -1).reshape(M * B, 1, n, T + n)
        # a member's own candidates fit its context (checked as for one model alone); the
        # padding up to another member's longer candidates may not: clamp (never read)
        pos2 = (pos[..., -1:] + 1 + j).clamp(max=_max_position(stack) - 1)  # (M, B, n)
        h2, _ = stack.step(full[..., :-1].reshape(M, B, n), pos2, None, cache, allowed)
        live = (torch.arange(L - 1, device=device) < (lens - 1)[..., None]).reshape(M, -1)
        cnt = live.sum(1)  # (M,) scored positions per member
        order = torch.sort((~live).to(torch.uint8), dim=1, stable=True).indices
        order = order[:, :int(cnt.max())]  # (M, S) the live positions first, in order
        hs = torch.gather(h2.reshape(M, B * n, -1), 1,
                          order[..., None].expand(-1, -1, h2.shape[-1]))  # (M, S, D)
        lp = torch.log_softmax(stack.head_logits(hs).float(), -1)  # (M, S, V)
        target = full[..., 1:].reshape(M, -1).gather(1, order)  # (M, S)
        tok = torch.zeros(M, B * n, device=device)
        valid = torch.arange(order.shape[1], device=device)[None] < cnt[:, None]
        tok.scatter_(1, order, torch.where(valid, lp.gather(-1, target[..., None])[..., 0],
                                           0.0))
        tok = tok.reshape(M, B, C, L - 1)
        for t in range(L - 1):  # token by token, as the single model's index_add
            scores = scores + tok[..., t]
    return [scores[m, :len(r.prompts), :r.C].reshape(-1).cpu() for m, r in enumerate(reqs)]
