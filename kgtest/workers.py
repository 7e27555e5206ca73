"""Worker processes: pinned threads, death with the parent, and a pool for one run's stages.

Two callers share these: the local sweep backend (:mod:`kgtest.sweep.backends`: one run
per worker) and ``kgtest run --jobs N`` (:func:`stage_pool`: the independent stages of
one run, its controls, unlearned variants and probes, in ``N`` workers). Each worker is
a ``spawn``-ed process with one intra-op torch thread (:func:`setup_worker`) that dies
with its parent however the parent dies (:func:`die_with_parent`). A stage pool's workers
also share the run folder's lock, which the parent holds for the whole run
(:func:`kgtest.stages.share_lock`): they may write stages there, while another
``kgtest run`` on the folder is still refused.

Examples
--------
>>> import tempfile
>>> from kgtest.stages import run_lock
>>> run = tempfile.mkdtemp()
>>> with run_lock(run), stage_pool(1, run) as pool:
...     pool.submit(os.getpid).result() != os.getpid()
True
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor

__all__ = ["setup_worker", "die_with_parent", "stage_pool", "in_stage_worker", "WithParent",
           "as_stage_worker"]

_STAGE_WORKER = False  # set in a stage pool's workers (_init_stage_worker)


def in_stage_worker() -> bool:
    """True in a :func:`stage_pool` worker (one intra-op thread; the run's stages there run
    at one thread, as ``kgtest run --jobs N`` runs them, whatever ``train.threads`` says).

    >>> in_stage_worker()
    False
    """
    return _STAGE_WORKER


def setup_worker(threads: int = 1, gpu: str | None = None,
                 gpu_fraction: float | None = None) -> None:
    """Pin a worker process: intra-op threads, and on CUDA its GPU and memory cap.

    Call it before the run (the local pool calls it in each worker's initializer, before
    torch is imported there, so ``OMP_NUM_THREADS`` also reaches OpenMP).

    Parameters
    ----------
    threads : int
        Intra-op threads (``torch.set_num_threads``, ``OMP_NUM_THREADS``,
        ``MKL_NUM_THREADS``).
    gpu : str, optional
        ``CUDA_VISIBLE_DEVICES`` for this process (the local backend's GPU slot); Ray and
        Slurm set it themselves.
    gpu_fraction : float, optional
        Cap on the fraction of the GPU's memory this process may allocate
        (``torch.cuda.set_per_process_memory_fraction``), when CUDA is available.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> setup_worker(threads=1); torch.get_num_threads()
    1
    >>> torch.set_num_threads(before)
    """
    threads = max(1, int(threads))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch

    torch.set_num_threads(threads)
    if gpu_fraction is not None and 0 < gpu_fraction < 1 and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(gpu_fraction, 0)


def die_with_parent(parent: int | None = None, poll_s: float = 1.0) -> None:
    """Make this worker process exit when its parent (the sweep) dies, however it dies.

    On Linux the kernel sends SIGKILL when the parent goes (``prctl(PR_SET_PDEATHSIG)``);
    everywhere, a daemon thread also polls the parent pid and exits when it changes (the
    worker was re-parented). A killed worker's run folder lock goes with it, so a
    re-launched sweep runs the run again.
    """
    parent = os.getppid() if parent is None else parent
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="kgtest-parent-watch", daemon=True).start()


def _init_stage_worker(parent: int, run_dirs: list[str], threads: int) -> None:
    """Pool initializer: die with the parent, pin threads, share the parent's run locks."""
    global _STAGE_WORKER
    die_with_parent(parent)
    setup_worker(threads)
    _STAGE_WORKER = True
    from kgtest.stages import share_lock

    for run_dir in run_dirs:
        share_lock(run_dir, parent)


@contextlib.contextmanager
def stage_pool(jobs: int, run_dir: str | os.PathLike | Sequence[str | os.PathLike], *,
               threads: int = 1) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``jobs`` worker processes that may write stages in ``run_dir`` (a run
    folder, or several: ``kgtest run --seeds M --jobs N`` shares its M folders).

    Hold each folder's lock (:func:`kgtest.stages.run_lock`) around it: the workers share
    them (and refuse to start otherwise). Each worker has ``threads`` intra-op threads and
    dies with this process. On an error or an interrupt in the block, the workers are
    killed at once (their unfinished stages stay as ``.partial`` folders, removed or
    resumed by the next run); on a normal exit the pool is shut down cleanly.
    """
    ctx = mp.get_context("spawn")
    dirs = ([os.fspath(run_dir)] if isinstance(run_dir, str | os.PathLike)
            else [os.fspath(d) for d in run_dir])
    pool = ProcessPoolExecutor(max(1, int(jobs)), mp_context=ctx,
                               initializer=_init_stage_worker,
                               initargs=(os.getpid(), dirs, threads))
    try:
        yield pool
    except BaseException:
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:  # a running stage would otherwise finish before the pool goes
            with contextlib.suppress(Exception):
                p.kill()
        raise
    pool.shutdown(wait=True)


@contextlib.contextmanager
def as_stage_worker() -> Iterator[None]:
    """Run the block as a stage pool's worker would: one intra-op torch thread and
    :func:`in_stage_worker` true (so the stages pick one thread, as in a worker), both
    restored after. For a task this process runs beside its workers (:class:`WithParent`).
    """
    global _STAGE_WORKER
    import torch

    before, was = torch.get_num_threads(), _STAGE_WORKER
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(1)
    _STAGE_WORKER = True
    try:
        yield
    finally:
        _STAGE_WORKER = was
        torch.set_num_threads(before)


class WithParent:
    """A stage pool's ``workers`` processes and this process as one more worker.

    :meth:`submit` queues a task; tasks start first in, first out, on whichever is free:
    a worker process (handed the next task as soon as it finishes one, whatever this
    process is doing) or this process, when it calls :meth:`work_here` (between its
    waits). ``kgtest run --seeds M --jobs N`` uses it with ``N - 1`` workers: N processes
    compute at once, one fewer to start (each imports torch and transformers: seconds)
    and none idle while the others work. A task run here runs as in a worker
    (:func:`as_stage_worker`); its exception (an interrupt aside, which propagates) goes
    to its future, as a worker's would. A worker's failure reaches its future at once,
    and whoever waits on it once this process is between tasks.

    Tasks reach the workers from :meth:`submit` (the caller's thread) and, when a worker
    finishes, from a dispatching thread of this object, never from the pool's own thread
    (on Python >= 3.12 a broken pool runs the callbacks holding the lock its ``submit``
    takes), and never while holding this object's lock. Use it as a context manager:
    leaving it stops that thread and cancels the tasks still queued.

    >>> import tempfile
    >>> from kgtest.stages import run_lock
    >>> run = tempfile.mkdtemp()
    >>> with run_lock(run), stage_pool(1, run) as pool, WithParent(pool, 1) as both:
    ...     there, here = both.submit(os.getpid), both.submit(os.getpid)
    ...     while both.work_here():
    ...         pass
    ...     there.result() != os.getpid() == here.result()
    True
    """

    def __init__(self, pool: ProcessPoolExecutor, workers: int):
        self._pool = pool
        self._free = max(1, int(workers))
        self._queue: deque[tuple[Future, Callable, tuple, dict]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._dispatching, daemon=True,
                                        name="kgtest-with-parent")
        self._thread.start()

    def __enter__(self) -> WithParent:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop dispatching; the tasks still queued are cancelled."""
        with self._lock:
            self._closed = True
            queued = [item[0] for item in self._queue]
            self._queue.clear()
        for fut in queued:
            fut.cancel()
        self._wake.set()
        self._thread.join()

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        """Queue ``fn(*args, **kwargs)``; a free worker process takes it at once."""
        fut: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("WithParent: submit after close")
            self._queue.append((fut, fn, args, kwargs))
        self._dispatch()
        return fut

    def work_here(self) -> bool:
        """Run the next queued task in this process; False if none was queued."""
        with self._lock:
            if not self._queue:
                return False
            fut, fn, args, kwargs = self._queue.popleft()
        if not fut.set_running_or_notify_cancel():
            return True
        try:
            with as_stage_worker():
                result = fn(*args, **kwargs)
        except (KeyboardInterrupt, SystemExit):
            fut.set_exception(CancelledError())
            raise
        except BaseException as e:  # noqa: BLE001 (a worker's failure goes to its future)
            fut.set_exception(e)
        else:
            fut.set_result(result)
        return True

    def _dispatch(self) -> None:
        """Hand queued tasks to free worker processes (not in the pool's thread; the lock
        is not held while the pool takes a task: the pool may be failing its futures)."""
        while True:
            with self._lock:
                if not (self._free and self._queue):
                    return
                fut, fn, args, kwargs = self._queue.popleft()
                self._free -= 1
            inner = None
            if fut.set_running_or_notify_cancel():
                try:
                    inner = self._pool.submit(fn, *args, **kwargs)
                except Exception as e:  # noqa: BLE001 (a broken pool: every task fails)
                    fut.set_exception(e)
            if inner is None:
                with self._lock:
                    self._free += 1
                continue
            inner.add_done_callback(lambda inner, fut=fut: self._finished(inner, fut))

    def _dispatching(self) -> None:
        """The dispatching thread: queued tasks to the workers as they free up."""
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            self._dispatch()

    def _finished(self, inner: Future, fut: Future) -> None:
        """A worker process's task ended (in the pool's thread): pass its outcome on, and
        wake the dispatching thread (it hands the worker the next queued task)."""
        if inner.cancelled():
            fut.set_exception(CancelledError())
        elif inner.exception() is not None:
            fut.set_exception(inner.exception())
        else:
            fut.set_result(inner.result())
        with self._lock:
            self._free += 1
        self._wake.set()
