"""Batched scoring: greedy decoding with a KV cache, and teacher-forced log-probabilities.

Every sequence is built as in training: ``[bos] + prompt_ids (+ completion_ids + [eos])``,
with prompt and completion tokenised separately (see :func:`kgtest.corpus.tokenizer.encode_pair`).

- :func:`greedy_complete` decodes many prompts at once: left padding, an attention mask
  and explicit position ids (so a padded row sees the same positions as an unpadded one,
  for GPT-2's learned positions and Llama's rotary ones alike), one cached forward per
  new token, each row stopping at ``eos`` (or a given stop token).
- :func:`answer_logprobs` scores candidate completions for many prompts in one forward
  pass per chunk, applying the LM head only where a candidate token is predicted.
- :func:`rank_of_true` ranks the true answer among the candidates.

Examples
--------
>>> from kgtest.corpus.tokenizer import build_tokenizer
>>> from kgtest.model import ModelConfig, build_model
>>> tok = build_tokenizer(["Q ann parent ? A bob", "Q bob parent ? A cy"])
>>> model = build_model(ModelConfig(preset="tiny"), tok, seed=0)
>>> outs = greedy_complete(model, tok, ["Q ann parent ? A ", "Q bob parent ? A "], 3)
>>> len(outs), all(isinstance(o, str) for o in outs)
(2, True)
>>> answer_logprobs(model, tok, ["Q ann parent ? A "], ["bob", "cy"]).shape
torch.Size([1, 2])
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from kgtest.corpus.tokenizer import encode_pair
from kgtest.errors import InputError
from kgtest.model import base_model, head_logits

__all__ = ["greedy_complete", "answer_logprobs", "rank_of_true"]

#: Where this thread's forward passes go: ``ROUTE.to`` (set by :mod:`kgtest.stacked_probes`
#: while several models' probes run side by side) has ``greedy`` and ``score`` methods with
#: the signatures of :func:`_greedy_tokens` and :func:`_score_with_shared_prompts` that
#: batch them with the other models' calls; unset, each model computes alone.
ROUTE = threading.local()


def _routed(name: str, alone):
    to = getattr(ROUTE, "to", None)
    return alone if to is None else getattr(to, name)


def _cache_kwarg(model: PreTrainedModel) -> str:
    """The forward's name for the KV cache: ``cache`` (transformers >= 5.2x) or the old one."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _output_cache(out):
    cache = out.get("cache", None)
    return cache if cache is not None else out.get("past_key_values", None)


def _left_pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad to a (B, T) id tensor and its (B, T) 0/1 attention mask."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, T - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, T - len(s):] = 1
    return ids, mask


@torch.no_grad()
def greedy_complete(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast,
                    prompts: Sequence[str], max_new_tokens: int = 32, *,
                    stop_tokens: Sequence[str] = (), batch_size: int = 256) -> list[str]:
    """Greedy (argmax) completions of many prompts, batched, with a KV cache.

    Parameters
    ----------
    model, tokenizer
        A causal LM and its tokenizer (as built or loaded by :mod:`kgtest.model`).
    prompts : sequence of str
        Prompts as rendered (``"Q ann parent ? A "``); ``<bos>`` is prepended.
    max_new_tokens : int
        At most this many tokens per prompt (fewer if the model's context ends first).
    stop_tokens : sequence of str
        Extra tokens that end a row, kept in its text (``eos`` ends a row and is dropped).
    batch_size : int
        Prompts decoded together.

    Returns
    -------
    list of str
        One completion per prompt, without the final ``eos`` (``"bob"``; for CoT the
        whole chain, ``"ann parent bob . bob parent cy . A cy"``). Any other special token
        the model emits stays in the text, so it never passes for a correct answer.

    Examples
    --------
    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> from kgtest.model import ModelConfig, build_model
    >>> tok = build_tokenizer(["Q a r ? A b"])
    >>> m = build_model(ModelConfig(preset="tiny"), tok)
    >>> len(greedy_complete(m, tok, ["Q a r ? A "] * 3, max_new_tokens=2))
    3
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    stop_ids = [eos] + [tokenizer.convert_tokens_to_ids(t) for t in stop_tokens]
    stop = torch.tensor(stop_ids, device=device)
    cache_kw = _cache_kwarg(model)
    max_pos = model.config.max_position_embeddings
    prompt_ids, _ = encode_pair(tokenizer, list(prompts), [])
    results: list[str] = []
    try:
        for start in range(0, len(prompt_ids), batch_size):
            chunk = [[tokenizer.bos_token_id] + p for p in prompt_ids[start:start + batch_size]]
            ids, mask = _left_pad(chunk, pad)
            ids, mask = ids.to(device), mask.to(device)  # (B, T)
            T = ids.shape[1]
            if T >= max_pos:
                raise InputError(f"greedy_complete: a prompt has {T} tokens (with bos); the "
                                 f"model's context is {max_pos}, leaving no room to generate")
            gen = _routed("greedy", _greedy_tokens)(
                model, ids, mask, min(max_new_tokens, max_pos - T), stop, pad, cache_kw)
            for row in gen.tolist():
                kept = []
                for tok_id in row:  # a finished row is padded after its stop token
                    if tok_id == eos:
                        break
                    kept.append(tok_id)
                    if tok_id in stop_ids:
                        break
                # other special tokens stay visible: "bob <pad>" must not pass for "bob"
                results.append(tokenizer.decode(kept, skip_special_tokens=False))
    finally:
        model.train(was_training)
    return results


def _greedy_tokens(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, steps: int,
                   stop: torch.Tensor, pad: int, cache_kw: str) -> torch.Tensor:
    """``(B, steps)`` greedy tokens after left-padded prompts ``ids`` / ``mask`` ``(B, T)``,
    one forward pass per token on the KV cache; a row is ``pad`` after its stop token."""
    B = ids.shape[0]
    pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): real tokens count from 0
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
    cache = _output_cache(out)
    next_pos = pos[:, -1:] + 1  # (B, 1)
    gen = torch.full((B, max(steps, 0)), pad, dtype=torch.long, device=ids.device)
    done = torch.zeros(B, dtype=torch.bool, device=ids.device)
    for t in range(steps):
        nxt = out.logits[:, -1].argmax(-1)  # (B,)
        nxt = torch.where(done, pad, nxt)
        gen[:, t] = nxt
        done |= torch.isin(nxt, stop)
        if t == steps - 1 or bool(done.all()):  # one host sync per token: cheap here
            break
        mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1)  # (B, T + t + 1)
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_pos,
                    use_cache=True, **{cache_kw: cache})
        cache = _output_cache(out)
        next_pos = next_pos + 1
    return gen


def _normalise_candidates(prompts: Sequence[str],
                          candidates: Sequence[str] | Sequence[Sequence[str]]
                          ) -> list[list[str]]:
    if len(candidates) and isinstance(candidates[0], str):
        return [list(candidates)] * len(prompts)  # one shared candidate list
    if len(candidates) != len(prompts):
        raise InputError(f"answer_logprobs: {len(prompts)} prompts but {len(candidates)} "
                         f"candidate lists")
    per = [list(c) for c in candidates]
    if len({len(c) for c in per}) > 1:
        raise InputError("answer_logprobs: every prompt needs the same number of candidates")
    return per


@torch.no_grad()
def answer_logprobs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast,
                    prompts: Sequence[str],
                    candidates: Sequence[str] | Sequence[Sequence[str]], *,
                    with_eos: bool = True, batch_size: int = 1024) -> torch.Tensor:
    """Teacher-forced log-probability of each candidate completion, for every prompt.

    Each prompt is run once (left-padded chunks of ``batch_size // C`` prompts) and its KV
    cache is repeated for its ``C`` candidates, which run together in one more forward
    pass; the first candidate token is scored from the prompt's last position, and the LM
    head runs only where a candidate token is predicted. (Scoring each (prompt, candidate)
    row whole costs the prompt ``C`` times over.)

    Parameters
    ----------
    prompts : sequence of str
        ``P`` prompts.
    candidates : sequence of str, or sequence of sequences of str
        ``C`` completions shared by all prompts, or one list of ``C`` per prompt.
    with_eos : bool
        Also score the ``eos`` that ends the completion (a proper sequence probability,
        comparable across candidates of different lengths, as in training).

    Returns
    -------
    torch.Tensor
        ``(P, C)`` float32 on the CPU: sum of token log-probs of each candidate.

    Examples
    --------
    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> from kgtest.model import ModelConfig, build_model
    >>> tok = build_tokenizer(["Q a r ? A b", "c"])
    >>> m = build_model(ModelConfig(preset="tiny"), tok)
    >>> lp = answer_logprobs(m, tok, ["Q a r ? A ", "Q b r ? A "], [["b", "c"], ["a", "c"]])
    >>> lp.shape, bool((lp < 0).all())
    (torch.Size([2, 2]), True)
    """
    cands = _normalise_candidates(prompts, candidates)
    P, C = len(prompts), len(cands[0]) if cands else 0
    if P == 0 or C == 0:
        return torch.zeros((P, C))
    was_training = model.training
    model.eval()
    p_ids, _ = encode_pair(tokenizer, list(prompts), [])
    flat = [c for row in cands for c in row]
    distinct = list(dict.fromkeys(flat))  # candidates are mostly shared: encode each once
    tail = [tokenizer.eos_token_id] if with_eos else []
    enc = {c: ids + tail for c, ids in zip(distinct, encode_pair(tokenizer, [], distinct)[1],
                                          strict=True)}
    seqs = [enc[c] for c in flat]  # row r: prompt r // C, candidate r % C
    try:
        return _routed("score", _score_with_shared_prompts)(
            model, tokenizer, p_ids, seqs, C, max(1, batch_size // C)).view(P, C)
    finally:
        model.train(was_training)


def _score_with_shared_prompts(model, tokenizer, p_ids: list[list[int]],
                               seqs: list[list[int]], C: int, per_chunk: int) -> torch.Tensor:
    """Each prompt is run once; its KV cache is repeated for its ``C`` candidates, which
    are then run together (right-padded: causal attention never looks right).

    The first candidate token's log-prob comes from the prompt's last position (shared by
    all ``C``), so single-token candidates cost one extra position each (their ``eos``).
    """
    device = next(model.parameters()).device
    body, emb = base_model(model), model.get_input_embeddings()
    cache_kw = _cache_kwarg(body)
    bos, pad = tokenizer.bos_token_id, tokenizer.pad_token_id
    max_pos = model.config.max_position_embeddings
    scores = torch.zeros(len(seqs))
    for lo in range(0, len(p_ids), per_chunk):
        ids, mask = _left_pad([[bos] + p for p in p_ids[lo:lo + per_chunk]], pad)
        ids, mask = ids.to(device), mask.to(device)  # (B, T)
        B, T = ids.shape
        rows = seqs[lo * C:(lo + B) * C]  # (B * C) candidate token lists
        L = max(map(len, rows))
        if T + L - 1 > max_pos:
            raise InputError(f"answer_logprobs: a prompt + candidate has {T + L - 1} tokens; "
                             f"the model's context is {max_pos}")
        pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        out = body(inputs_embeds=emb(ids), attention_mask=mask, position_ids=pos,
                   use_cache=L > 1)
        lp0 = torch.log_softmax(head_logits(model, out.last_hidden_state[:, -1]).float(), -1)
        full = torch.tensor([r + [pad] * (L - len(r)) for r in rows], device=device)  # (BC, L)
        lens = torch.tensor([len(r) for r in rows], device=device)  # (BC,)
        chunk = torch.where(lens > 0, lp0.repeat_interleave(C, 0).gather(1, full[:, :1])[:, 0],
                            0.0)  # (BC,) first token, from the prompt's last position
        if L > 1:  # the rest of each candidate, on the prompt's repeated cache
            cache = _output_cache(out)
            cache.batch_repeat_interleave(C)
            x = full[:, :-1]  # (BC, L - 1) inputs; right padding is never looked at
            mask2 = torch.cat([mask.repeat_interleave(C, 0), mask.new_ones(len(rows), L - 1)], 1)
            pos2 = pos[:, -1:].repeat_interleave(C, 0) + 1 + torch.arange(L - 1, device=device)
            h = body(inputs_embeds=emb(x), attention_mask=mask2, position_ids=pos2,
                     use_cache=True, **{cache_kw: cache}).last_hidden_state  # (BC, L - 1, D)
            live = torch.arange(L - 1, device=device) < (lens - 1)[:, None]  # (BC, L - 1)
            sr, sp = live.nonzero(as_tuple=True)  # (S,) scored later tokens, row-major
            lp = torch.log_softmax(head_logits(model, h[sr, sp]).float(), -1)  # (S, V)
            chunk = chunk.index_add(0, sr, lp.gather(1, full[sr, sp + 1][:, None])[:, 0])
        scores[lo * C:(lo + B) * C] = chunk.cpu()
    return scores


def rank_of_true(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast,
                 prompts: Sequence[str],
                 candidates: Sequence[str] | Sequence[Sequence[str]],
                 answers: Sequence[str], **kwargs) -> torch.Tensor:
    """1-based rank of each true answer among the candidates, by :func:`answer_logprobs`.

    Rank 1 means no candidate scores strictly higher than the true answer (ties favour it).

    Returns
    -------
    torch.Tensor
        ``(P,)`` int64.

    Examples
    --------
    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> from kgtest.model import ModelConfig, build_model
    >>> tok = build_tokenizer(["Q a r ? A b", "c d"])
    >>> m = build_model(ModelConfig(preset="tiny"), tok)
    >>> r = rank_of_true(m, tok, ["Q a r ? A "], ["b", "c", "d"], ["b"])
    >>> 1 <= int(r[0]) <= 3
    True
    """
    cands = _normalise_candidates(prompts, candidates)
    if len(answers) != len(prompts):
        raise InputError(f"rank_of_true: {len(prompts)} prompts but {len(answers)} answers")
    true_idx = []
    for i, (row, ans) in enumerate(zip(cands, answers, strict=True)):
        if ans not in row:
            raise InputError(f"rank_of_true: answer {ans!r} of prompt {i} is not a candidate")
        true_idx.append(row.index(ans))
    lp = answer_logprobs(model, tokenizer, prompts, cands, **kwargs)  # (P, C)
    true_lp = lp.gather(1, torch.tensor(true_idx)[:, None])  # (P, 1)
    return (lp > true_lp).sum(dim=1) + 1
