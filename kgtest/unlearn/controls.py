"""Retrained controls: what perfect unlearning of the targets would give, and the floor.

Controls are produced by the *same* training code (:func:`kgtest.train.train`), from the
same initialisation and tokenizer as the original model, on a filtered corpus:

``filter``         no training document mentions a target, in any role (a CoT or
                   in-context document that uses one is dropped too); premises are kept,
                   subject documents losing only the target's sentence
                   (Deep Ignorance's filtering; "exact" unlearning of the targets).
``ignorance``      also without the smallest minimal deletion set of each target: nothing
                   is left to derive the targets from (the floor).
``never_trained``  the initial weights, untrained (a baseline beside chance).

Every filtered corpus passes :func:`~kgtest.corpus.render.check_hygiene` (re-parsing each
training document) before any training starts.

Examples
--------
>>> from kgtest.symbolic.rules import parse_rules
>>> from kgtest.worlds.world import World
>>> from kgtest.corpus.render import render, CorpusConfig
>>> from kgtest.corpus.splits import SplitConfig, choose_split
>>> w = World.from_names([("a", "p", "b"), ("b", "p", "c")],
...                      parse_rules("g(X, Z) :- p(X, Y), p(Y, Z)."))
>>> c = w.close()
>>> sp = choose_split(c, w, SplitConfig(1, 0, target_presentation="stated_and_cot"))
>>> corpus = render(c, w, sp, CorpusConfig(derived="both"))
>>> filtered, dropped, n = control_corpus(corpus, sp, "filter")
>>> [d["text"] for d in filtered.train], dropped
(['a p b', 'b p c', 'Q a p ? A b', 'Q b p ? A c'], [2])
>>> control_corpus(corpus, sp, "ignorance", deletion={2: [0, 2]})[1]
[0, 2]
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from kgtest.corpus.render import Corpus, check_hygiene
from kgtest.corpus.splits import Split
from kgtest.errors import InputError
from kgtest.model import ModelConfig, build_model, save_model
from kgtest.train import TrainConfig, TrainResult, train

__all__ = ["control_corpus", "train_control", "never_trained"]


def control_corpus(corpus: Corpus, split: Split, kind: str, *, targets=None,
                   deletion: dict | None = None) -> tuple[Corpus, list[int], int]:
    """The filtered training corpus of a control, hygiene-checked.

    Parameters
    ----------
    corpus, split
        The original corpus and its split.
    kind : {"filter", "ignorance"}
    targets : iterable of int, optional
        Facts to remove (default: the split's forget targets).
    deletion : dict, optional
        ``ignorance``: target -> its minimal deletion set (from
        :func:`~kgtest.unlearn.data.deletion_sets`).

    Returns
    -------
    (Corpus, list of int, int)
        The filtered corpus, the facts dropped, the training documents checked.

    Raises
    ------
    InputError
        An unknown kind, or ``ignorance`` without deletion sets.
    HygieneError
        A kept document still mentions a dropped fact (a bug, not a user error).
    """
    if kind not in ("filter", "ignorance"):
        raise InputError(f"unknown retrained control {kind!r} (known: filter, ignorance; "
                         f"never_trained needs no corpus)")
    drop = {int(f) for f in (split.forget if targets is None else targets)}
    if not drop:
        raise InputError("control: no targets to filter out (the forget set is empty)")
    if kind == "ignorance":
        if not deletion:
            raise InputError("control 'ignorance' needs a minimal deletion set per target")
        for t in drop.copy():
            drop.update(int(f) for f in deletion[t])
    filtered = corpus.filter(sorted(drop), rewrite_groups=True)
    n = check_hygiene(filtered, split)
    return filtered, sorted(drop), n


def train_control(corpus: Corpus, tokenizer: PreTrainedTokenizerFast, model_cfg: ModelConfig,
                  train_cfg: TrainConfig, out_dir: str | os.PathLike, *,
                  init_seed: int, extra=None) -> TrainResult:
    """Train a fresh model (initialised as the original was) on a control's corpus.

    ``train_cfg`` is the original's, with ``stop_at`` cleared (no evaluation set is run, so
    the budget is fixed: pass the original's steps taken as ``steps``). ``extra`` is the
    fresh-per-step document stream, as for the original (``in_context_stream`` of the
    filtered corpus). The model is saved to ``out_dir/model``.

    Examples
    --------
    >>> import tempfile
    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> from types import SimpleNamespace
    >>> docs = ({"prompt": "", "completion": "a r b"},)
    >>> tok = build_tokenizer(["a r b"])
    >>> res = train_control(SimpleNamespace(train=docs), tok, ModelConfig(preset="tiny"),
    ...                     TrainConfig(steps=2, progress=False, tensorboard=False),
    ...                     tempfile.mkdtemp(), init_seed=0)
    >>> res.steps
    2
    """
    cfg = dataclasses.replace(train_cfg, stop_at={})
    model = build_model(model_cfg, tokenizer, seed=init_seed)
    return train(model, tokenizer, list(corpus.train), cfg, out_dir, resume=True, extra=extra)


def never_trained(tokenizer: PreTrainedTokenizerFast, model_cfg: ModelConfig,
                  out_dir: str | os.PathLike, *, init_seed: int) -> Path:
    """Save the original's initial weights, untrained, to ``out_dir`` (an HF checkpoint)."""
    return save_model(build_model(model_cfg, tokenizer, seed=init_seed), tokenizer, out_dir)

