"""What a run folder records about itself, so a person can trust and reproduce it.

:func:`write_run_info` writes, into a run folder:

- ``spec.toml``: the resolved experiment spec, every default filled in (a key whose
  default is "unset" appears as a comment), loadable by ``kgtest run`` as it is. A rules
  file the spec names is copied beside it, so the folder reproduces on its own.
- ``run.json``: kgtest, Python, numpy, torch, transformers and tokenizers versions, the
  git commit of the kgtest checkout (and whether it had local changes) when there is
  one, the command line, the working directory, and a reproduce command that works
  from any directory (it names ``spec.toml`` by its absolute path).
- ``command.txt``: the command line as given.

:func:`run_info_markdown` renders ``run.json`` for ``summary.md``.

Examples
--------
>>> import tempfile
>>> from kgtest.experiment import load_experiment
>>> cfg = load_experiment("experiments/quickstart.toml", ["train.steps=7"])
>>> run = write_run_info(cfg, tempfile.mkdtemp(), "kgtest run experiments/quickstart.toml")
>>> again = load_experiment(run / "spec.toml")
>>> again.train.steps, again.model.n_layer, again == replace_source(cfg, again)
(7, None, True)
>>> sorted(json.loads((run / "run.json").read_text())["versions"])
['kgtest', 'numpy', 'python', 'tokenizers', 'torch', 'transformers']
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shlex
import subprocess
from pathlib import Path
from typing import Any

from kgtest.config import to_dict
from kgtest.symbolic.facts import atomic_write_text

__all__ = ["SPEC", "RUN_INFO", "resolved_toml", "versions", "git_commit", "write_run_info",
           "read_run_info", "run_info_markdown", "replace_source"]

SPEC = "spec.toml"  # the resolved spec, in every run folder
RUN_INFO = "run.json"  # versions, git commit, command line, reproduce command


# --- a small TOML writer (the values a spec holds: scalars, lists, nested tables) ---------

def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def _table(name: str, data: dict, out: list[str]) -> None:
    out.append(f"[{name}]")
    subtables = []
    for k, v in data.items():
        if v is None:
            out.append(f"# {_key(k)} = (unset: the default)")
        elif isinstance(v, dict) and v:
            subtables.append((k, v))  # e.g. [world.params], [unlearn.params.NPO]
        else:
            out.append(f"{_key(k)} = {_value(v)}")
    out.append("")
    for k, v in subtables:
        _table(f"{name}.{_key(k)}", v, out)


def resolved_toml(cfg, *, header: str = "") -> str:
    """The experiment spec with every default filled in, as TOML text.

    Examples
    --------
    >>> from kgtest.experiment import ExperimentConfig
    >>> text = resolved_toml(ExperimentConfig())
    >>> "[train]" in text and "steps = " in text and "# n_layer = (unset" in text
    True
    """
    data = to_dict(cfg)
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for section in ("run", "world", "split", "corpus", "model", "train", "unlearn",
                    "probes"):
        body = dict(data[section])
        body.pop("base_dir", None)  # set from the spec's own folder when loaded
        _table(section, body, lines)
    return "\n".join(lines).rstrip() + "\n"


def replace_source(cfg, like):
    """``cfg`` with ``like``'s source, overrides and world folder (for comparing specs)."""
    return dataclasses.replace(
        cfg, source=like.source, overrides=like.overrides,
        world=dataclasses.replace(cfg.world, base_dir=like.world.base_dir,
                                  rules=like.world.rules))


# --- versions and provenance ----------------------------------------------------------------

def versions() -> dict[str, str]:
    """Versions of kgtest and the libraries that decide its numbers."""
    import numpy
    import tokenizers
    import torch
    import transformers

    import kgtest

    return {"kgtest": kgtest.__version__, "python": platform.python_version(),
            "numpy": numpy.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def git_commit(path: str | os.PathLike | None = None) -> dict | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``path`` (default:
    the kgtest package), or None outside one (an installed wheel) or without git."""
    where = Path(path) if path else Path(__file__).resolve().parents[1]
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(where), *args], capture_output=True,
                                  text=True, timeout=10, check=True).stdout.strip()

        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha, "dirty": dirty}


def write_run_info(cfg, run_dir: str | os.PathLike, command: str = "") -> Path:
    """Write ``spec.toml``, ``run.json`` and ``command.txt`` into ``run_dir``; return it."""
    run = Path(run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    spec_cfg = cfg
    if cfg.world.rules:  # copy the rules beside spec.toml: the folder reproduces alone
        src = Path(cfg.world.base_dir or ".") / cfg.world.rules
        if src.is_file():
            atomic_write_text(run / src.name, src.read_text(encoding="utf-8"))
            spec_cfg = dataclasses.replace(cfg, world=dataclasses.replace(
                cfg.world, rules=src.name))
    header = (f"Resolved experiment spec: every default filled in.\nFrom {cfg.source or '-'}"
              + (f" with --set {' '.join(cfg.overrides)}" if cfg.overrides else "")
              + "\nReproduce: " + _reproduce(run))
    atomic_write_text(run / SPEC, resolved_toml(spec_cfg, header=header))
    info = {"versions": versions(), "git": git_commit(), "command": command,
            "cwd": os.getcwd(), "spec": str(run / SPEC), "source": cfg.source,
            "overrides": list(cfg.overrides), "reproduce": _reproduce(run)}
    atomic_write_text(run / RUN_INFO, json.dumps(info, indent=1) + "\n")
    if command:
        atomic_write_text(run / "command.txt", command + "\n")
    return run


def _reproduce(run: Path) -> str:
    out = run.parent / f"{run.name}-reproduced"
    return f"kgtest run {shlex.quote(str(run / SPEC))} --out {shlex.quote(str(out))}"


def read_run_info(run_dir: str | os.PathLike) -> dict | None:
    """A run folder's ``run.json`` (None if it has none or it is unreadable)."""
    try:
        return json.loads((Path(run_dir) / RUN_INFO).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def run_info_markdown(run_dirs) -> str:
    """The "Provenance" section of ``summary.md`` for the runs that have ``run.json``."""
    md = []
    for d in run_dirs:
        info = read_run_info(d)
        if not info:
            continue
        v = ", ".join(f"{k} {x}" for k, x in info["versions"].items())
        git = info.get("git")
        commit = (f"{git['commit'][:12]}{' (with local changes)' if git['dirty'] else ''}"
                  if git else "not a git checkout")
        md += [f"- `{Path(d).name}`: {v}; kgtest commit {commit}; spec `{info['spec']}`",
               f"  - command: `{info.get('command') or '-'}` (in `{info.get('cwd')}`)",
               f"  - reproduce from any directory: `{info['reproduce']}`"]
    if not md:
        return ""
    return "\n".join(["## Provenance", ""] + md) + "\n"

