"""The caching promise: a changed setting recomputes its stage and every stage after it,
and nothing before it.

One seconds-scale run (the sweep test's tiny spec cut to 20 training steps) is built,
then rerun in the same folder with one setting changed at a time; each stage is a folder
``<stage>-<key>`` whose ``.done`` marker's modification time says whether it was rebuilt.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kgtest.experiment import load_experiment
from kgtest.pipeline import run_experiment

DATA = Path(__file__).parent / "data"
SPEC_TEXT = (DATA / "sweep_tiny.toml").read_text().split("[sweep]")[0]
FAST = ["train.steps=20", "train.eval_every=10", "unlearn.epochs=1", "probes.n_boot=20",
        "train.threads=1"]
STAGES = ("world", "corpus", "model", "control-filter", "unlearn-npo", "records")


def _stages(run: Path) -> dict[str, set[tuple[str, int]]]:
    """Stage prefix -> {(folder name, build time in ns)} of the finished stage folders."""
    out: dict[str, set[tuple[str, int]]] = {s: set() for s in STAGES}
    for d in run.iterdir():
        if not d.is_dir():
            continue
        prefix = next((s for s in STAGES if d.name.startswith(s + "-")), None)
        if prefix is not None:
            files = [p for p in d.rglob("*") if p.is_file()]
            out[prefix].add((d.name, min(p.stat().st_mtime_ns for p in files)))
    return out


def _run(spec: Path, run: Path, *changes: str) -> dict[str, set[tuple[str, int]]]:
    cfg = load_experiment(spec, [*FAST, *changes])
    run_experiment(cfg, run, log=lambda m: None)
    return _stages(run)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    spec = tmp / "spec.toml"
    spec.write_text(SPEC_TEXT)
    run = tmp / "run"
    return spec, run, _run(spec, run)


def _new(before: dict, after: dict) -> set[str]:
    """Stages that gained a folder (a rebuilt stage gets a new key, hence a new folder)."""
    return {s for s in STAGES if after[s] - before[s]}


@pytest.mark.slow
def test_each_stage_ran_once(first):
    _, _, stages = first
    assert all(len(stages[s]) == 1 for s in STAGES), stages


@pytest.mark.slow
@pytest.mark.parametrize("change, rebuilt", [
    ("probes.n_boot=30", {"records"}),
    ("probes.probes=[\"direct\", \"utility\"]", {"records"}),
    ("unlearn.epochs=2", {"unlearn-npo", "records"}),
    ("train.lr=0.002", {"model", "control-filter", "unlearn-npo", "records"}),
    ("split.n_validation=3", {"corpus", "model", "control-filter", "unlearn-npo", "records"}),
    ("world.params.n_entities=22", set(STAGES)),
])
def test_a_change_rebuilds_its_stage_and_what_follows_only(first, change, rebuilt):
    spec, run, before = first
    after = _run(spec, run, change)
    assert _new(before, after) == rebuilt
    for s in set(STAGES) - rebuilt:  # the earlier stages were reused, not rewritten
        assert before[s] <= after[s]
    again = _run(spec, run)  # back to the first settings: every stage is found, none rebuilt
    assert again == after


def test_a_results_scheme_bump_rekeys_training_and_what_follows_only(monkeypatch):
    """Run folders made by older code are recomputed from training on, never reused: the
    world and corpus keys stay, every key that covers ``train`` changes."""
    import kgtest.experiment as experiment

    cfg = load_experiment(Path("tests/data/tiny.toml"))
    sections = {"world": ("world",), "corpus": ("world", "split", "corpus"),
                "model": ("world", "split", "corpus", "model", "train"),
                "records": ("world", "split", "corpus", "model", "train", "unlearn", "probes")}
    before = {s: cfg.key(*p) for s, p in sections.items()}
    monkeypatch.setattr(experiment, "RESULTS_SCHEME", experiment.RESULTS_SCHEME + 1)
    after = {s: cfg.key(*p) for s, p in sections.items()}
    assert [s for s in sections if before[s] != after[s]] == ["model", "records"]


def test_the_world_key_follows_the_rules_files_content_not_its_path(tmp_path):
    """An edited rules file is another world (a cached one is not reused); the same rules
    at another path are the same world."""
    import shutil

    spec = Path("experiments/dual_use.toml")
    rules = (spec.parent / "../generators/dual_use.dl").resolve()
    for d in ("a/generators", "a/experiments", "b/generators", "b/experiments"):
        (tmp_path / d).mkdir(parents=True)
    for d in ("a", "b"):
        shutil.copy(rules, tmp_path / d / "generators" / "dual_use.dl")
        (tmp_path / d / "experiments" / spec.name).write_text(  # the experiment, no [sweep]
            spec.read_text().split("[sweep]")[0])
    key = {d: load_experiment(tmp_path / d / "experiments" / spec.name).key("world")
           for d in ("a", "b")}
    assert key["a"] == key["b"]  # the same content elsewhere
    edited = tmp_path / "b" / "generators" / "dual_use.dl"
    edited.write_text(edited.read_text() + "\n% an edit\n")
    assert load_experiment(tmp_path / "b" / "experiments" / spec.name).key("world") != key["a"]
