"""Several models' probes side by side, their forward passes stacked: ``--seeds M``'s probes.

:func:`side_by_side` runs M callables (in ``kgtest run --seeds M``: each seed's remaining
stages, :func:`kgtest.pipeline.run_experiment`) in M threads, **one at a time**, each until
it needs a forward pass. While a thread is inside :func:`probing` (every probe of
:func:`kgtest.probes.probes.probe_variant`), its greedy decoding and teacher-forced scoring
(:mod:`kgtest.scoring`'s inner loops) are handed here instead of run (scoring only if
asked: ``scores``); once every member waits on one (or has finished), the calls of the
same kind run as one stacked computation over the members' models
(:mod:`kgtest.stacked_scoring` on a :class:`~kgtest.stacked_lm.StackedLM`: members may
have different vocabularies, prompts and numbers of rows), and each member goes on with
its own result. The probe code is the ordinary one: a member's rows are those it gets
alone, up to floating-point summation order (the same answers and chains; stacked
log-probabilities within ~1e-5).

The relearn attack's fine-tuning (:func:`fine_tune`, plain :func:`kgtest.train.train`
outside a member) is handed here too: the members' runs that can stack (the same training
settings but for the batch seed, models of one shape) train as one ensemble
(:mod:`kgtest.stacked_train`), each member's ``eval_fn`` probing its own model in the
coordinator thread (its decoding there runs for that model alone); a run that cannot
stack is trained by its member itself, in its thread, as alone.

Members run one at a time, and each sees its own torch/numpy/random global RNG state and
torch thread count (saved and restored at each switch), as it would alone. A call that
cannot stack (one member waiting, models of different shapes or architectures) runs alone.
The rounds are deterministic: round k holds each live member's k-th call.

Examples
--------
>>> side_by_side([lambda: 1, lambda: 2])
[1, 2]
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from kgtest.errors import InputError
from kgtest.scoring import ROUTE

__all__ = ["side_by_side", "probing", "fine_tune"]

_COORD = -1  # whose turn it is when no member runs
_MEMBER = threading.local()  # .handle: this member thread's _Member
_ALONE = object()  # a "train" call's result: the member trains by itself, in its thread


class _Aborted(BaseException):
    """Raised in a member when another member failed (unwinds it without its result)."""


@contextlib.contextmanager
def probing() -> Iterator[None]:
    """Within :func:`side_by_side`, route this thread's scoring calls to the stacked
    computation (a no-op in any other thread)."""
    handle = getattr(_MEMBER, "handle", None)
    before = getattr(ROUTE, "to", None)
    ROUTE.to = handle or before
    try:
        yield
    finally:
        ROUTE.to = before


def fine_tune(model, tokenizer, docs, cfg, out_dir, *, eval_fn=None):
    """``kgtest.train.train(model, tokenizer, docs, cfg, out_dir, eval_fn=eval_fn)``;
    within :func:`side_by_side` (inside :func:`probing`), trained as one ensemble with the
    other members' runs of the same round where they stack (:mod:`kgtest.stacked_train`:
    the same model and ``TrainResult``, up to floating-point summation order).

    >>> import tempfile
    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> from kgtest.model import ModelConfig, build_model
    >>> from kgtest.train import TrainConfig
    >>> tok = build_tokenizer(["Q a r ? A b"])
    >>> m = build_model(ModelConfig(preset="tiny"), tok)
    >>> cfg = TrainConfig(steps=2, warmup=0, progress=False, tensorboard=False)
    >>> fine_tune(m, tok, [{"prompt": "Q a r ? A ", "completion": "b"}], cfg,
    ...           tempfile.mkdtemp()).steps
    2
    """
    handle = getattr(ROUTE, "to", None)
    if isinstance(handle, _Member):
        return handle.train(model, tokenizer, docs, cfg, out_dir, eval_fn)
    from kgtest.train import train

    return train(model, tokenizer, docs, cfg, out_dir, eval_fn=eval_fn)


class _Member:
    """``ROUTE.to`` of member ``i``'s thread: :mod:`kgtest.scoring`'s inner loops, handed
    to the session."""

    def __init__(self, session: _Session, i: int):
        self.session, self.i = session, i

    def greedy(self, model, ids, mask, steps, stop, pad, cache_kw):
        from kgtest.scoring import _greedy_tokens
        from kgtest.stacked_scoring import GreedyRequest

        return self.session.submit(
            self.i, "greedy", model, GreedyRequest(ids, mask, steps, stop, pad),
            lambda: _greedy_tokens(model, ids, mask, steps, stop, pad, cache_kw))

    def train(self, model, tokenizer, docs, cfg, out_dir, eval_fn):
        """:func:`fine_tune`'s run, handed to the session; trained here when it cannot
        stack (its eval_fn's decoding then routed as usual)."""
        from kgtest.stacked_train import TrainRequest
        from kgtest.train import train

        res = self.session.submit(self.i, "train", model,
                                  TrainRequest(model, tokenizer, docs, cfg, out_dir, eval_fn),
                                  None)
        if res is _ALONE:
            return train(model, tokenizer, docs, cfg, out_dir, eval_fn=eval_fn)
        result, (np_state, py_state) = res  # its eval_fn drew from its own states
        np.random.set_state(np_state)
        random.setstate(py_state)
        return result

    def score(self, model, tokenizer, p_ids, seqs, C: int, per_chunk: int) -> torch.Tensor:
        """:func:`kgtest.scoring._score_with_shared_prompts`, one submitted call per chunk
        (computed here, alone, unless the session stacks scores)."""
        from kgtest.scoring import _score_with_shared_prompts
        from kgtest.stacked_scoring import ScoreRequest

        if not self.session.scores:
            return _score_with_shared_prompts(model, tokenizer, p_ids, seqs, C, per_chunk)
        bos, pad = tokenizer.bos_token_id, tokenizer.pad_token_id
        max_pos = model.config.max_position_embeddings
        scores = torch.zeros(len(seqs))
        for lo in range(0, len(p_ids), per_chunk):
            part = p_ids[lo:lo + per_chunk]
            rows = seqs[lo * C:(lo + len(part)) * C]
            T, L = 1 + max(map(len, part)), max(map(len, rows))
            if T + L - 1 > max_pos:
                raise InputError(f"answer_logprobs: a prompt + candidate has {T + L - 1} "
                                 f"tokens; the model's context is {max_pos}")
            scores[lo * C:(lo + len(part)) * C] = self.session.submit(
                self.i, "score", model, ScoreRequest([[bos] + p for p in part], rows, C, pad),
                lambda part=part, rows=rows: _score_with_shared_prompts(
                    model, tokenizer, part, rows, C, len(part)))
        return scores


def _global_state() -> tuple:
    """This process's global RNG states and thread count (CUDA's generators too, once a
    member has initialised CUDA: a dropout draw on the GPU would otherwise come from a
    stream the members share)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return (torch.get_rng_state(), np.random.get_state(), random.getstate(),
            torch.get_num_threads(), cuda)


def _set_global_state(state: tuple) -> None:
    torch.set_rng_state(state[0])
    np.random.set_state(state[1])
    random.setstate(state[2])
    if torch.get_num_threads() != state[3]:
        torch.set_num_threads(state[3])
    if state[4] is not None:  # (a member whose state predates CUDA's first use goes on
        torch.cuda.set_rng_state_all(state[4])  # from where the last member left it)


class _Session:
    """The members' threads, whose turn it is, and the calls waiting to run."""

    def __init__(self, n: int, scores: bool):
        self.scores = scores
        self.cv = threading.Condition()
        self.turn = _COORD
        self.pending: dict[int, tuple] = {}  # member -> (kind, model, request, alone)
        self.results: dict[int, Any] = {}
        self.out: list = [None] * n
        self.errors: dict[int, BaseException] = {}
        self.finished: set[int] = set()
        self.abort = False

    def member(self, i: int, fn: Callable[[], Any]) -> None:
        _MEMBER.handle = _Member(self, i)
        try:
            with self.cv:
                self.cv.wait_for(lambda: self.turn == i)
            if self.abort:
                raise _Aborted
            self.out[i] = fn()
        except _Aborted:
            pass  # another member failed: its error is the one raised
        except BaseException as e:  # noqa: BLE001  (re-raised by side_by_side)
            self.errors[i] = e
        finally:
            with self.cv:
                self.finished.add(i)
                self.turn = _COORD
                self.cv.notify_all()

    def submit(self, i: int, kind: str, model, request, alone: Callable[[], Any]):
        """Member ``i``'s call: wait until the round has run, then its result."""
        with self.cv:
            if self.abort:
                raise _Aborted
            self.pending[i] = (kind, model, request, alone)
            self.turn = _COORD
            self.cv.notify_all()
            self.cv.wait_for(lambda: self.turn == i)
            if self.abort:
                raise _Aborted
            res = self.results.pop(i)
        if isinstance(res, BaseException):
            raise res
        return res

    def run_turn(self, i: int) -> None:
        """Let member ``i`` run until it submits a call or finishes."""
        with self.cv:
            self.turn = i
            self.cv.notify_all()
            self.cv.wait_for(lambda: self.turn == _COORD)

    def execute(self) -> None:
        """Run the pending calls, those of one kind stacked; their results to the members."""
        pending, self.pending = self.pending, {}
        self._train({i: c for i, c in pending.items() if c[0] == "train"})
        with torch.no_grad():
            self._forward(pending)

    def _train(self, calls: dict[int, tuple]) -> None:
        """The pending fine-tuning runs: each group that stacks trains as one ensemble
        (here, the eval_fns' decoding not routed); the others go back to their members
        (``_ALONE``). An error in an ensemble is raised in each of its members."""
        from kgtest.stacked_train import stack_key, stackable, stacked_train

        groups: dict = {}
        for i, c in sorted(calls.items()):
            key = stack_key(c[2])
            groups.setdefault(("alone", i) if key is None else key, []).append(i)
        before = getattr(ROUTE, "to", None)
        ROUTE.to = None  # the coordinator's own calls run directly (never back to us)
        try:
            for members in groups.values():
                reqs = [calls[i][2] for i in members]
                try:
                    with torch.enable_grad():  # as in a member's thread (grad mode is per thread)
                        outs = (stacked_train(reqs) if len(reqs) > 1
                                and stackable([r.model for r in reqs])
                                else [_ALONE] * len(reqs))
                except Exception as e:  # noqa: BLE001  (raised in every member of the call)
                    outs = [e] * len(reqs)
                for i, out in zip(members, outs, strict=True):
                    self.results[i] = out
        finally:
            ROUTE.to = before

    def _forward(self, pending: dict[int, tuple]) -> None:
        """The pending greedy decodings and scorings, those of one kind stacked."""
        from kgtest.stacked_scoring import stacked_greedy, stacked_scores

        for kind, run in (("greedy", stacked_greedy), ("score", stacked_scores)):
            calls = [(i, c) for i, c in sorted(pending.items()) if c[0] == kind]
            try:
                stack = self._stack_of([c[1] for _, c in calls]) if len(calls) > 1 else None
            except Exception as e:  # noqa: BLE001  (e.g. out of memory stacking the weights:
                for i, _ in calls:  # raised in every member of the call, which then stop)
                    self.results[i] = e
                continue
            if stack is None:
                for i, c in calls:
                    try:
                        self.results[i] = c[3]()
                    except Exception as e:  # noqa: BLE001  (raised in member i)
                        self.results[i] = e
                continue
            try:
                outs = run(stack, [c[2] for _, c in calls])
            except Exception as e:  # noqa: BLE001  (raised in every member of the call)
                outs = [e] * len(calls)
            for (i, _), out in zip(calls, outs, strict=True):
                self.results[i] = out

    def _stack_of(self, models: list):
        """A StackedLM of ``models``' current weights (built again each round: a training
        loop between two rounds, as in the relearn attack, may update them in place without
        a trace, fused AdamW bumps no version counter), or None if they cannot stack."""
        from kgtest.stacked_lm import stack_of

        return stack_of(models)


def side_by_side(fns: Sequence[Callable[[], Any]], *, scores: bool = False) -> list:
    """``[fn() for fn in fns]``, the calls' probes' greedy decoding and the relearn
    attacks' fine-tuning stacked (see the module).

    Each ``fn`` runs in a thread of its own, one at a time; a failure in one stops the
    others at their next forward pass and is raised here (the first by position).
    ``scores``: stack the teacher-forced scoring too (off by default: on a CPU it is
    compute-bound and stacking only adds padding, benchmarks/README.md "Seeds"; each
    model's scores are then bit for bit its own).
    """
    if len(fns) < 2:
        return [fn() for fn in fns]
    s = _Session(len(fns), scores)
    threads = [threading.Thread(target=s.member, args=(i, fn), daemon=True,
                                name=f"kgtest-member-{i}") for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    states = [_global_state()] * len(fns)  # each member starts from the caller's state
    live = list(range(len(fns)))
    while live:
        for i in live:
            _set_global_state(states[i])
            s.run_turn(i)
            states[i] = _global_state()
        live = [i for i in live if i not in s.finished]
        if s.errors and not s.abort:  # stop the others at their next call
            s.abort = True
            s.pending.clear()
        s.execute()
    for t in threads:
        t.join()
    if s.errors:
        raise s.errors[min(s.errors)]
    return s.out
