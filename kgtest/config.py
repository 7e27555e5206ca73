"""Typed, frozen, per-stage config from TOML, with ``--set key=value`` overrides.

Each pipeline stage owns a frozen dataclass whose fields all have defaults and a one-line
comment. :func:`build` turns a TOML table into that dataclass and refuses, with the file
and the dotted key, an unknown key (with a did-you-mean), a wrong type, or a value a
field's ``validate`` rejects. Nested dataclass fields become nested TOML tables.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Train:
...     steps: int = 100  # optimiser steps
...     lr: float = 1e-3  # peak learning rate
>>> build(Train, {"steps": 5}, where="spec.toml", section="train")
Train(steps=5, lr=0.001)
>>> build(Train, {"stepz": 5}, where="spec.toml", section="train")
Traceback (most recent call last):
...
kgtest.errors.InputError: spec.toml: unknown key 'train.stepz' (did you mean 'train.steps'? ...)
>>> apply_overrides({"train": {"steps": 5}}, ["train.steps=7", "train.lr=0.01"])
{'train': {'steps': 7, 'lr': 0.01}}
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kgtest.errors import InputError

__all__ = ["build", "load_toml", "apply_overrides", "to_dict", "config_hash", "nonneg",
           "in_range", "check_seed", "check_name", "MAX_STEPS", "MAX_SEED", "max_threads",
           "RESULTS_SCHEME"]

#: Part of every stage key from training on (model, controls, unlearning, records): bumped
#: when the code computes something different from the same config, so that run folders
#: made by older code are recomputed, never reused. 2 (2026-11-29): early stopping asks
#: only the stop half of the held-out facts, every stage runs at the run's thread count,
#: the probes score only the other half (issues 10 and 11). Keys without ``train`` (world,
#: corpus) do not carry it.
RESULTS_SCHEME = 2

#: Most optimiser steps any loop accepts (a tiny model runs ~50 steps/s: weeks of work).
MAX_STEPS = 10**7
#: Seeds are integers in [0, MAX_SEED] (numpy and torch both accept them).
MAX_SEED = 2**32 - 1
#: Largest integer any key accepts at all (numpy/torch work with 64-bit integers).
_MAX_INT = 2**63 - 1


def load_toml(path: str | os.PathLike) -> dict:
    """Read a TOML file; unreadable or malformed files raise :class:`InputError`."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise InputError(f"{p}: spec file not found") from None
    except OSError as err:
        raise InputError(f"{p}: cannot read spec ({err.strerror or err})") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{p}: invalid TOML: {err}") from None


def _parse_value(text: str) -> Any:
    """A ``--set`` value: TOML syntax when it parses (numbers, bools, lists), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: Iterable[str], where: str = "--set") -> dict:
    """Apply ``a.b.c=value`` overrides to a nested dict (returns a new dict)."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise InputError(f"{where}: expected key=value, got {item!r}")
        key, _, text = item.partition("=")
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"{where}: {key!r}: {part!r} is not a table")
        node[parts[-1]] = _parse_value(text.strip())
    return out


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check (and gently coerce: int -> float, list -> tuple) a value against a type."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            if arm is type(None) and value is None:
                return True, None
            ok, v = _type_ok(value, arm)
            if ok:
                return True, v
        return False, value
    if origin is typing.Literal:
        return value in typing.get_args(tp), value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False, value
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        out = []
        for x in value:
            ok, v = _type_ok(x, item_tp)
            if not ok:
                return False, value
            out.append(v)
        return True, tuple(out) if origin is tuple else out
    if origin is dict:
        return isinstance(value, dict), value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if isinstance(tp, type):
        return isinstance(value, tp), value
    return True, value


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def build(cls: type, data: dict | None, *, where: str, section: str = ""):
    """Build the frozen dataclass ``cls`` from a TOML table, checking keys and types.

    Fields may carry ``metadata={"check": fn}``; ``fn(value)`` returns an error string
    (or None) for values of the right type but out of range.
    """
    data = {} if data is None else data
    prefix = f"{section}." if section else ""
    if not isinstance(data, dict):
        raise InputError(f"{where}: '{section}' must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            hint = did_you_mean(key, fields, prefix=prefix)
            raise InputError(f"{where}: unknown key '{prefix}{key}' "
                             f"({hint}known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build(tp, value, where=where, section=f"{prefix}{name}")
            continue
        bad = _insane_number(value)
        if bad:
            raise InputError(f"{where}: key '{prefix}{name}{bad[0]}' {bad[1]}")
        ok, coerced = _type_ok(value, tp)
        if not ok:
            raise InputError(f"{where}: key '{prefix}{name}' must be {_type_name(tp)}, "
                             f"got {_short(value)}")
        check = fields[name].metadata.get("check")
        if check is None and (name == "seed" or name.endswith("_seed")):
            check = check_seed
        msg = check(coerced) if check else None
        if msg:
            raise InputError(f"{where}: key '{prefix}{name}' {msg}, got {_short(coerced)}")
        kwargs[name] = coerced
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:  # __post_init__ cross-field checks
        raise InputError(f"{where}: [{section or cls.__name__}] {err}") from None


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters, so an error stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _insane_number(value: Any, path: str = "") -> tuple[str, str] | None:
    """``(sub-key, why)`` when a value, or any number inside its tables and lists, is unusable.

    NaN and infinity are never a setting; an integer beyond 64 bits cannot reach numpy or
    torch. Both are refused wherever they appear, nested tables and lists included.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return path, f"must be a finite number, got {value}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_INT:
        return path, f"is out of range, got {_short(value)}"
    items = (value.items() if isinstance(value, dict) else
             ((f"[{i}]", v) for i, v in enumerate(value)) if isinstance(value, (list, tuple))
             else ())
    for k, v in items:
        found = _insane_number(v, f"{path}{k if str(k).startswith('[') else f'.{k}'}")
        if found:
            return found
    return None


def in_range(lo: float | None = None, hi: float | None = None):
    """A ``check`` for a number, or every number of a list, in ``[lo, hi]`` (None: open).

    >>> in_range(1, 10)(11), in_range(1, 10)((2, 0)), in_range(0)(3)
    ('must be <= 10', 'must hold values >= 1', None)
    """
    def check(value) -> str | None:
        many = isinstance(value, (list, tuple))
        for v in value if many else (value,):
            if v is None:
                continue
            if lo is not None and v < lo:
                return f"must {'hold values ' if many else 'be '}>= {lo}"
            if hi is not None and v > hi:
                return f"must {'hold values ' if many else 'be '}<= {hi}"
        return None

    return check


def check_seed(value) -> str | None:
    """The ``check`` every ``seed`` key gets by default: an integer in [0, MAX_SEED]."""
    if value is not None and not 0 <= value <= MAX_SEED:
        return f"must be a seed in [0, {MAX_SEED}]"
    return None


def max_threads() -> int:
    """Most CPU threads a setting may ask for: 4 per core, and never less than 256."""
    return max(256, 4 * (os.cpu_count() or 1))


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,99}")


def check_name(value: str) -> str | None:
    """A ``check`` for names that become folder names (``run.name``): no ``/``, no ``..``.

    Letters, digits and ``. _ + = -``, starting with a letter or digit, at most 100
    characters, so a name can never leave or nest inside the output folder.

    >>> check_name("tiny-v2"), check_name("../x")
    (None, 'must be a plain folder name (letters, digits, . _ + = -; at most 100)')
    """
    if not _NAME.fullmatch(value) or ".." in value:
        return "must be a plain folder name (letters, digits, . _ + = -; at most 100)"
    return None


def nonneg(value) -> str | None:
    """A ``check`` for sizes: refuse negatives."""
    if value is not None and value < 0:
        return "must be >= 0"
    return None


def positive(value) -> str | None:
    """A ``check`` for counts and rates: an int >= 1, a float > 0 (None: unset, allowed);
    a tuple (a list in TOML) must be non-empty and hold such values.

    >>> positive(0), positive(0.0), positive(2), positive((1, 0)), positive(())
    ('must be >= 1', 'must be > 0', None, 'must be >= 1', 'must not be empty')
    """
    if isinstance(value, tuple):
        return "must not be empty" if not value else next(
            (e for e in map(positive, value) if e), None)
    if value is None or value > 0:
        return None
    return "must be >= 1" if isinstance(value, int) else "must be > 0"


def close_match(name: str, known: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The known name closest to a mistyped one, if any is close enough.

    >>> close_match("filtr", ["filter", "ignorance"]), close_match("zzz", ["filter"])
    ('filter', None)
    """
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(name: str, known: Iterable[str], *, prefix: str = "",
                 cutoff: float = 0.6) -> str:
    """The hint every "unknown name" error carries: ``"did you mean 'x'? "`` or ``""``.

    >>> did_you_mean("n_bot", ["n_boot", "probes"], prefix="probes.")
    "did you mean 'probes.n_boot'? "
    """
    close = close_match(name, known, cutoff=cutoff)
    return f"did you mean '{prefix}{close}'? " if close else ""


def to_dict(cfg) -> dict:
    """A config dataclass as plain JSON-able data (tuples become lists).

    A field declared with ``metadata={"quiet_default": True}`` is left out while it has
    its default, so adding such a field changes no existing stage key or config file.
    """
    data = json.loads(json.dumps(dataclasses.asdict(cfg)))
    _drop_quiet_defaults(cfg, data)
    return data


def _drop_quiet_defaults(cfg, data: dict) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata.get("quiet_default") and value == f.default:
            data.pop(f.name, None)
        elif dataclasses.is_dataclass(value) and isinstance(data.get(f.name), dict):
            _drop_quiet_defaults(value, data[f.name])


def config_hash(*parts: Any, length: int = 12) -> str:
    """A short stable hash of JSON-able data (dataclasses allowed): the run-folder key."""
    norm = [to_dict(p) if dataclasses.is_dataclass(p) else p for p in parts]
    blob = json.dumps(norm, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
