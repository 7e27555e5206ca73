"""Sweep specs: an experiment spec plus a ``[sweep]`` table of axes, expanded into runs.

::

    [sweep]
    seed = [0, 1, 2]                          # shorthand for run.seed
    "world.params.n_entities" = [50, 200]     # any dotted key of the experiment spec
    "unlearn.methods" = [["NPO"], ["GradDiff"]]
    zip = [["seed", "train.lr"]]              # optional: zip axes of equal length

Axes form a grid (their product) unless listed together in ``zip``. :func:`load_sweep`
writes the spec without its ``[sweep]`` table to ``SWEEP_DIR/experiment.toml`` (with a
relative ``world.rules`` and ``model.init_from`` made absolute), turns each grid point
into ``--set`` overrides of that file, and loads every run's config with
:func:`kgtest.experiment.load_experiment` before anything is launched, so a bad axis
key or value is one error naming the spec.
Each run is keyed by a hash of its fully resolved config (:func:`resolved_key`).

Examples
--------
>>> import tempfile
>>> sweep = load_sweep("tests/data/sweep_tiny.toml", tempfile.mkdtemp())
>>> [r.axes for r in sweep.runs]
[{'run.seed': 0}, {'run.seed': 1}]
>>> sweep.runs[0].overrides
('run.seed=0',)
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from kgtest.config import apply_overrides, config_hash, load_toml
from kgtest.errors import InputError
from kgtest.symbolic.facts import atomic_write_text

__all__ = ["SweepRun", "Sweep", "load_sweep", "resolved_key", "run_name", "dump_toml",
           "toml_value"]

#: Axis shorthands: ``seed`` sweeps ``run.seed``.
SHORTHANDS = {"seed": "run.seed"}


@dataclass(frozen=True)
class SweepRun:
    """One point of the grid: its overrides, resolved-config key and folder name."""

    name: str  # folder name under SWEEP_DIR/runs: <run.name>-seed<seed>-<key>
    key: str  # hash of the fully resolved config (resolved_key)
    overrides: tuple[str, ...]  # --set overrides of experiment.toml that make this run
    axes: dict = field(default_factory=dict)  # axis -> value, in spec order
    seed: int = 0  # run.seed (reports give intervals across seeds within a cell)

    @property
    def cell(self) -> str:
        """The axis values other than the seed: runs of one cell differ only by seed."""
        return ", ".join(f"{k}={_short(v)}" for k, v in self.axes.items()
                         if k != "run.seed") or "all runs"


@dataclass(frozen=True)
class Sweep:
    """An expanded sweep: where it lives and the runs it is made of."""

    spec: Path  # the sweep spec file
    out: Path  # the sweep folder
    experiment: Path  # out/experiment.toml: the spec without [sweep]
    runs: tuple[SweepRun, ...]

    def run_dir(self, run: SweepRun) -> Path:
        """``SWEEP_DIR/runs/<name>``: where a run's stages, records and summary go."""
        return self.out / "runs" / run.name


def resolved_key(cfg) -> str:
    """Hash of every section of a loaded experiment (not where its spec file lives).

    >>> from kgtest.experiment import load_experiment
    >>> a = load_experiment("tests/data/tiny.toml")
    >>> b = load_experiment("tests/data/tiny.toml", ["train.steps=7"])
    >>> len(resolved_key(a)), resolved_key(a) == resolved_key(b)
    (12, False)
    """
    from kgtest.experiment import SECTIONS

    parts = {s: getattr(cfg, s) for s in SECTIONS}
    parts["world"] = dataclasses.replace(cfg.world, base_dir="")
    return config_hash(parts)


def run_name(cfg) -> str:
    """A run's folder name: ``<run.name>-seed<seed>-<resolved key>``."""
    return f"{cfg.run.name}-seed{cfg.run.seed}-{resolved_key(cfg)}"


# --- writing TOML (the experiment file each run loads) ------------------------------------


def _key(k: str) -> str:
    """A bare TOML key when it can be one, else a quoted one."""
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else json.dumps(k)


def toml_value(v) -> str:
    """A value in TOML syntax, as ``--set`` parses it back.

    >>> toml_value(["NPO", 1e-3, True]), toml_value({"a b": 1})
    ('["NPO", 0.001, true]', '{"a b" = 1}')
    """
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise InputError(f"cannot write {type(v).__name__} value {v!r} as TOML")


def dump_toml(data: dict) -> str:
    """Nested dicts as TOML tables (checked to read back equal).

    >>> print(dump_toml({"run": {"seed": 1}, "world": {"params": {"n": 2}}}), end="")
    [run]
    seed = 1
    <BLANKLINE>
    [world.params]
    n = 2
    """
    import tomllib

    lines: list[str] = []

    def table(path: list[str], node: dict) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict)}
        if path and (scalars or not node):
            lines.extend(["", "[" + ".".join(_key(p) for p in path) + "]"])
        lines.extend(f"{_key(k)} = {toml_value(v)}" for k, v in scalars.items())
        for k, v in node.items():
            if isinstance(v, dict):
                table(path + [k], v)

    table([], data)
    text = "\n".join(lines).lstrip("\n") + "\n"
    if tomllib.loads(text) != data:  # e.g. a value TOML cannot hold
        raise InputError("could not write the experiment as TOML faithfully")
    return text


# --- expanding the axes ---------------------------------------------------------------------


def _short(v) -> str:
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (list, dict)) else str(v)


def _flatten(table: dict, prefix: str = "") -> dict:
    """Unquoted dotted keys: ``{"world": {"n": [..]}}`` -> ``{"world.n": [..]}``."""
    out = {}
    for k, v in table.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _axes(table: dict, where: str) -> tuple[dict, list[list[str]]]:
    """Axis name -> values, and the zip groups (each a list of axis names)."""
    table = dict(table)
    zips = table.pop("zip", [])
    axes = {}
    for key, values in _flatten(table).items():
        name = SHORTHANDS.get(key, key)
        if name in axes:
            raise InputError(f"{where}: [sweep] axis '{key}' given twice (as '{name}')")
        if not isinstance(values, list) or not values:
            raise InputError(f"{where}: [sweep] axis '{key}' must be a non-empty list of "
                             f"values, got {values!r}")
        axes[name] = values
    if not axes:
        raise InputError(f"{where}: [sweep] has no axes (e.g. seed = [0, 1, 2])")
    if not (isinstance(zips, list) and all(isinstance(g, list) and g for g in zips)):
        raise InputError(f"{where}: [sweep] zip must be a list of lists of axis names, "
                         f'e.g. zip = [["seed", "train.lr"]], got {zips!r}')
    groups, seen = [], set()
    for group in zips:
        names = []
        for key in group:
            name = SHORTHANDS.get(key, key)
            if name not in axes:
                raise InputError(f"{where}: [sweep] zip names '{key}', which is not an axis "
                                 f"(axes: {', '.join(axes)})")
            if name in seen:
                raise InputError(f"{where}: [sweep] axis '{key}' is in two zip groups")
            seen.add(name)
            names.append(name)
        lengths = {n: len(axes[n]) for n in names}
        if len(set(lengths.values())) > 1:
            raise InputError(f"{where}: [sweep] zipped axes must have equal lengths, got "
                             + ", ".join(f"{n}: {m}" for n, m in lengths.items()))
        groups.append(names)
    return axes, groups


def _grid(axes: dict, groups: list[list[str]]) -> list[dict]:
    """Every grid point as ``{axis: value}`` in spec order (zipped axes move together)."""
    units, done = [], set()
    for name in axes:
        if name in done:
            continue
        group = next((g for g in groups if name in g), [name])
        done.update(group)
        units.append([dict(zip(group, vals, strict=True))
                      for vals in zip(*(axes[n] for n in group), strict=True)])
    points = []
    for combo in itertools.product(*units):
        point = {}
        for part in combo:
            point.update(part)
        points.append({n: point[n] for n in axes})
    return points


def _strip(msg: str, experiment: Path) -> str:
    for prefix in (f"{experiment} (--set): ", f"{experiment}: "):
        msg = msg.removeprefix(prefix)
    return msg


def load_sweep(spec: str | os.PathLike, out: str | os.PathLike, overrides=()) -> Sweep:
    """Read a sweep spec, write ``out/experiment.toml``, expand and validate every run.

    Parameters
    ----------
    spec : path
        An experiment spec with a ``[sweep]`` table (see the module docstring).
    out : path
        The sweep folder (created).
    overrides : sequence of str
        ``key=value`` overrides applied to the experiment before the axes.

    Returns
    -------
    Sweep

    Raises
    ------
    InputError
        ``<spec>: [sweep] ...`` for a missing or malformed ``[sweep]`` table, an unknown
        axis key, a value the config refuses, or two runs with the same config.
    """
    from kgtest.experiment import load_experiment

    spec = Path(spec)
    where = str(spec)
    data = apply_overrides(load_toml(spec), overrides, where=f"{where} (--set)")
    table = data.pop("sweep", None)
    if not isinstance(table, dict):
        raise InputError(f"{where}: no [sweep] table (a sweep spec is an experiment spec plus "
                         "[sweep] axes, e.g. seed = [0, 1, 2])")
    axes, groups = _axes(table, where)
    rules = data.get("world", {}).get("rules")
    if isinstance(rules, str) and rules and not Path(rules).is_absolute():
        data["world"]["rules"] = str((spec.parent / rules).resolve())
    init = data.get("model", {}).get("init_from")
    if isinstance(init, str) and init and not Path(init).expanduser().is_absolute():
        data["model"]["init_from"] = str((spec.parent / init).resolve())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    experiment = out / "experiment.toml"
    text = dump_toml(data)
    if not experiment.exists() or experiment.read_text() != text:
        atomic_write_text(experiment, text)
    for name, values in axes.items():  # an unknown key: name the axis, not a run
        try:
            load_experiment(experiment, [f"{name}={toml_value(values[0])}"])
        except InputError as err:
            raise InputError(f"{where}: [sweep] axis '{name}': "
                             f"{_strip(str(err), experiment)}") from None
    runs, by_key = [], {}
    for point in _grid(axes, groups):
        sets = tuple(f"{k}={toml_value(v)}" for k, v in point.items())
        try:
            cfg = load_experiment(experiment, sets)
        except InputError as err:
            raise InputError(f"{where}: [sweep] run {' '.join(sets)}: "
                             f"{_strip(str(err), experiment)}") from None
        run = SweepRun(name=run_name(cfg), key=resolved_key(cfg), overrides=sets, axes=point,
                       seed=cfg.run.seed)
        if run.key in by_key:
            raise InputError(f"{where}: [sweep] runs {' '.join(by_key[run.key].overrides)} and "
                             f"{' '.join(sets)} have the same config (a repeated axis value?)")
        by_key[run.key] = run
        runs.append(run)
    return Sweep(spec=spec, out=out, experiment=experiment, runs=tuple(runs))
