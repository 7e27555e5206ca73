"""Probe a model kgtest did not make: ``kgtest probe MODEL_DIR --run RUN [--as NAME]``.

A user who unlearned a run's model with another library (open-unlearning, their own
code) hands the resulting Hugging Face checkpoint to :func:`probe_model`: every probe of
the run's spec runs on it with the run's tokenizer, its rows are gated by what the run's
original model knew (exactly as for kgtest's own variants), and they are written into
``RUN/records.jsonl`` as a new variant. ``summary.md`` is then rebuilt, so the outside
method sits beside kgtest's methods and controls, with the same intervals and the excess
over the filter control. ``RUN/external.json`` lists the variants added this way.

Probing again with the same name replaces that variant's rows. A later ``kgtest run``
that has to recompute the records (a changed spec) drops outside variants: probe again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from kgtest.errors import InputError
from kgtest.symbolic.facts import atomic_write_text

__all__ = ["probe_model", "EXTERNAL"]

EXTERNAL = "external.json"  # the variants a run got from `kgtest probe`


def _load_outside(model_dir: Path, tokenizer):
    from transformers import AutoModelForCausalLM

    if not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir}: not a Hugging Face checkpoint (no config.json)")
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    except Exception as err:  # unreadable weights, unknown architecture...
        msg = " ".join(str(err).split())[:200]
        raise InputError(f"{model_dir}: cannot load ({type(err).__name__}: {msg})") from None
    rows = model.get_input_embeddings().num_embeddings
    if rows < len(tokenizer):
        raise InputError(f"{model_dir}: its embedding has {rows} rows but the run's tokenizer "
                         f"has {len(tokenizer)} tokens (a model of another run?)")
    return model.eval()


def _external(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / EXTERNAL).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def probe_model(model_dir: str | os.PathLike, run, name: str = "external", *,
                probes=None, log=print) -> dict:
    """Run a run's probes on an outside checkpoint and add it to the run as a variant.

    Parameters
    ----------
    model_dir : path
        A Hugging Face causal LM folder whose vocabulary is the run's (e.g. the run's
        ``model/`` after unlearning elsewhere). Its own tokenizer, if any, is not used.
    run : path
        The run folder (made by ``kgtest run``; ``kgtest train`` works too, and then
        only the gating questions are asked of the original).
    name : str
        The variant name in the records (not a built-in variant's name).
    probes : sequence of str, optional
        Probe names (default: the run's ``[probes] probes``).
    log : callable
        Progress lines.

    Returns
    -------
    dict
        ``{"variant", "rows", "gated_in", "summary"}`` (``summary``: path or None).

    Raises
    ------
    kgtest.stages.RunBusy
        Another process (a ``kgtest run``, another ``kgtest probe``) is writing the run
        folder: the records are read, extended and written under the run folder's lock.
    """
    from kgtest.stages import run_lock
    from kgtest.unlearn.api import load_run

    rc = load_run(run)
    with run_lock(rc.run_dir, command=f"kgtest probe {model_dir} --as {name}"):
        return _probe(rc, model_dir, name, probes, log)


def _probe(rc, model_dir, name, probes, log) -> dict:
    from kgtest.corpus.io import stage_seed
    from kgtest.model import load_model
    from kgtest.probes.config import ProbesConfig
    from kgtest.probes.context import ProbeContext
    from kgtest.probes.probes import PROBES, _known
    from kgtest.records import RECORDS, read_records, write_records
    from kgtest.train import TrainConfig

    run_dir, model_dir = rc.run_dir, Path(model_dir)
    pcfg = rc.section(ProbesConfig, "probes")
    existing = read_records(run_dir) if (run_dir / RECORDS).is_file() else []
    outside = _external(run_dir)
    builtin = {r["variant"] for r in existing} - set(outside)
    if not name or name in builtin | {"original"}:
        raise InputError(f"--as {name!r}: that name is a built-in variant of {run_dir} "
                         f"({', '.join(sorted(builtin | {'original'}))}); pick another")
    probes = list(probes or pcfg.probes)
    specs = [PROBES.get(p, where="--probes: ") for p in probes]
    original, tok = load_model(rc.model_dir)
    model = _load_outside(model_dir, tok)
    seeds = {"world": stage_seed(rc.seed, "world"),
             "train": rc.section(TrainConfig, "train").seed,
             "unlearn": rc.unlearn_config().seed, "attack": pcfg.seed}
    run_name = rc.cfg.run.name
    ctx = ProbeContext.from_run(
        rc.corpus_dir, rc.world, run_id=f"{run_name}-seed{rc.seed}", seeds=seeds,
        relearn=pcfg.relearn, quantize_bits=pcfg.quantize_bits,
        utility_limit=pcfg.utility_limit, batch_size=pcfg.batch_size)
    facts = ctx.split.forget.tolist()
    rows = []
    for p in specs:
        log(f"{name}: {p.name}")
        rows += p.fn(model, tok, facts, ctx.for_variant(name))
    # the gate: what the original knew, from its records, asking it what they lack (the
    # stub rows only tell _known which (gate, fact) pairs are needed)
    stubs = [{"probe": "", "setting": "", "applicable": False, "gate": r["gate"],
              "fact": r["fact"]} for r in rows]
    known = _known(original, tok, ctx.for_variant("original"),
                   [r for r in existing if r["variant"] == "original"] + stubs)
    for r in rows:
        r["gated_in"] = r["gate"] == "none" or (
            bool(r["applicable"]) and known.get(r["gate"], {}).get(r["fact"], False))
    write_records([r for r in existing if r["variant"] != name] + rows, run_dir)
    outside[name] = {"model": str(model_dir.resolve()), "probes": probes,
                     "rows": len(rows), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_text(run_dir / EXTERNAL, json.dumps(outside, indent=1) + "\n")
    summary = None
    if any(r["variant"] == "original" for r in existing):
        from kgtest.report import report

        summary = report([run_dir], control=pcfg.control, n_boot=pcfg.n_boot, seed=pcfg.seed)
    return {"variant": name, "rows": len(rows), "gated_in": sum(r["gated_in"] for r in rows),
            "summary": str(summary) if summary else None}
