"""Model presets, building, and atomic save / Auto* reload / corrupt-checkpoint errors."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kgtest.config import build
from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.errors import InputError
from kgtest.model import (
    PRESETS,
    ModelConfig,
    build_model,
    head_logits,
    hidden_states,
    load_model,
    save_model,
)

torch.set_num_threads(1)
TOK = build_tokenizer(["Q ann parent ? A bob", "bob parent cy ."])
X = torch.tensor([[1, 4, 5, 6, 7, 8, 9, 2], [1, 9, 5, 10, 11, 2, 0, 0]])  # (2, 8)


def test_presets_and_overrides():
    assert PRESETS["tiny"]["n_layer"] == 2 and PRESETS["tiny"]["d_model"] == 32
    assert ModelConfig(preset="tiny").sizes() == PRESETS["tiny"]
    assert ModelConfig(preset="small", n_layer=6, d_model=64).sizes() == \
        {**PRESETS["small"], "n_layer": 6, "d_model": 64}


def test_bad_model_config_is_input_error():
    known = r"unknown model preset 'huge' \(known: base, small, tiny\)"
    with pytest.raises(InputError, match=known):
        ModelConfig(preset="huge")
    with pytest.raises(InputError, match="not a multiple of n_head"):
        ModelConfig(preset="tiny", d_model=33)
    with pytest.raises(InputError, match=r"spec.toml: .*unknown model preset"):
        build(ModelConfig, {"preset": "huge"}, where="spec.toml", section="model")


@pytest.mark.parametrize("arch,cls", [("gpt2", "GPT2LMHeadModel"), ("llama", "LlamaForCausalLM")])
def test_build_model_sizes_sdpa_and_seed(arch, cls):
    state = torch.get_rng_state()
    m = build_model(ModelConfig(arch=arch, preset="tiny"), TOK, seed=1)
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    assert type(m).__name__ == cls and m.config._attn_implementation == "sdpa"
    assert m.config.vocab_size == len(TOK) and m.config.eos_token_id == TOK.eos_token_id
    assert m.get_input_embeddings().weight.shape == (len(TOK), 32)
    same = build_model(ModelConfig(arch=arch, preset="tiny"), TOK, seed=1)
    other = build_model(ModelConfig(arch=arch, preset="tiny"), TOK, seed=2)
    w = [p for p in m.parameters() if p.dim() == 2][1]
    assert torch.equal(w, [p for p in same.parameters() if p.dim() == 2][1])
    assert not torch.equal(w, [p for p in other.parameters() if p.dim() == 2][1])


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_head_at_hidden_states_equals_full_logits(arch):
    m = build_model(ModelConfig(arch=arch, preset="tiny"), TOK, seed=0).eval()
    with torch.no_grad():
        full = m(X).logits  # (2, 8, V)
        ours = head_logits(m, hidden_states(m, X))
    torch.testing.assert_close(ours, full)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_save_load_round_trip_with_auto_classes(tmp_path, arch):
    m = build_model(ModelConfig(arch=arch, preset="tiny"), TOK, seed=0).eval()
    out = save_model(m, TOK, tmp_path / "model")
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp folder left
    back = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert tok("Q ann parent ? A ")["input_ids"] == TOK("Q ann parent ? A ")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(back(X).logits, m(X).logits, rtol=0, atol=0)
    ours, _ = load_model(out)
    assert not ours.training
    # saving again over an existing folder replaces it whole
    m2 = build_model(ModelConfig(arch=arch, preset="tiny"), TOK, seed=5)
    save_model(m2, TOK, out)
    again, _ = load_model(out)
    assert torch.equal(next(again.parameters()), next(m2.parameters()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_corrupt_or_missing_checkpoint_is_one_line_input_error(tmp_path):
    out = save_model(build_model(ModelConfig(preset="tiny"), TOK), TOK, tmp_path / "model")
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, as after a crash
    with pytest.raises(InputError, match="corrupt model checkpoint") as err:
        load_model(out)
    assert "\n" not in str(err.value) and str(out) in str(err.value)
    with pytest.raises(InputError, match="not a model checkpoint"):
        load_model(tmp_path / "nowhere")
    (out / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="corrupt model checkpoint"):
        load_model(out)
