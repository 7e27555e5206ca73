"""Start from an existing checkpoint: ``model.init_from = "PATH"`` (the TOFU setting).

Instead of a freshly initialised model, the run fine-tunes a local Hugging Face causal LM
checkpoint on its corpus. Three things make that work with the rest of the pipeline
unchanged:

- **the tokenizer** is the checkpoint's own, with every entity name of the corpus added
  as one whole-word token (:func:`pretrained_tokenizer`), a ``<pad>`` token added when
  the checkpoint has none, and ``<bos>`` prepended by ``tokenizer(text)`` as kgtest's own
  tokenizers do; it is saved as a plain ``PreTrainedTokenizerFast``;
- **the model** is the checkpoint's weights with the embeddings (and an untied head)
  resized to that tokenizer (:func:`load_pretrained`); the new rows are drawn by
  ``transformers`` (mean-resizing) from a seeded RNG, so the original and every retrained
  control start from the same weights;
- **the stage keys** hash the checkpoint's content (:func:`checkpoint_identity`: its
  ``config.json`` and weight files), not its path: replace the weights and the model
  stage, the controls and everything after them recompute; move the folder and nothing
  does.

:func:`check_checkpoint` refuses, with one line, a path that does not exist, a folder
without ``config.json`` or weights or tokenizer, and a model type that is not a causal LM.

Examples
--------
>>> import tempfile
>>> from kgtest.corpus.tokenizer import build_tokenizer
>>> from kgtest.model import ModelConfig, build_model, save_model
>>> tok = build_tokenizer(["the cat sat on the mat"])
>>> ckpt = save_model(build_model(ModelConfig(preset="tiny"), tok), tok,
...                   tempfile.mkdtemp() + "/base")
>>> check_checkpoint(ckpt) == str(ckpt.resolve())
True
>>> new = pretrained_tokenizer(ckpt, ["e0", "e1"])
>>> len(new) - len(tok), new.convert_ids_to_tokens(new("e1 sat")["input_ids"])
(2, ['<bos>', 'e1', 'sat'])
>>> m = load_pretrained(ModelConfig(init_from=str(ckpt)), new, seed=0)
>>> m.get_input_embeddings().weight.shape[0] == len(new)
True
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from kgtest.errors import InputError

__all__ = ["check_checkpoint", "checkpoint_identity", "pretrained_tokenizer",
           "load_pretrained", "DROPOUT_KEYS"]

#: Weight files a checkpoint may hold (safetensors, sharded or not; PyTorch pickles).
WEIGHT_GLOBS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin",
                "pytorch_model.bin.index.json")
#: Files that give a checkpoint a tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
#: Config keys that hold a dropout rate, by architecture family; ``model.dropout`` sets
#: each one the checkpoint's config has (GPT-2, Llama, OPT/GPT-NeoX, BERT-style names).
DROPOUT_KEYS = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "attention_dropout",
                "hidden_dropout", "dropout", "hidden_dropout_prob",
                "attention_probs_dropout_prob")


def check_checkpoint(path: str | os.PathLike, *, where: str = "model.init_from") -> str:
    """The absolute path of a usable causal-LM checkpoint folder, or a one-line error.

    Checks, without loading any weights: the folder exists, has a ``config.json`` that
    names a model type ``transformers`` has a causal-LM class for, weight files, and a
    tokenizer.

    Parameters
    ----------
    path : path
        The checkpoint folder (as ``save_pretrained`` writes it).
    where : str
        Prefix of the error message (the spec file and key).

    Raises
    ------
    InputError
        ``<where>: <path>: <what is wrong>``.

    Examples
    --------
    >>> check_checkpoint("/nonexistent", where="spec.toml: model.init_from")
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: spec.toml: model.init_from: /nonexistent: no such folder ...
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    p = Path(path).expanduser()
    if not p.is_dir():
        raise InputError(f"{where}: {p}: {'not a folder' if p.exists() else 'no such folder'}"
                         f" (give a Hugging Face checkpoint folder)")
    try:
        config = json.loads((p / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{where}: {p}: not a model checkpoint (no config.json)") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{where}: {p}/config.json: unreadable ({err})") from None
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise InputError(f"{where}: {p}: model_type {kind!r} is not a causal language model "
                         f"(transformers has no AutoModelForCausalLM class for it)")
    if not _weight_files(p):
        raise InputError(f"{where}: {p}: no weights (model.safetensors or pytorch_model.bin)")
    if not any((p / f).is_file() for f in TOKENIZER_FILES):
        raise InputError(f"{where}: {p}: no tokenizer (tokenizer.json or "
                         f"tokenizer_config.json); save one beside the weights")
    return str(p.resolve())


def _weight_files(p: Path) -> list[Path]:
    return sorted({f for g in WEIGHT_GLOBS for f in p.glob(g) if f.is_file()})


_IDENTITY_CACHE: dict[tuple, str] = {}


def checkpoint_identity(path: str | os.PathLike) -> str:
    """A content hash of a checkpoint: ``sha256`` of its ``config.json`` and weight files.

    This is what the stage keys hash for ``model.init_from`` (not the path). Cached per
    process on the files' names, sizes and modification times, so a large checkpoint is
    read once.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "config.json").write_text('{"model_type": "gpt2"}')
    >>> _ = (d / "model.safetensors").write_bytes(b"weights")
    >>> a = checkpoint_identity(d)
    >>> _ = (d / "model.safetensors").write_bytes(b"other weights")
    >>> len(a), a == checkpoint_identity(d)
    (64, False)
    """
    p = Path(path)
    files = [p / "config.json", *_weight_files(p)]
    try:
        stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    except OSError as err:
        raise InputError(f"model.init_from: {p}: cannot read the checkpoint "
                         f"({err.strerror or err})") from None
    key = (os.path.realpath(p), stamp)
    if key not in _IDENTITY_CACHE:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + b"\0")
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        _IDENTITY_CACHE[key] = h.hexdigest()
    return _IDENTITY_CACHE[key]


def pretrained_tokenizer(path: str | os.PathLike,
                         words: Iterable[str]) -> PreTrainedTokenizerFast:
    """The checkpoint's tokenizer with ``words`` (entity names) added as whole tokens.

    Each word becomes one token that only matches a whole word (``e1`` never splits
    ``e12``), so an entity is one embedding, as with kgtest's own word tokenizer; the rest
    of the text keeps the checkpoint's tokenisation. A ``<pad>`` token is added when the
    checkpoint has none (``bos``/``eos`` too); ``tokenizer(text)`` prepends ``bos``.
    Words the tokenizer already has as single tokens are not added again.

    Parameters
    ----------
    path : path
        A checkpoint folder (:func:`check_checkpoint`).
    words : iterable of str
        The corpus's entity names, as its text writes them.

    Returns
    -------
    transformers.PreTrainedTokenizerFast
        New token ids follow the checkpoint's vocabulary.

    Raises
    ------
    InputError
        The checkpoint's tokenizer is not a fast (``tokenizers``-backed) one.
    """
    from tokenizers import AddedToken, Tokenizer, processors
    from transformers import AutoTokenizer

    from kgtest.corpus.tokenizer import BOS, EOS, MODEL_INPUTS, PAD
    from kgtest.quiet import quiet_hf

    try:
        with quiet_hf():
            base = AutoTokenizer.from_pretrained(path)
    except Exception as err:  # noqa: BLE001 - any failure means "no usable tokenizer"
        msg = " ".join(str(err).split())[:200]
        raise InputError(f"model.init_from: {path}: cannot load its tokenizer "
                         f"({type(err).__name__}: {msg})") from None
    if not getattr(base, "is_fast", False):
        raise InputError(f"model.init_from: {path}: its tokenizer is not a fast "
                         f"(tokenizers) one; save it with tokenizer.json")
    backend = Tokenizer.from_str(base.backend_tokenizer.to_str())
    special = {"bos": base.bos_token or BOS, "eos": base.eos_token or EOS,
               "pad": base.pad_token or PAD}
    backend.add_special_tokens([t for t in dict.fromkeys(special.values())
                                if backend.token_to_id(t) is None])
    vocab = backend.get_vocab()
    new = [w for w in dict.fromkeys(words) if w and w not in vocab]
    backend.add_tokens([AddedToken(w, single_word=True, normalized=False) for w in new])
    bos = special["bos"]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, backend.token_to_id(bos))])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=bos, eos_token=special["eos"],
        pad_token=special["pad"], unk_token=base.unk_token,
        clean_up_tokenization_spaces=False, model_input_names=list(MODEL_INPUTS))


def load_pretrained(cfg, tokenizer: PreTrainedTokenizerFast, seed: int = 0
                    ) -> PreTrainedModel:
    """The checkpoint ``cfg.init_from`` with its embeddings resized to ``tokenizer``.

    ``model.dropout`` replaces the checkpoint's dropout rates (:data:`DROPOUT_KEYS`); the
    special-token ids of the config follow ``tokenizer``. The embeddings grow only when
    the tokenizer outgrows them (a padded vocabulary may have room already); new rows are
    drawn from a forked RNG seeded with ``seed`` (the global RNG is untouched): same seed,
    same starting weights, for the original and for every control.

    Parameters
    ----------
    cfg : kgtest.model.ModelConfig
        With ``init_from`` set (an absolute path after :func:`kgtest.experiment.load_experiment`).
    tokenizer : PreTrainedTokenizerFast
        From :func:`pretrained_tokenizer` on the same checkpoint (or the run's saved one).
    seed : int
        Seed of the new rows.

    Raises
    ------
    InputError
        The checkpoint cannot be loaded.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    from kgtest.quiet import quiet_hf

    path = check_checkpoint(cfg.init_from)
    try:
        with quiet_hf():
            config = AutoConfig.from_pretrained(path)
            for key in DROPOUT_KEYS:
                if isinstance(getattr(config, key, None), float):
                    setattr(config, key, float(cfg.dropout))
            model = AutoModelForCausalLM.from_pretrained(path, config=config,
                                                         attn_implementation="sdpa")
    except Exception as err:  # noqa: BLE001 - corrupt weights, unsupported layout...
        msg = " ".join(str(err).split())[:200]
        raise InputError(f"model.init_from: {path}: cannot load the model "
                         f"({type(err).__name__}: {msg})") from None
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:  # a padded vocabulary may already have room for the new ids
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.resize_token_embeddings(len(tokenizer))
    for name in ("bos", "eos", "pad"):
        tid = getattr(tokenizer, f"{name}_token_id")
        setattr(model.config, f"{name}_token_id", tid)
        if model.generation_config is not None:
            setattr(model.generation_config, f"{name}_token_id", tid)
    return model.train()
