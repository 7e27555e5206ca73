"""``kgtest run --jobs N``: controls, unlearning and probes in worker processes.

The records must be those of the serial run at one thread, byte for byte (each stage has
its own seed; the rows are put back in the serial order and gated by the original); the
workers share the parent's run-folder lock, which still refuses another ``kgtest run``;
the workers die with their parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from kgtest.experiment import load_experiment
from kgtest.pipeline import run_experiment
from kgtest.stages import RunBusy, run_lock, run_stage, share_lock
from kgtest.workers import stage_pool

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]
SPEC_TEXT = (DATA / "sweep_tiny.toml").read_text().split("[sweep]")[0]
#: every kind of stage (a retrained, a deletion-set and an untrained control; a plain and
#: a deep method) and the quickstart's probes, among them ones that read what the
#: original's probing leaves behind (quantize compares with the original's weights) or
#: what a variant removed (relearn)
SETTINGS = ["train.steps=30", "train.eval_every=15", "train.threads=1", "unlearn.epochs=1",
            "unlearn.controls=[\"filter\", \"ignorance\", \"never_trained\"]",
            "unlearn.deep=[false, true]", "probes.n_boot=20",
            "probes.probes=[\"direct\", \"cot\", \"in_context\", \"latent\", \"quantize\", "
            "\"relearn\", \"utility\"]",
            "probes.relearn.steps=[2]", "probes.relearn.lr=[1e-3]"]


@pytest.mark.slow
def test_jobs_2_gives_the_serial_records_byte_for_byte(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_TEXT)
    cfg = load_experiment(spec, SETTINGS)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' one thread
    try:
        run_experiment(cfg, tmp_path / "serial", log=lambda m: None)
    finally:
        torch.set_num_threads(before)
    lines = []
    run_experiment(cfg, tmp_path / "pool", log=lines.append, jobs=2)
    serial, pool = tmp_path / "serial", tmp_path / "pool"
    assert (serial / "records.jsonl").read_bytes() == (pool / "records.jsonl").read_bytes()
    assert sorted(p.name for p in serial.iterdir() if p.is_dir()) == \
        sorted(p.name for p in pool.iterdir() if p.is_dir())  # the same stage keys
    assert any("probed NPO_deep" in m for m in lines)


def test_a_pool_worker_writes_stages_under_the_parents_lock(tmp_path):
    run = tmp_path / "run-seed0"  # where `kgtest run --set run.name=run --out tmp` writes
    with run_lock(run, command="kgtest run pooled.toml"), stage_pool(1, run) as pool:
        stage = pool.submit(run_stage, run, "probe", "k1", Path.touch).result()
        assert (stage / ".done").exists()
        # another process is refused, with the one-line message of the CLI
        proc = subprocess.run([sys.executable, "-m", "kgtest", "run", str(DATA / "tiny.toml"),
                               "--set", "run.name=run", "--out", str(tmp_path)],
                              capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
        assert proc.returncode == 2
        err = proc.stderr.strip()
        assert "\n" not in err and f"in use by pid {os.getpid()}" in err
        assert "kgtest run pooled.toml" in err


def test_share_lock_refuses_a_folder_its_parent_does_not_hold(tmp_path):
    with pytest.raises(RunBusy, match="does not hold"):
        share_lock(tmp_path, os.getpid())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pool_workers_die_with_their_parent(tmp_path, alive):
    code = textwrap.dedent(f"""
        import os, time
        from kgtest.stages import run_lock
        from kgtest.workers import stage_pool
        if __name__ == "__main__":
            with run_lock({str(tmp_path)!r}), stage_pool(1, {str(tmp_path)!r}) as pool:
                print(pool.submit(os.getpid).result(), flush=True)
                time.sleep(120)
    """)
    script = tmp_path / "parent.py"
    script.write_text(code)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        worker = int(proc.stdout.readline())
        assert alive(worker)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and alive(worker):
            time.sleep(0.1)
        assert not alive(worker), f"worker {worker} outlived its parent"
    finally:
        proc.kill()
        proc.wait()


def test_jobs_out_of_range_is_one_line_and_exit_2(tmp_path, capsys):
    from kgtest.cli import main

    assert main(["run", str(DATA / "tiny.toml"), "--jobs", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "kgtest: error: --jobs: must be between 1 and 64, got 0"
    assert list(tmp_path.iterdir()) == []  # nothing started


def _sh(pool, script: str):
    """Queue a shell script (one minute at most) for a worker or the parent (a function of
    the standard library: a worker need not import this module)."""
    return pool.submit(subprocess.run, ["sh", "-c", script], timeout=60, check=True)


def test_with_parent_gives_each_task_to_whoever_is_free(tmp_path):
    """``kgtest run --seeds M --jobs N``'s pool (:class:`kgtest.workers.WithParent`): the
    parent runs queued tasks between its waits, and a worker that finishes takes the next
    queued task while the parent is still busy with one (here the parent's task can only
    end if the worker, freed by it, runs the task queued after it)."""
    from kgtest.workers import WithParent

    a, b = tmp_path / "a", tmp_path / "b"
    with run_lock(tmp_path), stage_pool(1, tmp_path) as procs, WithParent(procs, 1) as pool:
        first = _sh(pool, f"while [ ! -e {a} ]; do sleep 0.05; done")  # the worker
        second = _sh(pool, f"touch {a}; while [ ! -e {b} ]; do sleep 0.05; done")
        third = pool.submit(Path.touch, b)
        assert not second.running()  # queued: the worker is busy, the parent has not asked
        assert pool.work_here()  # the parent takes `second`, which ends once `third` ran
        second.result(timeout=0)
        first.result(timeout=60), third.result(timeout=60)
        assert not pool.work_here()  # nothing left queued


def test_with_parent_tasks_fail_into_their_futures_and_run_as_in_a_worker(tmp_path):
    from kgtest.workers import WithParent, as_stage_worker, in_stage_worker

    def threads_here():
        return in_stage_worker(), torch.get_num_threads()

    before = torch.get_num_threads()
    c = tmp_path / "c"
    with run_lock(tmp_path), stage_pool(1, tmp_path) as procs, WithParent(procs, 1) as pool:
        busy = _sh(pool, f"while [ ! -e {c} ]; do sleep 0.05; done")  # the worker
        here = _sh(pool, "exit 4")  # queued: the parent runs these three
        mine = pool.submit(threads_here)  # (a local function: a worker could not run it)
        pool.submit(Path.touch, c)
        while pool.work_here():
            pass
        assert here.exception(timeout=0).returncode == 4  # failed here, not raised here
        assert mine.result(timeout=0) == (True, 1)  # one thread, "in a worker", here
        busy.result(timeout=60)
        there = _sh(pool, "exit 3")  # the worker's (or the parent's) failure
        while pool.work_here():
            pass
        assert there.exception(timeout=60).returncode == 3
    assert not in_stage_worker() and torch.get_num_threads() == before  # restored
    with pytest.raises(KeyboardInterrupt), as_stage_worker():
        raise KeyboardInterrupt  # an interrupt is not swallowed
    assert not in_stage_worker() and torch.get_num_threads() == before


def test_with_parent_fails_the_queued_tasks_of_a_broken_pool(tmp_path):
    """A worker killed with a task queued behind it: both futures fail (BrokenProcessPool),
    nothing hangs (the next task is never handed to the pool from the pool's own thread,
    which on Python >= 3.12 fails futures holding the lock its submit takes); leaving the
    block cancels what is still queued."""
    from concurrent.futures.process import BrokenProcessPool

    from kgtest.workers import WithParent

    with run_lock(tmp_path), stage_pool(1, tmp_path) as procs, WithParent(procs, 1) as pool:
        dies = pool.submit(os._exit, 3)
        queued = pool.submit(os.getpid)
        assert isinstance(dies.exception(timeout=60), BrokenProcessPool)
        assert isinstance(queued.exception(timeout=60), BrokenProcessPool)
        later = pool.submit(os.getpid)  # the pool is known broken: fails at once
        assert isinstance(later.exception(timeout=60), BrokenProcessPool)
    with run_lock(tmp_path), stage_pool(1, tmp_path) as procs:
        with WithParent(procs, 1) as pool:
            busy = _sh(pool, "sleep 1")
            left = pool.submit(os.getpid)  # still queued when the block ends
        assert left.cancelled() and busy.result(timeout=60).returncode == 0
