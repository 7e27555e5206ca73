"""Pack finished runs into a small folder that ``kgtest report`` reads back (no weights).

The experiments' reported numbers must be regenerable without retraining, from files small
enough to commit (``experiments/results/<name>/``). :func:`pack` copies, from each run
folder (or from every run of a ``kgtest sweep`` folder, keeping its layout and
``sweep.json``):

- the records, gzip-compressed (``records.jsonl.gz``, written with a fixed timestamp so
  repacking the same rows gives the same bytes);
- the small text files that say how the numbers were made and that the report reads:
  ``run.json``, ``spec.toml``, ``command.txt``, ``seeds.json``, ``summary.md``,
  ``status.json``, each stage's ``config.json`` / ``metrics.json`` / ``unlearn.json`` /
  ``control.json`` / ``stats.json`` / ``summary.txt`` / ``split.json``, the world's
  ``facts.tsv`` and ``rules.dl``, ``train_log.jsonl``: every ``.json``, ``.jsonl``,
  ``.toml``, ``.txt``, ``.md``, ``.dl``, ``.tsv`` file up to :data:`MAX_BYTES`.

It leaves out what can be rebuilt or is large: model checkpoints (any folder holding a
``config.json`` beside weights, and ``checkpoint.pt``), tokenizer files, the corpus
documents (``train.jsonl``, ``eval.jsonl``...), ``records.jsonl`` itself (kept as ``.gz``),
parquet copies, ``summary.json`` and plots (``kgtest report`` rewrites them), and the
``records-<key>/`` stage folder's own copies of what the run folder publishes.

The output is written to a temporary folder beside ``out`` and renamed into place, so an
interrupted pack leaves the previous one intact.

Examples
--------
>>> import tempfile, pathlib
>>> from kgtest.records import new_row, write_records, read_records
>>> run = pathlib.Path(tempfile.mkdtemp()) / "demo-seed0"
>>> _ = write_records([new_row(run_id="r", variant="NPO", probe="direct", fact=1)], run)
>>> _ = (run / "run.json").write_text("{}")
>>> out = pack([run], pathlib.Path(tempfile.mkdtemp()) / "packed")
>>> sorted(p.name for p in (out / "demo-seed0").iterdir())
['records.jsonl.gz', 'run.json']
>>> len(read_records(out / "demo-seed0"))
1
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from kgtest.errors import InputError
from kgtest.records import RECORDS, RECORDS_GZ, records_path

__all__ = ["pack", "MAX_BYTES"]

#: Largest text file copied (bytes); larger ones are left out (records are always kept).
MAX_BYTES = 256 * 1024

_SUFFIXES = {".json", ".jsonl", ".toml", ".txt", ".md", ".dl", ".tsv"}
_SKIP_NAMES = {  # rebuilt from the spec, or large: corpus documents, tokenizers
    "train.jsonl", "eval.jsonl", "unknown.jsonl", "in_context.jsonl", "derivations.jsonl",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
    "records.parquet", "error.txt", "summary.json",  # summary.json: `kgtest report` rewrites it
}
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def _is_checkpoint(folder: Path) -> bool:
    """A model folder (weights beside its config); a stage folder that only keeps a
    resumable ``checkpoint.pt`` is not one: its logs and metrics are kept, the .pt is not."""
    return any(p.suffix in _WEIGHTS and p.name != "checkpoint.pt"
               for p in folder.iterdir() if p.is_file())


def _gzip_copy(src: Path, dst: Path) -> None:
    with src.open("rb") as fin, open(dst, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fout:
        shutil.copyfileobj(fin, fout)


def _pack_run(src: Path, dst: Path) -> int:
    """Copy one run folder's records and small files; returns the files written."""
    rec = records_path(src)
    if rec is None:
        raise InputError(f"{src}: no {RECORDS} (not a finished `kgtest run` folder)")
    dst.mkdir(parents=True, exist_ok=True)
    if rec.name == RECORDS_GZ:
        shutil.copyfile(rec, dst / RECORDS_GZ)
    else:
        _gzip_copy(rec, dst / RECORDS_GZ)
    n = 1
    for root, dirs, files in os.walk(src):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if d not in ("plots", "__pycache__")
                         and not d.startswith((".", "tmp", "records-"))
                         and not _is_checkpoint(here / d))
        for name in sorted(files):
            path = here / name
            if (path.suffix not in _SUFFIXES or name in _SKIP_NAMES or name == RECORDS
                    or name.startswith(".") or path.stat().st_size > MAX_BYTES):
                continue
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            n += 1
    return n


def _runs_of(source: Path) -> list[tuple[Path, Path]]:
    """(run folder, its path relative to the packed folder) for one source."""
    if (source / "sweep.json").is_file():
        import json

        data = json.loads((source / "sweep.json").read_text(encoding="utf-8"))
        runs = [(source / e["dir"], Path(e["dir"])) for e in data.get("runs", [])
                if records_path(source / e["dir"]) is not None]
        if not runs:
            raise InputError(f"{source}: no finished runs in this sweep folder")
        return runs
    return [(source, Path(source.name))]


def pack(sources: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Pack run folders, or one sweep folder, into ``out``; returns ``out``.

    Parameters
    ----------
    sources : sequence of path
        Finished ``kgtest run`` folders (each packed as ``out/<folder name>/``), or one
        ``kgtest sweep`` folder (packed with its ``sweep.json`` and layout, so
        ``kgtest report out`` writes the same per-cell report).
    out : path
        The packed folder; replaced as a whole if it exists.

    Raises
    ------
    InputError
        A source that is not a finished run or sweep folder, two runs with one name, or
        ``out`` inside a source.
    """
    srcs = [Path(s) for s in sources]
    if not srcs:
        raise InputError("pack: no run folders given")
    out = Path(out)
    for s in srcs:
        if not s.is_dir():
            raise InputError(f"{s}: not a folder")
        if out.resolve().is_relative_to(s.resolve()):
            raise InputError(f"{out}: the packed folder cannot be inside {s}")
    sweep = len(srcs) == 1 and (srcs[0] / "sweep.json").is_file()
    pairs = [p for s in srcs for p in _runs_of(s)]
    names = [rel.as_posix() for _, rel in pairs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"pack: two runs named {dup[0]!r}; pack them into different folders")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for src, rel in pairs:
            _pack_run(src, tmp / rel)
        if sweep:
            shutil.copyfile(srcs[0] / "sweep.json", tmp / "sweep.json")
        os.chmod(tmp, 0o755)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, old / out.name)
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
