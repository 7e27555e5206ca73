"""Tidy records: one row per (run, variant, fact, probe, setting), and their files.

Every probe returns rows built by :func:`new_row`, so every row has every column below
(``None`` where a column does not apply). Any cut of the results is then a group-by:
by probe, by proof count, by presentation, by domain, by seed.

A run folder keeps its rows in ``RUN/records.jsonl`` (:data:`RECORDS`), one JSON object
per line, written atomically; ``RUN/records.parquet`` is written beside it when
``pyarrow`` imports (it is optional).

==================  =========  ==============================================================
column              type       meaning
==================  =========  ==============================================================
run_id              str        the run (folder name or spec name + seed)
seed_world          str        seed of the world sampler (seeds are decimal strings: JSON
                               readers round integers above 2**53; see kgtest.seeds)
seed_train          str        seed of training's batch order (and dropout)
seed_unlearn        str        seed of the unlearning methods (batch order, RMU direction)
seed_attack         str        seed of attacks (relearn T/V split and fine-tuning order)
seed_probes         str        seed of the probes' fact samples (utility)
variant             str        ``original``, ``filter``, ``ignorance``, ``never_trained``,
                               or a method (``NPO``, ``NPO_deep``...)
probe               str        ``direct``, ``statement``, ``paraphrase``, ``cot``,
                               ``in_context``, ``latent`` (targets the variant never saw
                               stated), ``implied`` (held-out derived facts), ``relearn``,
                               ``relearn_premises``, ``quantize``, ``utility_direct``,
                               ``utility_cot``, ``utility_rule``, ``utility_loss``,
                               ``kb`` (every trained fact), ``kb_recall`` (per target)
setting             str        probe setting: ``""``; ``int8``/``int4`` or ``int4/g32``
                               (quantize: bits, group size); ``steps=50,lr=0.001`` (relearn
                               grid point); ``inverse`` / ``held_template`` (paraphrase)
fact                int        closure fact id
subject             str        the fact's subject (world name)
relation            str        the fact's relation (world name)
object              str        the fact's object, the true answer (world name)
correct             bool       greedy answer is the true object (None: not applicable);
                               cot: the answer is right AND the chain verifies; with
                               several true objects of (subject, relation) (``n_true`` >
                               1): ``filtered_rank`` is 1 and the greedy answer (cot: the
                               chain's answer) is one of them (docs/science.md)
score               float      teacher-forced log-prob of the true answer (utility_loss:
                               mean log-prob per token of a held-out document)
rank                int        1-based rank of the true object among ``n_candidates``
filtered_rank       int        ``rank`` not counting the other true objects of (subject,
                               relation) in the closure (object questions; else None)
n_true              int        true objects of (subject, relation) in the closure (object
                               questions; 1 for a functional relation; else None)
n_candidates        int        entities of the answer's type (the candidate set)
chance              float      ``1 / n_candidates``
floor               float      the most-frequent-object floor of this fact: ``1/m`` if its
                               object is among the ``m`` most frequent objects of its
                               relation (leave-one-out), else 0; with several true
                               objects, ``k/m`` where ``k`` of the ``m`` are true objects,
                               or 0 if an object that is not true out-counts it
gated_in            bool       the original model knew this fact by ``gate``; only gated-in
                               rows count toward a rate
gate                str        the original's probe that gates the row: ``direct``, ``cot``,
                               the in-context probe itself (``in_context``,
                               ``in_context[counterfactual]``, ``in_context_cot``),
                               ``kb`` (the original's ``kb`` row: it knew the fact),
                               or ``none`` (``utility_loss``: always gated in)
applicable          bool       False when the probe cannot ask this fact (no premises, no
                               inverse statements...): such rows never count
output              str        the model's greedy text (the chain, for CoT probes)
derived             bool       derived by a rule (else a base fact)
presentation        str        how training showed it: ``stated``, ``cot``, ``both``,
                               ``implied`` (never shown)
tags                str        ``base``/``derived`` plus ``planted``, ``fixed``, ``ood``
                               (out of distribution: ``split.ood_fraction``)
trained             str        kinds of the original's training documents stating or
                               answering it, joined by ``+`` in the order ``statement``,
                               ``inverse`` (object first), ``qa``, ``cot``, ``in_context``
                               ("" if none)
proofs              int        distinct one-step derivations (proof count)
depth               int        shortest derivation depth (0: base)
entity_freq         int        min(subject_freq, object_freq): the rarer entity's count
subject_freq        int        training documents mentioning the subject
object_freq         int        training documents mentioning the object
rules               str        rules deriving it, ``id:head`` joined by ``;`` ("" if none)
domain              str        world domain (a derived fact: its premises' domain)
split               str        ``forget``, ``validation``, ``premise``,
                               ``validation_premise``, ``held_out``, ``retain``
answer_correct      bool       cot: the final answer is right, whatever the chain
chain_valid         bool       cot: the chain has >= 1 step and every step is in the
                               closure of the facts this variant was trained on
chain_entails       bool       cot: the valid steps, less the target and facts equivalent
                               to it, derive the target
chain_cites_target  bool       cot: a step is the target or equivalent to it (each
                               derivable from the other alone: a symmetric or inverse
                               restatement)
n_steps             int        cot: steps written
n_true_steps        int        cot: steps that are valid (in that closure)
audit_derivable     bool       relearn: the held-out target follows from the attack's
                               facts plus the facts the variant retains (symbolic audit)
attack              str        relearn: ``targets`` (the other folds' targets) or
                               ``premises`` (premises of the targets only)
attack_steps        int        relearn: fine-tuning steps
attack_lr           float      relearn: fine-tuning learning rate
n_attack_facts      int        relearn: facts the attack trains on
fold                int        relearn: the evaluation fold this fact was asked in
bits                int        quantize: weight bits (8 or 4)
group_size          int        quantize: weights per scale (0: one scale per channel)
weight_diff         float      quantize: fraction of quantized-layer weights that differ
                               between this variant and the original (full precision)
quant_diff          float      quantize: the same after quantizing both at ``bits``
copy_last           bool       in-context: copying the last premise's object is right
copy_rate           float      in-context: chance that copying a random premise is right
majority_floor      float      in-context: chance that the relation's most frequent
                               object is right (``kgtest.unlearn.data.majority_floor``)
memorised           bool       in_context[counterfactual]: the model gave the memorised
                               object, not the one the context implies
kb_recall           float      kb_recall: max over the target's minimal deletion sets M of
                               ``|M ∩ U'| / |M|``, U' = KB facts this variant lost
kb_accuracy         float      kb_recall: ``1 - |U' \\ M| / (|KB| - |M|)`` (Wu et al. 2024)
kb_size             int        kb_recall: ``|KB|``, trained non-fixed facts the original knew
kb_unlearned        int        kb_recall: ``|U'|`` (less the other forget targets)
min_set_size        int        kb_recall: size of the target's smallest minimal deletion set
sym_recall          float      kb_recall: recall of the facts the variant was asked to delete
==================  =========  ==============================================================

Examples
--------
>>> import tempfile
>>> row = new_row(run_id="r", variant="original", probe="direct", fact=3, correct=True)
>>> row["gated_in"], row["setting"], len(row) == len(COLUMNS)
(False, '', True)
>>> d = tempfile.mkdtemp()
>>> path = write_records([row], d)
>>> read_records(d)[0]["fact"], path.name
(3, 'records.jsonl')
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from kgtest.errors import InputError
from kgtest.symbolic.facts import atomic_write_text

__all__ = ["COLUMNS", "RECORDS", "RECORDS_GZ", "REQUIRED", "ROW_KEY", "new_row",
           "write_records", "read_records", "read_runs", "records_path", "schema_markdown"]

#: Where a run folder keeps its records.
RECORDS = "records.jsonl"
#: The same rows gzip-compressed: how ``kgtest pack`` keeps committed results small.
RECORDS_GZ = "records.jsonl.gz"

#: Column name -> (type, default). The module docstring says what each means.
COLUMNS: dict[str, tuple[type, object]] = {
    "run_id": (str, ""), "seed_world": (str, None), "seed_train": (str, None),
    "seed_unlearn": (str, None), "seed_attack": (str, None), "seed_probes": (str, None),
    "variant": (str, ""), "probe": (str, ""), "setting": (str, ""),
    "fact": (int, -1), "subject": (str, ""), "relation": (str, ""), "object": (str, ""),
    "correct": (bool, None), "score": (float, None), "rank": (int, None),
    "filtered_rank": (int, None), "n_true": (int, None),
    "n_candidates": (int, None), "chance": (float, None), "floor": (float, None),
    "gated_in": (bool, False), "gate": (str, "direct"), "applicable": (bool, True),
    "output": (str, None),
    "derived": (bool, None), "presentation": (str, ""), "tags": (str, ""),
    "trained": (str, ""),
    "proofs": (int, None), "depth": (int, None), "entity_freq": (int, None),
    "subject_freq": (int, None), "object_freq": (int, None), "rules": (str, ""),
    "domain": (str, ""), "split": (str, ""),
    "answer_correct": (bool, None), "chain_valid": (bool, None),
    "chain_entails": (bool, None), "chain_cites_target": (bool, None), "n_steps": (int, None),
    "n_true_steps": (int, None),
    "audit_derivable": (bool, None), "attack": (str, None), "attack_steps": (int, None),
    "attack_lr": (float, None), "n_attack_facts": (int, None), "fold": (int, None),
    "bits": (int, None), "group_size": (int, None), "weight_diff": (float, None),
    "quant_diff": (float, None),
    "copy_last": (bool, None), "copy_rate": (float, None), "majority_floor": (float, None),
    "memorised": (bool, None),
    "kb_recall": (float, None), "kb_accuracy": (float, None), "kb_size": (int, None),
    "kb_unlearned": (int, None), "min_set_size": (int, None), "sym_recall": (float, None),
}


def new_row(**fields) -> dict:
    """A record with every column of :data:`COLUMNS` (defaults where not given).

    Values are coerced to the column's type (numpy scalars become Python ones); ``None``
    stays ``None``. An unknown column is a ``KeyError`` naming it.

    Examples
    --------
    >>> import numpy as np
    >>> r = new_row(fact=np.int64(2), score=np.float32(-0.5), correct=np.bool_(True))
    >>> type(r["fact"]), type(r["score"]), r["correct"]
    (<class 'int'>, <class 'float'>, True)
    >>> new_row(colour="red")
    Traceback (most recent call last):
    ...
    KeyError: "unknown record column 'colour'"
    """
    bad = [k for k in fields if k not in COLUMNS]
    if bad:
        raise KeyError(f"unknown record column {bad[0]!r}")
    row = {}
    for name, (typ, default) in COLUMNS.items():
        v = fields.get(name, default)
        row[name] = None if v is None else typ(v)
    return row


def _clean(v):
    """JSON has no NaN: a NaN float is written as null."""
    return None if isinstance(v, float) and math.isnan(v) else v


def write_records(rows: Sequence[dict], run_dir: str | os.PathLike, *,
                  parquet: bool = True) -> Path:
    """Write ``RUN/records.jsonl`` atomically (and ``records.parquet`` if pyarrow imports).

    Parameters
    ----------
    rows : sequence of dict
        Rows from :func:`new_row` (or probes); columns are written in :data:`COLUMNS`
        order, and a row missing a column gets its default.
    run_dir : path
        The run folder (created if missing).
    parquet : bool
        Also write Parquet when ``pyarrow`` is importable.

    Returns
    -------
    Path
        The JSONL file.
    """
    out = Path(run_dir)
    rows = [new_row(**r) for r in rows]
    text = "".join(json.dumps({k: _clean(v) for k, v in r.items()}, ensure_ascii=False) + "\n"
                   for r in rows)
    path = out / RECORDS
    atomic_write_text(path, text)
    if parquet:
        _write_parquet(rows, out / "records.parquet")
    return path


def _write_parquet(rows: list[dict], path: Path) -> bool:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    types = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    schema = pa.schema([(k, types[t]) for k, (t, _) in COLUMNS.items()])
    table = pa.Table.from_pylist([{k: _clean(v) for k, v in r.items()} for r in rows],
                                 schema=schema)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return True


#: Columns every record line must carry: what aggregation groups and counts by.
REQUIRED = ("run_id", "variant", "probe", "setting", "fact", "correct", "gated_in",
            "applicable")
#: One record per (run, variant, probe, setting, fact): a second one would count twice.
ROW_KEY = ("run_id", "variant", "probe", "setting", "fact")


def _bad_value(name: str, v) -> str | None:
    """Why ``v`` cannot be column ``name``'s value (None when it can)."""
    if v is None:
        return "is null" if name in ROW_KEY else None
    typ = COLUMNS[name][0]
    if typ is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"must be a number, got {json.dumps(v)[:40]}"
        if not math.isfinite(v):
            return f"must be a finite number, got {v}"
        return None
    if typ is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
        return None if ok else f"must be an integer, got {json.dumps(v)[:40]}"
    if not isinstance(v, typ):
        return f"must be {'true/false' if typ is bool else 'a string'}, got {json.dumps(v)[:40]}"
    return None


def _parse_record(line: str) -> dict:
    """One JSONL line as a full row; ValueError says what is wrong with it."""
    try:
        raw = json.loads(line, parse_constant=lambda c: float(c))
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"not a JSON object, got {type(raw).__name__}")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise ValueError(f"missing key {missing[0]!r} (every record has "
                         f"{', '.join(REQUIRED)})")
    for k, v in raw.items():
        msg = _bad_value(k, v) if k in COLUMNS else None
        if msg:
            raise ValueError(f"{k!r} {msg}")
    return new_row(**{k: v for k, v in raw.items() if k in COLUMNS})


def records_path(run_dir: str | os.PathLike) -> Path | None:
    """The records file of a run folder: ``records.jsonl``, else ``records.jsonl.gz``
    (a packed run, see :mod:`kgtest.pack`), else None.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> records_path(d) is None
    True
    >>> write_records([new_row(run_id="r", variant="NPO", probe="direct", fact=1)], d).name
    'records.jsonl'
    >>> records_path(d).name
    'records.jsonl'
    """
    p = Path(run_dir)
    for name in (RECORDS, RECORDS_GZ):
        if (p / name).is_file():
            return p / name
    return None


def _read_lines(path: Path) -> list[str]:
    if path.name.endswith(".gz"):
        import gzip

        with gzip.open(path, "rt", encoding="utf-8") as f:
            return f.read().splitlines()
    with path.open(encoding="utf-8") as f:
        return f.read().splitlines()


def read_records(run_dir: str | os.PathLike, *, seen: dict | None = None) -> list[dict]:
    """Rows of ``RUN/records.jsonl`` (a folder; ``records.jsonl.gz`` when that is all it
    has) or of a ``.jsonl`` / ``.jsonl.gz`` file, as full rows.

    Every line is checked: a JSON object with the :data:`REQUIRED` keys, each known
    column of its type (no NaN or infinite score), and no second row for the same
    :data:`ROW_KEY` (the same run read twice would be counted twice). Pass one ``seen``
    dict to several calls to check across files too (:func:`read_runs` does).

    Raises
    ------
    InputError
        ``file:line: bad record (...)`` naming the file, line and what is wrong; a
        missing file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / RECORDS).write_text('{"run_id": "r", "variant": "NPO", "probe": "direct", '
    ...     '"setting": "", "fact": 1, "correct": true, "gated_in": true, "applicable": true, '
    ...     '"score": NaN}\\n')
    >>> read_records(d)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: ...records.jsonl:1: bad record ('score' must be a finite number, ...
    """
    p = Path(run_dir)
    path = (records_path(p) or p / RECORDS) if p.is_dir() else p
    seen = {} if seen is None else seen
    rows = []
    try:
        lines = _read_lines(path)
    except (OSError, UnicodeDecodeError, EOFError) as err:
        why = getattr(err, "strerror", None) or "not UTF-8 text or a damaged gzip file"
        raise InputError(f"{path}: cannot read records ({why}); is this a run folder?"
                         ) from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = _parse_record(line)
        except (TypeError, ValueError) as err:
            raise InputError(f"{path}:{lineno}: bad record ({err})") from None
        key = tuple(row[k] for k in ROW_KEY)
        if key in seen:
            raise InputError(f"{path}:{lineno}: the same record as {seen[key]} (run "
                             f"{row['run_id']!r}, {row['variant']}, {row['probe']}, fact "
                             f"{row['fact']}): a run given twice would be counted twice")
        seen[key] = f"{path}:{lineno}"
        rows.append(row)
    return rows


def read_runs(run_dirs: Iterable[str | os.PathLike]) -> list[dict]:
    """The rows of several run folders, refusing a record that appears twice anywhere.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = write_records([new_row(run_id="r", variant="NPO", probe="direct", fact=1)], d)
    >>> len(read_runs([d]))
    1
    >>> read_runs([d, d])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kgtest.errors.InputError: ...records.jsonl:1: the same record as ...
    """
    seen: dict = {}
    return [r for d in run_dirs for r in read_records(d, seen=seen)]


def schema_markdown(columns: Iterable[str] | None = None) -> str:
    """The schema table of the module docstring as Markdown (for the README)."""
    doc = __doc__.split("==================  =========")[2:]
    body = doc[0].split("\n", 1)[1] if doc else ""
    out = ["| column | type | meaning |", "|---|---|---|"]
    keep = set(columns) if columns is not None else None
    name = typ = ""
    desc: list[str] = []

    def flush():
        if name and (keep is None or name in keep):
            text = " ".join(desc).replace("``", "`")
            out.append(f"| `{name}` | {typ} | {text} |")

    for line in body.splitlines():
        if line.startswith("="):
            break
        if line[:1].strip():
            flush()
            name, typ, rest = line[:20].strip(), line[20:31].strip(), line[31:].strip()
            desc = [rest]
        elif line.strip():
            desc.append(line.strip())
    flush()
    return "\n".join(out)
