"""Sweeps: expansion and validation, local and Ray backends, resume, Slurm arrays."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from kgtest.errors import InputError
from kgtest.sweep import load_sweep, run_sweep, sweep_report
from kgtest.sweep.backends import gpu_slot, slurm_executor, slurm_submit
from kgtest.sweep.job import read_status

DATA = Path(__file__).parent / "data"
TINY = DATA / "sweep_tiny.toml"
BASE = TINY.read_text().split("[sweep]")[0]
# seeds 0 and 1 finish; seed 2 asks for more forget targets than the world has, which
# passes validation and fails inside the run (at the corpus stage)
FAILING = """[sweep]
seed = [0, 1, 2]
"split.n_forget" = [6, 6, 100000]
zip = [["seed", "split.n_forget"]]
"""


def _spec(tmp_path: Path, sweep: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(BASE + textwrap.dedent(sweep))
    return path


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]


# --- expansion and validation (fast) ----------------------------------------------------


def test_grid_is_the_product_of_axes_and_zip_moves_axes_together(tmp_path):
    spec = _spec(tmp_path, """
        [sweep]
        seed = [0, 1]
        "world.params.n_entities" = [20, 30]
        "unlearn.methods" = [["NPO"], ["GradDiff"]]
        "train.lr" = [1e-3, 3e-3]
        zip = [["unlearn.methods", "train.lr"]]
    """)
    sweep = load_sweep(spec, tmp_path / "out")
    assert len(sweep.runs) == 2 * 2 * 2
    assert sweep.runs[0].overrides == ("run.seed=0", "world.params.n_entities=20",
                                       'unlearn.methods=["NPO"]', "train.lr=0.001")
    pairs = {(tuple(r.axes["unlearn.methods"]), r.axes["train.lr"]) for r in sweep.runs}
    assert pairs == {(("NPO",), 1e-3), (("GradDiff",), 3e-3)}
    assert len({r.key for r in sweep.runs}) == 8 and len({r.name for r in sweep.runs}) == 8
    assert sweep.runs[1].name.startswith("sweep_tiny-seed0-")
    # cells group runs that differ only by seed
    assert len({r.cell for r in sweep.runs}) == 4
    assert sweep.runs[0].cell == ('world.params.n_entities=20, unlearn.methods=["NPO"], '
                                  "train.lr=0.001")


def test_unquoted_dotted_axis_keys_work_and_the_key_is_the_resolved_config(tmp_path):
    a = load_sweep(_spec(tmp_path, "[sweep]\nseed = [0]\n", "a.toml"), tmp_path / "a")
    # the same config reached through an axis that repeats the base value: the same key
    b = load_sweep(_spec(tmp_path, "[sweep]\nseed = [0]\ntrain.steps = [200]\n", "b.toml"),
                   tmp_path / "b")
    c = load_sweep(_spec(tmp_path, "[sweep]\nseed = [0]\ntrain.steps = [201]\n", "c.toml"),
                   tmp_path / "c")
    assert b.runs[0].axes == {"run.seed": 0, "train.steps": 200}
    assert a.runs[0].key == b.runs[0].key != c.runs[0].key


@pytest.mark.parametrize("sweep, message", [
    ('[sweep]\nseed = [0]\n"world.params.n_entitiez" = [50]\n',
     "[sweep] axis 'world.params.n_entitiez': [world] unknown key 'world.params.n_entitiez' "
     "(did you mean 'world.params.n_entities'?"),
    ('[sweep]\n"train.stepz" = [1, 2]\n', "[sweep] axis 'train.stepz': unknown key 'train.stepz'"),
    ('[sweep]\n"train.steps" = ["many"]\n', "key 'train.steps' must be int, got 'many'"),
    ('[sweep]\nseed = 3\n', "[sweep] axis 'seed' must be a non-empty list"),
    ('[sweep]\nseed = [0, 1]\n"train.lr" = [0.1]\nzip = [["seed", "train.lr"]]\n',
     "zipped axes must have equal lengths, got run.seed: 2, train.lr: 1"),
    ('[sweep]\nseed = [0, 0]\n', "have the same config"),
    ('', "no [sweep] table"),
])
def test_bad_sweeps_are_one_line_errors_naming_the_spec_before_anything_runs(
        tmp_path, sweep, message):
    spec = _spec(tmp_path, sweep)
    with pytest.raises(InputError) as err:
        run_sweep(spec, tmp_path / "out", progress=False, log=lambda m: None)
    text = str(err.value)
    assert text.startswith(f"{spec}: ") and message in text and "\n" not in text
    assert not (tmp_path / "out" / "runs").exists()
    assert not (tmp_path / "out" / "sweep.json").exists()


def test_local_gpu_slots_are_round_robin_with_a_shared_memory_cap():
    assert [gpu_slot(s, ["0", "1"], jobs=4) for s in range(4)] == [
        ("0", 0.5), ("1", 0.5), ("0", 0.5), ("1", 0.5)]
    assert gpu_slot(1, ["GPU-a"], jobs=2, gpu_fraction=0.3) == ("GPU-a", 0.3)
    assert gpu_slot(0, [], jobs=8) == (None, None)


# --- real sweeps (slow: worker processes take seconds to import torch + transformers) ----


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    spec = _spec(tmp, FAILING)
    lines: list[str] = []
    start = time.perf_counter()
    summary = run_sweep(spec, tmp / "local", backend="local", jobs=2, progress=False,
                        log=lines.append)
    return spec, tmp / "local", summary, lines, time.perf_counter() - start


@pytest.mark.slow
def test_local_sweep_records_the_failure_and_finishes_the_others(local_sweep):
    spec, out, summary, lines, _ = local_sweep
    assert summary["counts"] == {"ok": 2, "failed": 1}
    by_seed = {e["seed"]: e for e in summary["runs"]}
    assert json.loads((out / "sweep.json").read_text())["counts"] == summary["counts"]
    for seed in (0, 1):
        run_dir = out / by_seed[seed]["dir"]
        assert by_seed[seed]["status"] == "ok" and (run_dir / "summary.md").exists()
        assert {r["run_id"] for r in _records(run_dir)} == {f"sweep_tiny-seed{seed}"}
        status = read_status(run_dir)
        assert status["status"] == "ok" and status["threads"] == 1  # one thread per worker
    bad = by_seed[2]
    err = bad["error"]
    assert bad["status"] == "failed" and err["type"] == "InputError"
    assert "asked for 100000 forget targets" in err["message"]
    assert "Traceback" in err["traceback"] and "run_experiment" in err["traceback"]
    bad_dir = out / bad["dir"]
    assert "asked for 100000 forget targets" in (bad_dir / "error.txt").read_text()
    assert read_status(bad_dir)["error"]["type"] == "InputError"
    assert not (bad_dir / "summary.md").exists()
    # one line per finished run: status, seconds, folder
    done = [ln for ln in lines if ln.lstrip().startswith(("ok", "failed"))]
    assert len(done) == 3 and any(str(out / bad["dir"]) in ln and "InputError" in ln
                                  for ln in done)


@pytest.mark.slow
def test_resume_skips_finished_runs_and_reruns_the_failed_one(local_sweep, capsys):
    spec, out, first, _, _ = local_sweep
    by_seed = {e["seed"]: out / e["dir"] for e in first["runs"]}
    mtimes = {s: (d / "summary.md").stat().st_mtime_ns for s, d in by_seed.items() if s != 2}
    failed_before = (by_seed[2] / "status.json").stat().st_mtime_ns
    again = run_sweep(spec, out, backend="local", jobs=2, progress=True)
    assert again["counts"] == {"done": 2, "failed": 1}
    for s, m in mtimes.items():
        assert (by_seed[s] / "summary.md").stat().st_mtime_ns == m  # not touched
    assert (by_seed[2] / "status.json").stat().st_mtime_ns > failed_before  # ran again
    text = capsys.readouterr()
    assert "2 finished earlier (skipped), 1 to run" in text.out
    assert "failed" in text.out and "3/3" in text.err  # the line and the tqdm bar


@pytest.mark.slow
def test_sweep_report_aggregates_finished_runs_per_cell_across_seeds(local_sweep, tmp_path):
    _, out, _, _, _ = local_sweep
    summary = sweep_report(out, tmp_path / "report", n_boot=50)
    text = summary.read_text()
    assert "| split.n_forget=6 | 2 / 2 | 0, 1 |" in text
    assert "| split.n_forget=100000 | 0 / 1 |" in text
    assert "## Failed or unfinished runs" in text and "InputError" in text
    cell = (tmp_path / "report" / "cells" / "cell00" / "summary.json")
    assert cell.exists() and "Runs (2)" in text
    with pytest.raises(InputError, match="no sweep.json"):
        sweep_report(tmp_path)


@pytest.mark.slow
def test_ray_sweep_gives_the_same_records_as_the_local_one(local_sweep, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install kgtest[ray]")
    spec, local_out, local, _, _ = local_sweep
    summary = run_sweep(spec, tmp_path / "ray", backend="ray", jobs=2, progress=False,
                        log=lambda m: None)
    assert not ray.is_initialized()  # the local cluster it started is shut down
    assert summary["counts"] == {"ok": 2, "failed": 1}
    ray_runs = {e["name"]: e for e in summary["runs"]}
    for e in local["runs"]:
        assert ray_runs[e["name"]]["status"] == e["status"]  # same names: same config keys
        if e["status"] == "ok":
            assert _records(tmp_path / "ray" / e["dir"]) == _records(local_out / e["dir"])
            assert read_status(tmp_path / "ray" / e["dir"])["threads"] == 1
        else:
            assert ray_runs[e["name"]]["error"]["type"] == e["error"]["type"]


@pytest.mark.slow
def test_a_killed_worker_fails_only_its_own_run(tmp_path):
    """SIGKILL the worker of seed 1 every time it starts: seed 0 still finishes."""
    spec = _spec(tmp_path, "[sweep]\nseed = [0, 1]\n")
    sweep = load_sweep(spec, tmp_path / "out")
    target = sweep.run_dir(sweep.runs[1]) / "status.json"
    killed, stop = set(), threading.Event()

    def killer():
        while not stop.is_set():
            status = read_status(target.parent)
            if status.get("status") == "running" and status["pid"] not in killed:
                killed.add(status["pid"])
                os.kill(status["pid"], signal.SIGKILL)
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        summary = run_sweep(spec, tmp_path / "out", jobs=2, progress=False, log=lambda m: None)
    finally:
        stop.set()
        thread.join()
    by_seed = {e["seed"]: e for e in summary["runs"]}
    assert by_seed[0]["status"] == "ok"
    assert by_seed[1]["status"] == "failed" and len(killed) == 2  # in the pool, then alone
    assert "worker process died" in by_seed[1]["error"]["message"]
    assert read_status(target.parent)["status"] == "failed"  # written by the driver
    assert "worker process died" in (target.parent / "error.txt").read_text()


# --- slurm: what can be checked without a cluster ------------------------------------------


def _fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    """``srun`` (so submitit accepts the node) and an ``sbatch`` that records, not submits."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "sbatch.log"
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" >> {log}\n'
                                    'echo "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


@pytest.mark.slow
def test_slurm_array_parameters_and_per_job_command(tmp_path, monkeypatch):
    pytest.importorskip("submitit", reason="submitit is an optional extra: kgtest[slurm]")
    from submitit.core.utils import DelayedSubmission

    log = _fake_slurm(tmp_path, monkeypatch)
    sweep = load_sweep(_spec(tmp_path, FAILING), tmp_path / "out")
    ex = slurm_executor(tmp_path / "out" / "slurm", partition="gpu", time_min=30,
                        array_parallelism=2, cpus_per_task=2, gpus_per_node=1, mem="8G",
                        setup=["source /opt/venv/bin/activate"], additional={"account": "lab"})
    jobs = slurm_submit(sweep, sweep.runs, ex)
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1", "4242_2"]
    sbatch_file = Path(log.read_text().split()[0])
    text = sbatch_file.read_text()
    for flag in ("--array=0-2%2", "--partition=gpu", "--time=30", "--cpus-per-task=2",
                 "--gpus-per-node=1", "--mem=8G", "--account=lab", "--job-name=kgtest-sweep"):
        assert f"#SBATCH {flag}\n" in text, flag
    assert "export OMP_NUM_THREADS=2\nsource /opt/venv/bin/activate\n" in text
    command = f"{sys.executable} -u -m submitit.core._submit {tmp_path / 'out' / 'slurm'}"
    assert text.rstrip().endswith(command)  # what srun runs in each array task
    # each array task's pickled call: one sweep run
    for j, run in zip(jobs, sweep.runs, strict=True):
        fn = DelayedSubmission.load(j.paths.submitted_pickle).function
        assert fn.args[1] == run.overrides and fn.keywords["name"] == run.name
        assert fn.keywords["threads"] == 2 and Path(fn.args[2]).is_absolute()
    # run array task 2 (the failing run) as its node would, minus srun: it records the error
    env = {**os.environ, "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4245",
           "SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "2", "SLURM_NTASKS": "1",
           "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
           "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "localhost"}
    proc = subprocess.run(command.split(), env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = jobs[2].result()  # read back from the result pickle the task wrote
    assert result["status"] == "failed" and result["error"]["type"] == "InputError"
    assert read_status(sweep.run_dir(sweep.runs[2]))["status"] == "failed"


def test_slurm_without_srun_is_a_one_line_error(tmp_path, monkeypatch):
    pytest.importorskip("submitit", reason="submitit is an optional extra: kgtest[slurm]")
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun here
    with pytest.raises(InputError, match="--backend slurm: Could not detect \"srun\""):
        slurm_executor(tmp_path / "slurm")


# --- kills and races: workers die with the sweep, a held run is never run twice -----------

ROOT = Path(__file__).resolve().parents[1]


def _wait_dead(alive, pids, timeout: float = 5.0) -> list[int]:
    """The pids still alive after ``timeout`` seconds (``alive``: the conftest fixture)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def _python(code: str, tmp_path: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_local_pool_workers_die_when_the_sweep_process_is_killed(tmp_path, alive):
    """SIGKILL the process that owns the pool (as `kill -9` on `kgtest sweep` does): its
    workers, set up by the local backend's initializer, exit within seconds."""
    (tmp_path / "hold.py").write_text(textwrap.dedent("""
        import os, time
        def hold(d):
            open(os.path.join(d, f"worker-{os.getpid()}"), "w").close()
            time.sleep(120)
    """))
    parent = _python(f"""
        import multiprocessing as mp, os, time
        from concurrent.futures import ProcessPoolExecutor
        from kgtest.sweep.backends import _init_local
        import hold
        if __name__ == "__main__":
            ctx = mp.get_context("spawn")
            slots = ctx.Queue()
            for i in range(2):
                slots.put(i)
            pool = ProcessPoolExecutor(2, mp_context=ctx, initializer=_init_local,
                                       initargs=(slots, [], None, 1, 2, os.getpid()))
            futures = [pool.submit(hold.hold, {str(tmp_path)!r}) for _ in range(2)]
            time.sleep(120)
    """, tmp_path)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("worker-*"))) < 2 and time.monotonic() < deadline:
            assert parent.poll() is None
            time.sleep(0.1)
        workers = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
        assert len(workers) == 2 and all(alive(p) for p in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_dead(alive, workers) == []
    finally:
        parent.kill()
        parent.wait()
        for p in tmp_path.glob("worker-*"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(p.name.split("-")[1]), signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("mechanism", ["pdeathsig", "watchdog"])
def test_die_with_parent_exits_when_the_parent_dies(tmp_path, mechanism, alive):
    """The kernel's parent-death signal, and the pid-polling fallback alone (as on macOS)."""
    child = f"""
        import sys, time
        import kgtest.workers as job
        if {mechanism == "watchdog"}:
            job.sys = type("S", (), {{"platform": "darwin"}})  # no prctl: the watchdog alone
        job.die_with_parent(poll_s={0.1 if mechanism == "watchdog" else 3600})
        print("ready", flush=True)
        time.sleep(120)
    """
    parent = _python(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", {textwrap.dedent(child)!r}],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        print(child.pid, flush=True)
        time.sleep(120)
    """, tmp_path)
    try:
        pid = int(parent.stdout.readline())
        assert alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_dead(alive, [pid], timeout=5) == []
    finally:
        parent.kill()
        parent.wait()


def _hold_runs(folders: list[Path], tmp_path: Path) -> subprocess.Popen:
    """Another live process that holds these run folders (as an orphaned worker would)."""
    proc = _python(f"""
        import contextlib, json, os, time
        from kgtest.stages import run_lock
        with contextlib.ExitStack() as stack:
            for f in {[str(f) for f in folders]!r}:
                stack.enter_context(run_lock(f, command="kgtest run (an older sweep)"))
                with open(os.path.join(f, "status.json"), "w") as fh:
                    json.dump({{"status": "running", "pid": os.getpid()}}, fh)
            print("ready", flush=True)
            time.sleep(120)
    """, tmp_path)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_relaunch_never_runs_a_run_another_live_process_holds(tmp_path, monkeypatch):
    from kgtest.sweep.backends import BACKENDS
    from kgtest.sweep.job import job, run_state

    spec = _spec(tmp_path, "[sweep]\nseed = [0, 1]\n")
    sweep = load_sweep(spec, tmp_path / "out")
    folders = [sweep.run_dir(r) for r in sweep.runs]
    holder = _hold_runs(folders, tmp_path)
    try:
        before = [sorted(p.name for p in f.iterdir()) for f in folders]
        lines: list[str] = []
        summary = run_sweep(spec, tmp_path / "out", jobs=2, progress=False, log=lines.append)
        assert [e["status"] for e in summary["runs"]] == ["running", "running"]
        assert {e["holder"]["pid"] for e in summary["runs"]} == {holder.pid}
        assert "2 held by other live processes (skipped), 0 to run" in lines[0]
        # a worker that reaches a held run (the race after the launch check) leaves it too
        r = job(sweep.experiment, sweep.runs[0].overrides, tmp_path / "out" / "runs",
                name=sweep.runs[0].name)
        assert r["status"] == "running" and f"pid {holder.pid}" in r["error"]["message"]
        assert [sorted(p.name for p in f.iterdir()) for f in folders] == before
        assert read_status(folders[0]) == {"status": "running", "pid": holder.pid}
        assert run_state(folders[0]) == "running"
    finally:
        holder.kill()
        holder.wait()
    # the holder died mid-run: its runs are interrupted, and the next launch runs them
    assert run_state(folders[0]) == "interrupted"
    launched = []

    def backend(sweep, todo, **kw):  # records what would run, runs nothing
        launched.extend(r.name for r in todo)
        return iter(())

    monkeypatch.setitem(BACKENDS, "local", backend)
    summary = run_sweep(spec, tmp_path / "out", jobs=2, progress=False, log=lambda m: None)
    assert launched == [r.name for r in sweep.runs]
    assert [e["status"] for e in summary["runs"]] == ["interrupted", "interrupted"]


def test_two_sweeps_on_one_folder_the_second_exits_naming_the_first(tmp_path):
    from kgtest.stages import RunBusy

    spec = _spec(tmp_path, "[sweep]\nseed = [0, 1]\n")
    holder = _hold_runs([tmp_path / "out"], tmp_path)
    try:
        with pytest.raises(RunBusy, match=f"in use by pid {holder.pid} "):
            run_sweep(spec, tmp_path / "out", jobs=2, progress=False, log=lambda m: None)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_packed_sweep_reports_the_same_rows_without_weights(local_sweep, tmp_path):
    """`kgtest pack` keeps what the report reads (gzipped records, stage JSONs) and no
    weights; the packed folder's report equals the original's, row for row."""
    from kgtest.cli import main
    from kgtest.pack import pack

    _, out, _, _, _ = local_sweep
    packed = pack([out], tmp_path / "packed")
    files = [p for p in packed.rglob("*") if p.is_file()]
    assert (packed / "sweep.json").exists()
    assert sum(p.name == "records.jsonl.gz" for p in files) == 2  # the failed run has none
    assert not any(p.suffix in (".pt", ".safetensors", ".bin") for p in files)
    assert not any(p.name in ("records.jsonl", "train.jsonl", "tokenizer.json") for p in files)
    assert any(p.name == "unlearn.json" for p in files)
    assert any(p.name == "metrics.json" for p in files)
    a = sweep_report(out, tmp_path / "a", n_boot=50)
    b = sweep_report(packed, tmp_path / "b", n_boot=50)
    rows = [json.loads((r.parent / "cells" / "cell00" / "summary.json").read_text())
            for r in (a, b)]
    assert rows[0] == rows[1] and rows[0]
    again = pack([out], tmp_path / "packed")  # repacking replaces, byte for byte
    assert sorted(p.read_bytes() for p in again.rglob("*.gz")) == sorted(
        p.read_bytes() for p in files if p.suffix == ".gz")
    assert main(["pack", str(tmp_path / "a"), "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "c").exists()
