"""Tokenised corpora and the epoch plan: every per-example step of training, done once.

:func:`encode_corpus` turns documents into one right-padded ``(N, L_max)`` tensor with
lengths and loss starts; :func:`epoch_plan` draws an epoch's random batches (as a
shuffling sampler would), cuts each into least-padding length runs
(:func:`split_by_length`) and lists the flat positions of its supervised tokens, with
tensor ops, once per epoch. Under data parallelism each rank plans the same global batches
and keeps its own shard of each (:func:`kgtest.train.train` sums the shards' gradients).

Examples
--------
>>> from kgtest.corpus.tokenizer import build_tokenizer
>>> tok = build_tokenizer(["Q a r ? A b", "a r b ."])
>>> enc = encode_corpus(tok, [{"prompt": "Q a r ? A ", "completion": "b"},
...                           {"prompt": "", "completion": "a r b ."}])
>>> plan = epoch_plan(enc, 2, 2, torch.Generator().manual_seed(0), torch.device("cpu"))
>>> plan.steps  # (micro lo, micro hi, supervised tokens, real tokens) per step
[(0, 2, 7, 14)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerFast

from kgtest.corpus.tokenizer import encode_pair
from kgtest.errors import InputError

__all__ = ["EncodedCorpus", "encode_corpus", "EpochPlan", "epoch_plan", "epoch_batches",
           "split_by_length", "joint_runs"]


@dataclass(frozen=True)
class EncodedCorpus:
    """A tokenised corpus as tensors (on the CPU until :func:`train` moves it)."""

    tokens: torch.Tensor  # (N, L_max) int64: [bos] + prompt + completion + [eos], pad right
    lengths: torch.Tensor  # (N,) int64: real length of each row
    loss_start: torch.Tensor  # (N,) int64: first position whose token is supervised

    @property
    def n_docs(self) -> int:
        return int(self.tokens.shape[0])


def encode_corpus(tokenizer: PreTrainedTokenizerFast, docs: Sequence[dict],
                  answer_only_loss: bool = True) -> EncodedCorpus:
    """Tokenise documents into one padded tensor plus lengths and loss starts.

    Prompt and completion are tokenised separately and joined as
    ``[bos] + prompt + completion + [eos]``. With ``answer_only_loss`` the supervised
    tokens are the completion and the eos (a statement, whose prompt is ``""``, is
    supervised whole); without it, every token after bos.

    Examples
    --------
    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> tok = build_tokenizer(["Q a r ? A b"])
    >>> enc = encode_corpus(tok, [{"prompt": "Q a r ? A ", "completion": "b"}])
    >>> enc.tokens.tolist(), enc.lengths.tolist(), enc.loss_start.tolist()
    ([[1, 4, 5, 6, 7, 8, 9, 2]], [8], [6])
    """
    if not docs:
        raise InputError("train: the corpus has no documents")
    prompts, completions = [], []
    for i, d in enumerate(docs):
        try:
            prompts.append(d["prompt"])
            completions.append(d["completion"])
        except (KeyError, TypeError):
            raise InputError(f"train: document {i} lacks 'prompt'/'completion'") from None
    p_ids, c_ids = encode_pair(tokenizer, prompts, completions)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    lengths = torch.tensor([len(p) + len(c) + 2 for p, c in zip(p_ids, c_ids, strict=True)])
    tokens = torch.full((len(docs), int(lengths.max())), tokenizer.pad_token_id,
                        dtype=torch.long)
    for i, (p, c) in enumerate(zip(p_ids, c_ids, strict=True)):
        tokens[i, :lengths[i]] = torch.tensor([bos, *p, *c, eos], dtype=torch.long)
    if answer_only_loss:
        loss_start = torch.tensor([1 + len(p) for p in p_ids], dtype=torch.long)
    else:
        loss_start = torch.ones(len(docs), dtype=torch.long)
    return EncodedCorpus(tokens, lengths, loss_start)



@dataclass
class EpochPlan:
    """One epoch's steps, flattened; offsets are host ints, tensors are on the device."""

    idx: torch.Tensor  # (N,) document index, micro-batch after micro-batch
    flat: torch.Tensor  # (S_total,) hidden-state position b * L + t - 1 of each target t
    micro: list[tuple[int, int, int, int, int]]  # (idx_lo, idx_hi, flat_lo, flat_hi, L)
    steps: list[tuple[int, int, int, int]]  # (micro_lo, micro_hi, supervised, real tokens)


def split_by_length(lengths: torch.Tensor, max_groups: int) -> list[int]:
    """Cut sorted lengths into at most ``max_groups`` runs with the least padding.

    Dynamic programming over cut points: a run ``[i, j)`` of ascending lengths costs
    ``(j - i) * lengths[j - 1]`` padded tokens; the fewest runs reaching the minimum win.
    Returns the run ends.

    >>> split_by_length(torch.tensor([6, 6, 6, 8, 8, 16, 30]), 3)  # 5*8 + 16 + 30 padded
    [5, 6, 7]
    >>> split_by_length(torch.tensor([6, 6, 6, 8, 8, 16, 30]), 4)
    [3, 5, 6, 7]
    >>> split_by_length(torch.tensor([8, 8, 8]), 4)
    [3]
    """
    n = len(lengths)
    j = torch.arange(n + 1)
    last = torch.cat([lengths.new_zeros(1), lengths]).double()  # last[j] = lengths[j - 1]
    # cost[i, j] of one run [i, j): (j - i) * lengths[j - 1], infinite unless i < j
    span = (j[None, :] - j[:, None]).double()
    cost = torch.where(span > 0, span * last[None, :], torch.inf)  # (n+1, n+1)
    best, choice = [cost[0]], [torch.zeros(n + 1, dtype=torch.long)]  # one run: [0, j)
    for _ in range(1, max_groups):
        total, arg = (best[-1][:, None] + cost).min(dim=0)  # (n+1,): best k-run cost to j
        best.append(total)
        choice.append(arg)
    k = min(range(len(best)), key=lambda g: (float(best[g][n]), g))  # fewest runs at min
    ends, end = [], n
    for g in range(k, -1, -1):
        ends.append(end)
        end = int(choice[g][end])
    return ends[::-1]


def joint_runs(lengths: Sequence[torch.Tensor], max_groups: int) -> list[list[tuple[int, int]]]:
    """Cut several members' batches into at most ``max_groups`` stacked micro-batches with
    the least padding.

    ``lengths[m]``: member ``m``'s batch, ascending. The batches are aligned by rank (the
    longest documents together; a shorter batch at the end), and the ranks are cut where
    :func:`split_by_length` cuts the members' largest length at each rank: micro-batch
    ``k`` stacks member ``m``'s documents ``runs[k][m] = (lo, hi)`` as one ``(M, b, L)``
    tensor, ``b`` the widest slice and ``L`` the longest document in it. One member alone
    gets :func:`split_by_length`'s runs.

    >>> joint_runs([torch.tensor([4, 4, 10]), torch.tensor([4, 6, 10])], 4)
    [[(0, 1), (0, 1)], [(1, 2), (1, 2)], [(2, 3), (2, 3)]]
    >>> joint_runs([torch.tensor([4, 4, 10]), torch.tensor([4, 6, 10])], 2)  # 2*6 + 10
    [[(0, 2), (0, 2)], [(2, 3), (2, 3)]]
    >>> joint_runs([torch.tensor([4, 4, 10]), torch.tensor([10])], 4)  # a shorter batch
    [[(0, 2), (0, 0)], [(2, 3), (0, 1)]]
    """
    n = max(len(x) for x in lengths)
    if n == 0:
        return []
    largest = torch.stack([torch.cat([x.new_zeros(n - len(x)), x.reshape(-1)])
                           for x in lengths]).max(dim=0).values  # ascending
    runs, lo = [], 0
    for hi in split_by_length(largest, max_groups):
        runs.append([(max(lo - n + len(x), 0), max(hi - n + len(x), 0)) for x in lengths])
        lo = hi
    return runs


def epoch_batches(corpus: EncodedCorpus, batch_size: int, gen: torch.Generator
                  ) -> list[tuple[torch.Tensor, int, int]]:
    """An epoch's batches as a shuffling sampler draws them (``gen`` advances): each its
    document ids in ascending length (stable), supervised and real token counts. The
    batches of :func:`epoch_plan`, without its micro-batches.

    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> c = encode_corpus(build_tokenizer(["a b", "a"]), [{"prompt": "", "completion": "a b"},
    ...                                                 {"prompt": "", "completion": "a"}])
    >>> [(b.tolist(), sup, real) for b, sup, real in
    ...  epoch_batches(c, 2, torch.Generator().manual_seed(0))]
    [([1, 0], 5, 7)]
    """
    lengths, start = corpus.lengths, corpus.loss_start
    out = []
    for batch in torch.randperm(corpus.n_docs, generator=gen).split(batch_size):
        batch = batch[torch.sort(lengths[batch], stable=True).indices]  # ascending length
        out.append((batch, int((lengths[batch] - start[batch]).clamp(min=0).sum()),
                    int(lengths[batch].sum())))
    return out


def epoch_plan(corpus: EncodedCorpus, batch_size: int, max_micro: int,
               gen: torch.Generator, device: torch.device, *, rank: int = 0,
               world_size: int = 1) -> EpochPlan:
    """Random batches (as a shuffling sampler draws them), each split into length runs.

    A batch is sorted by length and cut into at most ``max_micro`` micro-batches with the
    least padding (:func:`split_by_length`); a step sums their token losses and divides by
    the batch's supervised-token count, so its gradient is the padded batch's exactly,
    without the padding. All of it is host work once per epoch.

    With ``world_size > 1`` every rank draws the same global batches (same ``gen`` state)
    and keeps the documents ``rank, rank + world_size, ...`` of each length-sorted batch
    (shards of similar lengths, so ranks finish together); a step's counts stay the global
    batch's, so dividing each rank's summed loss by them and summing the ranks' gradients
    gives the global batch's gradient. A rank left without a document (an epoch's last
    batch smaller than the world) gets one micro-batch with no supervised positions: its
    backward pass contributes zeros but still joins the gradient all-reduce.
    """
    lengths, start = corpus.lengths, corpus.loss_start
    idx_parts, flat_parts, micro, steps = [], [], [], []
    i_lo = f_lo = 0
    for batch, n_sup, n_real in epoch_batches(corpus, batch_size, gen):  # the global batch's
        shard = batch[rank::world_size]  # still ascending
        empty = len(shard) == 0
        if empty:
            shard = batch[:1]
        m_lo, lo = len(micro), 0
        for hi in split_by_length(lengths[shard], max_micro):
            idx = shard[lo:hi]
            L = int(lengths[idx].max())
            t = torch.arange(1, L)  # (L-1,) target positions
            sup = (t >= start[idx, None]) & (t < lengths[idx, None]) & (not empty)  # (b, L-1)
            rows, cols = sup.nonzero(as_tuple=True)
            flat = rows * L + cols  # cols = t - 1: the hidden state that predicts token t
            idx_parts.append(idx)
            flat_parts.append(flat)
            micro.append((i_lo, i_lo + len(idx), f_lo, f_lo + len(flat), L))
            i_lo, f_lo, lo = i_lo + len(idx), f_lo + len(flat), hi
        steps.append((m_lo, len(micro), n_sup, n_real))
    return EpochPlan(torch.cat(idx_parts).to(device), torch.cat(flat_parts).to(device),
                     micro, steps)
