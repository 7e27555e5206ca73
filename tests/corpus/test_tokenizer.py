"""Tokenizer: exact round trips, extra words, special tokens, overflow, HF reload."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from kgtest.corpus.tokenizer import SPECIAL_TOKENS, build_tokenizer, encode_pair
from kgtest.errors import InputError

DOCS = ["ann parent bob .", "Q ann parent ? A bob", "Q ann grandparent ? T ",
        "ann parent bob . bob parent cy . A cy"]
WORDS = sorted({w for d in DOCS for w in d.split()})


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=20))
def test_word_round_trip_is_exact(words):
    tok = build_tokenizer(DOCS)
    text = " ".join(words)
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) == len(words)  # one id per word
    assert tok.decode(ids) == text


def test_special_tokens_fixed_ids_and_bos_prepended():
    tok = build_tokenizer(DOCS)
    assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == list(SPECIAL_TOKENS)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    ids = tok("Q ann parent ? A ")["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.eos_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "Q ann parent ? A"


def test_extra_words_get_ids_and_unknown_words_map_to_unk():
    tok = build_tokenizer(DOCS, extra_words=["zed", "ann"])
    assert tok.convert_tokens_to_ids("zed") != tok.unk_token_id
    assert tok.decode(tok.encode("zed parent ann .", add_special_tokens=False)) == \
        "zed parent ann ."
    assert tok.encode("nobody", add_special_tokens=False) == [tok.unk_token_id]
    assert len(tok) == len(SPECIAL_TOKENS) + len(set(WORDS) | {"zed"})


def test_vocabulary_overflow_is_one_line_input_error():
    with pytest.raises(InputError, match="vocabulary overflow") as err:
        build_tokenizer(DOCS, vocab_size=8)
    assert "\n" not in str(err.value) and "vocab_size=8" in str(err.value)
    build_tokenizer(DOCS, vocab_size=len(SPECIAL_TOKENS) + len(WORDS))  # exactly fits


def test_unknown_kind_lists_known():
    with pytest.raises(InputError, match="known: bpe, word"):
        build_tokenizer(DOCS, kind="char")


def test_prompt_and_completion_encoded_separately_concatenate():
    tok = build_tokenizer(DOCS)
    p, c = encode_pair(tok, ["Q ann grandparent ? T ", ""],
                       ["ann parent bob . bob parent cy . A cy", "ann parent bob ."])
    assert p[1] == []
    assert p[0] + c[0] == tok.encode("Q ann grandparent ? T ann parent bob . bob parent cy . A cy",
                                     add_special_tokens=False)


def test_bpe_round_trip_on_unseen_natural_text():
    texts = ["Ann Lee is the parent of Bob Ray.", "Who is the parent of Bob Ray? Ann Lee"] * 10
    tok = build_tokenizer(texts, kind="bpe", extra_words=["Zed Moe"], vocab_size=300)
    assert len(tok) <= 300
    for s in ["Who is the parent of Zed Moe? Ann Lee", "Ünïcode  spaces\tand\nnewlines."]:
        assert tok.decode(tok.encode(s, add_special_tokens=False)) == s
    assert tok.unk_token_id not in tok.encode("Ünïcode", add_special_tokens=False)


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_save_and_auto_reload_give_same_ids(tmp_path, kind):
    tok = build_tokenizer(DOCS, kind=kind, vocab_size=None if kind == "word" else 280)
    tok.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path)
    for text in DOCS:
        assert back(text)["input_ids"] == tok(text)["input_ids"]
    assert (back.bos_token, back.eos_token, back.pad_token, back.unk_token) == \
        (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token)


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_saved_folder_is_portable_to_tokenizers_and_transformers_4(tmp_path, kind):
    """The folder names a class transformers 4.x knows and every loader gives kgtest's ids."""
    import json

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from kgtest.corpus.tokenizer import save_tokenizer

    tok = build_tokenizer(DOCS, kind=kind, vocab_size=None if kind == "word" else 280)
    save_tokenizer(tok, tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and "backend" not in config
    assert {config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")} == \
        set(SPECIAL_TOKENS)
    raw = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    fast = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    auto = AutoTokenizer.from_pretrained(tmp_path)
    for text in DOCS + ["Q cy parent ? A "]:
        want = tok(text)["input_ids"]
        assert want[0] == tok.bos_token_id
        assert raw.encode(text).ids == want  # bos from tokenizer.json's post-processor
        assert fast(text)["input_ids"] == want and auto(text)["input_ids"] == want
        assert fast.encode(text, add_special_tokens=False) == want[1:]
        assert set(fast(text)) == {"input_ids", "attention_mask"}  # 4.x GPT-2 embeds types
    assert (fast.bos_token_id, fast.eos_token_id, fast.pad_token_id, fast.unk_token_id) == \
        (1, 2, 0, 3)
