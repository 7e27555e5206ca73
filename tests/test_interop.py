"""Outputs that travel: file modes on shared storage, run metadata, exports, outside models."""

from __future__ import annotations

import os

import pytest

from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.model import ModelConfig, build_model, save_model
from kgtest.symbolic.facts import atomic_write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_atomic_writes_and_model_folders_respect_the_umask(tmp_path, umask_022):
    atomic_write_text(tmp_path / "a.txt", "hi\n")
    tok = build_tokenizer(["a b"])
    model_dir = save_model(build_model(ModelConfig(preset="tiny"), tok), tok, tmp_path / "m")
    assert _mode(tmp_path / "a.txt") == 0o644  # mkstemp alone gives 0600
    assert _mode(model_dir) == 0o755  # mkdtemp alone gives 0700
    assert all(_mode(p) == 0o644 for p in model_dir.iterdir())
    os.umask(0o077)  # a private umask stays private
    atomic_write_text(tmp_path / "b.txt", "hi\n")
    assert _mode(tmp_path / "b.txt") == 0o600
