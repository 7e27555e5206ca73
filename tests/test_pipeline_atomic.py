"""Nothing lost under kills and races: atomic stages, the run-folder lock, stale temporaries.

One tiny run (20 training steps, NPO, the filter control, the direct probe: seconds) is
built once with every stage instrumented; the other tests copy its folder and rerun only
the records stage, or need no model at all.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from kgtest import stages
from kgtest.cli import main
from kgtest.experiment import load_experiment
from kgtest.pipeline import PUBLISHED, RECORDS_MARK, run_experiment
from kgtest.stages import (
    DONE,
    RunBusy,
    clean_stale,
    lock_holder,
    owned_tempdir,
    run_lock,
    run_stage,
)

DATA = Path(__file__).parent / "data"
SPEC_TEXT = (DATA / "sweep_tiny.toml").read_text().split("[sweep]")[0]
FAST = ["train.steps=20", "train.eval_every=10", "unlearn.epochs=1", "probes.n_boot=20"]
ROOT = Path(__file__).resolve().parents[1]


def _cfg(tmp: Path, extra=()):
    spec = tmp / "atomic.toml"
    if not spec.exists():
        spec.write_text(SPEC_TEXT)
    return load_experiment(spec, [*FAST, *extra])


def _snapshot(run_dir: Path, skip: Path) -> dict:
    """Every file outside ``skip`` and outside hidden top-level entries: (size, mtime, inode)."""
    out = {}
    for p in run_dir.rglob("*"):
        rel = p.relative_to(run_dir)
        if rel.parts[0].startswith(".") or p.is_dir():
            continue
        st = p.stat()
        out[str(rel)] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run, each stage watched: ``(run_dir, cfg, built stage names)``."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("atomic")
    run_dir = tmp / "run"
    cfg = _cfg(tmp)
    built, before = [], {}
    prepare, finish = stages.prepare_partial, stages.finish_stage

    def watched_prepare(run, stage, key):
        before[(stage, key)] = _snapshot(Path(run), stages.partial_path(run, stage, key))
        return prepare(run, stage, key)

    def watched_finish(run, stage, key):
        after, was = _snapshot(Path(run), stages.partial_path(run, stage, key)), \
            before[(stage, key)]
        # nothing that was there changed; what appeared are whole stages built meanwhile
        # (the records stage builds the control-* and unlearn-* stages it probes)
        assert {k: after.get(k) for k in was} == was, \
            f"stage {stage} wrote outside its temp folder"
        assert all((Path(run) / Path(k).parts[0] / DONE).exists() for k in set(after) - set(was)), \
            f"stage {stage} wrote outside its temp folder"
        assert lock_holder(run)["pid"] == os.getpid()  # built under the run folder's lock
        built.append(stage)
        return finish(run, stage, key)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stages, "prepare_partial", watched_prepare)
        mp.setattr(stages, "finish_stage", watched_finish)
        run_experiment(cfg, run_dir, command="kgtest run atomic.toml", log=lambda m: None)
    return run_dir, cfg, built


def _copy(finished, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(finished[0], run_dir)
    return run_dir


def _read(run_dir: Path) -> dict:
    return {n: (run_dir / n).read_bytes() for n in PUBLISHED if (run_dir / n).is_file()}


def test_the_records_stage_lists_the_stage_folders_its_records_came_from(finished):
    """stages.json (published beside the records): what the report reads, so folders an
    earlier configuration left in the run folder are not reported."""
    run_dir = finished[0]
    listed = json.loads((run_dir / "stages.json").read_text())["stages"]
    assert sorted(n.rsplit("-", 1)[0] for n in listed) == ["control-filter", "corpus", "model",
                                                            "unlearn-npo"]
    assert all((run_dir / n).is_dir() for n in listed)


# --- each checkpoint of the pipeline goes through the one atomic-stage helper ------------


def test_every_stage_is_built_in_a_temp_folder_and_renamed_into_place(finished):
    run_dir, _, built = finished
    assert set(built) == {"world", "corpus", "model", "control-filter", "unlearn-npo",
                          "records"}
    top = sorted(p.name for p in run_dir.iterdir())
    stage_dirs = [n for n in top if not n.startswith(".") and n not in PUBLISHED
                  and (run_dir / n).is_dir()]
    assert sorted(n.rsplit("-", 1)[0] for n in stage_dirs) == sorted(built)
    for name in stage_dirs:  # whole stages: the marker, and no temporary left inside
        hidden = [p.name for p in (run_dir / name).rglob(".*")]
        assert hidden == [DONE], (name, hidden)
    assert [n for n in top if n.startswith(".")] == [".lock", RECORDS_MARK]
    assert lock_holder(run_dir) is None  # released
    (records_stage,) = [n for n in stage_dirs if n.startswith("records-")]
    assert (run_dir / RECORDS_MARK).read_text() == records_stage
    for n in PUBLISHED:  # the top-level outputs are the records stage's, byte for byte
        src = run_dir / records_stage / n
        if src.is_file():
            assert (run_dir / n).read_bytes() == src.read_bytes(), n
    assert sorted(p.name for p in (run_dir / "plots").iterdir()) == sorted(
        p.name for p in (run_dir / records_stage / "plots").iterdir())


#: Functions that write files, and which argument is the folder or file they write.
WRITERS = {"atomic_write_text": 0, "write_records": 1, "report": 1, "write_world": 2,
           "build_corpus": 4, "train": 4, "train_ensemble": 4, "save_model": 2,
           "_write_config": 1}


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.BinOp, ast.Attribute, ast.Call)):
        node = node.left if isinstance(node, ast.BinOp) else (
            node.value if isinstance(node, ast.Attribute) else node.func)
    return node.id if isinstance(node, ast.Name) else None


def test_the_pipeline_writes_only_into_the_temp_folders_the_stage_helper_gives():
    """Every write in kgtest/pipeline.py targets ``tmp`` (a stage builder's temporary folder,
    from run_stage_ranked); the run folder itself is written only by kgtest.stages.publish."""
    tree = ast.parse((ROOT / "kgtest" / "pipeline.py").read_text())
    writes = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name in WRITERS and len(node.args) > WRITERS[name]:
                writes.append((name, node.lineno, _root_name(node.args[WRITERS[name]])))
    assert len(writes) >= 8  # the stages' writes were found
    outside = [(name, line, root) for name, line, root in writes if root not in ("tmp", "out")]
    assert outside == []
    builders = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                and any(isinstance(a, ast.Call) and getattr(a.func, "id", "") ==
                        "run_stage_ranked" for a in ast.walk(f))]
    assert {f.name for f in builders} == {"world_stage", "corpus_stage", "train_stage",
                                          "ensemble_stage", "records_stage"}


# --- kills between the records and their marker -------------------------------------------


def test_a_kill_while_building_records_leaves_the_published_ones(finished, tmp_path,
                                                                 monkeypatch):
    run_dir = _copy(finished, tmp_path)
    old, mark = _read(run_dir), (run_dir / RECORDS_MARK).read_text()
    import kgtest.report

    def killed(*a, **k):  # records written in the temp folder; killed before the report
        raise KeyboardInterrupt

    monkeypatch.setattr(kgtest.report, "report", killed)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(_cfg(tmp_path, ["probes.n_boot=21"]), run_dir, log=lambda m: None)
    assert _read(run_dir) == old and (run_dir / RECORDS_MARK).read_text() == mark
    assert len(list(run_dir.glob("records-*"))) == 1  # no stage of the new config
    (partial,) = run_dir.glob(".records-*.partial")
    assert (partial / "records.jsonl").exists()  # what the kill left: hidden, unfinished
    with run_lock(run_dir):  # the next run removes it
        pass
    assert not list(run_dir.glob(".records-*.partial"))


def test_a_kill_between_publishing_and_the_marker_is_repaired_by_the_next_run(
        finished, tmp_path, monkeypatch):
    run_dir = _copy(finished, tmp_path)
    old = _read(run_dir)
    new_cfg = _cfg(tmp_path, ["probes.n_boot=21"])
    copy, copies = stages._replace_with_copy, []

    def killed_after_records(src, dest):
        copy(src, dest)
        copies.append(dest.name)
        if dest.name == "records.jsonl":  # new records in place, the marker not yet
            raise KeyboardInterrupt

    monkeypatch.setattr(stages, "_replace_with_copy", killed_after_records)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(new_cfg, run_dir, log=lambda m: None)
    monkeypatch.setattr(stages, "_replace_with_copy", copy)
    assert copies == ["records.jsonl"] and not (run_dir / RECORDS_MARK).exists()
    # the old config's rerun publishes its own records again (not the new rows)
    run_experiment(finished[1], run_dir, log=lambda m: None)
    assert _read(run_dir) == old
    # and the new config's rerun reuses its finished stage: no probe runs again
    import kgtest.probes.probes

    monkeypatch.setattr(kgtest.probes.probes, "evaluate", lambda *a, **k: pytest.fail("rerun"))
    run_experiment(new_cfg, run_dir, log=lambda m: None)
    mark = (run_dir / RECORDS_MARK).read_text()
    assert mark != finished[0].joinpath(RECORDS_MARK).read_text()
    assert (run_dir / "records.jsonl").read_bytes() == (run_dir / mark / "records.jsonl"
                                                         ).read_bytes()
    assert _read(run_dir) == _read(run_dir / mark)


def test_a_failing_rerun_never_replaces_good_outputs(finished, tmp_path, monkeypatch, capsys):
    run_dir = _copy(finished, tmp_path)
    old, mark = _read(run_dir), (run_dir / RECORDS_MARK).read_text()
    import kgtest.probes.probes

    monkeypatch.setattr(kgtest.probes.probes, "evaluate", lambda *a, **k: [])  # no rows
    spec = tmp_path / "atomic.toml"
    spec.write_text(SPEC_TEXT)
    argv = ["run", str(spec), "--out", str(tmp_path / "out"), *sum(
        (["--set", s] for s in [*FAST, "probes.n_boot=21"]), [])]
    (tmp_path / "out").mkdir()
    shutil.copytree(run_dir, tmp_path / "out" / "sweep_tiny-seed0")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kgtest: error: ") and "no rows" in err and "\n" not in err
    assert _read(tmp_path / "out" / "sweep_tiny-seed0") == old
    assert (tmp_path / "out" / "sweep_tiny-seed0" / RECORDS_MARK).read_text() == mark


# --- two processes on one folder -----------------------------------------------------------


def _holder(folder: Path, command: str = "kgtest run held.toml") -> subprocess.Popen:
    """A second process that holds ``folder``'s lock until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from kgtest.stages import run_lock
        with run_lock({str(folder)!r}, command={command!r}):
            print("ready", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_second_run_on_a_locked_folder_exits_2_naming_the_holder(tmp_path, capsys):
    spec = tmp_path / "atomic.toml"
    spec.write_text(SPEC_TEXT)
    run_dir = tmp_path / "out" / "sweep_tiny-seed0"
    proc = _holder(run_dir)
    try:
        assert main(["run", str(spec), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith(f"kgtest: error: {run_dir}: in use by pid "
                                                  f"{proc.pid} on ")
        assert "(kgtest run held.toml)" in err
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # nothing written
        with pytest.raises(RunBusy):
            run_stage(run_dir, "world", "k", lambda tmp: pytest.fail("built while locked"))
    finally:
        proc.kill()
        proc.wait()
    with run_lock(run_dir, wait=5) as d:  # the kernel freed the dead holder's lock
        assert lock_holder(d)["pid"] == os.getpid()


def test_a_waiting_process_gets_the_lock_when_the_holder_exits(tmp_path):
    proc = _holder(tmp_path)
    start = time.monotonic()
    with pytest.raises(RunBusy):
        with run_lock(tmp_path, wait=0.3):
            pass
    assert time.monotonic() - start >= 0.3
    killer = subprocess.Popen(["sh", "-c", f"sleep 0.5; kill -9 {proc.pid}"])
    try:
        with run_lock(tmp_path, wait=30):
            assert proc.wait(5) == -signal.SIGKILL
    finally:
        killer.wait()
        proc.kill()
        proc.wait()


def test_the_lock_is_reentrant_in_one_process(tmp_path):
    with run_lock(tmp_path, command="outer"):
        with run_lock(tmp_path, command="inner"):
            assert lock_holder(tmp_path)["command"] == "outer"
        assert lock_holder(tmp_path) is not None
    assert lock_holder(tmp_path) is None


# --- stale temporaries --------------------------------------------------------------------


def test_stale_temporaries_are_cleaned_when_the_lock_is_free(tmp_path):
    run = tmp_path / "run"
    proc = _holder(run)  # a live owner, whose temporaries these are: nothing is touched
    (run / ".world-abc.partial").mkdir(parents=True)
    (run / ".world-abc.partial" / "facts.tsv").write_bytes(b"x" * 100_000)
    (run / ".records.jsonl.q1w2.tmp").write_text("half")
    (run / ".model-k.partial").mkdir()
    (run / ".model-k.partial" / "checkpoint.pt").write_text("resumable")
    (run / ".model-k.partial" / ".checkpoint.pt.tmp-99").write_text("half")
    (run / ".world-old.old-12").mkdir()
    (run / "world-fine").mkdir()
    try:
        with pytest.raises(RunBusy):
            with run_lock(run):
                pass
        assert (run / ".world-abc.partial").exists()
    finally:
        proc.kill()
        proc.wait()
    with run_lock(run):
        assert sorted(p.name for p in run.iterdir()) == [".lock", ".model-k.partial",
                                                         "world-fine"]
        # resuming a training stage drops its leftovers, keeps its checkpoint
        tmp = stages.prepare_partial(run, "model", "k")
        assert sorted(p.name for p in tmp.iterdir()) == ["checkpoint.pt"]


def test_a_killed_world_build_temp_folder_is_removed_by_the_next_build(tmp_path):
    from kgtest.worlds.export import write_world
    from kgtest.worlds.samplers import sample_world
    from kgtest.worlds.spec import WorldConfig

    code = textwrap.dedent(f"""
        import time
        from kgtest.stages import owned_tempdir
        with owned_tempdir({str(tmp_path)!r}, "world") as tmp:
            (tmp / "facts.tsv").write_text("a\\tr\\tb\\n" * 1000)
            print(tmp, flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    tmp = Path(proc.stdout.readline().strip())
    world = sample_world(WorldConfig(sampler="random_composition",
                                     params={"n_entities": 12, "n_relations": 3}), seed=0)
    try:
        write_world(world, world.close(), tmp_path)  # its owner is alive: kept
        assert tmp.exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert tmp.exists()  # a SIGKILL cleans nothing up
    write_world(world, world.close(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "derivations.jsonl", "facts.tsv", "graph.png", "rules.dl", "stats.json"]


def test_owned_tempdir_is_removed_on_error_and_clean_stale_keeps_the_lock(tmp_path):
    with pytest.raises(RuntimeError):
        with owned_tempdir(tmp_path, "world"):
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    (tmp_path / ".lock").touch()
    (tmp_path / ".records.key").touch()
    assert clean_stale(tmp_path) == []


def test_a_stage_that_fails_is_not_published_and_its_rebuild_starts_clean(tmp_path):
    def bad(tmp):
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_stage(tmp_path, "corpus", "k", bad)
    assert not (tmp_path / "corpus-k").exists()
    seen = []
    d = run_stage(tmp_path, "corpus", "k", lambda tmp: seen.extend(tmp.iterdir()))
    assert seen == [] and sorted(p.name for p in d.iterdir()) == [DONE]
    d2 = run_stage(tmp_path, "corpus", "k", lambda tmp: (tmp / "new.txt").write_text("n"),
                   force=True)  # replacing a finished stage: moved aside, then removed
    assert d2 == d and sorted(p.name for p in d.iterdir()) == [DONE, "new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "corpus-k"]


def test_probing_an_outside_model_is_refused_while_another_process_holds_the_run(
        finished, tmp_path):
    """`kgtest probe` reads, extends and rewrites RUN/records.jsonl: under the run lock, so
    a concurrent run or probe cannot lose its rows."""
    from kgtest.interop.external import probe_model

    run_dir = _copy(finished, tmp_path)
    old = _read(run_dir)
    (model,) = run_dir.glob("model-*/model")
    proc = _holder(run_dir, command="kgtest probe other --as other")
    try:
        with pytest.raises(RunBusy, match=f"in use by pid {proc.pid} .*kgtest probe other"):
            probe_model(model, run_dir, "mine", probes=["direct"], log=lambda m: None)
    finally:
        proc.kill()
        proc.wait()
    assert _read(run_dir) == old and not (run_dir / "external.json").exists()


def test_report_into_a_run_folder_another_process_writes_exits_2(finished, tmp_path, capsys):
    run_dir = _copy(finished, tmp_path)
    old = _read(run_dir)
    proc = _holder(run_dir)
    try:
        assert main(["report", str(run_dir)]) == 2
    finally:
        proc.kill()
        proc.wait()
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"in use by pid {proc.pid}" in err
    assert _read(run_dir) == old
    assert main(["report", str(run_dir), "--out", str(tmp_path / "elsewhere")]) == 0
