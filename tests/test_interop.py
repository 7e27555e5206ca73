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


def test_run_info_spec_reproduces_from_any_directory(tmp_path, monkeypatch):
    """spec.toml holds every default, copies the rules and loads back to the same config."""
    import json
    import shutil
    from pathlib import Path

    from kgtest.experiment import load_experiment
    from kgtest.interop.runinfo import replace_source, run_info_markdown, write_run_info

    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "spec"
    src.mkdir()
    shutil.copy(root / "generators" / "family.dl", src / "family.dl")
    (src / "exp.toml").write_text('[world]\nsampler = "family_tree"\nrules = "family.dl"\n'
                                  '[train]\nsteps = 9\n')
    cfg = load_experiment(src / "exp.toml", ["model.preset=tiny"])
    run = write_run_info(cfg, tmp_path / "runs" / "r", "kgtest run exp.toml")
    shutil.rmtree(src)  # the run folder must not need the original spec or rules
    monkeypatch.chdir(tmp_path)
    text = (run / "spec.toml").read_text()
    assert "# n_layer = (unset" in text and "[unlearn]" in text and "rules = \"family.dl\"" in text
    again = load_experiment(run / "spec.toml")
    assert again == replace_source(cfg, again)
    assert again.world.rules == "family.dl" and (run / "family.dl").is_file()
    info = json.loads((run / "run.json").read_text())
    assert set(info["versions"]) >= {"kgtest", "torch", "transformers", "numpy"}
    assert info["command"] == "kgtest run exp.toml" and info["overrides"] == ["model.preset=tiny"]
    assert info["reproduce"].startswith(f"kgtest run {run}/spec.toml --out /")
    assert info["git"] is None or len(info["git"]["commit"]) == 40
    md = run_info_markdown([run])
    assert "## Provenance" in md and info["reproduce"] in md and "torch" in md


def test_version_flag(capsys):
    import kgtest
    from kgtest.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"kgtest {kgtest.__version__}"
