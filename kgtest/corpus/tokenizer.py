"""Tokenizers for rendered corpora, built with the ``tokenizers`` library.

Two kinds, matching the two corpus surfaces:

- ``"word"`` (the ``symbolic`` surface): one id per whitespace-separated word. The
  vocabulary is every word of the documents plus ``extra_words`` (for instance all entity
  names, so an entity that never occurs in training still has its own id).
- ``"bpe"`` (the ``natural`` surface): a small byte-level BPE trained on the documents.

Both come back as a :class:`transformers.PreTrainedTokenizerFast` with explicit special
tokens ``<pad>`` (id 0), ``<bos>`` (1), ``<eos>`` (2) and ``<unk>`` (3). Encoding with
``add_special_tokens=True`` (the default of ``tokenizer(text)``) prepends ``<bos>``, so a
plain Hugging Face user who writes ``tok(prompt, return_tensors="pt")`` feeds a model the
same ids as kgtest's own training and decoding. Saved with :func:`save_tokenizer`, the
folder declares ``"tokenizer_class": "PreTrainedTokenizerFast"`` and reloads with
``AutoTokenizer.from_pretrained`` in transformers 4.x and 5.x, and with
``tokenizers.Tokenizer.from_file("tokenizer.json")`` (same ids, bos included).

Examples
--------
>>> tok = build_tokenizer(["ann parent bob .", "Q ann parent ? A bob"], extra_words=["cy"])
>>> tok.decode(tok.encode("cy parent ann .", add_special_tokens=False))
'cy parent ann .'
>>> tok("Q ann parent ? A ")["input_ids"][0] == tok.bos_token_id
True
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from kgtest.errors import InputError

__all__ = ["SPECIAL_TOKENS", "build_tokenizer", "encode_pair", "save_tokenizer"]

#: The special tokens, in id order: pad=0, bos=1, eos=2, unk=3.
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = SPECIAL_TOKENS

#: What ``tokenizer(text)`` returns. No ``token_type_ids``: transformers 4.x GPT-2 adds the
#: embedding of token 0 (``<pad>``) at every position when they are passed.
MODEL_INPUTS = ("input_ids", "attention_mask")

DEFAULT_BPE_VOCAB = 1000  # a small BPE is plenty for templated natural text


def _word_tokenizer(texts: Iterable[str], extra_words: Iterable[str],
                    vocab_size: int | None) -> Tokenizer:
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in extra_words:
        vocab.setdefault(word, len(vocab))
    for text in texts:
        for word in text.split():
            vocab.setdefault(word, len(vocab))
    if vocab_size is not None and len(vocab) > vocab_size:
        raise InputError(f"tokenizer: vocabulary overflow: {len(vocab)} words (with "
                         f"{len(SPECIAL_TOKENS)} special tokens) exceed vocab_size={vocab_size}; "
                         f"raise vocab_size or shrink the world")
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tok


def _bpe_tokenizer(texts: Iterable[str], extra_words: Iterable[str],
                   vocab_size: int | None) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size or DEFAULT_BPE_VOCAB,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # any byte stays encodable
        show_progress=False,
    )
    extra = [f" {w}" for w in extra_words]  # seen after a space, as in running text
    tok.train_from_iterator(_chain(texts, extra), trainer=trainer)
    return tok


def _chain(*iterables: Iterable[str]) -> Iterable[str]:
    for it in iterables:
        yield from it


def build_tokenizer(texts: Iterable[str], kind: Literal["word", "bpe"] = "word",
                    extra_words: Iterable[str] = (),
                    vocab_size: int | None = None) -> PreTrainedTokenizerFast:
    """Build a tokenizer from corpus texts.

    Parameters
    ----------
    texts : iterable of str
        The documents' full texts (``doc["text"]``).
    kind : {"word", "bpe"}
        ``"word"``: one id per whitespace-separated word (symbolic surface). ``"bpe"``: a
        byte-level BPE trained on ``texts`` (natural surface).
    extra_words : iterable of str
        Words that must get an id even if no text uses them (e.g. every entity name).
    vocab_size : int, optional
        For ``"word"``, the largest vocabulary allowed (special tokens included); more
        words raise :class:`~kgtest.errors.InputError`. ``None`` means no limit. For
        ``"bpe"``, the target vocabulary size (default 1000).

    Returns
    -------
    transformers.PreTrainedTokenizerFast
        With ``pad``/``bos``/``eos``/``unk`` set; encoding with special tokens prepends bos.

    Examples
    --------
    >>> tok = build_tokenizer(["a b c"], kind="word")
    >>> tok.convert_ids_to_tokens(tok("a c")["input_ids"])
    ['<bos>', 'a', 'c']
    >>> build_tokenizer(["a b c"], vocab_size=5)
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: tokenizer: vocabulary overflow: 7 words ...
    """
    if kind == "word":
        backend = _word_tokenizer(texts, extra_words, vocab_size)
    elif kind == "bpe":
        backend = _bpe_tokenizer(texts, extra_words, vocab_size)
    else:
        raise InputError(f"tokenizer: unknown kind {kind!r} (known: bpe, word)")
    bos_id = backend.token_to_id(BOS)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        clean_up_tokenization_spaces=False,  # keep "bob ." as is: the round trip is exact
        model_input_names=list(MODEL_INPUTS),
    )


def encode_pair(tokenizer: PreTrainedTokenizerFast, prompts: list[str],
                completions: list[str]) -> tuple[list[list[int]], list[list[int]]]:
    """Encode prompts and completions separately, without special tokens.

    Training and evaluation both build ``[bos] + prompt_ids + completion_ids + [eos]``
    from these, so a prompt is tokenised the same way whether or not its answer follows.

    Examples
    --------
    >>> tok = build_tokenizer(["Q ann parent ? A bob"])
    >>> encode_pair(tok, ["Q ann parent ? A "], ["bob"])
    ([[4, 5, 6, 7, 8]], [[9]])
    """
    p = tokenizer(list(prompts), add_special_tokens=False)["input_ids"] if prompts else []
    c = tokenizer(list(completions), add_special_tokens=False)["input_ids"] if completions else []
    return p, c


#: The class name written to ``tokenizer_config.json``: a name transformers 4.x and 5.x
#: both resolve (5.x's own ``TokenizersBackend`` does not exist in 4.x).
PORTABLE_CLASS = "PreTrainedTokenizerFast"


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: str | os.PathLike) -> Path:
    """Save a tokenizer so that transformers 4.x and 5.x both load it.

    ``save_pretrained`` under transformers 5 records the class ``TokenizersBackend``,
    which 4.x (the version most unlearning and interpretability code runs) cannot
    resolve; this rewrites it to ``PreTrainedTokenizerFast`` and writes the special
    tokens in both ``tokenizer_config.json`` and ``special_tokens_map.json``, and names the
    model inputs (no ``token_type_ids``: 4.x GPT-2 would embed them). The ids,
    bos prepended by ``tokenizer(text)``, live in ``tokenizer.json`` itself, so
    ``tokenizers.Tokenizer.from_file`` gives the same ids too.

    Parameters
    ----------
    tokenizer : PreTrainedTokenizerFast
        A tokenizer from :func:`build_tokenizer` (or loaded from a kgtest checkpoint).
    out_dir : path
        The folder (created if missing); usually a model checkpoint folder.

    Returns
    -------
    pathlib.Path
        ``out_dir``.

    Examples
    --------
    >>> import tempfile
    >>> from tokenizers import Tokenizer
    >>> tok = build_tokenizer(["a b c"])
    >>> d = save_tokenizer(tok, tempfile.mkdtemp())
    >>> json.loads((d / "tokenizer_config.json").read_text())["tokenizer_class"]
    'PreTrainedTokenizerFast'
    >>> Tokenizer.from_file(str(d / "tokenizer.json")).encode("a c").ids == tok("a c")["input_ids"]
    True
    """
    from kgtest.symbolic.facts import atomic_write_text

    out = Path(out_dir)
    tokenizer.save_pretrained(out)
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") in ("TokenizersBackend", PORTABLE_CLASS):
        config["tokenizer_class"] = PORTABLE_CLASS  # a model's own class (GPT2...) stays
        config.pop("backend", None)  # a transformers-5 key; 5.x sets it again when loading
    special = {k: str(getattr(tokenizer, k)) for k in ("bos_token", "eos_token", "pad_token",
                                                       "unk_token")
               if getattr(tokenizer, k, None) is not None}
    config.update(special)
    config.setdefault("model_input_names", list(MODEL_INPUTS))
    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out / "special_tokens_map.json", json.dumps(special, indent=2) + "\n")
    return out
