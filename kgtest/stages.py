"""Stage folders keyed by config hash, written atomically, one writer per run folder.

Each pipeline stage writes into ``RUN/<stage>-<hash>/`` where ``hash`` covers the config
of that stage *and of every stage before it*, so changing a setting recomputes exactly
what depends on it. Every stage goes through :func:`run_stage`, the one atomic-stage
helper:

1. take the run folder's lock (:func:`run_lock`: an exclusive ``flock`` on ``RUN/.lock``;
   a second process gets one line naming the holder's pid, host and command);
2. build in the temporary sibling ``RUN/.<stage>-<hash>.partial/``;
3. drop temporary leftovers from it, write the ``.done`` marker last, and rename the
   folder into place in one ``os.replace``.

A folder named ``<stage>-<hash>`` therefore always holds a whole stage: an interrupted
run leaves none half-written, and re-running resumes from the last finished stage. A
training stage keeps its resumable state (``checkpoint.pt``) in its ``.partial`` folder
across interruptions; any other ``.partial`` folder, and every temporary file or folder a
killed process left in the run folder, is removed when the next process takes the lock
(:func:`clean_stale`). Outputs that must also sit at the top of the run folder (records,
summary, plots) are copied there from their finished stage by :func:`publish`, each file
renamed into place, with a marker naming the stage written last.

Examples
--------
>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> calls = []
>>> def build(tmp):
...     calls.append(1)
...     (tmp / "x.txt").write_text("hi")
>>> a = run_stage(root, "world", "abc123", build)
>>> b = run_stage(root, "world", "abc123", build)  # reused, not rebuilt
>>> a == b, a.name, len(calls)
(True, 'world-abc123', 1)
>>> sorted(p.name for p in a.iterdir())  # the marker, the outputs, nothing temporary
['.done', 'x.txt']
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from kgtest.errors import InputError

__all__ = ["run_stage", "stage_path", "partial_path", "prepare_partial", "finish_stage",
           "run_lock", "share_lock", "lock_holder", "RunBusy", "clean_stale", "owned_tempdir",
           "clean_orphans", "publish", "published", "DONE", "LOCK"]

DONE = ".done"  # in a finished stage folder: written last, before the rename
LOCK = ".lock"  # in a run folder: flock'ed by the one process writing it; holds its identity
OWNER = ".owner"  # in an owned_tempdir: flock'ed by the process that made it
RESUMABLE = "checkpoint.pt"  # kgtest.checkpoint.CHECKPOINT: a .partial with it is resumed
_ORPHAN_AGE_S = 600  # an owned temp folder without its .owner file is stale after this long


class RunBusy(InputError):
    """Another live process holds the run folder's lock (the CLI exits 2 with this line)."""


# --- the lock ---------------------------------------------------------------------------

_held: dict[str, list] = {}  # realpath -> [fd, depth]: locks this process holds (re-entrant)
_held_guard = threading.Lock()


def _identity(command: str | None) -> dict:
    cmd = command or " ".join(["kgtest", *sys.argv[1:]] if sys.argv else ["python"])
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "command": " ".join(cmd.split())[:300],
            "since": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _read_holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _describe(folder: Path, holder: dict) -> str:
    if not holder.get("pid"):
        who = "another process (starting up)"
    else:
        who = f"pid {holder['pid']} on {holder.get('host', '?')} ({holder.get('command', '?')})"
        who += f" since {holder['since']}" if holder.get("since") else ""
    return (f"{folder}: in use by {who}; wait for it to finish or stop it, then run again "
            f"(finished stages are kept)")


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, *, command: str | None = None,
             wait: float = 0.0, clean: bool = True) -> Iterator[Path]:
    """Hold the exclusive lock of a run folder (``flock`` on ``folder/.lock``).

    Re-entrant within a process (stages take it again under ``run_experiment``). The lock
    file records who holds it (pid, host, command, since); the kernel releases the lock
    when the holder exits, however it dies. The outermost acquisition first removes what
    killed processes left behind (:func:`clean_stale`, unless ``clean=False``).

    Parameters
    ----------
    folder : path
        The run folder (created if missing).
    command : str, optional
        What to tell a second process (default: this process's command line).
    wait : float
        Seconds to wait for a busy lock before giving up (0: give up at once).
    clean : bool
        Remove stale temporary folders and files once the lock is taken.

    Raises
    ------
    RunBusy
        Another process holds the lock: one line naming its pid, host and command.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with run_lock(d, command="kgtest run spec.toml"):
    ...     lock_holder(d)["command"]
    'kgtest run spec.toml'
    >>> lock_holder(d) is None
    True
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(folder)
    with _held_guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is not None:
        try:
            yield folder
        finally:
            with _held_guard:
                entry[1] -= 1
        return
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, folder, wait)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(_identity(command)) + "\n").encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    with _held_guard:
        entry = _held[key] = [fd, 1]
    try:
        if clean:
            clean_stale(folder)
        yield folder
    finally:
        with _held_guard:
            entry[1] -= 1
            last = entry[1] == 0
            if last:
                del _held[key]
        if last:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # releases the flock


def share_lock(folder: str | os.PathLike, holder: int) -> None:
    """In a worker process of ``holder``, which holds ``folder``'s lock: act as holding it.

    For the rest of this process's life :func:`run_lock` on ``folder`` is re-entered, not
    taken (so :func:`run_stage` may write stages there; the holder keeps the one ``flock``,
    and another process is still refused). Call it only in a worker that dies with
    ``holder`` (:func:`kgtest.workers.stage_pool`).

    Raises
    ------
    RunBusy
        ``holder`` does not hold the lock (no process, or another one, does).
    """
    folder = Path(folder)
    who = lock_holder(folder)
    if who is None or who.get("pid") != holder:
        raise RunBusy(f"{folder}: process {holder} does not hold this run folder's lock; "
                      f"a stage worker cannot write here")
    with _held_guard:
        _held.setdefault(os.path.realpath(folder), [None, 1])


def _acquire(fd: int, folder: Path, wait: float) -> None:
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise RunBusy(_describe(folder, _read_holder(folder / LOCK))) from None
            time.sleep(min(0.2, max(0.01, deadline - time.monotonic())))


def lock_holder(folder: str | os.PathLike) -> dict | None:
    """Who holds ``folder``'s lock (``{"pid", "host", "command", "since"}``), or None.

    A lock this process holds counts as held.
    """
    path = Path(folder) / LOCK
    if not path.exists():
        return None
    with _held_guard:
        if os.path.realpath(folder) in _held:
            return _read_holder(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # free (our shared lock goes when fd closes)
    except BlockingIOError:
        return _read_holder(path)
    finally:
        os.close(fd)


# --- stale temporaries ------------------------------------------------------------------


def _is_temp(name: str) -> bool:
    """A hidden temporary name: ``.x.tmp``, ``.x.abc.tmp``, ``.x.tmp-123``, ``.x.old-123``."""
    return name.startswith(".") and (name.endswith(".tmp") or ".tmp-" in name
                                     or ".old-" in name)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale(run_dir: str | os.PathLike) -> list[Path]:
    """Remove what killed processes left in a run folder; call it holding :func:`run_lock`.

    Removes hidden temporary files and folders (``.name.tmp``, ``.name.tmp-*``,
    ``.name.old-*``) and every ``.<stage>-<key>.partial`` folder without training state
    (``checkpoint.pt``) to resume from. Returns the removed paths.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / ".world-k.partial").mkdir(); (d / ".records.jsonl.x1.tmp").touch()
    >>> (d / ".model-k.partial").mkdir(); (d / ".model-k.partial/checkpoint.pt").touch()
    >>> sorted(p.name for p in clean_stale(d)), sorted(p.name for p in d.iterdir())
    (['.records.jsonl.x1.tmp', '.world-k.partial'], ['.model-k.partial'])
    """
    removed = []
    for p in sorted(Path(run_dir).iterdir()):
        stale = _is_temp(p.name) or (p.name.endswith(".partial") and p.name.startswith(".")
                                     and not (p / RESUMABLE).exists())
        if stale:
            _remove(p)
            removed.append(p)
    return removed


@contextlib.contextmanager
def owned_tempdir(parent: str | os.PathLike, name: str) -> Iterator[Path]:
    """A hidden temporary folder ``parent/.<name>.tmp-XXXX``, removed when the block ends.

    For writers outside a locked run folder (``kgtest world build --out DIR``): the folder
    holds a ``.owner`` file this process keeps ``flock``-ed, so :func:`clean_orphans`
    (called here first) removes the folders of writers that died and only those.

    Examples
    --------
    >>> import tempfile
    >>> parent = Path(tempfile.mkdtemp())
    >>> with owned_tempdir(parent, "world") as tmp:
    ...     tmp.name.startswith(".world.tmp-"), clean_orphans(parent, "world")
    (True, [])
    >>> list(parent.iterdir())
    []
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    clean_orphans(parent, name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent))
    fd = os.open(tmp / OWNER, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield tmp
    finally:
        os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)


def clean_orphans(parent: str | os.PathLike, name: str) -> list[Path]:
    """Remove ``parent/.<name>.tmp-*`` folders whose owner (:func:`owned_tempdir`) is dead."""
    removed = []
    for d in Path(parent).glob(f".{name}.tmp-*"):
        if not d.is_dir():
            continue
        try:
            fd = os.open(d / OWNER, os.O_RDONLY)
        except FileNotFoundError:  # just made (owner file not yet there) or pre-dates owners
            if time.time() - d.stat().st_mtime > _ORPHAN_AGE_S:
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its owner is alive
        finally:
            os.close(fd)
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


# --- stages -------------------------------------------------------------------------------


def stage_path(run_dir: str | os.PathLike, stage: str, key: str) -> Path:
    """Where a finished stage lives."""
    return Path(run_dir) / f"{stage}-{key}"


def partial_path(run_dir: str | os.PathLike, stage: str, key: str) -> Path:
    """A stage's in-progress folder (kept across interruptions, for resumable stages)."""
    return Path(run_dir) / f".{stage}-{key}.partial"


def _drop_hidden(folder: Path) -> None:
    """Remove a stage folder's hidden entries (temporaries of killed writers, an old marker)."""
    for p in folder.iterdir():
        if p.name.startswith("."):
            _remove(p)


def prepare_partial(run_dir: str | os.PathLike, stage: str, key: str) -> Path:
    """The ``.partial`` folder to build a stage in (hold :func:`run_lock`).

    One left by a killed build is emptied, unless it holds training state to resume from
    (then only its temporary leftovers go).
    """
    tmp = partial_path(run_dir, stage, key)
    if tmp.exists() and not (tmp / RESUMABLE).exists():
        shutil.rmtree(tmp)
    elif tmp.exists():
        _drop_hidden(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def finish_stage(run_dir: str | os.PathLike, stage: str, key: str) -> Path:
    """Seal a built ``.partial`` folder and rename it into place (hold :func:`run_lock`).

    Temporary leftovers go, the ``.done`` marker is written last, then one rename makes
    the stage visible; a stage it replaces is moved aside first and removed after.
    """
    tmp, final = partial_path(run_dir, stage, key), stage_path(run_dir, stage, key)
    _drop_hidden(tmp)
    (tmp / DONE).write_text(f"{stage} {key}\n")
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        _remove(old)
        os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)
    else:
        os.replace(tmp, final)
    return final


def run_stage(
    run_dir: str | os.PathLike,
    stage: str,
    key: str,
    build: Callable[[Path], object],
    *,
    force: bool = False,
) -> Path:
    """Return ``RUN/<stage>-<key>``, calling ``build(tmp_dir)`` first if it is not finished.

    ``build`` writes everything into ``tmp_dir`` (the ``.partial`` folder; a training
    stage may find its checkpoint there when resuming). On success the folder is sealed
    and renamed into place (:func:`finish_stage`); on failure it stays until the next run
    resumes or removes it. The run folder's lock is held throughout.

    Raises
    ------
    RunBusy
        Another process is writing the run folder.
    """
    final = stage_path(run_dir, stage, key)
    if (final / DONE).exists() and not force:
        return final
    with run_lock(run_dir):
        if (final / DONE).exists() and not force:  # finished while we waited
            return final
        build(prepare_partial(run_dir, stage, key))
        return finish_stage(run_dir, stage, key)


# --- top-level copies ----------------------------------------------------------------------


def _replace_with_copy(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    _remove(tmp)
    if src.is_dir():
        shutil.copytree(src, tmp)
    else:
        shutil.copy2(src, tmp)
    if dest.is_dir() and not dest.is_symlink():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        _remove(old)
        os.replace(dest, old)
        os.replace(tmp, dest)
        _remove(old)
    else:
        os.replace(tmp, dest)


def publish(stage_dir: str | os.PathLike, dest: str | os.PathLike, names: Sequence[str], *,
            marker: str) -> None:
    """Copy a finished stage's outputs to ``dest``, marker last (hold :func:`run_lock`).

    The marker ``dest/marker`` (which holds the stage folder's name) is removed first,
    then each of ``names`` is copied next to its destination and renamed into place (a
    name the stage lacks is removed from ``dest``: it belonged to another config), then
    the marker is written. A reader that finds the marker naming a stage finds that
    stage's files; a kill part-way leaves no marker, and the next run publishes again.

    Examples
    --------
    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> d = run_stage(run, "records", "k", lambda tmp: (tmp / "r.jsonl").write_text("1\\n"))
    >>> publish(d, run, ["r.jsonl", "plots"], marker=".records.key")
    >>> (run / "r.jsonl").read_text(), (run / ".records.key").read_text()
    ('1\\n', 'records-k')
    """
    stage_dir, dest = Path(stage_dir), Path(dest)
    stamp = dest / marker
    stamp.unlink(missing_ok=True)
    for name in names:
        src, out = stage_dir / name, dest / name
        if src.exists():
            _replace_with_copy(src, out)
        elif out.exists() or out.is_symlink():
            _remove(out)
    tmp = stamp.with_name(f".{stamp.name}.tmp-{os.getpid()}")
    tmp.write_text(stage_dir.name)
    os.replace(tmp, stamp)


def published(stage_dir: str | os.PathLike, dest: str | os.PathLike, marker: str) -> bool:
    """Whether ``dest/marker`` says ``stage_dir``'s outputs are the ones in ``dest``."""
    try:
        return (Path(dest) / marker).read_text() == Path(stage_dir).name
    except FileNotFoundError:
        return False
