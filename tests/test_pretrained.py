"""``model.init_from``: fine-tune an existing checkpoint instead of training from scratch.

The checkpoints here are made by the tests themselves: a tiny GPT-2 (and a tiny Llama)
with a byte-level BPE tokenizer trained on English text, saved with ``save_pretrained``
like any Hugging Face model, so it knows none of the corpus's entity names, has no pad
token and does not prepend bos: what a downloaded checkpoint looks like.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast, LlamaConfig

from kgtest import pretrained
from kgtest.cli import main
from kgtest.corpus.io import read_corpus
from kgtest.errors import InputError
from kgtest.experiment import load_experiment
from kgtest.model import ModelConfig, build_model, load_model
from kgtest.pipeline import corpus_tokenizer, run_experiment
from kgtest.seeds import stage_seed

DATA = Path(__file__).parent / "data"
SPEC_TEXT = (DATA / "sweep_tiny.toml").read_text().split("[sweep]")[0]
FAST = ["train.steps=20", "train.eval_every=10", "unlearn.epochs=1", "probes.n_boot=20",
        'unlearn.controls=["filter", "never_trained"]']
ENGLISH = ["the quick brown fox jumps over the lazy dog", "a question and an answer",
           "reasoning step by step leads to the answer"] * 20


def _english_tokenizer() -> GPT2TokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(ENGLISH, trainer=trainer)
    eot = "<|endoftext|>"
    return GPT2TokenizerFast(tokenizer_object=tok, bos_token=eot, eos_token=eot, unk_token=eot)


def make_checkpoint(out: Path, arch: str = "gpt2", seed: int = 0) -> Path:
    """Save a tiny foreign causal LM (weights + its own tokenizer) to ``out``."""
    tok = _english_tokenizer()
    ids = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=256,
                                           **ids))
    else:
        from transformers import LlamaForCausalLM

        model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=2,
                                             num_key_value_heads=2,
                                             max_position_embeddings=256,
                                             tie_word_embeddings=False, **ids))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "english-gpt2")


def _spec(tmp: Path) -> Path:
    spec = tmp / "init.toml"
    spec.write_text(SPEC_TEXT)
    return spec


# --- the tokenizer and the model (fast) ------------------------------------------------------


def test_entity_names_become_single_tokens_and_text_round_trips(ckpt):
    tok = pretrained.pretrained_tokenizer(ckpt, ["e1", "e12", "ann"])
    base = len(GPT2TokenizerFast.from_pretrained(ckpt))
    assert len(tok) == base + 4  # three names and <pad> (the checkpoint has none)
    assert tok.pad_token == "<pad>" and tok.pad_token_id != tok.eos_token_id
    text = "e1 r0 e12 . e12 r1 ann . A ann"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text  # exact round trip: probes compare decoded text
    pieces = tok.convert_ids_to_tokens(ids)
    assert [p for p in pieces if p in ("e1", "e12", "ann")] == ["e1", "e12", "e12", "ann", "ann"]
    assert tok("e1")["input_ids"] == [tok.bos_token_id, tok.convert_tokens_to_ids("e1")]
    assert "e1" not in tok.convert_ids_to_tokens(tok("xe1 e1x", add_special_tokens=False)
                                                 ["input_ids"])  # whole words only


def test_the_model_keeps_the_checkpoint_weights_and_grows_embeddings(ckpt):
    tok = pretrained.pretrained_tokenizer(ckpt, ["e0", "e1"])
    cfg = ModelConfig(init_from=str(ckpt), dropout=0.0)
    a, b = build_model(cfg, tok, seed=3), build_model(cfg, tok, seed=3)
    saved = load_file(ckpt / "model.safetensors")
    emb = a.get_input_embeddings().weight
    assert emb.shape[0] == len(tok)
    old = saved["transformer.wte.weight"]
    assert torch.equal(emb[:old.shape[0]], old)  # old rows kept; only new ones are drawn
    assert torch.equal(a.transformer.h[1].mlp.c_fc.weight, saved["transformer.h.1.mlp.c_fc.weight"])
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))
    assert a.config.pad_token_id == tok.pad_token_id and a.config.resid_pdrop == 0.0
    c = build_model(cfg, tok, seed=4)  # another seed: other new rows, same old ones
    new_rows = c.get_input_embeddings().weight[old.shape[0]:]
    assert not torch.equal(new_rows, emb[old.shape[0]:])


def test_a_llama_checkpoint_with_an_untied_head_is_resized_too(tmp_path):
    path = make_checkpoint(tmp_path / "llama", arch="llama")
    tok = pretrained.pretrained_tokenizer(path, ["e0", "e1", "e2"])
    m = build_model(ModelConfig(init_from=str(path)), tok, seed=0)
    assert m.get_input_embeddings().weight.shape[0] == len(tok)
    assert m.get_output_embeddings().weight.shape[0] == len(tok)
    out = m(torch.tensor([tok("e0 e1")["input_ids"]])).logits
    assert out.shape[-1] == len(tok) and torch.isfinite(out).all()


# --- validation: one line, at load time ------------------------------------------------------


def test_bad_paths_and_non_causal_checkpoints_are_one_line_errors(tmp_path, ckpt):
    spec = _spec(tmp_path)
    with pytest.raises(InputError, match=r"init\.toml: model\.init_from: .*nope: no such "
                                         r"folder"):
        load_experiment(spec, ["model.init_from=nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a model checkpoint"):
        load_experiment(spec, ["model.init_from=empty"])
    enc = tmp_path / "encoder"
    enc.mkdir()
    (enc / "config.json").write_text('{"model_type": "distilbert"}')
    with pytest.raises(InputError, match="'distilbert' is not a causal language model"):
        load_experiment(spec, [f"model.init_from={enc}"])
    noweights = tmp_path / "noweights"
    shutil.copytree(ckpt, noweights)
    (noweights / "model.safetensors").unlink()
    with pytest.raises(InputError, match="no weights"):
        load_experiment(spec, [f"model.init_from={noweights}"])
    with pytest.raises(InputError, match="model.n_layer: the sizes come from"):
        load_experiment(spec, [f"model.init_from={ckpt}", "model.n_layer=3"])


def test_the_cli_refuses_a_missing_checkpoint_with_status_2(tmp_path, capsys):
    rc = main(["run", str(_spec(tmp_path)), "--out", str(tmp_path / "run"),
               "--set", "model.init_from=/no/such/ckpt"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "/no/such/ckpt: no such folder" in err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").glob("model-*"))


def test_a_relative_path_is_resolved_against_the_spec_folder(tmp_path, ckpt):
    shutil.copytree(ckpt, tmp_path / "base")
    cfg = load_experiment(_spec(tmp_path), ["model.init_from=base"])
    assert cfg.model.init_from == str((tmp_path / "base").resolve())


def test_stage_keys_follow_the_checkpoint_content_not_its_path(tmp_path, ckpt):
    spec = _spec(tmp_path)
    moved = tmp_path / "moved"
    shutil.copytree(ckpt, moved)
    a = load_experiment(spec, [f"model.init_from={ckpt}"])
    b = load_experiment(spec, [f"model.init_from={moved}"])
    scratch = load_experiment(spec)
    keys = ("world", "split", "corpus", "model", "train")
    assert a.key(*keys) == b.key(*keys) != scratch.key(*keys)
    assert a.key("world", "split", "corpus") == scratch.key("world", "split", "corpus")
    before = b.key(*keys)
    make_checkpoint(moved, seed=1)  # other weights, same path
    assert b.key(*keys) != before


# --- the whole pipeline (seconds: 20 steps) --------------------------------------------------


def test_a_run_fine_tunes_the_checkpoint_and_controls_start_from_it(tmp_path, ckpt,
                                                                    monkeypatch):
    torch.set_num_threads(1)
    calls = []
    real = pretrained.load_pretrained

    def spy(cfg, tokenizer, seed=0):
        calls.append((cfg.init_from, seed, len(tokenizer)))
        return real(cfg, tokenizer, seed=seed)

    monkeypatch.setattr(pretrained, "load_pretrained", spy)
    cfg = load_experiment(_spec(tmp_path), [*FAST, f"model.init_from={ckpt}"])
    run = tmp_path / "run"
    summary = run_experiment(cfg, run, log=lambda m: None)
    assert summary.exists() and "never_trained" in summary.read_text()
    init_seed = stage_seed(cfg.run.seed, "model")
    # the original, the filter control and the never-trained control: one checkpoint, one seed
    assert len(calls) == 3 and set(calls) == {(str(ckpt.resolve()), init_seed, calls[0][2])}

    model, tok = load_model(next(run.glob("model-*")) / "model")
    corpus = read_corpus(next(run.glob("corpus-*")))
    for name in corpus.surface.entity_display:  # every entity is one token
        assert len(tok(name, add_special_tokens=False)["input_ids"]) == 1
    assert len(tok) == len(corpus_tokenizer(cfg, corpus)) == model.config.vocab_size
    before = load_file(ckpt / "model.safetensors")["transformer.h.0.attn.c_attn.weight"]
    assert not torch.equal(model.transformer.h[0].attn.c_attn.weight, before)  # fine-tuned
    never, _ = load_model(next(run.glob("control-never-trained-*")) / "model")
    assert torch.equal(never.transformer.h[0].attn.c_attn.weight, before)  # the start point
