"""``kgtest run SPEC --seeds M``: the M run folders of M separate runs, from one process.

A stacked run of two seeds against two separate ``kgtest run --set run.seed=s`` runs of the
seconds-scale sweep spec: the same stage folders (names are config keys), the same record
rows and columns, and the same outcomes. The original models are trained stacked, so they
differ from the separate runs' by floating-point summation order only: measured on AMD
EPYC (1 thread) over 3 seeds x ~900 records of a 60-step variant of this spec (every
control, NPO, probes direct/cot/utility), every field was identical except ``score``
(teacher-forced log-probabilities), which moved by at most 1.4e-6; here scores may move
by 1e-3 and at most 2% of the records may flip an outcome (a greedy tie broken the other
way on another CPU), while another seed's records differ in most rows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kgtest.cli import main
from kgtest.multiseed import run_dir_of, seed_configs, split_log
from kgtest.train import TrainConfig

#: asserts a trained model's outcome: `make test-arith` reruns it under other CPU arithmetic
trained = pytest.mark.trained

DATA = Path(__file__).parent / "data"
SPEC_TEXT = (DATA / "sweep_tiny.toml").read_text().split("[sweep]")[0]
FAST = ["train.steps=20", "train.eval_every=10", "unlearn.epochs=1", "probes.n_boot=20",
        "train.threads=1", 'unlearn.controls=["filter", "never_trained"]',
        'probes.probes=["direct", "utility"]']
SCORE_TOL = 1e-3
FLIP_TOL = 0.02


def _sets(args: list[str]) -> list[str]:
    return [a for item in args for a in ("--set", item)]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]


def _stages(run: Path) -> list[str]:
    return sorted(d.name for d in run.iterdir() if d.is_dir() and (d / ".done").exists())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multiseed")
    spec = tmp / "spec.toml"
    spec.write_text(SPEC_TEXT)
    assert main(["run", str(spec), "--out", str(tmp / "stacked"), "--seeds", "2",
                 *_sets(FAST)]) == 0
    for s in (0, 1):
        assert main(["run", str(spec), "--out", str(tmp / "separate"),
                     *_sets([*FAST, f"run.seed={s}"])]) == 0
    return spec, tmp / "stacked", tmp / "separate"


def _differences(a: list[dict], b: list[dict]) -> tuple[float, int]:
    """Largest |score| difference and the number of rows whose other fields differ."""
    worst, flips = 0.0, 0
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        assert (x["variant"], x["probe"], x["fact"], x["setting"]) == \
               (y["variant"], y["probe"], y["fact"], y["setting"])
        if x["score"] is not None and y["score"] is not None:
            worst = max(worst, abs(x["score"] - y["score"]))
        rest = {k for k in x if k != "score" and x[k] != y[k]}
        flips += bool(rest)
    return worst, flips


@trained
@pytest.mark.slow
def test_stacked_seeds_write_the_separate_runs_folders_and_records(runs):
    spec, stacked, separate = runs
    cfgs = seed_configs(spec, FAST, 2)
    for cfg in cfgs:
        ours, theirs = run_dir_of(stacked, cfg), run_dir_of(separate, cfg)
        assert _stages(ours) == _stages(theirs)  # every stage key equal
        model = next(ours.glob("model-*"))
        info = json.loads((model / "metrics.json").read_text())
        assert info["stacked"] == {"seeds": [0, 1], "member": cfg.run.seed}  # really stacked
        solo = json.loads((theirs / model.name / "metrics.json").read_text())
        assert set(info) - {"stacked"} == set(solo)
        assert (info["steps"], info["tokens"], info["seeds"]) == \
               (solo["steps"], solo["tokens"], solo["seeds"])
        log = [json.loads(x) for x in (model / "train_log.jsonl").read_text().splitlines()]
        solo_log = [json.loads(x) for x in
                    (theirs / model.name / "train_log.jsonl").read_text().splitlines()]
        assert [sorted(e) for e in log] == [sorted(e) for e in solo_log]  # the same format
        ctl = next(ours.glob("control-filter-*"))
        info = json.loads((ctl / "control.json").read_text())
        solo = json.loads((theirs / ctl.name / "control.json").read_text())
        assert info.pop("stacked")["member"] == cfg.run.seed  # the controls too
        assert info.pop("final_loss") == pytest.approx(solo.pop("final_loss"), rel=1e-3)
        assert {k: v for k, v in info.items() if k != "seconds"} == \
               {k: v for k, v in solo.items() if k != "seconds"}
        unl = next(ours.glob("unlearn-npo-*"))
        info = json.loads((unl / "unlearn.json").read_text())
        solo = json.loads((theirs / unl.name / "unlearn.json").read_text())
        assert info.pop("stacked")["member"] == cfg.run.seed  # unlearning too
        assert info.keys() == solo.keys() and info["steps"] == solo["steps"]
        a, b = _records(ours), _records(theirs)
        assert len(a) == len(b) > 50
        worst, flips = _differences(a, b)
        assert worst <= SCORE_TOL and flips <= FLIP_TOL * len(a), (worst, flips)
    # teeth: seed 0's records against seed 1's differ far beyond the tolerances
    a, b = (_records(run_dir_of(separate, c)) for c in cfgs)
    other = sum(x["fact"] != y["fact"] or x["score"] != y["score"]
                for x, y in zip(a, b, strict=False))
    assert other > 0.5 * min(len(a), len(b))


@trained
@pytest.mark.slow
def test_a_later_single_seed_run_reuses_the_stacked_stages(runs):
    spec, stacked, _ = runs
    run = run_dir_of(stacked, seed_configs(spec, FAST, 1)[0])
    before = {d: (run / d / ".done").stat().st_mtime_ns for d in _stages(run)}
    assert main(["run", str(spec), "--out", str(stacked), *_sets(FAST)]) == 0
    assert {d: (run / d / ".done").stat().st_mtime_ns for d in _stages(run)} == before


def _probes_again(stacked: Path, out: Path, cfgs, **kwargs) -> None:
    """Copy the run folders without their records stages and outputs, and run them again
    (every model stage reused: probes and reports only)."""
    import shutil

    from kgtest.multiseed import run_seeds
    from kgtest.pipeline import drop_records

    for cfg in cfgs:
        run = run_dir_of(out, cfg)
        shutil.copytree(run_dir_of(stacked, cfg), run)
        drop_records(run)
    run_seeds(cfgs, out, log=lambda msg: None, **kwargs)


@trained
@pytest.mark.slow
def test_stacked_probes_give_the_records_of_each_model_alone(runs, tmp_path, monkeypatch):
    """The seeds' probes side by side (greedy decoding stacked across seeds) give the
    records of one seed after another, each model alone: scores within 1e-4 (here equal:
    scoring is not stacked), and the decoding did stack. The stacked forward (baddbmm)
    may round a logit differently from one model's matmul, so on another CPU an exact tie
    could flip a greedy token: at most FLIP_TOL of the rows may differ elsewhere, as for
    the stacked training above (measured: 0 rows differ here and 0 of 12170 in bench_seeds)."""
    import kgtest.stacked_scoring as S

    spec, stacked, _ = runs
    cfgs = seed_configs(spec, FAST, 2)
    rounds = []
    real = S.stacked_greedy
    monkeypatch.setattr(S, "stacked_greedy", lambda *a: rounds.append(1) or real(*a))
    _probes_again(stacked, tmp_path / "stacked", cfgs)
    assert len(rounds) >= 3  # utility's CoT lines and direct, both seeds in each round
    monkeypatch.setattr(S, "stacked_greedy", real)
    _probes_again(stacked, tmp_path / "alone", cfgs, stack_probes=False)
    for cfg in cfgs:
        a = _records(run_dir_of(tmp_path / "stacked", cfg))
        b = _records(run_dir_of(tmp_path / "alone", cfg))
        assert len(a) == len(b) > 50
        worst, flips = _differences(a, b)
        assert worst <= 1e-4 and flips <= FLIP_TOL * len(a), (worst, flips)


@pytest.mark.slow
def test_the_stacked_groups_are_computed_without_building_models(runs, monkeypatch):
    """The parent of ``--jobs N`` computes the stacked groups from settings alone (no model
    built); the settings are the full training job's, each member builds the model the
    training stage builds, and a member's embedding rows are ``len(tokenizer)`` (what a
    shadow reports)."""
    import kgtest.model
    from kgtest.multiseed import control_members, original_members, stacked_groups
    from kgtest.pipeline import corpus_stage, train_job, world_of

    spec, stacked, _ = runs
    cfgs = seed_configs(spec, FAST, 2)
    dirs = [run_dir_of(stacked, c) for c in cfgs]
    worlds = [world_of(c) for c in cfgs]
    built = []
    real = kgtest.model.build_model
    monkeypatch.setattr(kgtest.model, "build_model",
                        lambda *a, **k: built.append(a) or real(*a, **k))
    originals = original_members(cfgs, dirs, worlds, finished=True)
    controls = control_members(cfgs, dirs, worlds, finished=True)
    assert built == []  # settings only
    assert stacked_groups(originals) == [[(str(d), "model", m.key)
                                          for d, m in zip(dirs, originals, strict=True)]]
    assert [len(g) for g in stacked_groups(controls)] == [2]  # the filter controls
    for m, c, d, w in zip(originals, cfgs, dirs, worlds, strict=True):
        job = train_job(c, corpus_stage(c, d, w), w)  # the full path: the group key's source
        assert repr(m.cfg) == repr(job.cfg)
        model = m.build()
        assert len(m.tokenizer) == model.get_input_embeddings().weight.shape[0]
        ref = job.model.state_dict()
        assert all(v.equal(ref[k]) for k, v in model.state_dict().items())
    for m in controls:
        assert len(m.tokenizer) == m.build().get_input_embeddings().weight.shape[0]


@trained
@pytest.mark.slow
def test_jobs_2_writes_the_one_process_runs_files(runs, tmp_path):
    """``--seeds 2 --jobs 2`` (worlds, stacked groups and each seed's rest in worker
    processes, one thread each) writes what ``--jobs 1`` at one thread writes: the same
    stage folders, the same weights and records byte for byte (times aside)."""
    spec, stacked, _ = runs
    assert main(["run", str(spec), "--out", str(tmp_path), "--seeds", "2", "--jobs", "2",
                 *_sets(FAST)]) == 0
    for cfg in seed_configs(spec, FAST, 2):
        ours, theirs = run_dir_of(tmp_path, cfg), run_dir_of(stacked, cfg)
        assert _stages(ours) == _stages(theirs)
        assert (ours / "records.jsonl").read_bytes() == (theirs / "records.jsonl").read_bytes()
        weights = sorted(p.relative_to(ours) for p in ours.glob("*/model/*.safetensors"))
        assert len(weights) >= 3  # the original, a control, an unlearned variant
        for w in weights:
            assert (ours / w).read_bytes() == (theirs / w).read_bytes(), w
        info = json.loads((next(ours.glob("control-filter-*")) / "control.json").read_text())
        assert info["stacked"]["seeds"] == [0, 1]  # still stacked in the worker
        assert info["stacked"]["part"] == [cfg.run.seed]  # the group split over 2 workers


@trained
@pytest.mark.slow
def test_sweep_stack_seeds_writes_the_unstacked_sweeps_folders(tmp_path):
    """``kgtest sweep --stack-seeds``: a cell's seeds run as one ``--seeds M`` into the
    folders the unstacked sweep writes (same names, stages, record rows and columns)."""
    sets = _sets(["train.steps=20", "train.eval_every=10", "train.threads=1"])
    spec = str(DATA / "sweep_tiny.toml")
    assert main(["sweep", spec, "--out", str(tmp_path / "a"), "--jobs", "1", *sets]) == 0
    assert main(["sweep", spec, "--out", str(tmp_path / "b"), "--jobs", "1",
                 "--stack-seeds", *sets]) == 0
    names = sorted(d.name for d in (tmp_path / "a" / "runs").iterdir())
    assert len(names) == 2
    assert sorted(d.name for d in (tmp_path / "b" / "runs").iterdir()) == names
    sweep = json.loads((tmp_path / "b" / "sweep.json").read_text())
    assert [r["status"] for r in sweep["runs"]] == ["ok", "ok"]
    for name in names:
        a, b = tmp_path / "a" / "runs" / name, tmp_path / "b" / "runs" / name
        assert _stages(a) == _stages(b)
        status = json.loads((b / "status.json").read_text())
        assert status["stacked"] == names and status["threads"] == 1  # as run() records
        info = json.loads((next(b.glob("model-*")) / "metrics.json").read_text())
        assert info["stacked"]["seeds"] == [0, 1]  # really stacked
        ra, rb = _records(a), _records(b)
        assert len(ra) == len(rb) > 10 and ra[0].keys() == rb[0].keys()
        worst, flips = _differences(ra, rb)
        assert worst <= SCORE_TOL and flips <= FLIP_TOL * len(ra), (worst, flips)
    assert (tmp_path / "b" / "summary.md").exists()  # the sweep report reads them


def test_stack_seeds_needs_the_local_backend(tmp_path, capsys):
    assert main(["sweep", str(DATA / "sweep_tiny.toml"), "--out", str(tmp_path),
                 "--backend", "ray", "--stack-seeds"]) == 2
    assert "--stack-seeds" in capsys.readouterr().err


def test_split_log_keeps_each_members_entries_up_to_its_last_step(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text("\n".join(json.dumps(e) for e in [
        {"step": 2, "loss": [1.0, 2.0], "active": 2, "lr": 0.1, "tokens": [5, 6],
         "elapsed_s": 0.1},
        {"step": 2, "member": 0, "eval/direct": 1.0},
        {"step": 4, "loss": [1.0, 1.5], "active": 1, "lr": 0.05, "tokens": [5, 12],
         "elapsed_s": 0.2}]) + "\n")
    zero, one = split_log(p, 2, [2, 4])
    assert zero == [{"step": 2, "loss": 1.0, "lr": 0.1, "tokens": 5, "elapsed_s": 0.1},
                    {"step": 2, "eval/direct": 1.0}]
    assert [e["step"] for e in one] == [2, 4] and one[1]["tokens"] == 12


def test_bad_seed_counts_are_one_line_errors(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_TEXT)
    assert main(["run", str(spec), "--out", str(tmp_path), "--seeds", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seeds" in err[0]


class _DiesWhenUnpickled:
    """A world whose unpickling in a worker process kills that process (as an OOM kill)."""

    def __reduce__(self):
        return os._exit, (3,)


def test_a_dead_worker_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    """``--seeds 2 --jobs 2``: a worker killed mid-task (here: the task drawing a world)
    ends the run with one line naming the task, exit 2, no traceback. (The parent, which
    works too, takes the first world; its "drawing" here lasts until the worker, which
    takes the other, has died.)"""
    import multiprocessing
    import time

    import kgtest.multiseed
    import kgtest.pipeline

    def until_the_worker_died(*a):
        deadline = time.monotonic() + 60
        while multiprocessing.active_children() and time.monotonic() < deadline:
            time.sleep(0.05)

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_TEXT)
    monkeypatch.setattr(kgtest.pipeline, "world_of", lambda cfg: _DiesWhenUnpickled())
    monkeypatch.setattr(kgtest.pipeline, "world_stage", until_the_worker_died)
    monkeypatch.setattr(kgtest.pipeline, "corpus_stage", lambda *a, **k: None)
    monkeypatch.setattr(kgtest.multiseed, "original_members", lambda *a, **k: [])
    assert main(["run", str(spec), "--out", str(tmp_path / "out"), "--seeds", "2",
                 "--jobs", "2", *_sets(FAST)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "worker process died during 'world of seed" in err[0]
    assert "Traceback" not in err[0]


def test_a_worker_dead_between_tasks_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    """A worker killed while the parent works (no task awaited: the next submission finds
    the pool broken) also ends the run with one line, exit 2, no traceback."""
    import multiprocessing
    import time

    import kgtest.multiseed
    import kgtest.pipeline

    def kill_workers(*a, **k):
        for p in multiprocessing.active_children():
            p.kill()
        time.sleep(2)  # the pool notices its dead worker

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_TEXT)
    monkeypatch.setattr(kgtest.pipeline, "corpus_stage", kill_workers)
    monkeypatch.setattr(kgtest.multiseed, "original_members", lambda *a, **k: [])
    assert main(["run", str(spec), "--out", str(tmp_path / "out"), "--seeds", "2",
                 "--jobs", "2", *_sets(FAST)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "worker process died" in err
    assert "Traceback" not in err


def test_a_stage_worker_trains_at_one_thread(monkeypatch, tmp_path):
    """In a stage pool's worker (``--seeds M --jobs N``), stacked and lone training pin one
    intra-op thread whatever ``train.threads`` says (N workers x T threads oversubscribe)."""
    import kgtest.ensemble
    import kgtest.pipeline
    import kgtest.train
    import kgtest.workers
    from kgtest.corpus.tokenizer import build_tokenizer
    from kgtest.model import ModelConfig, build_model

    docs = [{"prompt": "Q a r ? A ", "completion": "b"}]
    tok = build_tokenizer(["Q a r ? A b"])
    cfg = TrainConfig(steps=1, warmup=0, progress=False, device="cpu", threads=3)
    for worker in (False, True):
        pinned = []
        real = kgtest.train.pinned_threads

        def spy(n, real=real, pinned=pinned):
            pinned.append(n)
            return real(1)  # the spy pins nothing more than one thread itself

        monkeypatch.setattr(kgtest.workers, "_STAGE_WORKER", worker)
        monkeypatch.setattr(kgtest.train, "pinned_threads", spy)
        monkeypatch.setattr(kgtest.ensemble, "pinned_threads", spy)
        kgtest.ensemble.train_ensemble(
            [build_model(ModelConfig(preset="tiny"), tok, seed=s) for s in (0, 1)], tok, docs,
            cfg, tmp_path / f"e{worker}")
        kgtest.train.train(build_model(ModelConfig(preset="tiny"), tok, seed=0), tok, docs,
                           cfg, tmp_path / f"t{worker}")
        assert pinned == ([1, 1] if worker else [3, 3])
        # and what a stage records as its threads is what ran
        assert kgtest.pipeline.run_threads(3) == (1 if worker else 3)


def test_one_seed_keeps_kgtest_run_jobs_pool(tmp_path, monkeypatch):
    """``--seeds 1 --jobs N`` has nothing to stack: the seed's remaining stages run as
    ``kgtest run --jobs N`` would (its own stage pool), not at one job (review, session 7)."""
    import kgtest.multiseed as ms
    import kgtest.pipeline

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_TEXT)
    cfgs = seed_configs(spec, FAST, 1)
    seen = []
    for name in ("world_of", "world_stage", "corpus_stage"):
        monkeypatch.setattr(kgtest.pipeline, name, lambda *a, **k: None)
    for name in ("train_originals", "train_controls", "unlearn_methods"):
        monkeypatch.setattr(ms, name, lambda *a, **k: None)
    monkeypatch.setattr(kgtest.pipeline, "run_experiment",
                        lambda cfg, d, **k: seen.append(k["jobs"]) or d)
    ms.run_seeds(cfgs, tmp_path / "out", jobs=2, log=lambda *_: None)
    assert seen == [2]


def test_no_stack_probes_reaches_run_seeds_and_needs_seeds(tmp_path, monkeypatch, capsys):
    """``--no-stack-probes`` turns the side-by-side probes off (run_seeds' stack_probes);
    without ``--seeds`` it is a one-line error, exit 2."""
    import kgtest.multiseed

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_TEXT)
    seen = []
    monkeypatch.setattr(kgtest.multiseed, "run_seeds",
                        lambda cfgs, out, **kw: seen.append(kw["stack_probes"]) or [])
    for flag, want in (([], True), (["--no-stack-probes"], False)):
        assert main(["run", str(spec), "--out", str(tmp_path), "--seeds", "2", *flag]) == 0
        assert seen.pop() is want
    assert main(["run", str(spec), "--out", str(tmp_path), "--no-stack-probes"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-stack-probes" in err[0] and "--seeds" in err[0]
