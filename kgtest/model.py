"""Model presets -> Hugging Face config -> causal LM; save and load checkpoints.

Models are plain ``transformers`` causal LMs (GPT-2 or Llama architecture) with SDPA
attention, so any Hugging Face tool loads a saved checkpoint as it is::

    AutoModelForCausalLM.from_pretrained(dir); AutoTokenizer.from_pretrained(dir)

Sizes come from a named preset (``tiny`` for tests, ``small`` for the CPU default,
``base`` for a GPU) or explicit fields, which override the preset's. ``init_from`` starts
from an existing checkpoint instead (:mod:`kgtest.pretrained`).

Examples
--------
>>> from kgtest.corpus.tokenizer import build_tokenizer
>>> tok = build_tokenizer(["ann parent bob ."])
>>> model = build_model(ModelConfig(preset="tiny"), tok, seed=0)
>>> type(model).__name__, model.config.n_layer, model.config.n_embd
('GPT2LMHeadModel', 2, 32)
>>> ModelConfig(preset="huge")
Traceback (most recent call last):
...
kgtest.errors.InputError: unknown model preset 'huge' (known: base, small, tiny)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from kgtest.corpus.tokenizer import save_tokenizer
from kgtest.errors import InputError
from kgtest.perms import respect_umask
from kgtest.quiet import quiet_hf

__all__ = ["PRESETS", "ModelConfig", "build_model", "save_model", "load_model", "load_tokenizer",
           "base_model", "hidden_states", "head_logits", "quiet_hf"]

#: Named sizes: (n_layer, n_head, d_model, d_ff, max_len).
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(n_layer=2, n_head=2, d_model=32, d_ff=128, max_len=64),  # unit tests
    "small": dict(n_layer=4, n_head=4, d_model=128, d_ff=512, max_len=128),  # CPU default
    "base": dict(n_layer=8, n_head=8, d_model=512, d_ff=2048, max_len=256),  # one GPU
}

#: Largest accepted size per field (well past any model kgtest trains; refuses typos).
_MAX_SIZE = dict(n_layer=512, n_head=1024, d_model=2**16, d_ff=2**18, max_len=2**16)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and size of a model; explicit sizes override the preset's."""

    arch: Literal["gpt2", "llama"] = "gpt2"  # Hugging Face architecture family
    preset: str = "small"  # named size: tiny | small | base
    n_layer: int | None = None  # transformer blocks (None: from the preset)
    n_head: int | None = None  # attention heads (None: from the preset)
    d_model: int | None = None  # residual width (None: from the preset)
    d_ff: int | None = None  # MLP hidden width (None: from the preset)
    max_len: int | None = None  # longest sequence in tokens, bos/eos included (None: preset)
    dropout: float = 0.0  # residual/attention/embedding dropout (0: memorisation wants none)
    init_from: str = field(default="", metadata={"quiet_default": True})  # a local HF causal
    # LM checkpoint to fine-tune ("": train from scratch); kgtest.pretrained

    def __post_init__(self):
        if self.init_from:  # arch and sizes are the checkpoint's (kgtest.pretrained)
            given = [n for n in _MAX_SIZE if getattr(self, n) is not None]
            if given:
                raise InputError(f"model.{given[0]}: the sizes come from model.init_from's "
                                 f"checkpoint; remove model.{given[0]}")
        if self.preset not in PRESETS:
            raise InputError(f"unknown model preset {self.preset!r} "
                             f"(known: {', '.join(sorted(PRESETS))})")
        if self.arch not in ("gpt2", "llama"):
            raise InputError(f"unknown model arch {self.arch!r} (known: gpt2, llama)")
        sizes = self.sizes()
        if sizes["d_model"] % sizes["n_head"]:
            raise InputError(f"model: d_model={sizes['d_model']} is not a multiple of "
                             f"n_head={sizes['n_head']}")
        for name, value in sizes.items():
            if not 0 < value <= _MAX_SIZE[name]:
                raise InputError(f"model: {name} must be in [1, {_MAX_SIZE[name]}], "
                                 f"got {value}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"model: dropout must be in [0, 1), got {self.dropout}")

    def __repr__(self) -> str:  # init_from only when set: keys of runs from scratch unchanged
        shown = [f for f in fields(self) if f.name != "init_from" or self.init_from]
        return f"ModelConfig({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in shown)})"

    def sizes(self) -> dict[str, int]:
        """The resolved sizes: the preset's, overridden by explicit fields.

        >>> ModelConfig(preset="tiny", n_layer=3).sizes()["n_layer"]
        3
        """
        out = dict(PRESETS[self.preset])
        for name in out:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def _hf_config(cfg: ModelConfig, tokenizer: PreTrainedTokenizerFast):
    s = cfg.sizes()
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id, vocab_size=len(tokenizer))
    if cfg.arch == "gpt2":
        return GPT2Config(n_positions=s["max_len"], n_embd=s["d_model"], n_layer=s["n_layer"],
                          n_head=s["n_head"], n_inner=s["d_ff"], resid_pdrop=cfg.dropout,
                          embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
                          tie_word_embeddings=True, **ids)
    return LlamaConfig(hidden_size=s["d_model"], intermediate_size=s["d_ff"],
                       num_hidden_layers=s["n_layer"], num_attention_heads=s["n_head"],
                       num_key_value_heads=s["n_head"], max_position_embeddings=s["max_len"],
                       attention_dropout=cfg.dropout, tie_word_embeddings=True, **ids)


def build_model(cfg: ModelConfig, tokenizer: PreTrainedTokenizerFast,
                seed: int = 0) -> PreTrainedModel:
    """A freshly initialised causal LM sized by ``cfg``, with its vocabulary from ``tokenizer``.

    The global RNG is left untouched: initialisation draws from a forked, seeded RNG.
    With ``cfg.init_from``, the checkpoint there instead, its embeddings resized to
    ``tokenizer`` (:func:`kgtest.pretrained.load_pretrained`).

    Parameters
    ----------
    cfg : ModelConfig
    tokenizer : PreTrainedTokenizerFast
        Gives the vocabulary size and the bos/eos/pad ids.
    seed : int
        Initialisation seed: same seed, same weights.

    Examples
    --------
    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> tok = build_tokenizer(["a b"])
    >>> m = build_model(ModelConfig(arch="llama", preset="tiny"), tok, seed=1)
    >>> type(m).__name__, m.config._attn_implementation
    ('LlamaForCausalLM', 'sdpa')
    """
    if cfg.init_from:  # fine-tune an existing checkpoint (its embeddings resized)
        from kgtest.pretrained import load_pretrained

        return load_pretrained(cfg, tokenizer, seed=seed)
    config = _hf_config(cfg, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    return model


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast,
               out_dir: str | os.PathLike) -> Path:
    """Save model (safetensors) and tokenizer to ``out_dir``, atomically.

    Everything is written to a temporary sibling folder that is renamed into place, so a
    crash never leaves a half-written checkpoint; an existing ``out_dir`` is replaced.

    Examples
    --------
    >>> import tempfile
    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> tok = build_tokenizer(["a b"])
    >>> d = save_model(build_model(ModelConfig(preset="tiny"), tok), tok,
    ...                tempfile.mkdtemp() + "/model")
    >>> sorted(p.name for p in d.iterdir())  # doctest: +ELLIPSIS
    ['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', ...
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        with quiet_hf():
            model.save_pretrained(tmp, safe_serialization=True)
            save_tokenizer(tokenizer, tmp)  # loads in transformers 4.x and 5.x
        respect_umask(tmp, tree=True)  # mkdtemp makes 0700, safetensors 0600
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


#: ModelConfig size -> its name in each architecture's HF config.
_HF_NAMES = {
    "gpt2": dict(n_layer="n_layer", n_head="n_head", d_model="n_embd", d_ff="n_inner",
                 max_len="n_positions"),
    "llama": dict(n_layer="num_hidden_layers", n_head="num_attention_heads",
                  d_model="hidden_size", d_ff="intermediate_size",
                  max_len="max_position_embeddings"),
}


def load_tokenizer(model_dir: str | os.PathLike) -> PreTrainedTokenizerFast:
    """The tokenizer of a checkpoint saved by :func:`save_model`, without its weights (what
    a retrained control needs of its original); one-line errors as :func:`load_model`.

    >>> load_tokenizer("/nonexistent")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: /nonexistent: not a model checkpoint ...
    """
    return _load_hf(Path(model_dir), lambda p: AutoTokenizer.from_pretrained(p))


def _load_hf(path: Path, load):
    """``load(path)`` under :func:`quiet_hf`, any failure one :class:`InputError` line."""
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: not a model checkpoint (no config.json)")
    try:
        with quiet_hf():
            return load(path)
    except Exception as err:  # safetensors/json/OSError: all mean "unreadable checkpoint"
        msg = " ".join(str(err).split())[:200]
        raise InputError(f"{path}: corrupt model checkpoint ({type(err).__name__}: {msg})"
                         ) from None


def load_model(model_dir: str | os.PathLike, device: str | torch.device = "cpu", *,
               expect: ModelConfig | None = None
               ) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a checkpoint saved by :func:`save_model` (or any HF causal LM folder).

    Loading is strict: safetensors only, and a ``config.json`` that does not match the
    weights (a layer missing or extra, a shape that differs) is refused rather than
    half-loaded. With ``expect`` (the run's ``[model]`` section), the architecture and
    sizes in ``config.json`` must also be those the run trained: a changed ``n_head``
    fits the same weights but computes another model. A missing, corrupt or mismatched
    checkpoint raises :class:`~kgtest.errors.InputError` (one line).

    Examples
    --------
    >>> load_model("/nonexistent")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: /nonexistent: not a model checkpoint ...
    """
    path = Path(model_dir)
    tokenizer, (model, info) = _load_hf(path, lambda p: (
        AutoTokenizer.from_pretrained(p),
        AutoModelForCausalLM.from_pretrained(p, attn_implementation="sdpa",
                                             use_safetensors=True, output_loading_info=True)))
    for key, what in (("missing_keys", "weights missing from model.safetensors"),
                      ("unexpected_keys", "weights that config.json has no place for"),
                      ("mismatched_keys", "weights whose shape config.json contradicts")):
        bad = sorted(str(k) for k in info.get(key) or ())
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise InputError(f"{path}: config.json does not match the weights: {what} "
                             f"({bad[0]}{more})")
    if expect is not None:
        _check_expected(model, expect, path)
    if len(tokenizer) > model.config.vocab_size:
        raise InputError(f"{path}: the tokenizer has {len(tokenizer)} tokens but the model's "
                         f"vocab_size is {model.config.vocab_size}")
    return model.to(device).eval(), tokenizer


def _check_expected(model: PreTrainedModel, cfg: ModelConfig, path: Path) -> None:
    """Refuse a checkpoint whose architecture or sizes are not the run's."""
    if cfg.init_from:  # the sizes are those of the checkpoint the run started from
        return
    arch = getattr(model.config, "model_type", "")
    if arch != cfg.arch:
        raise InputError(f"{path}: config.json says model_type {arch!r}, the run trained "
                         f"{cfg.arch!r}")
    for name, value in cfg.sizes().items():
        got = getattr(model.config, _HF_NAMES[cfg.arch][name], None)
        if got != value:
            raise InputError(f"{path}: config.json has {_HF_NAMES[cfg.arch][name]} = {got}, "
                             f"the run trained {name} = {value}")


# --- the pieces a fast loop needs: hidden states, then the head at chosen positions only ----

def base_model(model: PreTrainedModel) -> nn.Module:
    """The transformer body without the LM head (``model.transformer`` or ``model.model``)."""
    return getattr(model, model.base_model_prefix)


def hidden_states(model: PreTrainedModel, input_ids: torch.Tensor, **kwargs) -> torch.Tensor:
    """Final-layer hidden states ``(B, T, D)`` (after the final norm), without the LM head.

    Extra keyword arguments (``attention_mask``, ``position_ids``) go to the body.

    Examples
    --------
    >>> from kgtest.corpus.tokenizer import build_tokenizer
    >>> tok = build_tokenizer(["a b"])
    >>> m = build_model(ModelConfig(preset="tiny"), tok)
    >>> tuple(hidden_states(m, torch.tensor([[1, 4, 5]])).shape)
    (1, 3, 32)
    """
    # inputs_embeds, not input_ids: skips HF's pad-token check (a host sync and a warning
    # for right-padded batches, which causal attention already makes harmless)
    embeds = model.get_input_embeddings()(input_ids)  # (B, T, D)
    return base_model(model)(inputs_embeds=embeds, use_cache=False, **kwargs).last_hidden_state


def head_logits(model: PreTrainedModel, hidden: torch.Tensor) -> torch.Tensor:
    """Apply the LM head to hidden states of any leading shape: ``(..., D) -> (..., V)``.

    Used on the supervised positions only, which is where a tiny model's time goes when
    the vocabulary is large next to ``d_model``.
    """
    return model.get_output_embeddings()(hidden)
